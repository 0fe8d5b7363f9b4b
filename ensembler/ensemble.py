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
never sees labels) with the same fold scores for comparison. Every estimate
comes with its fold standard error (``fit.crossfit.std_error``).

The final model of a learned scheme is, by default (``final="bag"``), the
average of the cross-fit's fold models (:class:`~ensembler.crossfit.FoldBag`):
the models the estimate measured, so the estimate describes what is
submitted, without one more fit. ``final="refit"`` fits the scheme once more
on all fit videos instead (one draw of a possibly noisy fit: a single xgboost
refit's GAP moved by 0.05 between seeds on real data, the estimate did not).
A fixed scheme is fitted once. A scheme that selects among schemes (``auto``)
cross-fits its candidates inside its own fit; its estimate is then nested
(the selection is redone inside every outer fold) and its final model is
its fit on all videos. Without labels (fixed schemes only) it just fits.
"""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field

from predictions.errors import InputError
from predictions.params import check_number
from predictions.types import Predictions

from .base import Combiner, combiner_class, create_combiner
from .crossfit import CrossFitResult, FoldBag, crossfit
from .inputs import as_candidates, as_labels

__all__ = ["FitResult", "fit_ensemble", "make_combiner", "FINALS"]

#: How fit_ensemble makes a learned scheme's final model: the average of the fold models, or one refit.
FINALS = ("bag", "refit")


@dataclass
class FitResult:
    """Outcome of :func:`fit_ensemble`.

    Attributes
    ----------
    scheme, params : the scheme and its parameters as given.
    combiner : the final model: a :class:`~ensembler.crossfit.FoldBag` of the
        fold models (learned scheme, ``final="bag"``), else the scheme fitted
        on all fit videos.
    final : ``"bag"``, ``"refit"``, or ``"fit"`` (a fixed scheme, or no labels).
    member_names : the members, in the combiner's order.
    n_videos : fit videos.
    member_gap : GAP@k of each member on the fit videos (None without labels).
    best_single : (name, GAP@k) of the best member (None without labels).
    uniform_gap : GAP@k of the plain average of the members (None without labels).
    crossfit : the honest estimate (:class:`~ensembler.crossfit.CrossFitResult`;
        None without labels).
    fit_seconds : wall time of making the final model (for a bag: its cross-fit).
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
    final: str = "fit"
    k: int = field(default=20, repr=False)

    @property
    def estimate(self) -> float | None:
        """The honest GAP@k estimate on the fit videos (None without labels)."""
        return None if self.crossfit is None else self.crossfit.estimate

    @property
    def std_error(self) -> float | None:
        """The fold standard error of :attr:`estimate` (None without labels)."""
        return None if self.crossfit is None else self.crossfit.std_error

    def predict(self, members, k: int | None = None) -> Predictions:
        """The ensemble's top-``k`` predictions (default: the GAP cut-off) of each video of ``members``."""
        return self.combiner.predict(members, k=self.k if k is None else k)

    @property
    def weights(self) -> dict | None:
        """``{member: weight}`` when the final model is a weighted mean of the member scores, else None."""
        w = self.combiner.linear_weights()
        return None if w is None else {str(n): float(x) for n, x in zip(self.member_names, w)}

    def leaderboard(self, **splits):
        """A pandas DataFrame: one row per member and one for the ensemble, best first.

        Columns ``name``, ``kind`` (member / ensemble), ``estimate`` (GAP@k on the
        fit videos: cross-fitted for the ensemble of a learned scheme, plain for
        the members, which never saw these labels), ``std_error`` (the fold
        standard error of the ensemble's estimate), ``weight``, and one column
        ``gap_<split>`` per keyword ``split=(members, labels)``: GAP@k of every
        member and of the ensemble on other videos, e.g.
        ``fit.leaderboard(eval=(eval_members, eval_labels))``.
        """
        from predictions.extras import require
        pd = require("pandas", what="FitResult.leaderboard()")
        weights = self.weights or {}
        rows = [{"name": f"{self.scheme} (ensemble)", "kind": "ensemble", "estimate": self.estimate,
                 "std_error": self.std_error, "weight": None}]
        rows += [{"name": n, "kind": "member", "estimate": (self.member_gap or {}).get(n), "std_error": None,
                  "weight": weights.get(n)} for n in self.member_names]
        for split, (members, labels) in splits.items():
            cands = as_candidates(members, fitted_names=self.member_names)
            scorer = cands.scorer(as_labels(labels, cands), k=self.k)
            gaps = {n: scorer(cands.scores[:, j]) for j, n in enumerate(cands.member_names)}
            rows[0][f"gap_{split}"] = scorer(self.combiner.predict_scores(cands))
            for row in rows[1:]:
                row[f"gap_{split}"] = gaps.get(row["name"])
        frame = pd.DataFrame(rows)
        key = next((c for c in frame.columns if c.startswith("gap_")), "estimate")
        return frame.sort_values(key, ascending=False, na_position="last", kind="stable").reset_index(drop=True)


def make_combiner(scheme: str, params: dict | None, random_state, n_folds: int | None = None) -> Combiner:
    """A new, unfitted combiner of ``scheme`` with its parameters checked now.

    ``random_state`` seeds schemes that take one, and ``n_folds`` (if given)
    sets the folds of schemes that cross-fit inside (``auto``), unless
    ``params`` sets them.
    """
    params = dict(params or {})
    cls = combiner_class(scheme)
    known = inspect.signature(cls.__init__).parameters
    if "random_state" in known and "random_state" not in params:
        params["random_state"] = random_state
    if n_folds is not None and "n_folds" in known and "n_folds" not in params:
        params["n_folds"] = n_folds
    comb = create_combiner(scheme, **params)
    comb._validate()
    return comb


def fit_ensemble(members, labels=None, scheme: str | Combiner = "uniform", params: dict | None = None, *,
                 n_folds: int = 5, random_state=0, k: int = 20, final: str = "bag",
                 progress: bool = False, num_classes: int | None = None) -> FitResult:
    """Fit ``scheme`` on the members' scores of the fit videos, with baselines and an honest estimate.

    Parameters
    ----------
    members : the members' predictions of the same videos: ``{name: Predictions}``,
        a list of Predictions or of (n_videos, n_classes) score arrays,
        Candidates, or pandas DataFrames / Kaggle CSV paths (see
        :mod:`ensembler.inputs`); a list ``member_weights`` applies in this order.
    labels : their ground truth (Labels, an (n_videos, n_classes) 0/1
        matrix, a truth CSV path or a DataFrame); required by learned schemes;
        None skips the baselines and the estimate.
    scheme : a registered scheme (:func:`~ensembler.base.list_combiners`), or
        an unfitted combiner (``params`` then unused: its own are used).
    params : its parameters (``random_state`` defaults to ``random_state``,
        and ``auto``'s ``n_folds`` to ``n_folds``).
    n_folds : folds of the cross-fitted estimate, >= 2.
    random_state : seed of the folds and of seeded schemes.
    k : GAP cut-off of the baselines and the estimate.
    final : ``"bag"`` (default: a learned scheme's final model is the average
        of its fold models) or ``"refit"`` (one more fit on all fit videos);
        see the module docstring.
    progress : show a progress bar over folds.
    num_classes : class count of CSV and DataFrame members and labels (default: that of a
        Predictions member, else of Labels, else 3862).
    """
    check_number("n_folds", n_folds, lo=2, hi=1000, integer=True)
    check_number("k", k, lo=1, integer=True)
    if isinstance(scheme, Combiner):
        prototype, params = scheme.clone(), scheme.get_params()
        prototype._validate()
        scheme = prototype.name or type(prototype).__name__
    else:
        prototype = make_combiner(scheme, params, random_state, n_folds)
    learned = prototype.learned
    if final not in FINALS:
        raise InputError(f"final must be one of {', '.join(FINALS)}, got {final!r}")
    cands = as_candidates(members, num_classes=num_classes, labels=labels)
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
    bag = labels is not None and learned and final == "bag" and not getattr(prototype, "selects_scheme", False)
    t = time.perf_counter()
    if bag:
        result.combiner = FoldBag(prototype, n_folds=n_folds, random_state=random_state, k=k,
                                  progress=progress).fit(cands, labels)
        result.crossfit, result.final = result.combiner.crossfit_, "bag"
    else:
        if labels is not None:
            result.crossfit = crossfit(prototype, cands, labels, n_folds=n_folds, random_state=random_state, k=k,
                                       progress=progress)
            t = time.perf_counter()
        result.combiner = prototype.clone().fit(cands, labels)
        result.final = "refit" if learned else "fit"
    result.fit_seconds = time.perf_counter() - t
    return result
