"""Weights optimised for GAP@k on held-out data.

* ``optimized``: one non-negative weight per member, summing to 1, for the
  weighted mean of the member scores, chosen to maximise GAP@k of the fit
  data. ``method``:

  - ``"surrogate"``: weights ``softmax(theta)``, fitted with L-BFGS on a
    smooth proxy, the pooled logistic loss of ``a * (S @ w) + b`` over all
    candidates (exact gradients, ~10 ms per step for R = 1e6, M = 16).
    Softmax weights are never exactly 0.
  - ``"coordinate"``: pattern search directly on GAP@k (each evaluation is one
    :meth:`Candidates.scorer <ensembler.candidates.Candidates.scorer>` call): from uniform
    weights, try ``w_m +- step`` for each member in a random order
    (``random_state``) and renormalise, accept strict improvements, halve
    ``step`` (0.25 ... 1/512) when a full pass finds none; stops after
    ``max_evals`` GAP evaluations. Can set weights exactly to 0.
  - ``"hybrid"`` (default): the surrogate's weights, or uniform if its GAP is
    lower, refined by the coordinate search. Fit GAP is never below uniform.

* ``per-class``: one weight vector per class, the global ``optimized`` weights
  tilted by how well each member does on that class, shrunk toward the global
  weights for rare classes::

      fit_c  ~ w_global * AP_cm / mean_c'(AP_c'm)          (renormalised)
      W_c    = (n_c * fit_c + lam * w_global) / (n_c + lam)

  ``AP_cm`` is member ``m``'s AP for class ``c`` over its top-``k`` entries of
  the fit videos, ``n_c`` the positives of class ``c`` in the fit labels. A
  member with zero global weight stays at zero; ``lam = inf`` gives the
  global weights for every class.
"""
from __future__ import annotations

import math
import time

import numpy as np

from predictions import metrics
from predictions.errors import InputError
from predictions.params import Choice, Num, check_number

from ..base import Combiner, register_combiner
from ..candidates import Candidates
from .common import by_member, declared_linear, weighted_mean

__all__ = ["coordinate_search", "fit_surrogate", "optimize_weights", "member_class_ap",
           "OptimizedWeights", "PerClassWeights"]

METHODS = ("hybrid", "coordinate", "surrogate")


# --------------------------------------------------------------------------- algorithms
def fit_surrogate(scores: np.ndarray, y: np.ndarray, maxiter: int = 200) -> np.ndarray:
    """(M,) softmax weights minimising the mean logistic loss of ``a * (S @ w) + b``.

    ``scores`` (R, M) float, ``y`` (R,) bool; ``a > 0`` and ``b`` are fitted too.
    Deterministic.
    """
    from scipy.optimize import minimize  # scipy and threadpoolctl load at first use, not at import
    from scipy.special import expit, softmax
    from threadpoolctl import threadpool_limits

    S = np.asarray(scores, dtype=np.float32)
    yf = np.asarray(y, dtype=np.float64)
    R, M = S.shape
    if R == 0:
        return np.full(M, 1.0 / M)

    def loss_grad(params):
        theta, log_a, b = params[:M], params[M], params[M + 1]
        w = softmax(theta)
        a = math.exp(log_a)
        z = (S @ w.astype(np.float32)).astype(np.float64)
        u = a * z + b
        loss = np.mean(np.logaddexp(0.0, u) - yf * u)
        g_u = (expit(u) - yf) / R
        g_w = (S.T @ (a * g_u).astype(np.float32)).astype(np.float64)
        g_theta = w * (g_w - w @ g_w)
        return loss, np.concatenate([g_theta, [a * np.dot(g_u, z), g_u.sum()]])

    x0 = np.concatenate([np.zeros(M), [math.log(8.0), -4.0]])
    # One BLAS thread: the matrix-vector products are memory-bound, and threaded
    # BLAS busy-waits badly inside L-BFGS on a loaded machine (measured 8x slower).
    with threadpool_limits(limits=1, user_api="blas"):
        res = minimize(loss_grad, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})
    return softmax(res.x[:M])


