"""YouTube-8M evaluation metrics: GAP@k, MAP, Hit@1, PERR (fully vectorised).

Definitions follow the official YouTube-8M ``eval_util.py``:

* **GAP@k** (global average precision): keep each video's ``k`` best-scored
  labels, pool all ``(score, is_positive)`` entries of all videos into one list,
  sort it by descending score and compute
  ``AP = sum over positive entries of precision@rank / M`` where ``M`` is the
  total number of positive labels in the ground truth, *including positives
  that were never predicted* (they simply never contribute precision).
* **MAP**: the same AP per class over the pooled top-``k`` entries of that
  class, averaged over the classes that have at least one positive. (The
  official code averages over every class, scoring 0 for classes without
  positives; we leave them out, which is the usual reading of MAP.)
* **Hit@1**: fraction of videos whose best-scored label is positive.
* **PERR**: precision at equal recall rate: for a video with ``n > 0``
  positives, the fraction of its ``n`` best-scored labels that are positive;
  mean over videos with positives.

Deterministic tie rules:

* **Within a video**, equal scores keep the store's order (a stable sort):
  lower label id first for a full matrix (like ``np.argmax``), stored column
  order for a top-k layout (:meth:`Predictions.topk` puts lower labels first;
  the CSV readers keep the file's order). This decides which labels make the
  top-``k`` cut, the Hit@1 label and the PERR labels.
* **In a pooled (ranked) list** (GAP, per-class AP), among equal scores the
  negatives are ranked before the positives (``ties="pessimistic"``, the
  default). This gives the lowest AP any ordering of the tied entries could
  give and does not depend on the input order. (The official code shuffles
  ties at random.) The GAP functions also accept ``ties="stable"``: equal
  scores keep the pooled list's order (video row, then rank in the video), as
  a stable ``argsort`` of a row-major pooled list does; this reproduces tools
  that do that, such as the GAP table of the erikanfox data's PROVENANCE.md.
  On data with many ties (saturated sigmoids) the two can differ a lot.

All functions check that predictions and labels are keyed by the same video
ids (:func:`predictions.types.check_aligned`) and never reorder silently.
Top-k stores are used as they are: asking for ``k`` larger than the store's
width uses every stored entry. Full ``(n, C)`` matrices are cut to the top
``k`` per row chunk by chunk (memory ``O(chunk * C)``).
"""
from __future__ import annotations

import numbers

import numpy as np

from .errors import InputError
from .types import Labels, Predictions, check_aligned

__all__ = ["gap_pooled", "GapScorer", "class_ap_pooled", "gap", "mean_average_precision", "per_class_ap",
           "hit_at_1", "perr", "evaluate", "precision_recall_curve"]

_CHUNK_ROWS = 256  # rows of a full matrix processed at once (4 MB of float32: stays in cache)


# --------------------------------------------------------------------------- helpers
def _check_k(k, allow_none: bool = False) -> int | None:
    if k is None and allow_none:
        return None
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral) or k < 1:
        raise InputError(f"k must be a positive integer{' or None' if allow_none else ''}, got {k!r}")
    return int(k)


def _check_pair(pred: Predictions, truth: Labels) -> None:
    if not isinstance(pred, Predictions) or not isinstance(truth, Labels):
        raise InputError("expected a Predictions and a Labels object")
    check_aligned(pred.ids, truth.ids, "predictions and labels")
    if pred.num_classes != truth.num_classes:
        raise InputError(f"predictions have {pred.num_classes} classes, labels have {truth.num_classes}")


