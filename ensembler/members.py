"""Find the members of an ensemble among predictions stores and read them aligned.

A *member* is one model's predictions for one split. A model's test-time crops
(stores with crop ``"0"``, ``"1"``, ...) are folded into one member first (their
mean), so that crops do not swamp the weights; a store with crop ``"full"`` (a
video-level model, or an ensemble) or ``"mean"`` (crops averaged by the
producer) is used as it is.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from predictions.align import Alignment, align_stores
from predictions.csvimport import is_csv, stores_of_members
from predictions.errors import InputError
from predictions.store import StoreReader, expand_paths, open_store
from predictions.types import Predictions, check_aligned

from .candidates import DEFAULT_K_FULL, Candidates

FOLDS = ("mean", "none")
#: Class count assumed for CSV members when neither --classes, a store nor a labels file tells it
#: (the YouTube-8M 2018 vocabulary).
DEFAULT_CLASSES = 3862


@dataclass
class MemberStores:
    """The open store(s) of one member on one split: one store, or a model's crops to average."""

    name: str
    split: str
    readers: list[StoreReader]

    @property
    def num_classes(self) -> int:
        return self.readers[0].meta.num_classes

    @property
    def k(self) -> int | None:
        ks = [r.meta.k for r in self.readers]
        return None if None in ks else max(ks)

    @property
    def paths(self) -> list[str]:
        return [str(r.path) for r in self.readers]


def mean_of_crops(parts: list[Predictions], k: int | None) -> Predictions:
    """Mean of one model's aligned crop predictions, top ``k`` kept (100 for full crops)."""
    if len(parts) == 1:
        return parts[0]
    cands = Candidates.from_members(parts)
    return cands.to_predictions(cands.scores.mean(axis=1), k=min(k or DEFAULT_K_FULL, cands.num_classes))


def has_csv(patterns) -> bool:
    """Whether ``patterns`` (``--members``) name any Kaggle CSV (a file or glob ending in ``.csv``)."""
    if isinstance(patterns, (str, bytes)) or not hasattr(patterns, "__iter__"):
        patterns = [patterns]
    return any(is_csv(p) for p in patterns)


def with_csv_stores(patterns, *, classes: int | None = None, label_files=(), csv_cache=None,
                    progress: bool = False, log=None) -> list:
    """``patterns`` with every Kaggle CSV (a file or glob ending in ``.csv``) replaced by its store in
    the CSV cache (imported and validated the first time; see :mod:`predictions.csvimport`).

    A CSV's class count is ``classes``, else that of the first store among the other patterns,
    else that of the first of ``label_files`` (paths of labels files), else :data:`DEFAULT_CLASSES`.
    """
    if isinstance(patterns, (str, bytes)) or not hasattr(patterns, "__iter__"):
        patterns = [patterns]
    patterns = list(patterns)
    if not any(is_csv(p) for p in patterns):
        return patterns
    if classes is None:
        classes = _class_count([p for p in patterns if not is_csv(p)], label_files)
    return stores_of_members(patterns, num_classes=classes, cache_dir=csv_cache, progress=progress, log=log)


def _class_count(store_patterns, label_files) -> int:
    from predictions.labels import read_labels

    for path in expand_paths(store_patterns) if store_patterns else ():
        if not path.name.startswith("labels."):
            with open_store(path) as r:
                return r.num_classes
    for path in label_files:
        return read_labels(path).num_classes
    return DEFAULT_CLASSES


