"""Averaging schemes: fixed-form means of the members' candidate scores.

Every scheme maps the (R, M) score matrix of :class:`~ensembler.candidates.Candidates`
(0 where a member did not propose the label) to one score per candidate in [0, 1]:

* ``uniform``   weighted arithmetic mean ``sum_m w_m s_m`` (absent = 0).
* ``gap``       the same mean with ``w_m = GAP_m / sum_j GAP_j``, GAP_m measured on
                the fit data (Zhao et al., Algorithm 2). Learned (needs labels).
* ``rank``      mean of normalised ranks: member ``m`` turns the candidate it
                ranks ``r`` (0-based) into ``(K - r) / K``; absent or ``r >= K``
                gives 0. ``K`` is ``depth`` or, by default, the longest member
                list seen at fit (so a rank means the same for every member).
* ``power``     power mean ``(sum_m w_m s_m**p) ** (1/p)``; ``p > 1`` favours
                the confident members, ``p = 1`` is ``uniform``.
* ``geometric`` weighted geometric mean ``exp(sum_m w_m log max(s_m, eps))``:
                absent (and below-eps) scores count as ``eps``, so a label that
                only some members propose is strongly penalised.

All accept ``weights=None`` (uniform) or one non-negative number per member
(normalised to sum 1), so other schemes can reuse them with learned weights.

The module also holds :class:`GapScorer`, a fast GAP@k of candidate scores
(bit-for-bit the value of :meth:`Candidates.gap`, about 20x faster) that the
learned schemes call many times.
"""
from __future__ import annotations

import numbers

import numpy as np

from predictions.errors import InputError

from ..base import Combiner, register_combiner
from ..candidates import Candidates

__all__ = ["GapScorer", "weighted_mean", "check_weights", "UniformAverage", "GapWeighted",
           "RankAverage", "PowerMean", "GeometricMean"]