def _chunk_topk(s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(b, k) labels and values of the ``k`` best of each row of a float32 (b, C) block, k < C.

    Rows are not fully partitioned: the columns are cut into ``g >= k`` groups
    and the k-th largest group maximum is a lower bound of the row's k-th best
    (k distinct entries reach it). Only entries at or above that bound (a few
    times k per row) are kept and sorted, by descending score then ascending
    label (so ties at the cut keep the lower labels). Order within the result
    is not specified (the caller sorts).
    """
    b, c = s.shape
    size = -(-c // min(c, 2 * k))
    starts = np.arange(0, c, size)
    gmax = np.maximum.reduceat(s, starts, axis=1)   # NaN propagates into its group's max
    if np.isnan(gmax).any():
        raise InputError("scores contain NaN")
    g = gmax.shape[1]
    bound = np.partition(gmax, g - k, axis=1)[:, g - k:g - k + 1]
    flat = np.flatnonzero(s >= bound)                # row-major: ascending label within a row
    r = flat // c
    counts = np.bincount(r, minlength=b)
    first = np.cumsum(counts) - counts
    col = np.arange(len(flat)) - first[r]
    pad = np.full((b, int(counts.max())), -np.inf, dtype=np.float32)
    pad[r, col] = s.ravel()[flat]
    labs = np.zeros(pad.shape, dtype=np.int64)
    labs[r, col] = flat - r * c
    top = np.argsort(-pad, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(labs, top, axis=1), np.take_along_axis(pad, top, axis=1)


def _full_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``k`` entries of each row of a full (n, C) matrix.

    Returns ``(rows, labels, values)``, each (n * min(k, C),), ordered by row,
    then descending score, then ascending label. Ties at the cut are broken by
    lower label id, so the result does not depend on the partition algorithm.
    """
    n, c = scores.shape
    k = min(k, c)
    rows_out, lab_out, val_out = [], [], []
    for start in range(0, n, _CHUNK_ROWS):
        s = np.asarray(scores[start:start + _CHUNK_ROWS], dtype=np.float32)
        b = s.shape[0]
        if k < c:
            lab, v = _chunk_topk(s, k)
        else:
            lab = np.broadcast_to(np.arange(c), (b, c))
            v = s
            if np.isnan(v).any():
                raise InputError("scores contain NaN")
        order = np.lexsort((lab, -v), axis=1)
        rows_out.append(np.repeat(np.arange(start, start + b), k))
        lab_out.append(np.take_along_axis(lab, order, axis=1).ravel())
        val_out.append(np.take_along_axis(v, order, axis=1).ravel())
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(rows_out).astype(np.int64), np.concatenate(lab_out).astype(np.int64),
            np.concatenate(val_out))


def _entries(pred: Predictions, truth: Labels, k: int | None):
    """Each video's best ``k`` entries (all when ``None``), pooled.

    Returns ``(rows, labels, scores, rank, is_pos)``, each (m,): ordered by
    row, then descending score (ties: stored order, i.e. ascending label for a
    full matrix); ``rank`` is 0 for a video's best.
    """
    n, width = pred.scores.shape
    kk = width if k is None else min(k, width)
    if pred.indices is None:
        rows, labels, scores = _full_topk(pred.scores, kk)
    else:
        s = np.asarray(pred.scores, dtype=np.float32)
        lab = np.asarray(pred.indices, dtype=np.int64)
        if s.size and np.isnan(s).any():
            raise InputError("scores contain NaN")
        if lab.size and (lab.min() < 0 or lab.max() >= pred.num_classes):
            raise InputError(f"predicted label id out of range [0, {pred.num_classes})")
        if s.shape[1] > 1 and not np.all(s[:, 1:] <= s[:, :-1]):  # stores keep rows sorted already
            order = np.argsort(-s, axis=1, kind="stable")  # ties keep the stored order
            s = np.take_along_axis(s, order, axis=1)
            lab = np.take_along_axis(lab, order, axis=1)
        s, lab = s[:, :kk], lab[:, :kk]
        rows = np.repeat(np.arange(n, dtype=np.int64), kk)
        labels, scores = lab.ravel(), s.ravel()
    rank = np.tile(np.arange(kk), n) if n and kk else np.zeros(0, np.int64)
    is_pos = truth.is_positive(rows, labels)
    return rows, labels, scores, rank, is_pos


_TIES = ("pessimistic", "stable")


def _check_ties(ties: str) -> str:
    if ties not in _TIES:
        raise InputError(f"ties must be one of {_TIES}, got {ties!r}")
    return ties


def _pooled_order(score: np.ndarray, is_pos: np.ndarray, ties: str = "pessimistic") -> np.ndarray:
    """Order of a pooled list: descending score; on ties negatives first
    (``"pessimistic"``) or input order (``"stable"``)."""
    neg = -np.asarray(score, dtype=np.float64)
    if ties == "stable":
        return np.argsort(neg, kind="stable")
    return np.lexsort((is_pos, neg))


