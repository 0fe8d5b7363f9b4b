"""Streaming readers of YouTube-8M TFRecord shards (video and frame level).

Every problem in a shard becomes a one-line
:class:`~predictions.errors.InputError` ``"<path>: record <i>: <reason>"``
(record numbers are 0-based within the file).
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import numpy as np

from predictions.errors import InputError
from predictions.params import Num
from predictions.storeformat import MAX_CLASSES
from predictions.types import Labels, as_ids

from .examples import FrameExample, VideoExample, decode_frame, decode_video, decode_video_id, decode_video_id_labels
from .tfrecord_io import iter_payloads

T = TypeVar("T")
Patterns = str | os.PathLike | Iterable[str | os.PathLike]
_GLOB_CHARS = set("*?[")


def expand_shards(patterns: Patterns) -> list[Path]:
    """Shard paths named by ``patterns``: files, directories (their ``*.tfrecord``) or globs.

    Returns the sorted, de-duplicated list. InputError when a pattern matches
    nothing or when the overall list is empty. Nothing named is dropped for
    being unreadable: a dangling symbolic link, a FIFO, a device or a directory
    named ``*.tfrecord`` among the shards is kept here and refused by the
    reader (:func:`iter_payloads`); a glob skips other directories.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    patterns = list(patterns) if hasattr(patterns, "__iter__") and not isinstance(patterns, bytes) else patterns
    if not isinstance(patterns, list) or not all(
            isinstance(p, (str, os.PathLike)) and not isinstance(p, bytes) for p in patterns):
        raise InputError(f"shards must be a path or a list of paths (str or os.PathLike), got "
                         f"{type(patterns).__name__}")
    found: set[Path] = set()
    for pattern in patterns:
        text = os.fspath(pattern)
        path = Path(text)
        if path.is_dir():
            matches = list(path.glob("*.tfrecord"))
            if not matches:
                raise InputError("directory holds no *.tfrecord files", path)
        elif os.path.lexists(path):
            matches = [path]
        elif _GLOB_CHARS & set(text):
            matches = [Path(p) for p in glob.glob(text) if not Path(p).is_dir() or p.endswith(".tfrecord")]
            if not matches:
                raise InputError("pattern matches no files", text)
        else:
            raise InputError("no such file or directory", text)
        found.update(matches)
    if not found:
        raise InputError("no TFRecord shards given")
    return sorted(found)


