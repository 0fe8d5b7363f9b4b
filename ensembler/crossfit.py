"""Honest evaluation of a combiner by cross-fitting over videos, and the fold bag it leaves behind.

A learned combiner scored on the videos it was fitted on looks better than it
is. :func:`crossfit` splits the videos into ``n_folds`` folds (never splitting
a video's candidates), fits a fresh combiner on the other folds' videos and
labels only, and scores each fold with the model that never saw it::

    res = crossfit(create_combiner("xgboost"), members, labels, n_folds=5)
    res.estimate        # GAP@k of the pooled out-of-fold scores
    res.std_error       # fold standard error of that estimate
    res.fold_scores     # GAP@k of each fold on its own videos

Non-learned combiners (``Combiner.learned`` False) never look at labels, so
they are fitted once on all candidates; their fold scores use the same folds,
for comparison with learned schemes.

:class:`FoldBag` turns the cross-fit into the submitted model (as AutoGluon's
stacker does): its prediction is the average of the ``n_folds`` fold models,
the very models whose out-of-fold scores make the estimate. A single refit on
all videos is one draw of a noisy fit (for xgboost its GAP swung by 0.05
between seeds on real data) that the estimate does not describe; the average
of the fold models is what the estimate describes, with less variance, and
costs no extra fit.
"""
from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.params import Num, check_number, is_integer
from predictions.types import Labels, Predictions

from .base import Combiner
from .inputs import as_candidates, as_labels


@dataclass(frozen=True)
class CrossFitResult:
    """Outcome of :func:`crossfit`; the ``crossfit`` part of a build record.

    Attributes
    ----------
    fold_scores : GAP@k of each fold, scored on its own videos.
    estimate : GAP@k of the out-of-fold scores pooled over all videos.
    std_error : (property) fold standard error of ``estimate``:
        ``std(fold_scores, ddof=1) / sqrt(n_folds)``.
    fold_sizes : videos in each fold.
    seconds : wall time of the cross-fit.
    oof_scores : (R,) float32 out-of-fold score of each candidate (same order
        as the candidates), or None when read back from a record.
    folds : (n,) int64 fold index of each video (same order as the
        candidates' ids), or None when read back from a record.
    models : the fitted fold models (fold ``f``'s at index ``f``; one shared
        model for a non-learned combiner), or None when read back from a record.
    """

    fold_scores: list[float]
    estimate: float
    fold_sizes: list[int]
    seconds: float = 0.0
    oof_scores: np.ndarray | None = field(default=None, repr=False, compare=False)
    folds: np.ndarray | None = field(default=None, repr=False, compare=False)
    models: list | None = field(default=None, repr=False, compare=False)

    @property
    def n_folds(self) -> int:
        return len(self.fold_scores)

    @property
    def std_error(self) -> float | None:
        """Fold standard error of the estimate (None with fewer than two folds)."""
        return fold_std_error(self.fold_scores)

    def to_dict(self) -> dict:
        """JSON-ready summary (no per-candidate arrays, no models)."""
        return {"n_folds": self.n_folds, "fold_scores": [float(s) for s in self.fold_scores],
                "fold_sizes": [int(n) for n in self.fold_sizes], "estimate": float(self.estimate),
                "std_error": self.std_error, "seconds": float(self.seconds)}

    @classmethod
    def from_dict(cls, data: dict) -> "CrossFitResult":
        """Inverse of :meth:`to_dict` (arrays are None); KeyError/TypeError/ValueError if malformed."""
        scores = [float(s) for s in data["fold_scores"]]
        sizes = [int(n) for n in data.get("fold_sizes") or []]
        return cls(scores, float(data["estimate"]), sizes, float(data.get("seconds") or 0.0))


def fold_std_error(fold_scores) -> float | None:
    """``std(fold_scores, ddof=1) / sqrt(K)``: the standard error of a K-fold estimate (None if K < 2).

    It treats the folds as independent draws, which they nearly are for a
    fixed model; for a learned one the fold models share training videos, so
    it is a little optimistic (Bengio and Grandvalet, 2004), yet it is the
    usual yardstick and says how many decimals of an estimate mean anything.
    """
    scores = np.asarray(list(fold_scores), dtype=np.float64)
    if len(scores) < 2:
        return None
    return float(scores.std(ddof=1) / np.sqrt(len(scores)))


def plain_fold_scores(pred: Predictions, labels: Labels, n_folds: int = 5, random_state=0, k: int = 20) -> list[float]:
    """GAP@k of fixed predictions on each fold of their videos: the fold scores of a fixed scheme.

    The folds are :func:`make_folds` over ``pred.ids`` in their order, so for
    the same videos in the same order they are the folds :func:`crossfit` uses
    (``ensemble build`` writes a split's ensemble store in the order it fitted
    on). ``fold_std_error(plain_fold_scores(...))`` is then the standard error
    of a fixed scheme's plain GAP, comparable with a learned scheme's.
    """
    folds = make_folds(len(pred.ids), n_folds, random_state)
    labels = labels.reindex(pred.ids)
    out = []
    for f in range(n_folds):
        ids = pred.ids[folds == f]
        out.append(float(metrics.gap(pred.reindex(ids), labels.reindex(ids), k=k)))
    return out