def _pooled_ap(score: np.ndarray, is_pos: np.ndarray, num_positives: int,
               ties: str = "pessimistic") -> float:
    if num_positives <= 0:
        return 0.0
    if ties == "pessimistic":
        # Sort positives and negatives separately (two small sorts instead of one
        # lexsort): the i-th best positive (1-based) has rank i + the number of
        # negatives scoring >= it (negatives first on ties). Same sum as below.
        s = np.asarray(score)
        if s.dtype.kind != "f":
            s = s.astype(np.float64)
        pos = np.sort(-s[is_pos])
        neg = np.sort(-s[~is_pos])
        hits = np.arange(1, len(pos) + 1)
        ranks = (hits + np.searchsorted(neg, pos, side="right")).astype(np.float64)
        return float(np.sum(hits / ranks) / num_positives)
    p = is_pos[_pooled_order(score, is_pos, ties)]
    ranks = np.flatnonzero(p) + 1.0  # 1-based ranks of the positives
    hits = np.arange(1, len(ranks) + 1)  # positives seen up to and including each
    return float(np.sum(hits / ranks) / num_positives)


class _Groups:
    """Entries grouped by video (``video_row`` non-decreasing) laid out in a padded (groups, width) matrix.

    Built once, it finds every video's ``k`` best entries of any score vector
    with one ``np.partition`` (ties kept in input order), which is what makes
    many GAP evaluations over the same entries cheap (:class:`GapScorer`).
    """

    def __init__(self, video_row: np.ndarray):
        m = len(video_row)
        new = np.empty(m, bool)
        new[:1] = True
        np.not_equal(video_row[1:], video_row[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        counts = np.diff(np.append(starts, m))
        self.m = m
        self.width = int(counts.max()) if m else 0
        gid = np.cumsum(new) - 1
        # row-major order of the valid cells is the input order (groups in order, columns ascending)
        self.valid = np.zeros((len(starts), self.width), bool)
        self.valid[gid, np.arange(m) - starts[gid]] = True

    @classmethod
    def of(cls, video_row: np.ndarray, *, max_fill: float | None = 4.0) -> "_Groups | None":
        """The layout, or None when rows are not grouped or (with ``max_fill``) the padded
        matrix would hold more than ``max_fill`` times the entries (plus 4096)."""
        if len(video_row) and np.any(video_row[1:] < video_row[:-1]):
            return None
        groups = cls(video_row)
        if max_fill is not None and groups.valid.size > max_fill * groups.m + 4096:
            return None
        return groups

    def top_k(self, score: np.ndarray, k: int) -> np.ndarray:
        """(m,) bool: the ``k`` best entries of each group, ties kept in input order."""
        w = self.width
        if w <= k:
            return np.ones(self.m, bool)
        pad = np.full(self.valid.shape, -np.inf)
        pad[self.valid] = score
        kth = np.partition(pad, w - k, axis=1)[:, w - k:w - k + 1]
        keep = (pad >= kth) & self.valid
        over = np.flatnonzero(keep.sum(axis=1) > k)  # groups with ties at the cut (rare)
        if len(over):
            p, t = pad[over], kth[over]
            eq = (p == t) & self.valid[over]
            need = k - (p > t).sum(axis=1)
            keep[over] = (p > t) | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
        return keep[self.valid]


class GapScorer:
    """GAP@k of many score vectors over the same pooled entries, for search loops.

    ``scorer(score)`` equals ``gap_pooled(video_row, score, is_positive,
    num_positives, k)`` (pessimistic ties) to the last bit, but the grouping of
    entries by video is done once: each call is one partition of a padded
    (videos, entries per video) matrix and two small sorts (~30 ms for 1e6
    entries, against ~0.7 s for a fresh :func:`gap_pooled`).

    Parameters
    ----------
    video_row : (m,) int, video of each entry, non-decreasing (entries grouped by video).
    is_positive : (m,) bool, whether the entry's label is a true label.
    num_positives : every positive label of the videos, with an entry or not.
    k : entries kept per video; ties at the cut keep the earlier entries.
    """

    def __init__(self, video_row, is_positive, num_positives: int, k: int = 20):
        video_row = np.asarray(video_row)
        self.is_positive = np.asarray(is_positive, dtype=bool)
        if video_row.ndim != 1 or self.is_positive.shape != video_row.shape:
            raise InputError(f"video_row and is_positive must be 1-D of equal length, got shapes "
                             f"{video_row.shape}, {self.is_positive.shape}")
        self.k = _check_k(k)
        self._groups = _Groups.of(video_row, max_fill=None)
        if self._groups is None:
            raise InputError("video_row must be non-decreasing (entries grouped by video)")
        self.num_positives = int(num_positives)
        if self.num_positives < int(self.is_positive.sum()):
            raise InputError(f"num_positives={num_positives} is less than the "
                             f"{int(self.is_positive.sum())} positive entries")

    def __call__(self, score) -> float:
        """GAP@k of ``score`` (m,) (any float dtype; compared in float64)."""
        score = np.asarray(score, dtype=np.float64)
        if score.shape != self.is_positive.shape:
            raise InputError(f"score has shape {score.shape}, expected {self.is_positive.shape}")
        if self.num_positives <= 0:
            return 0.0
        if np.isnan(score).any():
            raise InputError("scores contain NaN")
        keep = self._groups.top_k(score, self.k)
        return _pooled_ap(score[keep], self.is_positive[keep], self.num_positives)


def class_ap_pooled(labels, score, is_positive, num_pos_per_class) -> np.ndarray:
    """(C,) float64 AP of each class over pooled ``(label, score, is_positive)`` entries.

    Within a class, entries are ranked by descending score, negatives first on
    ties (as :func:`gap_pooled`); ``num_pos_per_class`` (C,) counts every
    positive, with an entry or not. NaN where a class has no positive.
    """
    is_pos = np.asarray(is_positive, dtype=bool)
    num_pos_per_class = np.asarray(num_pos_per_class)
    c = len(num_pos_per_class)
    order = np.lexsort((is_pos, -np.asarray(score, dtype=np.float64), labels))
    lab = np.asarray(labels, dtype=np.int64)[order]
    p = is_pos[order]
    counts = np.bincount(lab, minlength=c)
    seg_start = np.cumsum(counts) - counts
    rank_in_class = np.arange(len(lab)) - seg_start[lab] + 1
    cum = np.cumsum(p)
    pos_per_class = np.bincount(lab, weights=p, minlength=c).astype(np.int64)
    base = np.cumsum(pos_per_class) - pos_per_class  # positives in earlier classes
    hits = cum - base[lab]
    sums = np.bincount(lab[p], weights=hits[p] / rank_in_class[p], minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(num_pos_per_class > 0, sums / num_pos_per_class, np.nan)


def _class_ap_full(scores: np.ndarray, truth: Labels, block: int = 256) -> np.ndarray:
    """(C,) AP per class over every score of a full (n, C) matrix.

    Only the positives contribute, so instead of ranking all n * C entries we
    sort each column once and locate each positive's score in it. With the
    pessimistic tie rule, the j-th (1-based) positive of a group of ``t``
    positives tied at score ``s`` has rank ``n_gt + (n_eq - t) + j`` and
    ``pos_gt + j`` positives up to it, where ``n_gt`` / ``n_eq`` count the
    column's entries above / equal to ``s`` and ``pos_gt`` the positives above.
    """
    n, c = scores.shape
    rows, cls = truth.rows(), truth.indices.astype(np.int64)
    s = np.asarray(scores[rows, cls], dtype=np.float32)
    order = np.lexsort((-s, cls))
    rows, cls, s = rows[order], cls[order], s[order]
    npos = np.bincount(cls, minlength=c)
    first = np.cumsum(npos) - npos  # first positive of each class in the sorted list
    n_gt = np.zeros(len(s), np.int64)
    n_ge = np.zeros(len(s), np.int64)
    for c0 in range(0, c, block):
        cols = np.ascontiguousarray(np.asarray(scores[:, c0:c0 + block], dtype=np.float32).T)
        if np.isnan(cols).any():
            raise InputError("scores contain NaN")
        cols.sort(axis=1)
        for j in np.flatnonzero(npos[c0:c0 + block]):  # loop over classes, not videos
            sl = slice(first[c0 + j], first[c0 + j] + npos[c0 + j])
            n_gt[sl] = n - np.searchsorted(cols[j], s[sl], side="right")
            n_ge[sl] = n - np.searchsorted(cols[j], s[sl], side="left")
    # tie groups of positives: same class and same score
    idx = np.arange(len(s))
    new = np.r_[True, (cls[1:] != cls[:-1]) | (s[1:] != s[:-1])] if len(s) else np.zeros(0, bool)
    gstart = np.maximum.accumulate(np.where(new, idx, 0))
    gid = np.cumsum(new) - 1
    gsize = np.bincount(gid)[gid]
    j = idx - gstart + 1
    pos_gt = gstart - first[cls]
    rank = n_gt + (n_ge - n_gt - gsize) + j
    sums = np.bincount(cls, weights=(pos_gt + j) / rank, minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(npos > 0, sums / npos, np.nan)


# --------------------------------------------------------------------------- public API
def gap_pooled(video_row, score, is_positive, num_positives: int, k: int | None = 20,
               ties: str = "pessimistic") -> float:
    """GAP of pooled ``(video, score, is_positive)`` entries.

    Parameters
    ----------
    video_row : (m,) int, video of each entry (any integers).
    score : (m,) float, predicted confidence.
    is_positive : (m,) bool, whether the entry's label is a true label.
    num_positives : M, total number of positive labels over all videos,
        including positives that have no entry. AP is 0.0 when M == 0.
    k : keep each video's ``k`` best entries (``None``: keep all). Entries of
        one video with equal scores are kept in their input order (stable sort),
        so pass them pre-sorted by label to break ties by label.
    ties : ``"pessimistic"`` (default): among equal scores of the pooled list,
        negatives rank before positives, independent of input order.
        ``"stable"``: equal scores keep their input order.

    Returns
    -------
    float: ``sum over positive entries of precision@rank / M`` over the pooled
    list sorted by descending score.
    """
    video_row = np.asarray(video_row)
    score = np.asarray(score, dtype=np.float64)
    is_positive = np.asarray(is_positive, dtype=bool)
    if not (video_row.ndim == score.ndim == is_positive.ndim == 1
            and len(video_row) == len(score) == len(is_positive)):
        raise InputError(f"video_row, score and is_positive must be 1-D of equal length, got shapes "
                         f"{video_row.shape}, {score.shape}, {is_positive.shape}")
    k = _check_k(k, allow_none=True)
    ties = _check_ties(ties)
    if np.isnan(score).any():
        raise InputError("scores contain NaN")
    groups = _Groups.of(video_row) if k is not None and len(score) else None
    keep = groups.top_k(score, k) if groups is not None else None
    if keep is not None:
        score, is_positive = score[keep], is_positive[keep]
    elif k is not None and len(score):
        order = np.lexsort((-score, video_row))  # stable: input order on ties
        vr = video_row[order]
        new = np.r_[True, vr[1:] != vr[:-1]]
        start = np.maximum.accumulate(np.where(new, np.arange(len(vr)), 0))
        keep = np.sort(order[np.arange(len(vr)) - start < k])  # back to input order
        score, is_positive = score[keep], is_positive[keep]
    npos_entries = int(is_positive.sum())
    if num_positives < npos_entries:
        raise InputError(f"num_positives={num_positives} is less than the {npos_entries} positive entries")
    return _pooled_ap(score, is_positive, int(num_positives), ties)


def gap(pred: Predictions, truth: Labels, k: int = 20, ties: str = "pessimistic") -> float:
    """GAP@k of ``pred`` against ``truth`` (YouTube-8M definition, see module doc).

    ``pred`` may be top-k (uses ``min(k, width)`` entries per video) or full.
    ``M`` is ``len(truth.indices)``, every positive label of every video.
    ``ties``: ``"pessimistic"`` (default) or ``"stable"``, see the module doc.
    """
    _check_pair(pred, truth)
    k = _check_k(k)
    ties = _check_ties(ties)
    _, _, scores, _, is_pos = _entries(pred, truth, k)
    return _pooled_ap(scores, is_pos, len(truth.indices), ties)


def per_class_ap(pred: Predictions, truth: Labels, k: int | None = 20) -> np.ndarray:
    """(C,) float64 AP of each class over each video's top-``k`` predictions.

    ``k=None`` uses every stored score (all C for a full matrix). Positives that
    were never predicted count in their class's denominator. NaN for classes
    without any positive in ``truth``.
    """
    _check_pair(pred, truth)
    k = _check_k(k, allow_none=True)
    if k is None and pred.indices is None:
        return _class_ap_full(pred.scores, truth)
    _, labels, scores, _, is_pos = _entries(pred, truth, k)
    npos = np.bincount(truth.indices, minlength=truth.num_classes)
    return class_ap_pooled(labels, scores, is_pos, npos)


def mean_average_precision(pred: Predictions, truth: Labels, k: int | None = 20) -> float:
    """Mean of :func:`per_class_ap` over the classes with at least one positive (0.0 if none)."""
    ap = per_class_ap(pred, truth, k)
    ap = ap[~np.isnan(ap)]
    return float(ap.mean()) if len(ap) else 0.0


def hit_at_1(pred: Predictions, truth: Labels) -> float:
    """Fraction of videos whose best-scored label is positive (ties: stored order, see module doc).

    Videos without any true label count as misses (they are in the denominator).
    """
    _check_pair(pred, truth)
    if len(pred) == 0:
        return 0.0
    _, _, _, _, is_pos = _entries(pred, truth, 1)
    return float(is_pos.sum() / len(pred))


def perr(pred: Predictions, truth: Labels) -> float:
    """Precision at equal recall rate, mean over videos with ``n > 0`` positives.

    For each such video: (positives among its ``n`` best-scored labels) / ``n``.
    A top-k store narrower than ``n`` only offers its ``k`` entries; the rest
    count as misses. 0.0 when no video has a positive.
    """
    _check_pair(pred, truth)
    counts = truth.counts()
    has = counts > 0
    if not has.any():
        return 0.0
    rows, _, _, rank, is_pos = _entries(pred, truth, int(counts.max()))
    hit = is_pos & (rank < counts[rows])
    per_video = np.bincount(rows[hit], minlength=len(counts))
    return float(np.mean(per_video[has] / counts[has]))


def evaluate(pred: Predictions, truth: Labels, k: int = 20) -> dict:
    """All metrics at once: ``{"gap", "map", "hit1", "perr", "n", "k"}``.

    One top-``max(k, most labels per video)`` selection is shared by all metrics.
    """
    _check_pair(pred, truth)
    k = _check_k(k)
    counts = truth.counts()
    kmax = max(k, int(counts.max()) if len(counts) else 1)
    rows, labels, scores, rank, is_pos = _entries(pred, truth, kmax)
    top = rank < k
    g = _pooled_ap(scores[top], is_pos[top], len(truth.indices))
    npos = np.bincount(truth.indices, minlength=truth.num_classes)
    ap = class_ap_pooled(labels[top], scores[top], is_pos[top], npos)
    ap = ap[~np.isnan(ap)]
    n = len(truth)
    hit1 = float(np.sum(is_pos & (rank == 0)) / n) if n else 0.0
    has = counts > 0
    per_video = np.bincount(rows[is_pos & (rank < counts[rows])], minlength=n)
    pe = float(np.mean(per_video[has] / counts[has])) if has.any() else 0.0
    return {"gap": g, "map": float(ap.mean()) if len(ap) else 0.0, "hit1": hit1, "perr": pe,
            "n": n, "k": k}


def precision_recall_curve(pred: Predictions, truth: Labels, k: int = 20,
                           ties: str = "pessimistic") -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall along the pooled GAP@k list.

    Returns two (m,) float64 arrays, m = number of pooled entries: after the
    ``i``-th entry of the list (sorted as in :func:`gap` with the same ``ties``),
    ``precision[i] = positives so far / (i + 1)`` and
    ``recall[i] = positives so far / M``; recall is 0 everywhere when M == 0.
    """
    _check_pair(pred, truth)
    k = _check_k(k)
    ties = _check_ties(ties)
    _, _, scores, _, is_pos = _entries(pred, truth, k)
    p = is_pos[_pooled_order(scores, is_pos, ties)]
    cum = np.cumsum(p, dtype=np.float64)
    precision = cum / np.arange(1, len(p) + 1)
    m_total = len(truth.indices)
    recall = cum / m_total if m_total else np.zeros_like(cum)
    return precision, recall
