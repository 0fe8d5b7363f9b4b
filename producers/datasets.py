"""Torch datasets feeding the shared training loop (:mod:`producers.train`).

Every loader built here yields :class:`Batch` tuples ``(x, y, lengths, ids)``:

* ``x``: (B, D) float32 video features, or (B, T, D) float32 padded frames;
* ``y``: (B, C) float32 multi-hot targets (all zero for unlabelled videos);
* ``lengths``: ``None`` (video level) or (B,) int64 valid frames per row;
* ``ids``: (B,) numpy unicode array of video ids.

Video level: :class:`VideoArrays` holds ``X`` (n, D) and :class:`Labels` in
memory; :func:`video_loader` batches it with one vectorised gather per batch
(no per-video Python work). Frame level: :class:`FrameShards` streams
:class:`~producers.data.examples.FrameExample` records from TFRecord shards
(each DataLoader worker reads its own subset of shard files), selects each
video's frames with a :class:`producers.crops.FrameSelection` (Zou's crops, all
frames, or sampled frames; random in training, deterministic at prediction),
and :func:`collate_frames` pads them into a batch.
"""
from __future__ import annotations

import random
from typing import Iterable, Iterator, NamedTuple, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler, SequentialSampler

from predictions.errors import InputError
from predictions.types import Labels, as_ids


class Batch(NamedTuple):
    """One batch; see the module docstring for shapes. ``teacher``: (B, C) soft targets (distillation) or None."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None
    ids: np.ndarray | None = None
    teacher: torch.Tensor | None = None


def multi_hot(labels: Labels, rows=None) -> np.ndarray:
    """(len(rows), C) float32 multi-hot matrix of the label rows ``rows`` (all rows if None)."""
    sub = labels if rows is None else labels.take(np.asarray(rows, dtype=np.int64))
    out = np.zeros((len(sub), labels.num_classes), dtype=np.float32)
    out[sub.rows(), sub.indices] = 1.0
    return out


class VideoArrays(Dataset):
    """In-memory video-level dataset: ``X`` (n, D) float32 and ``labels`` (n videos, same order).

    ``ds[i]`` returns ``(x (D,) float32 tensor, y (C,) float32 multi-hot tensor)``;
    ``ds[list_of_rows]`` returns a whole :class:`Batch` (used by :func:`video_loader`).
    ``teacher``: optional (n, C) float32 soft targets in the same row order
    (a distillation teacher), passed on as ``Batch.teacher``.
    """

    def __init__(self, X: np.ndarray, labels: Labels, teacher: np.ndarray | None = None):
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != len(labels):
            raise InputError(f"X has shape {X.shape}, expected ({len(labels)}, D) rows matching the labels")
        if teacher is not None and teacher.shape != (len(labels), labels.num_classes):
            raise InputError(f"teacher has shape {teacher.shape}, expected ({len(labels)}, {labels.num_classes})")
        self.X = np.ascontiguousarray(X, dtype=np.float32)
        self.labels = labels
        self.teacher = teacher

    def __len__(self) -> int:
        return self.X.shape[0]

    def __getitem__(self, index):
        if isinstance(index, (int, np.integer)):
            y = multi_hot(self.labels, [int(index)])[0]
            return torch.from_numpy(self.X[index]), torch.from_numpy(y)
        rows = np.asarray(index, dtype=np.int64)
        teacher = None if self.teacher is None else torch.from_numpy(np.ascontiguousarray(self.teacher[rows]))
        return Batch(torch.from_numpy(self.X[rows]), torch.from_numpy(multi_hot(self.labels, rows)),
                     None, self.labels.ids[rows], teacher)


def _identity(batch):
    return batch


def video_loader(dataset: VideoArrays, batch_size: int, *, shuffle: bool = False, drop_last: bool = False,
                 workers: int = 0) -> DataLoader:
    """DataLoader of :class:`Batch` over ``dataset``, one fancy-indexing gather per batch.

    Shuffling draws from torch's global RNG at the start of each epoch, so
    :func:`torch.manual_seed` (or a restored RNG state) fixes the order.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    base = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, sampler=BatchSampler(base, batch_size, drop_last), batch_size=None,
                      collate_fn=_identity, num_workers=workers)


def arrays_batches(X: np.ndarray, ids, batch_size: int) -> Iterator[Batch]:
    """Unlabelled video-level batches (``y`` empty, (B, 0)) in row order, for prediction."""
    ids = as_ids(ids)
    X = np.asarray(X, dtype=np.float32)
    for a in range(0, len(ids), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(X[a:a + batch_size]))
        yield Batch(x, torch.zeros(x.shape[0], 0), None, ids[a:a + batch_size])


# --------------------------------------------------------------------------- frame level