def coordinate_search(scores: np.ndarray, score_fn, w0: np.ndarray, max_evals: int = 300,
                      random_state=None, step: float = 0.25, min_step: float = 1 / 512):
    """Pattern search for simplex weights maximising ``score_fn(S @ w)``.

    Returns ``(w, best_score, n_evals)``; ``w`` (M,) non-negative, sums to 1.
    ``score_fn(w0)`` is the first evaluation; only strict improvements are
    accepted, so the result scores at least as well as ``w0``.
    """
    rng = np.random.default_rng(random_state)
    w = np.asarray(w0, dtype=np.float64) / np.sum(w0)
    best = score_fn(weighted_mean(scores, w))
    n_evals = 1
    M = len(w)
    while step >= min_step and n_evals < max_evals:
        improved = False
        for m in rng.permutation(M):
            for delta in (step, -step):
                v = w.copy()
                v[m] = max(0.0, v[m] + delta)
                if v[m] == w[m] or v.sum() <= 0:
                    continue
                v /= v.sum()
                g = score_fn(weighted_mean(scores, v))
                n_evals += 1
                if g > best:
                    w, best, improved = v, g, True
                    break
                if n_evals >= max_evals:
                    break
            if n_evals >= max_evals:
                break
        if not improved:
            step /= 2
    return w, best, n_evals


def optimize_weights(cands: Candidates, y: np.ndarray, scorer: metrics.GapScorer, method: str = "hybrid",
                     max_evals: int = 300, random_state=None) -> dict:
    """Global weights for ``cands`` by ``method`` (see module doc).

    Returns ``{"weights", "gap", "n_evals", "start", "seconds"}``.
    """
    t0 = time.perf_counter()
    M = cands.n_members
    uniform = np.full(M, 1.0 / M)
    S = cands.scores
    if method == "coordinate":
        start, w0 = "uniform", uniform
    else:
        w_sur = fit_surrogate(S, y)
        if method == "surrogate":
            g = scorer(weighted_mean(S, w_sur))
            return {"weights": w_sur, "gap": g, "n_evals": 1, "start": "surrogate",
                    "seconds": time.perf_counter() - t0}
        g_sur, g_uni = scorer(weighted_mean(S, w_sur)), scorer(weighted_mean(S, uniform))
        start, w0 = ("surrogate", w_sur) if g_sur >= g_uni else ("uniform", uniform)
    w, g, n = coordinate_search(S, scorer, w0, max_evals, random_state)
    return {"weights": w, "gap": g, "n_evals": n, "start": start, "seconds": time.perf_counter() - t0}


def member_class_ap(cands: Candidates, y: np.ndarray, num_pos_per_class: np.ndarray, k: int = 20) -> np.ndarray:
    """(C, M) AP of each member for each class over its top-``k`` entries per video.

    Positives a member did not rank in its top ``k`` count as missed; ties put
    negatives first (:func:`predictions.metrics.class_ap_pooled`). 0 where a class has no positive.
    """
    out = np.zeros((cands.num_classes, cands.n_members))
    y = np.asarray(y, dtype=bool)
    for m in range(cands.n_members):  # one pooled ranking per member, vectorised over classes
        sel = np.flatnonzero((cands.ranks[:, m] >= 0) & (cands.ranks[:, m] < k))
        ap = metrics.class_ap_pooled(cands.label[sel], cands.scores[sel, m], y[sel], num_pos_per_class)
        out[:, m] = np.nan_to_num(ap, nan=0.0)
    return out


# --------------------------------------------------------------------------- combiners
#: Parameters shared by ``optimized`` and ``per-class``.
_COMMON = {"method": Choice(*METHODS), "max_evals": Num(lo=1, hi=1_000_000, integer=True),
           "k": Num(lo=1, integer=True)}