def make_folds(n_videos: int, n_folds: int, random_state=0) -> np.ndarray:
    """(n_videos,) int64 fold of each video: balanced sizes, deterministic from ``random_state``."""
    if not (is_integer(n_folds) and 2 <= n_folds <= n_videos):
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
    check_number("k", k, lo=1, integer=True)
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

    fold_scores, models = [], []
    for f in steps:
        test_videos = np.flatnonzero(folds == f)            # sorted, so take_videos keeps candidate order
        test_cands = np.flatnonzero(cand_fold == f)
        comb = first
        if first.learned:
            train_videos = np.flatnonzero(folds != f)
            comb = first if f == 0 else make_combiner()
            comb.fit(cands.take_videos(train_videos), labels.take(train_videos))
            oof[test_cands] = comb.predict_scores(cands.take_videos(test_videos))
        models.append(comb)
        fold_labels = labels.take(test_videos)
        fold_scores.append(float(metrics.gap_pooled(cands.row[test_cands], oof[test_cands], y[test_cands],
                                                    int(fold_labels.counts().sum()), k=k)))
    estimate = cands.gap(oof, labels, k=k, y=y)
    return CrossFitResult(fold_scores, float(estimate), np.bincount(folds, minlength=n_folds).tolist(),
                          time.perf_counter() - t0, oof, folds, models)


class FoldBag(Combiner):
    """The average of the fold models of a cross-fit: the submitted model that its estimate measures.

    ``fit`` cross-fits ``base`` (a combiner, cloned per fold) over ``n_folds``
    folds of the videos (:func:`crossfit`) and keeps the fold models;
    ``predict_scores`` is the mean of their scores. The cross-fit is kept as
    ``crossfit_``: its estimate is the out-of-fold GAP of these same models.
    A non-learned ``base`` has one model (fitted on all videos), so the bag is
    that model.

    For the weighted-mean schemes the average of the fold models is again a
    weighted mean, with the fold weights averaged (``member_weights_``).

    Fitted: ``models_`` (fold models), ``crossfit_``
    (:class:`CrossFitResult`), ``member_weights_`` when every fold model has one.
    """

    learned = True

    def __init__(self, base: Combiner | None = None, n_folds: int = 5, random_state=0, k: int = 20,
                 progress: bool = False):
        self.base = base
        self.n_folds = n_folds
        self.random_state = random_state
        self.k = k
        self.progress = progress

    @property
    def name(self) -> str:
        return getattr(self.base, "name", "") or ""

    _parameter_constraints = {"n_folds": Num(lo=2, hi=1000, integer=True), "k": Num(lo=1, integer=True)}
    _transient = ("crossfit_",)       # the estimate's record; predicting needs only the fold models

    def _check(self) -> None:
        if not isinstance(self.base, Combiner):
            raise InputError(f"base must be a combiner (create_combiner(...)), got {type(self.base).__name__}")
        self.base._validate()

    def _fit(self, cands, labels, y) -> None:
        self.crossfit_ = crossfit(self.base, cands, labels, n_folds=self.n_folds, random_state=self.random_state,
                                  k=self.k, progress=self.progress)
        self.models_ = list(dict.fromkeys(self.crossfit_.models))      # one shared model for a fixed base
        weights = [getattr(m, "member_weights_", None) for m in self.models_]
        if all(w is not None for w in weights):
            self.member_weights_ = np.mean(np.stack(weights), axis=0)

    def _predict(self, cands) -> np.ndarray:
        total = np.zeros(len(cands), dtype=np.float64)
        for m in self.models_:
            total += m.predict_scores(cands)
        return total / len(self.models_)

    def linear_weights(self) -> np.ndarray | None:
        """The mean of the fold models' weights, when every fold model is a weighted mean."""
        if type(self)._predict is not FoldBag._predict:
            return None
        parts = [m.linear_weights() for m in getattr(self, "models_", ())]
        return None if not parts or any(w is None for w in parts) else np.mean(parts, axis=0)

    def importance(self) -> dict | None:
        """The fold models' per-member importances, averaged (None if they have none)."""
        parts = [m.importance() for m in getattr(self, "models_", ())]
        if not parts or any(p is None for p in parts):
            return None
        return {n: float(np.mean([p.get(n, 0.0) for p in parts])) for n in parts[0]}

    def describe(self) -> dict:
        """The fold models' descriptions averaged where they agree in shape (see :func:`mean_description`),
        with ``bagged_models`` and each model's own description under ``folds``."""
        parts = [m.describe() for m in self.models_]
        out = mean_description(parts)
        if hasattr(self, "member_weights_"):
            out["weights"] = {str(m): float(w) for m, w in zip(self.member_names_, self.member_weights_)}
        return {**out, "bagged_models": len(self.models_), "folds": parts}


def mean_description(parts: list[dict]) -> dict:
    """Merge the ``describe()`` dicts of fold models: numbers averaged, equal values kept, the rest dropped.

    Keys present in every part are merged: all numbers (not booleans) give
    their mean, all dicts merge recursively, values that are all equal are
    kept; anything else (a selection trajectory, say) differs per fold and is
    left to the per-fold descriptions.
    """
    out = {}
    for key in parts[0] if parts else ():
        values = [p.get(key) for p in parts]
        if any(key not in p for p in parts):
            continue
        if all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            out[key] = float(np.mean(values))
        elif all(isinstance(v, dict) for v in values):
            merged = mean_description(values)
            if merged:
                out[key] = merged
        elif all(v == values[0] for v in values[1:]):
            out[key] = values[0]
    return out
