"""How much of a difference in GAP is noise: fold standard errors on the report's split, GAP per vertical.

GAP@k is one pooled number per split, not a mean over videos, so its
standard error is measured the project's usual way (the ``crossfit`` fold
standard error): the split's videos are dealt into :data:`N_FOLDS` folds
(:func:`ensembler.crossfit.make_folds`, seed 0, the same folds for every
model), GAP@k is computed on each fold alone, and ``s.e. = std(fold GAPs,
ddof=1) / sqrt(F)``. A *gain* of model A over model B is measured paired:
the s.e. of the per-fold differences ``GAP_A(f) - GAP_B(f)``. Two models
scored on the same videos make the same mistakes on the hard ones, so the
paired s.e. of a gain is usually far smaller than either model's own s.e.
A gain is called *within noise* when ``|gain| < NOISE_Z * s.e.``.

GAP of a vertical: the pooled top-k entries whose label belongs to that
vertical, over the positives of that vertical (``M_v``): the GAP the split
would have if it had only those classes.

All numbers come from one sort per model (:func:`grouped_gap`); ties are
pessimistic (negatives first), as in :func:`predictions.metrics.gap_pooled`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ensembler.crossfit import fold_std_error, make_folds
from predictions.types import Labels, Predictions

__all__ = ["N_FOLDS", "NOISE_Z", "Entries", "entries", "grouped_gap", "FoldScorer", "verdict",
           "vertical_breakdown"]

N_FOLDS = 10
NOISE_Z = 2.0


@dataclass(frozen=True)
class Entries:
    """A model's pooled top-k entries on a split: each (m,) with m = videos x k."""

    rows: np.ndarray      # int64 video row
    labels: np.ndarray    # int64 class id
    scores: np.ndarray    # float64 score
    is_pos: np.ndarray    # bool: a true label of that video


def entries(pred: Predictions, truth: Labels, k: int) -> Entries:
    """The top-``k`` entries of every video of ``pred`` (aligned with ``truth``)."""
    top = pred.topk(k)
    n, width = top.scores.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), width)
    labels = np.asarray(top.indices, dtype=np.int64).ravel()
    return Entries(rows, labels, np.asarray(top.scores, dtype=np.float64).ravel(), truth.is_positive(rows, labels))


def grouped_gap(group: np.ndarray, scores: np.ndarray, is_pos: np.ndarray, n_pos: np.ndarray) -> np.ndarray:
    """(G,) GAP of each group of pooled entries: its entries sorted by score, over ``n_pos[g]`` positives.

    ``group``: (m,) int in [0, G) (entries with a negative group are left out);
    ``n_pos``: (G,) positives of each group, those never predicted included.
    NaN for a group without positives.
    """
    n_pos = np.asarray(n_pos, dtype=np.float64)
    G = len(n_pos)
    keep = group >= 0
    g, s, p = group[keep], scores[keep], is_pos[keep]
    order = np.lexsort((p, -s, g))          # by group, descending score, negatives first on ties
    g, p = g[order], p[order]
    first = np.r_[True, g[1:] != g[:-1]] if len(g) else np.zeros(0, bool)
    start = np.maximum.accumulate(np.where(first, np.arange(len(g)), 0))
    rank = np.arange(len(g)) - start + 1
    cum = np.cumsum(p)
    cum_in = cum - np.where(first, cum - p, 0)[start]   # positives so far within the group
    precision = cum_in[p] / rank[p]
    total = np.bincount(g[p], weights=precision, minlength=G)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n_pos > 0, total / n_pos, np.nan)


class FoldScorer:
    """Fold GAPs of models on one split (the same :data:`N_FOLDS` folds for all of them).

    ``scorer.folds(e)``: (F,) GAP of each fold, or None for a split too small to fold;
    ``se(folds)``: the fold s.e. of a model's GAP; ``se(folds_a - folds_b)``: the
    paired s.e. of the gain of a over b.
    """

    def __init__(self, truth: Labels, n_folds: int = N_FOLDS, random_state: int = 0):
        self.truth = truth
        self.n_folds = min(n_folds, len(truth))
        self.fold = make_folds(len(truth), self.n_folds, random_state) if self.n_folds >= 2 else None
        if self.fold is not None:
            self.n_pos = np.bincount(self.fold[truth.rows()], minlength=self.n_folds)

    def folds(self, e: Entries) -> np.ndarray | None:
        if self.fold is None:
            return None
        return grouped_gap(self.fold[e.rows], e.scores, e.is_pos, self.n_pos)

    @staticmethod
    def se(fold_gaps) -> float | None:
        """Fold standard error of (F,) fold GAPs (or of paired fold differences); folds without positives left out."""
        if fold_gaps is None:
            return None
        f = np.asarray(fold_gaps, dtype=np.float64)
        return fold_std_error(f[~np.isnan(f)])


def verdict(gain: float | None, se: float | None, z: float = NOISE_Z) -> str | None:
    """``"within noise"`` when ``|gain| < z * se``, ``"above noise"`` / ``"below noise"`` otherwise."""
    if gain is None or se is None:
        return None
    if abs(gain) < z * se:
        return "within noise"
    return "above noise" if gain > 0 else "below noise"


def vertical_breakdown(models: dict, truth: Labels, verticals: np.ndarray, vertical_names, scorer: FoldScorer):
    """GAP per vertical of each model, and of the last model minus the first with its paired fold s.e.

    ``models``: {name: Entries} (the first is the reference, e.g. the best member;
    the last the challenger, e.g. the best ensemble); ``verticals``: (C,) int64
    vertical id per class, -1 unknown (grouped as ``"(no vertical)"``).
    Returns a list of rows ``{"vertical", "classes", "positives", "gap": {name: GAP},
    "change", "change_se", "verdict"}``, verticals without positives left out, by
    positives (descending).
    """
    verticals = np.asarray(verticals, dtype=np.int64)
    names = list(vertical_names)
    if (verticals < 0).any():
        verticals = np.where(verticals < 0, len(names), verticals)
        names.append("(no vertical)")
    V = len(names)
    n_pos = np.bincount(verticals[truth.indices], minlength=V)
    n_cls = np.bincount(verticals, minlength=V)
    gaps = {n: grouped_gap(verticals[e.labels], e.scores, e.is_pos, n_pos) for n, e in models.items()}
    first, last = list(models)[0], list(models)[-1]
    se = [None] * V
    if len(models) >= 2 and scorer.fold is not None:
        F = scorer.n_folds
        cell_pos = np.bincount(verticals[truth.indices] * F + scorer.fold[truth.rows()], minlength=V * F)
        a, b = (grouped_gap(verticals[models[n].labels] * F + scorer.fold[models[n].rows], models[n].scores,
                            models[n].is_pos, cell_pos).reshape(V, F) for n in (first, last))
        se = [scorer.se(d) for d in b - a]
    rows = []
    for v in np.argsort(-n_pos, kind="stable"):
        if n_pos[v] == 0:
            continue
        row = {"vertical": names[v], "classes": int(n_cls[v]), "positives": int(n_pos[v]),
               "gap": {n: float(g[v]) for n, g in gaps.items()}}
        if len(models) >= 2:
            change = float(gaps[last][v] - gaps[first][v])
            row.update(change=change, change_se=se[v], verdict=verdict(change, se[v]))
        rows.append(row)
    return rows