@register_combiner("optimized")
class OptimizedWeights(Combiner):
    """Global simplex weights maximising GAP@k of the fit data (see module doc).

    Fitted: ``member_weights_`` (M,), ``fit_gap_``, ``n_evals_``, ``start_``, ``fit_seconds_``.
    """

    learned = True

    def __init__(self, method: str = "hybrid", max_evals: int = 300, k: int = 20, random_state=None):
        self.method = method
        self.max_evals = max_evals
        self.k = k
        self.random_state = random_state

    _parameter_constraints = _COMMON

    def _fit(self, cands, labels, y) -> None:
        scorer = cands.scorer(labels, self.k, y)
        res = optimize_weights(cands, y, scorer, self.method, self.max_evals, self.random_state)
        self.member_weights_ = res["weights"]
        self.fit_gap_ = res["gap"]
        self.n_evals_ = res["n_evals"]
        self.start_ = res["start"]
        self.fit_seconds_ = res["seconds"]

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.member_weights_)

    def linear_weights(self) -> np.ndarray | None:
        return declared_linear(self, OptimizedWeights)

    def describe(self) -> dict:
        return {"weights": by_member(self.member_names_, self.member_weights_), "fit_gap": float(self.fit_gap_),
                "method": self.method, "start": self.start_, "n_evals": int(self.n_evals_)}


@register_combiner("per-class")
class PerClassWeights(Combiner):
    """One weight vector per class, shrunk toward the global weights (see module doc).

    Fitted: ``member_weights_`` (M,) the global weights, ``class_weights_`` (C, M)
    float32 (rows sum to 1), ``class_ap_`` (C, M), ``class_positives_`` (C,), ``fit_gap_``.
    """

    learned = True

    def __init__(self, lam: float = 20.0, method: str = "hybrid", max_evals: int = 300, k: int = 20,
                 random_state=None):
        self.lam = lam
        self.method = method
        self.max_evals = max_evals
        self.k = k
        self.random_state = random_state

    _parameter_constraints = {"lam": Num(lo=0, inf=True), **_COMMON}

    def _fit(self, cands, labels, y) -> None:
        scorer = cands.scorer(labels, self.k, y)
        res = optimize_weights(cands, y, scorer, self.method, self.max_evals, self.random_state)
        w_g = res["weights"]
        npos = np.bincount(labels.indices, minlength=cands.num_classes).astype(np.float64)
        ap = member_class_ap(cands, y, npos, self.k)
        has = npos > 0
        base = ap[has].mean(axis=0) if has.any() else np.zeros(cands.n_members)
        ratio = np.divide(ap, base, out=np.zeros_like(ap), where=base > 0)
        tilt = w_g * ratio
        tot = tilt.sum(axis=1, keepdims=True)
        fit_c = np.where(tot > 0, tilt / np.where(tot > 0, tot, 1), w_g)
        lam = float(self.lam)
        alpha = np.zeros_like(npos) if math.isinf(lam) else np.divide(
            npos, npos + lam, out=np.zeros_like(npos), where=(npos + lam) > 0)
        W = alpha[:, None] * fit_c + (1 - alpha[:, None]) * w_g
        self.member_weights_ = w_g
        self.class_weights_ = (W / W.sum(axis=1, keepdims=True)).astype(np.float32)
        self.class_ap_ = ap
        self.class_positives_ = npos.astype(np.int64)
        self.num_classes_ = cands.num_classes
        self.fit_gap_ = scorer(self._combine(cands))

    def _combine(self, cands: Candidates) -> np.ndarray:
        out = np.empty(len(cands), dtype=np.float32)
        chunk = 1 << 18
        for a in range(0, len(cands), chunk):  # bounded memory for the (chunk, M) gather
            out[a:a + chunk] = np.einsum("rm,rm->r", cands.scores[a:a + chunk],
                                         self.class_weights_[cands.label[a:a + chunk]])
        return out

    def _predict(self, cands: Candidates) -> np.ndarray:
        if cands.num_classes != self.num_classes_:
            raise InputError(f"candidates have {cands.num_classes} classes, fitted on {self.num_classes_}")
        return self._combine(cands)

    def describe(self) -> dict:
        W = self.class_weights_
        return {"weights": by_member(self.member_names_, self.member_weights_),
                "lam": float(self.lam), "fit_gap": float(self.fit_gap_),
                "classes_with_positives": int((self.class_positives_ > 0).sum()),
                "class_weights": {str(m): {"min": float(W[:, j].min()), "mean": float(W[:, j].mean()),
                                           "max": float(W[:, j].max())}
                                  for j, m in enumerate(self.member_names_)}}
