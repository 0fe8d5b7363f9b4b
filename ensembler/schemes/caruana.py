"""Caruana et al. (2004) ensemble selection: greedy forward selection with replacement.

:class:`EnsembleSelection` is the pure-numpy algorithm (as in AutoGluon's
``EnsembleSelection``): start from an empty ensemble; at each of
``n_iterations`` steps add the member (repeats allowed) whose addition
maximises ``score_fn`` of the running mean; ties are broken at random with
``random_state``. The best prefix of the trajectory is kept and the weights
are each member's share of it. With ``bagging_rounds > 0`` the selection runs
on that many random subsets of ``bag_fraction`` of the members and the weights
are averaged.

The ``caruana`` combiner runs it with ``score_fn`` = GAP@k of the fit
candidates (:meth:`Candidates.scorer`, equal to :meth:`Candidates.gap`).
"""
from __future__ import annotations

import numpy as np

from predictions.errors import InputError

from ..base import Combiner, register_combiner
from ..candidates import Candidates
from predictions.params import Num, check_params

from .common import by_member, declared_linear, weighted_mean

__all__ = ["EnsembleSelection", "CaruanaSelection"]


class EnsembleSelection:
    """Greedy forward ensemble selection with replacement.

    Parameters
    ----------
    n_iterations : members added (with replacement), >= 1.
    bagging_rounds : 0 for plain selection, else the number of random member subsets.
    bag_fraction : share of the members in each bag, in (0, 1] (at least one member).
    random_state : seed or Generator, for tie breaking and bags.

    Fitted attributes
    -----------------
    weights_ : (M,) float64, sums to 1.
    trajectory_ : list of (member index, score after adding it); with bagging,
        that of the bag whose best prefix scored highest.
    best_size_ : length of the kept prefix of ``trajectory_``.
    best_score_ : score of that prefix.
    bags_ : with bagging, one dict per bag ``{"members", "trajectory", "best_size", "weights"}``.
    """

    def __init__(self, n_iterations: int = 50, bagging_rounds: int = 0, bag_fraction: float = 0.5,
                 random_state=None):
        self.n_iterations = n_iterations
        self.bagging_rounds = bagging_rounds
        self.bag_fraction = bag_fraction
        self.random_state = random_state

    #: Largest ``n_iterations`` (and ``bagging_rounds``): a selection's weights are counts over its
    #: steps, so beyond this many steps they change by less than 1e-5; more only costs time.
    MAX_ITERATIONS = 100_000
    _parameter_constraints = {"n_iterations": Num(lo=1, hi=MAX_ITERATIONS, integer=True),
                              "bagging_rounds": Num(lo=0, hi=10_000, integer=True),
                              "bag_fraction": Num(lo=0, lo_open=True, hi=1)}

    def _validate(self) -> None:
        check_params(self, self._parameter_constraints)

    def fit(self, score_matrix: np.ndarray, score_fn) -> "EnsembleSelection":
        """Select from the (R, M) member scores; ``score_fn(combined (R,)) -> float``, higher is better."""
        self._validate()
        if not callable(score_fn):
            raise InputError("score_fn must be callable")
        S = np.asarray(score_matrix)
        if S.ndim != 2 or S.shape[1] == 0:
            raise InputError(f"score_matrix must be (R, M) with M >= 1, got shape {S.shape}")
        rng = np.random.default_rng(self.random_state)
        columns = np.ascontiguousarray(S.T)  # (M, R): one contiguous row per member
        M = S.shape[1]
        if self.bagging_rounds == 0:
            traj, best, w = _select(columns, np.arange(M), score_fn, self.n_iterations, rng)
            self.trajectory_, self.best_size_, self.best_score_, self.weights_ = traj, best, traj[best - 1][1], w
            return self
        size = max(1, int(round(self.bag_fraction * M)))
        self.bags_, total = [], np.zeros(M)
        for _ in range(self.bagging_rounds):
            members = np.sort(rng.choice(M, size=size, replace=False))
            traj, best, w = _select(columns, members, score_fn, self.n_iterations, rng)
            total += w
            self.bags_.append({"members": members.tolist(), "trajectory": traj, "best_size": best,
                               "weights": w})
        top = max(self.bags_, key=lambda b: b["trajectory"][b["best_size"] - 1][1])
        self.trajectory_, self.best_size_ = top["trajectory"], top["best_size"]
        self.best_score_ = self.trajectory_[self.best_size_ - 1][1]
        self.weights_ = total / total.sum()
        return self


def _select(columns: np.ndarray, allowed: np.ndarray, score_fn, n_iterations: int, rng):
    """One greedy run over members ``allowed``; returns (trajectory, best_size, weights (M,))."""
    M, R = columns.shape
    running = np.zeros(R, dtype=np.float64)
    trajectory = []
    for t in range(1, n_iterations + 1):
        scores = np.array([score_fn((running + columns[m]) / t) for m in allowed], dtype=np.float64)
        ties = np.flatnonzero(scores == scores.max())
        j = ties[0] if len(ties) == 1 else rng.choice(ties)
        m = int(allowed[j])
        running += columns[m]
        trajectory.append((m, float(scores[j])))
    path = np.array([s for _, s in trajectory])
    best_size = int(np.argmax(path)) + 1  # first maximum: the smallest best ensemble
    counts = np.bincount([m for m, _ in trajectory[:best_size]], minlength=M)
    return trajectory, best_size, counts / best_size


@register_combiner("caruana")
class CaruanaSelection(Combiner):
    """Ensemble selection maximising GAP@k of the fit data; weighted mean of member scores.

    Fitted: ``member_weights_`` (M,), ``selection_`` (the fitted :class:`EnsembleSelection`).
    """

    learned = True

    def __init__(self, n_iterations: int = 50, bagging_rounds: int = 0, bag_fraction: float = 0.5,
                 k: int = 20, random_state=None):
        self.n_iterations = n_iterations
        self.bagging_rounds = bagging_rounds
        self.bag_fraction = bag_fraction
        self.k = k
        self.random_state = random_state

    def _selector(self) -> EnsembleSelection:
        return EnsembleSelection(self.n_iterations, self.bagging_rounds, self.bag_fraction, self.random_state)

    _parameter_constraints = {**EnsembleSelection._parameter_constraints, "k": Num(lo=1, integer=True)}

    def _fit(self, cands, labels, y) -> None:
        scorer = cands.scorer(labels, self.k, y)
        self.selection_ = self._selector().fit(cands.scores, scorer)
        self.member_weights_ = self.selection_.weights_

    def _predict(self, cands: Candidates) -> np.ndarray:
        return weighted_mean(cands.scores, self.member_weights_)

    def linear_weights(self) -> np.ndarray | None:
        return declared_linear(self, CaruanaSelection)

    def describe(self) -> dict:
        sel, names = self.selection_, self.member_names_
        out = {"weights": by_member(names, self.member_weights_),
               "trajectory": [{"member": str(names[m]), "gap": s} for m, s in sel.trajectory_],
               "best_size": int(sel.best_size_), "best_gap": float(sel.best_score_)}
        if self.bagging_rounds:
            out["bags"] = [{"members": [str(names[m]) for m in b["members"]], "best_size": int(b["best_size"])}
                           for b in sel.bags_]
        return out
