"""Align ensemble members (open stores) on video id; never assume row order.

:func:`align_stores` checks the members are compatible and finds, for the
videos common to all, each member's row positions. :func:`iter_aligned` then
reads the members chunk by chunk in that common order with bounded memory.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .errors import AlignmentError, InputError
from .storeformat import READ_ROWS
from .storereader import StoreReader
from .types import Labels, Predictions, as_ids, check_aligned


@dataclass(frozen=True)
class Alignment:
    """Common videos of several stores and where each store holds them.

    Attributes
    ----------
    ids : (n,) unicode ids common to all members, in the first member's row order.
    rows : one (n,) int64 array per member: row position of ``ids[i]`` in that member.
    """

    ids: np.ndarray
    rows: list

    def __len__(self) -> int:
        return len(self.ids)


def _fmt_k(r: StoreReader) -> str:
    return "full scores" if r.meta.k is None else f"top-{r.meta.k}"


def align_stores(readers: list[StoreReader], *, require_same_ids: bool = False,
                 allow_mixed_k: bool = False, allow_identical: bool = False) -> Alignment:
    """Align members on video id.

    Errors (InputError naming the offending file): no member; a store with no
    video; a member given
    twice (same file or same checksum); a different ``num_classes``; a
    different ``k`` / layout unless ``allow_mixed_k``; no video common to all;
    with ``require_same_ids``, any difference in the id sets. Otherwise the
    intersection is used and a warning reports how many videos were dropped.
    ``allow_identical`` accepts two different files with identical arrays (an
    ensemble that selected a single member, when scoring both side by side).
    """
    readers = list(readers)
    if not readers:
        raise InputError("no prediction stores to align")
    first = readers[0]
    for r in readers:
        if len(r.ids) == 0:
            raise InputError("the store holds no video (n = 0): nothing to align", r.path)
    seen_path: dict = {}
    seen_sum: dict = {}
    for r in readers:
        key = r.path.resolve()
        if key in seen_path:
            raise InputError(f"same predictions as {seen_path[key].path} (the same file is listed twice)",
                             r.path)
        if not allow_identical and r.meta.checksum and r.meta.checksum in seen_sum:
            raise InputError(f"same predictions as {seen_sum[r.meta.checksum].path} (identical checksum)",
                             r.path)
        seen_path[key] = r
        seen_sum[r.meta.checksum] = r
    for r in readers[1:]:
        if r.meta.num_classes != first.meta.num_classes:
            raise InputError(f"{r.meta.num_classes} classes, expected {first.meta.num_classes} "
                             f"as in {first.path}", r.path)
        if not allow_mixed_k and r.meta.k != first.meta.k:
            raise InputError(f"{_fmt_k(r)}, expected {_fmt_k(first)} as in {first.path} "
                             f"(pass allow_mixed_k to combine them)", r.path)

    ids0 = first.ids
    keep = np.ones(len(ids0), dtype=bool)
    found = [np.arange(len(ids0), dtype=np.int64)]       # row in member j of each ids0 entry
    for r in readers[1:]:
        hit, pos = _lookup(r.ids, ids0)
        if require_same_ids and (len(r.ids) != len(ids0) or not hit.all()):
            missing = int((~hit).sum())
            extra = len(r.ids) - (len(ids0) - missing)
            raise InputError(f"video ids differ from {first.path}: {missing} missing, {extra} extra "
                             f"({len(r.ids)} vs {len(ids0)} videos)", r.path)
        keep &= hit
        found.append(pos)
        if not keep.any():
            others = str(first.path) if r is readers[1] else f"the {readers.index(r)} members before it"
            raise InputError(f"no video id in common with {others}", r.path)
    common = ids0[keep]
    rows = [f[keep] for f in found]
    dropped = [(r, len(r.ids) - len(common)) for r in readers if len(r.ids) != len(common)]
    if dropped:
        detail = ", ".join(f"{d} of {len(r.ids)} from {r.path.name}" for r, d in dropped)
        warnings.warn(f"aligning {len(readers)} members: {len(common)} videos common to all; "
                      f"dropped {detail}", stacklevel=2)
    return Alignment(ids=common, rows=rows)


def _lookup(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hit, pos): is ``wanted[i]`` in ``ids`` and at which row (pos meaningless where not hit)."""
    if not len(ids):
        return np.zeros(len(wanted), bool), np.zeros(len(wanted), np.int64)
    order = np.argsort(ids)
    pos = np.minimum(np.searchsorted(ids[order], wanted), len(ids) - 1)
    rows = order[pos].astype(np.int64)
    return ids[rows] == wanted, rows


def iter_aligned(readers: list[StoreReader], alignment: Alignment,
                 chunk_rows: int = READ_ROWS) -> Iterator[tuple[np.ndarray, list[Predictions]]]:
    """Yield ``(ids_chunk, [member Predictions])`` over the aligned videos, chunk by chunk.

    Each member's Predictions holds exactly ``ids_chunk`` in that order (checked).
    Memory per step is bounded by ``chunk_rows`` rows per member plus one
    storage block per member.
    """
    if len(readers) != len(alignment.rows):
        raise ValueError(f"{len(readers)} readers for an alignment of {len(alignment.rows)} members")
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be >= 1")
    for a in range(0, len(alignment.ids), chunk_rows):
        ids_chunk = alignment.ids[a:a + chunk_rows]
        preds = []
        for r, rows in zip(readers, alignment.rows):
            p = r.read_rows(rows[a:a + chunk_rows])
            check_aligned(p.ids, ids_chunk, f"{r.path} rows and the alignment")
            preds.append(p)
        yield ids_chunk, preds


def align_labels(labels: Labels, ids, path=None) -> Labels:
    """``labels`` reindexed to follow ``ids``; InputError (naming ``path``) if some ids lack labels."""
    ids = as_ids(ids)
    try:
        return labels.reindex(ids)
    except AlignmentError:
        missing = ~np.isin(ids, labels.ids)
        raise InputError(f"{int(missing.sum())} of {len(ids)} videos have no entry in the labels file "
                         f"(first: {str(ids[missing][0])!r})", path) from None