def _labels_feature(decode: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """``decode`` that first refuses a record without a ``labels`` feature (ValueError: the reader names the
    shard and record). For training shards: a record with ``labels`` empty is a video without labels, one
    without the feature at all is malformed (it would be trained on as a video with no labels)."""
    from tfrecord import example_pb2

    def checked(payload: bytes) -> T:
        item = decode(payload)  # the decoder's own errors first (not a protobuf, no id, ...)
        msg = example_pb2.Example()  # a SequenceExample's context parses as an Example's features
        msg.ParseFromString(payload)
        if "labels" not in msg.features.feature:
            raise ValueError("no 'labels' feature (every record of a training shard lists its labels, possibly "
                             "none; a test shard among the training ones?)")
        return item

    return checked


def _iter_records(patterns: Patterns, decode: Callable[[bytes], T],
                  progress: bool) -> Iterator[tuple[Path, int, T]]:
    """Yield ``(path, record number, decoded item)``; errors name the file and record."""
    paths = expand_shards(patterns)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(unit="video", desc="reading", total=None)
    try:
        for path in paths:
            i = -1
            for i, payload in enumerate(iter_payloads(path)):
                try:
                    item = decode(payload)
                except InputError:
                    raise
                except ValueError as err:
                    raise InputError(f"record {i}: {err}", path) from None
                if bar is not None:
                    bar.update(1)
                yield path, i, item
            if i < 0:
                raise InputError("empty shard (no records)", path)
    finally:
        if bar is not None:
            bar.close()


def _iter_decoded(patterns: Patterns, decode: Callable[[bytes], T], progress: bool) -> Iterator[T]:
    for _, _, item in _iter_records(patterns, decode, progress):
        yield item


def iter_video(patterns: Patterns, *, progress: bool = False) -> Iterator[VideoExample]:
    """Stream the :class:`VideoExample` records of the shards, in sorted-file then record order."""
    return _iter_decoded(patterns, decode_video, progress)


def iter_frame(patterns: Patterns, *, max_frames: int | None = 300,
               progress: bool = False) -> Iterator[FrameExample]:
    """Stream the dequantised :class:`FrameExample` records (first ``max_frames`` frames each)."""
    Num(1, 1 << 20, integer=True, none=True).check("max_frames", max_frames)
    return _iter_decoded(patterns, lambda p: decode_frame(p, max_frames=max_frames), progress)


def scan_ids(patterns: Patterns, level: str = "video", *, require_labels: bool = False) -> np.ndarray:
    """(n,) unicode array of the video ids in file order, decoding only the ``id`` feature.

    ``level`` ("video" or "frame") is accepted for symmetry: both record kinds
    keep the id where an Example keeps its features, so the scan is the same.
    ``require_labels`` (training shards): InputError naming a shard in which
    no video has a label (test shards among the training ones), or a shard and
    record without a ``labels`` feature.
    """
    if level not in ("video", "frame"):
        raise InputError(f"level must be 'video' or 'frame', got {level!r}")
    if not require_labels:
        ids = list(_iter_decoded(patterns, decode_video_id, False))
    else:
        ids, counts = [], {}
        for path, _, (vid, labels) in _iter_records(patterns, _labels_feature(decode_video_id_labels), False):
            ids.append(vid)
            c = counts.setdefault(path, [0, 0])
            c[0] += 1
            c[1] += bool(labels.size)
        _check_labelled(counts)
    return as_ids(np.array(ids, dtype=str)) if ids else np.zeros(0, dtype="<U1")


def _check_labelled(counts: dict[Path, list[int]]) -> None:
    """``counts``: {shard: [videos, labelled videos]}; InputError for a shard without any label."""
    for path, (n, labelled) in counts.items():
        if n and not labelled:
            raise InputError(f"none of the {n} videos of this training shard has a label (test shards "
                             f"given as training data?)", path)


def load_video_level(patterns: Patterns, *, ids=None, num_classes: int = 3862, progress: bool = False,
                     require_labels: bool = False) -> tuple[np.ndarray, np.ndarray, Labels]:
    """Load video-level shards into memory.

    Returns ``(ids, X, labels)``: ids (n,) unicode in file order; X (n, 1152)
    float32 = mean_rgb (1024) then mean_audio (128); labels a
    :class:`~predictions.types.Labels` (sorted unique label ids per video).
    When ``ids`` is given only records with an id in it are kept. InputError on a
    duplicate id (naming the file and the id) or a label id >= ``num_classes``;
    a NaN or inf feature names its file and record. ``require_labels``
    (training shards): InputError naming a shard in which no video has a label,
    or a shard and record without a ``labels`` feature.
    """
    Num(1, MAX_CLASSES, integer=True).check("num_classes", num_classes)  # never a bool, NaN, str or 10**12
    if ids is not None and (isinstance(ids, (str, bytes)) or not hasattr(ids, "__len__")):
        raise InputError(f"ids must be a collection of video ids, got {type(ids).__name__}")
    keep = None if ids is None else set(_id_list(ids))
    seen: dict[str, Path] = {}
    out_ids: list[str] = []
    rows: list[np.ndarray] = []
    label_lists: list[np.ndarray] = []
    counts: dict[Path, list[int]] = {}
    decode = _labels_feature(decode_video) if require_labels else decode_video
    for path, i, ex in _iter_records(patterns, decode, progress):
        if keep is not None and ex.id not in keep:
            continue
        c = counts.setdefault(path, [0, 0])
        c[0] += 1
        c[1] += bool(ex.labels.size)
        if ex.id in seen:
            where = "earlier in this file" if seen[ex.id] == path else f"first seen in {seen[ex.id]}"
            raise InputError(f"record {i}: duplicate video id {ex.id!r} ({where})", path)
        if ex.labels.size and ex.labels.max() >= num_classes:
            raise InputError(f"record {i}: label id {ex.labels.max()} out of range [0, {num_classes})", path)
        seen[ex.id] = path
        out_ids.append(ex.id)
        rows.append(np.concatenate([ex.mean_rgb, ex.mean_audio]))
        label_lists.append(ex.labels)
    if require_labels:
        _check_labelled(counts)
    X = np.stack(rows) if rows else np.zeros((0, 1152), np.float32)
    labels = _csr_labels(out_ids, label_lists, num_classes)
    return labels.ids, X, labels


def _id_list(ids) -> list[str]:
    """Any collection of ids (set, list, array; str or bytes) -> list of str."""
    if isinstance(ids, (set, frozenset)):
        ids = list(ids)
    arr = np.asarray(ids)
    return as_ids(arr.ravel()).tolist() if arr.size else []


def _csr_labels(ids: list[str], label_lists: list[np.ndarray], num_classes: int) -> Labels:
    """CSR Labels with sorted, de-duplicated ids per row (vectorised)."""
    counts = np.fromiter((len(l) for l in label_lists), dtype=np.int64, count=len(label_lists))
    flat = np.concatenate(label_lists) if label_lists else np.zeros(0, np.int64)
    rows = np.repeat(np.arange(len(ids)), counts)
    order = np.lexsort((flat, rows))
    rows, flat = rows[order], flat[order]
    dup = np.zeros(len(flat), bool)
    dup[1:] = (rows[1:] == rows[:-1]) & (flat[1:] == flat[:-1])
    rows, flat = rows[~dup], flat[~dup]
    indptr = np.zeros(len(ids) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(ids)), out=indptr[1:])
    id_arr = np.array(ids, dtype=str) if ids else np.zeros(0, dtype="<U1")
    return Labels(id_arr, indptr, flat.astype(np.int32), num_classes)
