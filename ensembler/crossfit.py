"""Honest evaluation of a combiner by cross-fitting over videos.

A learned combiner scored on the videos it was fitted on looks better than it
is. :func:`crossfit` splits the videos into ``n_folds`` folds (never splitting
a video's candidates), fits a fresh combiner on the other folds' videos and
labels only, and scores each fold with the model that never saw it::

    res = crossfit(lambda: create_combiner("xgboost"), cands, labels, n_folds=5)
    res.estimate        # GAP@k of the pooled out-of-fold scores
    res.fold_scores     # GAP@k of each fold on its own videos

Non-learned combiners (``Combiner.learned`` False) never look at labels, so
they are fitted once on all candidates; their fold scores use the same folds,
for comparison with learned schemes.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Callable

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.types import Labels

from .base import Combiner
from .candidates import Candidates


@dataclass(frozen=True)
class CrossFitResult:
    """Outcome of :func:`crossfit`.

    Attributes
    ----------
    fold_scores : GAP@k of each fold, scored on its own videos.
    estimate : GAP@k of ``oof_scores`` pooled over all videos.
    oof_scores : (R,) float32 out-of-fold score of each candidate (same order as ``cands``).
    folds : (n,) int64 fold index of each video (same order as ``cands.ids``).
    """

    fold_scores: list[float]
    estimate: float
    oof_scores: np.ndarray
    folds: np.ndarray

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-candidate arrays)."""
        return {"estimate": self.estimate, "fold_scores": list(self.fold_scores),
                "fold_sizes": np.bincount(self.folds).tolist()}


def make_folds(n_videos: int, n_folds: int, random_state=0) -> np.ndarray:
    """(n_videos,) int64 fold of each video: balanced sizes, deterministic from ``random_state``."""
    if not (isinstance(n_folds, numbers.Integral) and 2 <= n_folds <= n_videos):
        raise InputError(f"n_folds must be an integer in [2, {n_videos}] (number of videos), got {n_folds!r}")
    perm = np.random.default_rng(random_state).permutation(n_videos)
    folds = np.empty(n_videos, dtype=np.int64)
    folds[perm] = np.arange(n_videos) % n_folds
    return folds


def crossfit(make_combiner: Callable[[], Combiner], cands: Candidates, labels: Labels, *, n_folds: int = 5,
             random_state=0, k: int = 20, progress: bool = False) -> CrossFitResult:
    """Cross-fitted GAP@k of the combiner ``make_combiner()`` (see the module docstring).

    Parameters
    ----------
    make_combiner : returns a new, unfitted combiner; called once per fold.
    cands : candidates of n videos.
    labels : ground truth of (at least) ``cands.ids``; reordered to follow them.
    n_folds : number of folds over videos, >= 2.
    random_state : seed of the fold assignment.
    k : GAP cut-off.
    progress : show a tqdm progress bar over folds.
    """
    if not (isinstance(k, numbers.Integral) and k >= 1):
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    labels = labels.reindex(cands.ids)
    folds = make_folds(cands.n_videos, n_folds, random_state)
    cand_fold = folds[cands.row]
    y = cands.targets(labels)

    first = make_combiner()
    oof = np.zeros(len(cands), dtype=np.float32)
    if not first.learned:
        oof[:] = first.fit(cands).predict_scores(cands)
    steps = range(n_folds)
    if progress:
        from tqdm.auto import tqdm
        steps = tqdm(steps, desc=f"crossfit {first.name or type(first).__name__}", unit="fold")

    fold_scores = []
    for f in steps:
        test_videos = np.flatnonzero(folds == f)            # sorted, so take_videos keeps candidate order
        test_cands = np.flatnonzero(cand_fold == f)
        if first.learned:
            train_videos = np.flatnonzero(folds != f)
            comb = first if f == 0 else make_combiner()
            comb.fit(cands.take_videos(train_videos), labels.take(train_videos))
            oof[test_cands] = comb.predict_scores(cands.take_videos(test_videos))
        fold_labels = labels.take(test_videos)
        fold_scores.append(float(metrics.gap_pooled(cands.row[test_cands], oof[test_cands], y[test_cands],
                                                    int(fold_labels.counts().sum()), k=k)))
    estimate = cands.gap(oof, labels, k=k, y=y)
    return CrossFitResult(fold_scores, float(estimate), oof, folds)