class FrameShards(IterableDataset):
    """Stream frame-level videos from TFRecord shards as ``(id, frames (t, 1152), labels)`` items.

    Parameters
    ----------
    patterns : shard glob(s), expanded by :func:`producers.data.readers.expand_shards`.
    num_classes : C, size of the multi-hot target.
    crop : ``"train"`` (``frames.train``: random), an int (``frames.predict``
        with that crop index: deterministic), or ``None`` (every frame up to
        ``max_frames``).
    frames : the :class:`~producers.crops.FrameSelection` (``[train] frames``
        and ``num_frames``); default Zou's crops.
    ids : optional collection of video ids to keep (others are skipped).
    shuffle : shuffle shard order each epoch and items within a buffer of
        ``shuffle_buffer`` videos.
    seed : base seed; the RNG of epoch ``e`` in worker ``w`` is seeded from
        ``(seed, e, w)``, so a run is reproducible whatever the process history.
        :meth:`set_epoch` (called by :func:`producers.train.fit`) advances it.
    max_frames : frames read per video (the readers' cap).

    Workers split the shard *files* (worker ``w`` of ``W`` reads files
    ``w, w + W, ...``); with more workers than files some workers are idle.
    """

    def __init__(self, patterns, num_classes: int, *, crop="train", ids: Iterable[str] | None = None,
                 shuffle: bool = False, seed: int = 0, max_frames: int = 300, shuffle_buffer: int = 256,
                 frames=None):
        from producers.crops import FrameSelection
        from producers.data.readers import expand_shards

        if not (crop is None or crop == "train" or (isinstance(crop, int) and not isinstance(crop, bool))):
            raise InputError(f"crop must be 'train', an inference crop index or None, got {crop!r}")
        self.frames = FrameSelection() if frames is None else frames
        if not isinstance(self.frames, FrameSelection):
            raise InputError(f"frames must be a FrameSelection, got {frames!r}")
        if isinstance(crop, int) and not 0 <= crop < self.frames.max_crops:
            raise InputError(f"crop index {crop} out of range for frames = {self.frames.mode!r} "
                             f"(0..{self.frames.max_crops - 1})")
        self.files = expand_shards(patterns)
        self.num_classes, self.crop, self.shuffle, self.seed = num_classes, crop, shuffle, seed
        self.max_frames, self.shuffle_buffer = max_frames, shuffle_buffer
        self.ids = None if ids is None else frozenset(as_ids(list(ids)).tolist())
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the RNG stream of ``epoch`` (crops and shuffling)."""
        self.epoch = int(epoch)

    def _frames(self, ex, rng: np.random.Generator) -> np.ndarray:
        frames = np.concatenate([ex.rgb, ex.audio], axis=1)
        n = frames.shape[0]
        if self.crop is None or n == 0:
            return frames
        idx = self.frames.train(n, rng) if self.crop == "train" else self.frames.predict(n, self.crop)
        return frames[idx]

    def __iter__(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        from producers.data.readers import iter_frame

        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, wid])
        files = list(self.files)
        if self.shuffle:
            files = [files[i] for i in rng.permutation(len(files))]
        files = files[wid::nw]
        buffer: list = []
        for ex in iter_frame(files, max_frames=self.max_frames):
            if self.ids is not None and ex.id not in self.ids:
                continue
            item = (ex.id, self._frames(ex, rng), np.asarray(ex.labels, dtype=np.int64))
            if not self.shuffle:
                yield item
                continue
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))))
        order = rng.permutation(len(buffer)) if self.shuffle else range(len(buffer))
        for i in order:
            yield buffer[i]


class TeacherRows:
    """Soft targets keyed by video id: ``rows(ids) -> (len(ids), C)`` float32 (a distillation teacher)."""

    def __init__(self, ids, matrix: np.ndarray):
        ids = as_ids(ids)
        if matrix.shape[0] != len(ids):
            raise InputError(f"teacher matrix has {matrix.shape[0]} rows for {len(ids)} ids")
        self.order = np.argsort(ids)
        self.sorted_ids, self.matrix = ids[self.order], matrix

    def rows(self, ids) -> np.ndarray:
        ids = as_ids(ids)
        pos = np.minimum(np.searchsorted(self.sorted_ids, ids), max(len(self.sorted_ids) - 1, 0))
        found = len(self.sorted_ids) > 0 and np.array_equal(self.sorted_ids[pos], ids)
        if not found:
            raise InputError(f"the teacher has no row for video {str(ids[~(self.sorted_ids[pos] == ids)][0])!r}")
        return self.matrix[self.order[pos]]


def collate_frames(items: Sequence[tuple[str, np.ndarray, np.ndarray]], num_classes: int,
                   teacher: TeacherRows | None = None) -> Batch:
    """Pad ``(id, frames (t, D), labels)`` items into a :class:`Batch` (x (B, T_max, D), lengths (B,)).

    ``teacher``: the batch's soft targets are looked up by id into ``Batch.teacher``.
    """
    lengths = np.array([f.shape[0] for _, f, _ in items], dtype=np.int64)
    d = items[0][1].shape[1]
    x = np.zeros((len(items), max(int(lengths.max()), 1), d), dtype=np.float32)
    for i, (_, f, _) in enumerate(items):
        x[i, : f.shape[0]] = f
    y = np.zeros((len(items), num_classes), dtype=np.float32)
    rows = np.repeat(np.arange(len(items)), [len(l) for _, _, l in items])
    labs = np.concatenate([l for _, _, l in items]) if len(rows) else np.zeros(0, np.int64)
    if len(labs) and (labs.min() < 0 or labs.max() >= num_classes):
        raise InputError(f"label id {int(labs.max())} out of range [0, {num_classes})")
    y[rows, labs] = 1.0
    ids = as_ids([i for i, _, _ in items])
    soft = None if teacher is None else torch.from_numpy(np.ascontiguousarray(teacher.rows(ids)))
    return Batch(torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths), ids, soft)


class _FrameCollate:
    """Picklable collate function bound to ``num_classes`` and a teacher (for worker processes)."""

    def __init__(self, num_classes: int, teacher: TeacherRows | None = None):
        self.num_classes, self.teacher = num_classes, teacher

    def __call__(self, items):
        return collate_frames(items, self.num_classes, self.teacher)


def frame_loader(dataset: FrameShards, batch_size: int, *, workers: int = 0,
                 teacher: TeacherRows | None = None) -> DataLoader:
    """DataLoader of padded frame-level :class:`Batch` es over ``dataset`` (with teacher soft targets)."""
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    return DataLoader(dataset, batch_size=batch_size, collate_fn=_FrameCollate(dataset.num_classes, teacher),
                      num_workers=workers, worker_init_fn=None)


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
