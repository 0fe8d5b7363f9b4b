"""``auto``: try several schemes, keep the one with the best cross-fitted estimate.

Every candidate scheme is estimated on the fit videos exactly as
:func:`~ensembler.ensemble.fit_ensemble` would: a learned one is cross-fitted
and its final model is the average of its fold models
(:class:`~ensembler.crossfit.FoldBag`), a fixed one is fitted once and scored
on the same folds. All candidates share one fold split, so their estimates are
compared on the same videos. The winner's final model is the ``auto`` model.

The winner's own estimate is optimistic: it is the maximum of several noisy
estimates. Two honest numbers for the choice itself:

* the nested estimate: ``fit_ensemble(..., "auto")`` (and ``ensemble build
  --weights=auto``) cross-fits ``auto`` itself, so in every outer fold the
  whole selection is redone on the other folds' videos and the chosen model
  scores videos that played no part in choosing it. It costs ``n_folds + 1``
  times the candidates' cost.
* the cheap correction (Tibshirani and Tibshirani, 2009), computed at every
  fit and recorded as ``selection_correction``: the mean over folds of (best
  candidate's fold score - the winner's fold score); ``corrected_estimate``
  is the winner's estimate minus it.

Fitted: ``scheme_`` (the winner), ``final_`` (its final model),
``candidates_`` (``{scheme: CrossFitResult}``), ``selection_correction_``,
``corrected_estimate_``, ``member_weights_`` when the winner has them.
"""
from __future__ import annotations

import time

import numpy as np

from predictions.errors import InputError
from predictions.params import Num

from ..base import Combiner, combiner_class, list_combiners, register_combiner
from ..crossfit import FoldBag, crossfit

from .common import by_member

__all__ = ["AutoScheme", "default_schemes"]


def default_schemes() -> list[str]:
    """Every registered scheme but ``auto``, sorted."""
    return [s for s in list_combiners() if s != "auto"]


@register_combiner("auto")
class AutoScheme(Combiner):
    """Pick the scheme with the best cross-fitted estimate among ``schemes`` (default: all others).

    Parameters
    ----------
    schemes : list of scheme names, a comma-separated string, or None for
        every registered scheme but ``auto``.
    params : ``{scheme: {parameter: value}}`` for the candidates (optional).
    n_folds : folds of each candidate's cross-fit, >= 2.
    k : GAP cut-off of the estimates.
    random_state : seed of the folds and of seeded candidates (a candidate's
        own ``random_state`` in ``params`` wins).
    """

    learned = True
    _transient = ("candidates_",)      # the candidates' cross-fits: the record has them
    #: fit_ensemble must not bag auto's fold models: auto bags its winner itself (and its
    #: estimate in fit_ensemble is then nested).
    selects_scheme = True

    def __init__(self, schemes=None, params=None, n_folds: int = 5, k: int = 20, random_state=0):
        self.schemes = schemes
        self.params = params
        self.n_folds = n_folds
        self.k = k
        self.random_state = random_state

    # --- parameters -------------------------------------------------------
    def _scheme_list(self) -> list[str]:
        if self.schemes is None:
            return default_schemes()
        names = self.schemes.split(",") if isinstance(self.schemes, str) else self.schemes
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
            raise InputError(f"schemes must be a list of scheme names or 'a,b,c', got {self.schemes!r}")
        names = [n.strip() for n in names if n.strip()]
        if not names:
            raise InputError("schemes must name at least one scheme")
        if len(set(names)) != len(names):
            raise InputError(f"schemes lists a scheme twice: {names}")
        known = default_schemes()
        bad = [n for n in names if n not in known]
        if bad:
            raise InputError(f"auto cannot try scheme(s) {', '.join(bad)}; known: {', '.join(known)}")
        return names

    def _candidate(self, scheme: str) -> Combiner:
        from ..ensemble import make_combiner            # ensemble imports the registry, not the schemes
        return make_combiner(scheme, (self.params or {}).get(scheme), self.random_state)

    _parameter_constraints = {"n_folds": Num(lo=2, hi=1000, integer=True), "k": Num(lo=1, integer=True)}

    def _check(self) -> None:
        names = self._scheme_list()
        if self.params is not None:
            if not isinstance(self.params, dict) or not all(isinstance(v, dict) for v in self.params.values()):
                raise InputError(f"params must be {{scheme: {{parameter: value}}}}, got {self.params!r}")
            extra = sorted(set(self.params) - set(names))
            if extra:
                raise InputError(f"params given for scheme(s) auto does not try: {', '.join(extra)}")
        for scheme in names:
            self._candidate(scheme)                    # unknown parameters fail now, before any fit

    # --- fit / predict ----------------------------------------------------
    def _fit(self, cands, labels, y) -> None:
        self.candidates_, finals, self.candidate_seconds_ = {}, {}, {}
        for scheme in self._scheme_list():
            t = time.perf_counter()
            comb = self._candidate(scheme)
            if comb.learned:
                bag = FoldBag(comb, n_folds=self.n_folds, random_state=self.random_state, k=self.k).fit(cands, labels)
                self.candidates_[scheme], finals[scheme] = bag.crossfit_, bag
            else:
                res = crossfit(comb, cands, labels, n_folds=self.n_folds, random_state=self.random_state, k=self.k)
                self.candidates_[scheme], finals[scheme] = res, res.models[0]
            self.candidate_seconds_[scheme] = time.perf_counter() - t
        # the first best in the given order wins a tie
        self.scheme_ = max(self.candidates_, key=lambda s: self.candidates_[s].estimate)
        self.final_ = finals[self.scheme_]
        folds = np.array([self.candidates_[s].fold_scores for s in self.candidates_])      # (schemes, folds)
        winner = folds[list(self.candidates_).index(self.scheme_)]
        self.selection_correction_ = float(np.mean(folds.max(axis=0) - winner))
        self.corrected_estimate_ = self.candidates_[self.scheme_].estimate - self.selection_correction_
        weights = getattr(self.final_, "member_weights_", None)
        if weights is not None:
            self.member_weights_ = np.asarray(weights, dtype=np.float64)

    def _predict(self, cands) -> np.ndarray:
        return self.final_.predict_scores(cands)

    def linear_weights(self) -> np.ndarray | None:
        """The chosen model's weights, when it is a weighted mean."""
        return self.final_.linear_weights() if type(self)._predict is AutoScheme._predict else None

    def importance(self) -> dict | None:
        return self.final_.importance()

    def describe(self) -> dict:
        out = {"chosen": self.scheme_,
               "candidates": {s: {"estimate": r.estimate, "std_error": r.std_error, "fold_scores": r.fold_scores,
                                  "learned": combiner_class(s).learned,
                                  "seconds": round(self.candidate_seconds_[s], 3)}
                              for s, r in self.candidates_.items()},
               "n_folds": int(self.n_folds),
               "selection_correction": self.selection_correction_,
               "corrected_estimate": self.corrected_estimate_,
               "chosen_fitted": self.final_.describe()}
        if hasattr(self, "member_weights_"):
            out["weights"] = by_member(self.member_names_, self.member_weights_)
        return out
