"""Fit one ensemble in memory: baselines, an honest estimate and the final fit (no file I/O).

:func:`fit_ensemble` is the core of ``ensemble build`` and the entry point of
the Python API::

    fit = fit_ensemble(heldout_members, heldout_labels, "caruana", n_folds=5, random_state=0)
    fit.estimate          # cross-fitted GAP@20 on the held-out videos
    fit.best_single       # ("m0", 0.8123): the best member there
    fit.predict(test_members)   # Predictions: the ensemble's top 20 per test video

Given labels, it measures every member and the uniform average on the fit
videos, and estimates the scheme honestly: a learned scheme is cross-fitted
(:func:`~ensembler.crossfit.crossfit`), a fixed one is scored as it is (it
never sees labels) with the same fold scores for comparison. It then fits the
scheme once on all fit videos. Without labels (fixed schemes only) it just fits.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

from predictions.errors import InputError
from predictions.types import Predictions

from .base import Combiner, combiner_class, create_combiner
from .crossfit import CrossFitResult, crossfit
from .inputs import as_candidates, as_labels

__all__ = ["FitResult", "fit_ensemble", "make_factory"]


@dataclass
class FitResult:
    """Outcome of :func:`fit_ensemble`.

    Attributes
    ----------
    scheme, params : the scheme and its parameters as given.
    combiner : the scheme fitted on all fit videos.
    member_names : the members, in the combiner's order.
    n_videos : fit videos.
    member_gap : GAP@k of each member on the fit videos (None without labels).
    best_single : (name, GAP@k) of the best member (None without labels).
    uniform_gap : GAP@k of the plain average of the members (None without labels).
    crossfit : the honest estimate (:class:`~ensembler.crossfit.CrossFitResult`;
        None without labels).
    fit_seconds : wall time of the final fit.
    """

    scheme: str
    params: dict
    combiner: Combiner
    member_names: tuple
    n_videos: int
    member_gap: dict | None = None
    best_single: tuple | None = None
    uniform_gap: float | None = None
    crossfit: CrossFitResult | None = None
    fit_seconds: float = 0.0
    k: int = field(default=20, repr=False)

    @property
    def estimate(self) -> float | None:
        """The honest GAP@k estimate on the fit videos (None without labels)."""
        return None if self.crossfit is None else self.crossfit.estimate

    def predict(self, members, k: int | None = None) -> Predictions:
        """The ensemble's top-``k`` predictions (default: the GAP cut-off) of each video of ``members``."""
        return self.combiner.predict(members, k=self.k if k is None else k)


def make_factory(scheme: str, params: dict | None, random_state):
    """A zero-argument function building a fresh, unfitted combiner (parameters checked now, once).

    ``random_state`` seeds schemes that take one, unless ``params`` sets it.
    """
    params = dict(params or {})
    cls = combiner_class(scheme)
    if "random_state" in inspect.signature(cls.__init__).parameters and "random_state" not in params:
        params["random_state"] = random_state
    create_combiner(scheme, **params)._validate()
    return lambda: create_combiner(scheme, **params)


def fit_ensemble(members, labels=None, scheme: str = "uniform", params: dict | None = None, *, n_folds: int = 5,
                 random_state=0, k: int = 20, progress: bool = False) -> FitResult:
    """Fit ``scheme`` on the members' scores of the fit videos, with baselines and an honest estimate.

    Parameters
    ----------
    members : the members' predictions of the same videos: ``{name: Predictions}``,
        a list of Predictions or of (n_videos, n_classes) score arrays, or
        Candidates (see :mod:`ensembler.inputs`).
    labels : their ground truth (Labels, or an (n_videos, n_classes) 0/1
        matrix); required by learned schemes; None skips the baselines and
        the estimate.
    scheme : a registered scheme (:func:`~ensembler.base.list_combiners`).
    params : its parameters (``random_state`` defaults to ``random_state``).
    n_folds : folds of the cross-fitted estimate, >= 2.
    random_state : seed of the folds and of seeded schemes.
    k : GAP cut-off of the baselines and the estimate.
    progress : show a progress bar over folds.
    """
    factory = make_factory(scheme, params, random_state)
    learned = combiner_class(scheme).learned
    if n_folds < 2:
        raise InputError(f"n_folds must be >= 2, got {n_folds}")
    cands = as_candidates(members)
    if labels is None and learned:
        raise InputError(f"scheme {scheme!r} is learned: it needs labels of the fit videos")
    result = FitResult(scheme=scheme, params=dict(params or {}), combiner=None, member_names=cands.member_names,
                       n_videos=cands.n_videos, k=k)
    if labels is not None:
        labels = as_labels(labels, cands)
        scorer = cands.scorer(labels, k=k)
        result.member_gap = {n: scorer(cands.scores[:, j]) for j, n in enumerate(cands.member_names)}
        result.best_single = max(result.member_gap.items(), key=lambda kv: kv[1])
        result.uniform_gap = scorer(cands.scores.mean(axis=1))
        result.crossfit = crossfit(factory, cands, labels, n_folds=n_folds, random_state=random_state, k=k,
                                   progress=progress)
    t = time.perf_counter()
    result.combiner = factory().fit(cands, labels)
    result.fit_seconds = time.perf_counter() - t
    return result