# --------------------------------------------------------------------------- helpers
def check_weights(weights, n_members: int, what: str = "weights") -> np.ndarray:
    """(M,) float64 weights summing to 1 from ``None`` (uniform) or a sequence.

    InputError unless there is one finite non-negative number per member and
    their sum is positive.
    """
    if weights is None:
        return np.full(n_members, 1.0 / n_members)
    try:
        w = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a list of numbers, got {weights!r}") from None
    if w.ndim != 1:
        raise InputError(f"{what} must be a list with one number per member, got {weights!r}")
    if len(w) != n_members:
        raise InputError(f"{what} must have one value per member ({n_members}), got {len(w)}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"{what} must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def _validate_weights_param(weights) -> None:
    """Shape-independent checks of a ``weights`` parameter (length is checked at fit)."""
    if weights is None:
        return
    arr = np.asarray(weights, dtype=object)
    check_weights(weights, len(arr) if arr.ndim == 1 else 1)


def check_number(name: str, value, *, lo=None, hi=None, lo_open=False, integer=False, allow_none=False):
    """Validate a numeric parameter; InputError naming it otherwise."""
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not np.isfinite(value):
        raise InputError(f"{name} must be {'an integer' if integer else 'a finite number'}, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise InputError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise InputError(f"{name} must be <= {hi}, got {value!r}")


def weighted_mean(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(R,) float32 ``scores @ weights`` for (R, M) float32 scores, weights summing to 1."""
    return np.asarray(scores, dtype=np.float32) @ np.asarray(weights, dtype=np.float32)


def _weights_dict(members, w) -> dict:
    return {str(m): float(x) for m, x in zip(members, w)}


class GapScorer:
    """GAP@k of combined candidate scores, precomputed for many evaluations.

    Equal to ``cands.gap(score, labels, k, y)`` (same tie rules as
    :func:`predictions.metrics.gap_pooled`: within a video, equal scores keep
    the lower label; in the pooled list negatives rank before positives on
    ties) but avoids its two full lexsorts: candidates are laid out in an
    (n_videos, L) padded matrix once, each call then finds every video's k-th
    best score with one ``np.partition`` and sorts only the kept entries.
    Cost per call ~30 ms for R = 1e6 (vs ~0.7 s).

    Parameters
    ----------
    cands : the candidates (``row`` non-decreasing, labels ascending within a row).
    y : (R,) bool targets of the candidates (``cands.targets(labels)``).
    num_positives : every positive label of the videos, predicted or not.
    k : entries kept per video.
    """

    def __init__(self, cands: Candidates, y: np.ndarray, num_positives: int, k: int = 20):
        check_number("k", k, lo=1, integer=True)
        row = np.asarray(cands.row, dtype=np.int64)
        n = cands.n_videos
        counts = np.bincount(row, minlength=n) if len(row) else np.zeros(n, np.int64)
        starts = np.cumsum(counts) - counts
        width = max(int(counts.max()) if n else 0, 1)
        col = np.arange(len(row)) - starts[row]
        self._valid = np.zeros((n, width), dtype=bool)
        self._valid[row, col] = True
        self._k = int(k)
        self._width = width
        y = np.asarray(y, dtype=bool)
        self._y_pad = np.zeros((n, width), dtype=bool)
        self._y_pad[row, col] = y
        self.num_positives = int(num_positives)
        self.n_candidates = len(row)
        if self.num_positives < int(y.sum()):
            raise InputError(f"num_positives={num_positives} is less than the {int(y.sum())} positive candidates")

    @classmethod
    def from_labels(cls, cands: Candidates, labels, k: int = 20, y: np.ndarray | None = None) -> "GapScorer":
        y = cands.targets(labels) if y is None else y
        return cls(cands, y, int(labels.counts().sum()), k)

    def __call__(self, score: np.ndarray) -> float:
        """GAP@k of ``score`` (R,) (any float dtype; compared in float64)."""
        score = np.asarray(score, dtype=np.float64)
        if score.shape != (self.n_candidates,):
            raise InputError(f"score has shape {score.shape}, expected ({self.n_candidates},)")
        if self.num_positives <= 0:
            return 0.0
        if np.isnan(score).any():
            raise InputError("scores contain NaN")
        pad = np.full(self._valid.shape, -np.inf)
        pad[self._valid] = score
        k, width = self._k, self._width
        if k < width:
            kth = np.partition(pad, width - k, axis=1)[:, width - k:width - k + 1]
            keep = (pad >= kth) & self._valid
            over = np.flatnonzero(keep.sum(axis=1) > k)  # rows with ties at the cut (rare)
            if len(over):
                p, t = pad[over], kth[over]
                eq = p == t
                need = k - (p > t).sum(axis=1)
                keep[over] = (p > t) | (eq & (np.cumsum(eq, axis=1) <= need[:, None]))
        else:
            keep = self._valid
        s, p = pad[keep], self._y_pad[keep]
        neg = np.sort(-s[~p])            # ascending -score = descending score
        pos = np.sort(-s[p])
        # rank of the i-th positive: i + 1 + negatives scoring >= it (negatives first on ties)
        ranks = np.arange(1, len(pos) + 1) + np.searchsorted(neg, pos, side="right")
        return float(np.sum(np.arange(1, len(pos) + 1) / ranks) / self.num_positives)


# --------------------------------------------------------------------------- schemes
class _Averaging(Combiner):
    """Shared machinery: optional per-member weights, fitted into ``weights_``."""

    learned = False

    def __init__(self, weights=None):
        self.weights = weights

    def _validate(self) -> None:
        _validate_weights_param(self.weights)

    def _fit(self, cands, labels, y) -> None:
        self.weights_ = check_weights(self.weights, cands.n_members)

    def describe(self) -> dict:
        return {"weights": _weights_dict(self.members_, self.weights_)}


@register_combiner("uniform")
class UniformAverage(_Averaging):
    """Weighted arithmetic mean of the member scores (uniform unless ``weights``)."""

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.weights_)


@register_combiner("gap")
class GapWeighted(Combiner):
    """Arithmetic mean with ``w_m = GAP_m / sum_j GAP_j`` (GAP@k on the fit data).

    Falls back to uniform weights if every member scores GAP 0.
    Fitted: ``member_gap_`` (M,), ``weights_`` (M,).
    """

    learned = True

    def __init__(self, k: int = 20):
        self.k = k

    def _validate(self) -> None:
        check_number("k", self.k, lo=1, integer=True)

    def _fit(self, cands, labels, y) -> None:
        scorer = GapScorer.from_labels(cands, labels, self.k, y)
        self.member_gap_ = np.array([scorer(cands.scores[:, m]) for m in range(cands.n_members)])
        total = self.member_gap_.sum()
        self.weights_ = (self.member_gap_ / total if total > 0
                         else np.full(cands.n_members, 1.0 / cands.n_members))

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.weights_)

    def describe(self) -> dict:
        return {"weights": _weights_dict(self.members_, self.weights_),
                "member_gap": _weights_dict(self.members_, self.member_gap_)}


@register_combiner("rank")
class RankAverage(_Averaging):
    """Weighted mean of normalised ranks ``(K - r) / K`` (absent or ``r >= K``: 0).

    ``depth`` is ``K``; ``None`` uses the longest member list of the fit data
    (``depth_``). Ties of the rank mean (frequent) are broken by the score mean:
    the output is ``(1 - 1e-6) * rank_mean + 1e-6 * score_mean``.
    """

    _TIE = 1e-6

    def __init__(self, weights=None, depth: int | None = None):
        self.weights = weights
        self.depth = depth

    def _validate(self) -> None:
        super()._validate()
        check_number("depth", self.depth, lo=1, integer=True, allow_none=True)

    def _fit(self, cands, labels, y) -> None:
        super()._fit(cands, labels, y)
        longest = int(cands.ranks.max()) + 1 if len(cands) else 1
        self.depth_ = int(self.depth) if self.depth is not None else max(longest, 1)

    def _predict(self, cands: Candidates) -> np.ndarray:
        K = np.float32(self.depth_)
        r = cands.ranks.astype(np.float32)
        rank_score = np.where(cands.ranks >= 0, np.maximum(K - r, 0) / K, np.float32(0))
        w = self.weights_.astype(np.float32)
        return (1 - self._TIE) * (rank_score @ w) + self._TIE * weighted_mean(cands.scores, w)

    def describe(self) -> dict:
        return {**super().describe(), "depth": self.depth_}


@register_combiner("power")
class PowerMean(_Averaging):
    """Weighted power mean ``(sum_m w_m s_m**p) ** (1/p)``, absent = 0; default ``p = 2``."""

    def __init__(self, weights=None, p: float = 2.0):
        self.weights = weights
        self.p = p

    def _validate(self) -> None:
        super()._validate()
        check_number("p", self.p, lo=0, lo_open=True)

    def _predict(self, cands: Candidates) -> np.ndarray:
        p = np.float32(self.p)
        s = np.clip(cands.scores, 0, 1, dtype=np.float32)
        return (s ** p @ self.weights_.astype(np.float32)) ** (1 / p)

    def describe(self) -> dict:
        return {**super().describe(), "p": float(self.p)}


@register_combiner("geometric")
class GeometricMean(_Averaging):
    """Weighted geometric mean with floor ``eps`` (absent members count as ``eps``)."""

    def __init__(self, weights=None, eps: float = 1e-3):
        self.weights = weights
        self.eps = eps

    def _validate(self) -> None:
        super()._validate()
        check_number("eps", self.eps, lo=0, lo_open=True, hi=1)

    def _predict(self, cands: Candidates) -> np.ndarray:
        logs = np.log(np.clip(cands.scores, np.float32(self.eps), 1, dtype=np.float32))
        return np.exp(logs @ self.weights_.astype(np.float32))

    def describe(self) -> dict:
        return {**super().describe(), "eps": float(self.eps)}
