"""In-memory predictions and ground-truth labels, always keyed by video id.

Two layouts of predictions share one class:

* **top-k**: ``indices`` (n, k) int32 label ids and ``scores`` (n, k) float32,
  each row sorted by descending score. A label missing from a row scores 0.
* **full**: ``indices is None`` and ``scores`` (n, C) float32 (or float16).

Labels are sparse (CSR): video ``i`` has the label ids
``indices[indptr[i]:indptr[i + 1]]``.

Nothing here assumes two arrays are aligned: :func:`check_aligned` compares the
id arrays and raises :class:`~predictions.errors.AlignmentError` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import AlignmentError, InputError
from .params import Num
from .storeformat import MAX_CLASSES


def as_ids(ids) -> np.ndarray:
    """Return video ids as a 1-D numpy unicode array (``dtype '<U...'``)."""
    arr = np.asarray(ids)
    if arr.dtype.kind == "S":
        arr = np.char.decode(arr, "utf-8")
    elif arr.dtype.kind == "O":
        arr = np.array([x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in arr.tolist()])
    elif arr.dtype.kind != "U":
        arr = arr.astype(str)
    if arr.ndim != 1:
        raise InputError(f"video ids must be 1-D, got shape {arr.shape}")
    return arr


def check_aligned(a: np.ndarray, b: np.ndarray, what: str = "arrays") -> None:
    """Raise AlignmentError unless the two id arrays are equal element by element.

    Two views of the same memory (one shared ids array sliced alike, as members read from stores
    of identical ids are) are equal without comparing their elements.
    """
    if _same_memory(a, b):
        return
    if len(a) != len(b) or not np.array_equal(a, b):
        common = len(np.intersect1d(a, b))
        raise AlignmentError(
            f"{what} are not aligned on video id ({len(a)} vs {len(b)} ids, {common} in common)")


def _same_memory(a, b) -> bool:
    """Whether ``a`` and ``b`` are the same elements of the same buffer (equal by construction)."""
    if a is b:
        return True
    if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
        return False
    return (a.dtype == b.dtype and a.shape == b.shape and a.strides == b.strides
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def row_index(ids: np.ndarray, wanted: np.ndarray, what: str = "ids") -> np.ndarray:
    """Positions of ``wanted`` ids inside ``ids`` (int64); error naming a missing id."""
    order = np.argsort(ids, kind="stable")
    # Binary search of the sorted queries in a sorted copy: ~4x faster than
    # searchsorted(..., sorter=order) on unicode ids (memory locality).
    sorted_ids = ids[order]
    qorder = np.argsort(wanted, kind="stable")
    pos = np.empty(len(wanted), dtype=np.int64)
    pos[qorder] = np.searchsorted(sorted_ids, wanted[qorder])
    pos = np.clip(pos, 0, max(len(ids) - 1, 0))
    found = order[pos] if len(ids) else np.zeros(len(wanted), dtype=np.int64)
    ok = (ids[found] == wanted) if len(ids) else np.zeros(len(wanted), bool)
    if not ok.all():
        missing = wanted[~ok]
        raise AlignmentError(f"{len(missing)} of {len(wanted)} video ids missing from {what} "
                             f"(first: {str(missing[0])!r})")
    return found.astype(np.int64)



#: num_classes of Predictions and Labels: what a store can hold.
_CLASS_COUNT = Num(lo=1, hi=MAX_CLASSES, integer=True)

def _check_class_count(num_classes) -> None:
    _CLASS_COUNT.check("num_classes", num_classes)


def _kind(x) -> str:
    return f"{type(x).__name__} of dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__

@dataclass(frozen=True)
class Predictions:
    """Scores of ``n`` videos over ``num_classes`` classes, keyed by ``ids``.

    Attributes
    ----------
    ids : (n,) unicode array of video ids, unique.
    scores : (n, k) float32 for top-k, (n, C) float for full; values in [0, 1].
    indices : (n, k) int32 label ids for top-k, ``None`` for full.
    num_classes : C, the size of the label vocabulary.
    """

    ids: np.ndarray
    scores: np.ndarray
    indices: np.ndarray | None
    num_classes: int

    def __post_init__(self):
        object.__setattr__(self, "ids", as_ids(self.ids))
        _check_class_count(self.num_classes)
        if not isinstance(self.scores, np.ndarray) or self.scores.dtype.kind not in "fiu":
            raise InputError(f"scores must be a numeric numpy array, got {_kind(self.scores)}")
        if self.indices is not None and (not isinstance(self.indices, np.ndarray)
                                         or self.indices.dtype.kind not in "iu"):
            raise InputError(f"indices must be an integer numpy array or None, got {_kind(self.indices)}")
        n = len(self.ids)
        if self.scores.ndim != 2 or self.scores.shape[0] != n:
            raise InputError(f"scores must have shape (n={n}, k or C), got {self.scores.shape}")
        if self.indices is not None:
            if self.indices.shape != self.scores.shape:
                raise InputError(f"indices shape {self.indices.shape} != scores shape {self.scores.shape}")
        elif self.scores.shape[1] != self.num_classes:
            raise InputError(f"full scores have {self.scores.shape[1]} columns, expected {self.num_classes}")

    @property
    def layout(self) -> str:
        """``"topk"`` or ``"full"``."""
        return "full" if self.indices is None else "topk"

    @property
    def k(self) -> int | None:
        """Labels kept per video for top-k, ``None`` for full."""
        return None if self.indices is None else self.scores.shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_dense(cls, ids, scores: np.ndarray, k: int | None = None) -> "Predictions":
        """Build from an (n, C) matrix; keep the top ``k`` per row when ``k`` is given."""
        scores = np.asarray(scores)
        full = cls(ids, scores, None, scores.shape[1])
        return full if k is None else full.topk(k)

    def dense(self, dtype=np.float32) -> np.ndarray:
        """(n, C) matrix of scores; labels missing from a top-k row score 0."""
        if self.indices is None:
            return np.asarray(self.scores, dtype=dtype)
        n, k = self.scores.shape
        out = np.zeros((n, self.num_classes), dtype=dtype)
        np.put_along_axis(out, self.indices.astype(np.int64), self.scores.astype(dtype), axis=1)
        return out

    def topk(self, k: int) -> "Predictions":
        """Top-``k`` layout (rows sorted by descending score; ties by lower label id)."""
        if self.indices is not None and k >= self.scores.shape[1]:
            return self
        width = self.scores.shape[1]
        k = min(k, width)
        s = np.asarray(self.scores, dtype=np.float32)
        if k < width:
            part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(width), s.shape).copy()
        ps = np.take_along_axis(s, part, axis=1)
        lab = part if self.indices is None else np.take_along_axis(self.indices, part, axis=1)
        order = np.lexsort((lab, -ps), axis=1) if ps.size else np.zeros_like(ps, dtype=np.int64)
        return Predictions(self.ids, np.take_along_axis(ps, order, axis=1),
                           np.take_along_axis(lab, order, axis=1).astype(np.int32), self.num_classes)

    def take(self, rows) -> "Predictions":
        """Rows by position (int array or slice)."""
        idx = None if self.indices is None else self.indices[rows]
        return Predictions(self.ids[rows], self.scores[rows], idx, self.num_classes)

    def reindex(self, ids) -> "Predictions":
        """Rows reordered to follow ``ids``; AlignmentError if any id is missing."""
        ids = as_ids(ids)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return self
        return self.take(row_index(self.ids, ids, "predictions"))

    def to_frame(self, *, kaggle: bool = False, top: int | None = None):
        """A pandas DataFrame: long ``video_id, label, score`` rows (best first per video), or the Kaggle
        layout ``VideoId, LabelConfidencePairs`` with ``kaggle=True`` (see :mod:`predictions.frames`)."""
        from .frames_out import predictions_to_frame
        return predictions_to_frame(self, kaggle=kaggle, top=top)


@dataclass(frozen=True)
class Labels:
    """Ground-truth label sets of ``n`` videos, keyed by ``ids`` (CSR layout).

    Attributes
    ----------
    ids : (n,) unicode array of video ids, unique.
    indptr : (n + 1,) int64, row pointers into ``indices``.
    indices : (nnz,) int32 label ids; a video may have none (unlabelled test video).
    num_classes : C.
    """

    ids: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    num_classes: int

    def __post_init__(self):
        object.__setattr__(self, "ids", as_ids(self.ids))
        _check_class_count(self.num_classes)
        object.__setattr__(self, "indptr", np.asarray(self.indptr, dtype=np.int64))
        object.__setattr__(self, "indices", np.asarray(self.indices, dtype=np.int32))
        if len(self.indptr) != len(self.ids) + 1:
            raise InputError(f"indptr has length {len(self.indptr)}, expected {len(self.ids) + 1}")
        if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= self.num_classes):
            raise InputError(f"label id out of range [0, {self.num_classes})")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def from_lists(cls, ids, label_lists, num_classes: int) -> "Labels":
        """Build from one iterable of label ids per video."""
        lists = [np.unique(np.asarray(l, dtype=np.int64)) for l in label_lists]
        indptr = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum([len(l) for l in lists], out=indptr[1:])
        flat = np.concatenate(lists) if lists else np.zeros(0, np.int64)
        return cls(ids, indptr, flat.astype(np.int32), num_classes)

    def counts(self) -> np.ndarray:
        """(n,) number of positive labels of each video."""
        return np.diff(self.indptr)

    def rows(self) -> np.ndarray:
        """(nnz,) video row of each entry of ``indices``."""
        return np.repeat(np.arange(len(self.ids)), self.counts())

    def dense(self) -> np.ndarray:
        """(n, C) bool matrix."""
        out = np.zeros((len(self.ids), self.num_classes), dtype=bool)
        out[self.rows(), self.indices] = True
        return out

    def lists(self) -> list[np.ndarray]:
        """One array of label ids per video."""
        return np.split(self.indices, self.indptr[1:-1])

    def take(self, rows) -> "Labels":
        """Rows by position (int array or slice)."""
        rows = np.arange(len(self.ids))[rows]
        starts, stops = self.indptr[rows], self.indptr[rows + 1]
        counts = stops - starts
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        gather = np.repeat(starts - indptr[:-1], counts) + np.arange(indptr[-1])
        return Labels(self.ids[rows], indptr, self.indices[gather], self.num_classes)

    def reindex(self, ids) -> "Labels":
        """Rows reordered to follow ``ids``; AlignmentError if any id is missing."""
        ids = as_ids(ids)
        if len(ids) == len(self.ids) and np.array_equal(ids, self.ids):
            return self
        return self.take(row_index(self.ids, ids, "labels"))

    def to_frame(self, *, kaggle: bool = False):
        """A pandas DataFrame: long ``video_id, label`` rows, or the Kaggle truth layout ``VideoId, Labels``
        with ``kaggle=True`` (see :mod:`predictions.frames`)."""
        from .frames_out import labels_to_frame
        return labels_to_frame(self, kaggle=kaggle)

    def is_positive(self, rows: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """(m,) bool: is ``labels[j]`` a true label of video row ``rows[j]``? Vectorised."""
        keys = self.rows().astype(np.int64) * self.num_classes + self.indices
        keys.sort()
        q = np.asarray(rows, np.int64) * self.num_classes + np.asarray(labels, np.int64)
        pos = np.searchsorted(keys, q)
        pos = np.minimum(pos, max(len(keys) - 1, 0))
        return (keys[pos] == q) if len(keys) else np.zeros(len(q), bool)
