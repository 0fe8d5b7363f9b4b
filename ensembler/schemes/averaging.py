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

Fitted, each holds its per-member weights in ``member_weights_``; all but
``gap`` take them as ``member_weights=None`` (uniform), one non-negative
number per member in the members' order, or ``{member name: weight}``
(normalised to sum 1). ``uniform`` and ``gap`` are weighted means
(:meth:`~ensembler.base.Combiner.linear_weights`).
"""
from __future__ import annotations

import numpy as np

from ..base import Combiner, register_combiner
from ..candidates import Candidates
from predictions.params import Num

from .common import MEMBER_WEIGHTS, by_member, check_member_weights, declared_linear, weighted_mean

__all__ = ["UniformAverage", "GapWeighted", "RankAverage", "PowerMean", "GeometricMean"]


# --------------------------------------------------------------------------- schemes
class _Averaging(Combiner):
    """Shared machinery: optional per-member weights, fitted into ``member_weights_``."""

    learned = False
    _parameter_constraints = {"member_weights": MEMBER_WEIGHTS}

    def __init__(self, member_weights=None):
        self.member_weights = member_weights

    def _fit(self, cands, labels, y) -> None:
        self.member_weights_ = check_member_weights(self.member_weights, cands.n_members,
                                                    member_names=cands.member_names)

    def describe(self) -> dict:
        return {"weights": by_member(self.member_names_, self.member_weights_)}


@register_combiner("uniform")
class UniformAverage(_Averaging):
    """Weighted arithmetic mean of the member scores (uniform unless ``member_weights``)."""

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.member_weights_)

    def linear_weights(self) -> np.ndarray | None:
        return declared_linear(self, UniformAverage)


@register_combiner("gap")
class GapWeighted(Combiner):
    """Arithmetic mean with ``w_m = GAP_m / sum_j GAP_j`` (GAP@k on the fit data).

    Falls back to uniform weights if every member scores GAP 0.
    Fitted: ``member_gap_`` (M,), ``member_weights_`` (M,).
    """

    learned = True
    _parameter_constraints = {"k": Num(lo=1, integer=True)}

    def __init__(self, k: int = 20):
        self.k = k

    def _fit(self, cands, labels, y) -> None:
        scorer = cands.scorer(labels, self.k, y)
        self.member_gap_ = np.array([scorer(cands.scores[:, m]) for m in range(cands.n_members)])
        total = self.member_gap_.sum()
        self.member_weights_ = (self.member_gap_ / total if total > 0
                                else np.full(cands.n_members, 1.0 / cands.n_members))

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.member_weights_)

    def linear_weights(self) -> np.ndarray | None:
        return declared_linear(self, GapWeighted)

    def describe(self) -> dict:
        return {"weights": by_member(self.member_names_, self.member_weights_),
                "member_gap": by_member(self.member_names_, self.member_gap_)}


@register_combiner("rank")
class RankAverage(_Averaging):
    """Weighted mean of normalised ranks ``(K - r) / K`` (absent or ``r >= K``: 0).

    ``depth`` is ``K``; ``None`` uses the longest member list of the fit data
    (``depth_``). Ties of the rank mean (frequent) are broken by the score mean:
    the output is ``(1 - 1e-6) * rank_mean + 1e-6 * score_mean``.
    """

    _TIE = 1e-6

    def __init__(self, member_weights=None, depth: int | None = None):
        self.member_weights = member_weights
        self.depth = depth

    _parameter_constraints = {**_Averaging._parameter_constraints, "depth": Num(lo=1, integer=True, none=True)}

    def _fit(self, cands, labels, y) -> None:
        super()._fit(cands, labels, y)
        longest = int(cands.ranks.max()) + 1 if len(cands) else 1
        self.depth_ = int(self.depth) if self.depth is not None else max(longest, 1)

    def _predict(self, cands: Candidates) -> np.ndarray:
        K = np.float32(self.depth_)
        r = cands.ranks.astype(np.float32)
        rank_score = np.where(cands.ranks >= 0, np.maximum(K - r, 0) / K, np.float32(0))
        w = self.member_weights_.astype(np.float32)
        return (1 - self._TIE) * (rank_score @ w) + self._TIE * weighted_mean(cands.scores, w)

    def describe(self) -> dict:
        return {**super().describe(), "depth": self.depth_}


@register_combiner("power")
class PowerMean(_Averaging):
    """Weighted power mean ``(sum_m w_m s_m**p) ** (1/p)``, absent = 0; default ``p = 2``."""

    def __init__(self, member_weights=None, p: float = 2.0):
        self.member_weights = member_weights
        self.p = p

    _parameter_constraints = {**_Averaging._parameter_constraints, "p": Num(lo=0, lo_open=True, hi=1000)}

    def _predict(self, cands: Candidates) -> np.ndarray:
        p = np.float32(self.p)
        s = np.clip(cands.scores, 0, 1, dtype=np.float32)
        return (s ** p @ self.member_weights_.astype(np.float32)) ** (1 / p)

    def describe(self) -> dict:
        return {**super().describe(), "p": float(self.p)}


@register_combiner("geometric")
class GeometricMean(_Averaging):
    """Weighted geometric mean with floor ``eps`` (absent members count as ``eps``)."""

    def __init__(self, member_weights=None, eps: float = 1e-3):
        self.member_weights = member_weights
        self.eps = eps

    _parameter_constraints = {**_Averaging._parameter_constraints, "eps": Num(lo=0, lo_open=True, hi=1)}

    def _predict(self, cands: Candidates) -> np.ndarray:
        logs = np.log(np.clip(cands.scores, np.float32(self.eps), 1, dtype=np.float32))
        return np.exp(logs @ self.member_weights_.astype(np.float32))

    def describe(self) -> dict:
        return {**super().describe(), "eps": float(self.eps)}