def discover(patterns, *, fold_crops: str = "mean") -> dict[str, list[MemberStores]]:
    """Open every store matched by ``patterns`` and group them into members per split.

    Returns ``{split: [MemberStores, ...]}`` with members sorted by name. Two stores of
    the same model, split and crop are an error (the same member twice).
    """
    if fold_crops not in FOLDS:
        raise InputError(f"--fold-crops must be one of {', '.join(FOLDS)}, got {fold_crops!r}")
    by_key: dict[tuple[str, str], dict[str, StoreReader]] = defaultdict(dict)
    for path in expand_paths(patterns):
        if path.name.startswith("labels."):
            continue  # a labels file beside the stores is not a member
        reader = open_store(path)
        m = reader.meta
        crops = by_key[(m.split, m.model)]
        if m.crop in crops:
            raise InputError(f"the same member twice: model {m.model!r}, split {m.split!r}, crop {m.crop!r} "
                             f"in {crops[m.crop].path} and {path}", path)
        crops[m.crop] = reader
    out: dict[str, list[MemberStores]] = defaultdict(list)
    for (split, model), crops in sorted(by_key.items()):
        numbered = sorted((c for c in crops if c.isdigit()), key=int)
        if "full" in crops and len(crops) > 1:
            others = ", ".join(str(crops[c].path) for c in sorted(crops) if c != "full")
            raise InputError(f"model {model!r} has both a whole-video store (crop 'full') and crop stores "
                             f"({others}) on split {split!r}: one member cannot be both", crops["full"].path)
        if "full" in crops:
            out[split].append(MemberStores(model, split, [crops["full"]]))
        elif fold_crops == "none":
            out[split].extend(MemberStores(f"{model}:crop{c}" if c.isdigit() else f"{model}:{c}", split,
                                           [crops[c]]) for c in sorted(crops))
        elif "mean" in crops:
            out[split].append(MemberStores(model, split, [crops["mean"]]))
        elif numbered:
            out[split].append(MemberStores(model, split, [crops[c] for c in numbered]))
    return dict(out)


def align_members(members: list[MemberStores], *, require_same_ids: bool = False,
                  allow_mixed_k: bool = False, allow_identical: bool = False):
    """Align every store of every member on video id (see predictions.align.align_stores)."""
    if not members:
        raise InputError("no members to combine (check --members and the split names)")
    readers = [r for m in members for r in m.readers]
    alignment = align_stores(readers, require_same_ids=require_same_ids, allow_mixed_k=allow_mixed_k,
                             allow_identical=allow_identical)
    first = readers[0].ids
    if alignment.ids is not first and len(alignment.ids) == len(first) and np.array_equal(alignment.ids, first):
        # all of the first member's videos, in its order: keep its ids array itself, so that rows read
        # from stores sharing it are aligned by identity (no element comparison per chunk)
        alignment = Alignment(ids=first, rows=alignment.rows)
    return alignment


@dataclass(frozen=True)
class ChunkTask:
    """One row chunk of aligned members, self-contained (paths, not open files), so it can run on
    a Dask worker: per member its store paths, per store the rows to read, and the chunk's ids."""

    paths: list
    rows: list
    ids: np.ndarray


def chunk_tasks(members: list[MemberStores], alignment, chunk_rows: int) -> Iterator[ChunkTask]:
    """The chunks of ``alignment.ids``, ``chunk_rows`` videos each."""
    if chunk_rows < 1:
        raise InputError(f"--chunk-rows must be >= 1, got {chunk_rows}")
    paths = [m.paths for m in members]
    for a in range(0, len(alignment.ids), chunk_rows):
        yield ChunkTask(paths, [r[a:a + chunk_rows] for r in alignment.rows], alignment.ids[a:a + chunk_rows])


_READERS: dict = {}


def _cached_reader(path: str) -> StoreReader:
    """Per-process cache of open stores, so a Dask worker opens each file once."""
    reader = _READERS.get(path)
    if reader is None:
        reader = _READERS[path] = open_store(path)
    return reader


def read_chunk(task: ChunkTask, member_ks, *, member_k: int | None = None, reader_for=None) -> list[Predictions]:
    """Per member, its predictions for ``task.ids`` (crops folded by their mean, alignment checked).

    ``reader_for(path)`` returns an open store (default: open by path and cache).
    """
    reader_for = reader_for or _cached_reader
    out, j = [], 0
    for member_paths, k in zip(task.paths, member_ks):
        parts = []
        for path in member_paths:
            pred = _read_rows_or_zero(reader_for(path), task.rows[j], task.ids)
            check_aligned(pred.ids, task.ids, f"{path} rows and the alignment")
            parts.append(pred)
            j += 1
        folded = mean_of_crops(parts, k)
        out.append(folded if member_k is None else folded.topk(member_k))
    return out


