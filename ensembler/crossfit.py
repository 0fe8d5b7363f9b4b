"""Honest evaluation of a combiner by cross-fitting over videos.

A learned combiner scored on the videos it was fitted on looks better than it
is. :func:`crossfit` splits the videos into ``n_folds`` folds (never splitting
a video's candidates), fits a fresh combiner on the other folds' videos and
labels only, and scores each fold with the model that never saw it::

    res = crossfit(create_combiner("xgboost"), members, labels, n_folds=5)
    res.estimate        # GAP@k of the pooled out-of-fold scores
    res.fold_scores     # GAP@k of each fold on its own videos

Non-learned combiners (``Combiner.learned`` False) never look at labels, so
they are fitted once on all candidates; their fold scores use the same folds,
for comparison with learned schemes.
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from predictions import metrics
from predictions.errors import InputError

from .base import Combiner
from .inputs import as_candidates, as_labels


@dataclass(frozen=True)
class CrossFitResult:
    """Outcome of :func:`crossfit`; the ``crossfit`` part of a build record.

    Attributes
    ----------
    fold_scores : GAP@k of each fold, scored on its own videos.
    estimate : GAP@k of the out-of-fold scores pooled over all videos.
    fold_sizes : videos in each fold.
    seconds : wall time of the cross-fit.
    oof_scores : (R,) float32 out-of-fold score of each candidate (same order
        as the candidates), or None when read back from a record.
    folds : (n,) int64 fold index of each video (same order as the
        candidates' ids), or None when read back from a record.
    """

    fold_scores: list[float]
    estimate: float
    fold_sizes: list[int]
    seconds: float = 0.0
    oof_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    folds: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_folds(self) -> int:
        return len(self.fold_scores)

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-candidate arrays)."""
        return {"n_folds": self.n_folds, "fold_scores": [float(s) for s in self.fold_scores],
                "fold_sizes": [int(n) for n in self.fold_sizes], "estimate": float(self.estimate),
                "seconds": float(self.seconds)}

    @classmethod
    def from_dict(cls, data: dict) -> "CrossFitResult":
        """Inverse of :meth:`to_dict` (arrays are None); KeyError/TypeError/ValueError if malformed."""
        scores = [float(s) for s in data["fold_scores"]]
        sizes = [int(n) for n in data.get("fold_sizes") or []]
        return cls(scores, float(data["estimate"]), sizes, float(data.get("seconds") or 0.0))


def make_folds(n_videos: int, n_folds: int, random_state=0) -> np.ndarray:
    """(n_videos,) int64 fold of each video: balanced sizes, deterministic from ``random_state``."""
    if not (isinstance(n_folds, numbers.Integral) and 2 <= n_folds <= n_videos):
        raise InputError(f"n_folds must be an integer in [2, {n_videos}] (number of videos), got {n_folds!r}")
    perm = np.random.default_rng(random_state).permutation(n_videos)
    folds = np.empty(n_videos, dtype=np.int64)
    folds[perm] = np.arange(n_videos) % n_folds
    return folds


def crossfit(combiner: Combiner | Callable[[], Combiner], members, labels, *, n_folds: int = 5,
             random_state=0, k: int = 20, progress: bool = False) -> CrossFitResult:
    """Cross-fitted GAP@k of a combiner (see the module docstring).

    Parameters
    ----------
    combiner : an unfitted combiner (cloned for each fold), or a function
        returning a new, unfitted one (called once per fold).
    members : the members' scores of n videos (Candidates, or any form
        :func:`ensembler.inputs.as_candidates` accepts).
    labels : ground truth of (at least) those videos (Labels, reordered to
        follow them, or a 0/1 matrix).
    n_folds : number of folds over videos, >= 2.
    random_state : seed of the fold assignment.
    k : GAP cut-off.
    progress : show a tqdm progress bar over folds.
    """
    t0 = time.perf_counter()
    if not (isinstance(k, numbers.Integral) and k >= 1):
        raise InputError(f"k must be an integer >= 1, got {k!r}")
    make_combiner = combiner.clone if isinstance(combiner, Combiner) else combiner
    cands = as_candidates(members)
    labels = as_labels(labels, cands)
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
    return CrossFitResult(fold_scores, float(estimate), np.bincount(folds, minlength=n_folds).tolist(),
                          time.perf_counter() - t0, oof, folds)