def _read_rows_or_zero(reader: StoreReader, rows: np.ndarray, ids: np.ndarray) -> Predictions:
    """``reader.read_rows(rows)``; rows of -1 (a video the store lacks, under ``--missing zero``)
    become rows of score 0 (top-k stores: the first k classes at score 0, which add nothing)."""
    rows = np.asarray(rows)
    missing = rows < 0
    if not missing.any():
        return reader.read_rows(rows)
    have = reader.read_rows(rows[~missing])
    n, width = len(rows), have.scores.shape[1]
    scores = np.zeros((n, width), dtype=have.scores.dtype)
    scores[~missing] = have.scores
    indices = None
    if have.indices is not None:
        indices = np.broadcast_to(np.arange(width, dtype=have.indices.dtype), (n, width)).copy()
        indices[~missing] = have.indices
    return Predictions(np.asarray(ids), scores, indices, have.num_classes)


def iter_member_chunks(members: list[MemberStores], alignment, *, chunk_rows: int = 20000,
                       member_k: int | None = None) -> Iterator[list[Predictions]]:
    """Yield lists of per-member Predictions for successive chunks of ``alignment.ids`` (in this process)."""
    local = {p: r for m in members for p, r in zip(m.paths, m.readers)}
    ks = [m.k for m in members]
    for task in chunk_tasks(members, alignment, chunk_rows):
        yield read_chunk(task, ks, member_k=member_k, reader_for=local.__getitem__)


def read_members(members: list[MemberStores], alignment, **kw) -> list[Predictions]:
    """All rows of every member at once (for the held-out split, which fits in memory)."""
    chunks = list(iter_member_chunks(members, alignment, **kw))
    if not chunks:
        raise InputError("the members have no video in common")
    return [concat([c[j] for c in chunks]) for j in range(len(members))]


def load_members(patterns, split: str = "heldout", *, fold_crops: str = "mean", member_k: int | None = None,
                 allow_mixed_k: bool = False, verify: bool = True, classes: int | None = None,
                 csv_cache=None) -> dict[str, Predictions]:
    """``{member name: Predictions}`` of one split, read from stores and aligned on video id.

    ``patterns``: store files, Kaggle CSVs (``MODEL.SPLIT.csv``, imported once
    into the CSV cache, as ``ensemble build --members`` does; ``classes`` is
    their class count, default that of the stores among ``patterns``, else
    3862), directories or globs. Crops are folded as in the build; members are
    sorted by name and hold exactly the videos common to all of them (a warning
    says how many were dropped), in the same order, ready for
    :func:`ensembler.fit_ensemble`. ``verify``: check each store's checksum first.
    """
    patterns = with_csv_stores(patterns, classes=classes, csv_cache=csv_cache)
    by_split = discover(patterns, fold_crops=fold_crops)
    if split not in by_split:
        shown = patterns if isinstance(patterns, (str, bytes)) else ", ".join(map(str, patterns))
        raise InputError(f"no store of split {split!r} among {shown}; splits found: "
                         f"{', '.join(sorted(by_split)) or 'none'}")
    stores = by_split[split]
    if verify:
        verify_members(stores)
    preds = read_members(stores, align_members(stores, allow_mixed_k=allow_mixed_k), member_k=member_k)
    return {m.name: p for m, p in zip(stores, preds)}


def verify_members(members: list[MemberStores], *, progress: bool = False) -> None:
    """Check the checksum of every store of ``members`` (streaming, each file once); InputError on the
    first store whose data does not match its checksum (flipped bits, edited by hand)."""
    readers = {str(r.path): r for m in members for r in m.readers}
    bar = None
    if progress and readers:
        from tqdm.auto import tqdm
        bar = tqdm(total=sum(len(r) for r in readers.values()), unit="video", desc="verifying checksums")
    for r in readers.values():
        r.verify()
        if bar is not None:
            bar.update(len(r))
    if bar is not None:
        bar.close()


def concat(parts: list[Predictions]) -> Predictions:
    """Stack Predictions of the same layout and width row-wise."""
    if not parts:
        raise InputError("no rows to stack")
    first = parts[0]
    if len(parts) == 1:
        return first
    idx = None if first.indices is None else np.concatenate([p.indices for p in parts])
    return Predictions(np.concatenate([p.ids for p in parts]), np.concatenate([p.scores for p in parts]),
                       idx, first.num_classes)
