"""Stacking: a second-level model scores each candidate (video, label) pair.

As the later YouTube-8M teams did, the model does not see the (huge, sparse)
label space: every candidate becomes one row of a small feature table, the
target is "this label is a true label of this video", and the model's
probability is the candidate's combined score. Labels no member proposed stay
out of the candidates and so score 0.

Features of a candidate (:func:`stacking_features`, pure numpy), for M members:

* ``score_<m>``   member ``m``'s score, 0 where ``m`` did not propose the label;
* ``rank_<m>``    its 0-based rank in ``m``'s list; a missing label gets rank
  ``k_m`` (one past the end of ``m``'s list, ``k_m`` learnt at fit) so the
  feature stays numeric and monotone for both the trees and the linear model
  (we do not use NaN: LogisticRegression cannot take it);
* ``present_<m>`` 1.0 if ``m`` proposed the label, else 0.0 (``lr`` only: for
  the trees it repeats ``rank_<m> == k_m`` and costs fit time);
* ``n_present``   how many members propose it;
* ``score_mean``, ``score_max``, ``score_std``  over the M members (absent = 0,
  so ``score_mean`` is the plain average ensemble);
* ``mean_rank``   0-based rank of ``score_mean`` among the video's candidates;
* ``log_class_prior``  log of the class's smoothed positive rate (share of
  videos that carry the class), estimated on the FIT data only and stored as
  ``class_prior_``; while fitting, each training row gets the prior of the
  other ``prior_folds`` folds' videos (out-of-fold target encoding), so the
  model cannot learn from a prior that already contains the row's own label;
* ``vertical``    only when ``verticals`` is given (a vocabulary file, see
  :func:`predictions.vocabulary.load_vocabulary`, or (C,) non-negative ints):
  the class's vertical, a categorical feature for xgboost, one-hot for ``lr``.
"""
from __future__ import annotations

import os
import re

import numpy as np

from predictions.errors import InputError
from predictions.extras import check_available, require
from predictions.params import MAX_SEED, Check, Choice, Num, is_integer
from predictions.types import Labels
from predictions.vocabulary import class_verticals

from ..base import Combiner, register_combiner
from ..candidates import Candidates
from ..distributed import active_client

_EPS = 1e-9


def _import_xgboost():
    """Import xgboost with OpenMP threads that sleep, not spin, while idle.

    xgboost ships its own libgomp, which reads ``OMP_WAIT_POLICY`` when it
    loads; with the default (spinning) policy a fit with all cores on a busy
    machine ran 5-20x slower than with one thread. A value set by the user wins.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return require("xgboost", "xgboost", what="the xgboost stacking scheme")


# --------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------
def missing_ranks(cands: Candidates) -> np.ndarray:
    """(M,) int: rank given to a label member ``m`` did not propose (its list length)."""
    if len(cands) == 0:
        return np.ones(cands.n_members, dtype=np.int64)
    return cands.ranks.max(axis=0).astype(np.int64) + 1


def class_priors(labels: Labels, alpha: float = 10.0) -> np.ndarray:
    """(C,) float64 smoothed share of videos carrying each class.

    ``(pos_c + alpha * p0) / (n + alpha)`` where ``p0`` is the mean rate over
    all classes, so an unseen class gets a small non-zero prior.
    """
    n, C = len(labels), labels.num_classes
    pos = np.bincount(labels.indices, minlength=C).astype(np.float64)
    p0 = pos.sum() / max(n * C, 1)
    return (pos + alpha * p0) / (n + alpha)


def oof_class_priors(labels: Labels, row: np.ndarray, label: np.ndarray, n_folds: int, alpha: float,
                     random_state) -> np.ndarray:
    """(R,) float64 prior of class ``label[j]`` for video ``row[j]``, estimated without that video.

    Videos are split into ``n_folds`` random folds (deterministic from
    ``random_state``); a video's priors are :func:`class_priors` of the other
    folds' videos (out-of-fold target encoding).
    """
    n, C = len(labels), labels.num_classes
    if n_folds < 2 or n < n_folds:
        return class_priors(labels, alpha)[label]
    fold = np.random.default_rng(random_state).permutation(n) % n_folds
    per_fold = np.bincount(fold[labels.rows()] * C + labels.indices, minlength=n_folds * C)
    per_fold = per_fold.reshape(n_folds, C).astype(np.float64)
    n_fold = np.bincount(fold, minlength=n_folds).astype(np.float64)
    pos = per_fold.sum(0)[None, :] - per_fold                # (F, C) positives outside each fold
    n_out = (n - n_fold)[:, None]
    p0 = pos.sum(1, keepdims=True) / (n_out * C)
    table = (pos + alpha * p0) / (n_out + alpha)             # (F, C)
    return table[fold[row], label]


def stacking_features(cands: Candidates, *, missing_rank: np.ndarray | None = None,
                      class_prior: np.ndarray | None = None, verticals: np.ndarray | None = None,
                      present_flags: bool = True) -> tuple[np.ndarray, list[str]]:
    """Feature table of the candidates (see the module docstring).

    Parameters
    ----------
    cands : R candidates of M members.
    missing_rank : (M,) rank of an absent label per member; default :func:`missing_ranks`.
    class_prior : (C,) per-class prior, or (R,) per-candidate prior already
        gathered; ``None`` omits the ``log_class_prior`` feature.
    verticals : (C,) int vertical of each class, or a vocabulary file; ``None`` omits the feature.
    present_flags : include the ``present_<m>`` columns (trees do not need them:
        ``rank_<m> == k_m`` already says the label is absent).

    Returns
    -------
    X : (R, F) float32.
    names : F feature names.
    """
    R, M = cands.scores.shape
    P = M if present_flags else 0
    members = cands.member_names
    names = ([f"score_{m}" for m in members] + [f"rank_{m}" for m in members] + [f"present_{m}" for m in members][:P]
             + ["n_present", "score_mean", "score_max", "score_std", "mean_rank"])
    F = 2 * M + P + 5 + (class_prior is not None) + (verticals is not None)
    X = np.empty((R, F), dtype=np.float32)
    s = cands.scores
    X[:, :M] = s
    mr = missing_ranks(cands) if missing_rank is None else np.asarray(missing_rank)
    X[:, M:2 * M] = np.where(cands.present, cands.ranks, mr[None, :].astype(np.int32))
    j = 2 * M
    if present_flags:
        X[:, j:j + M] = cands.present
        j += M
    X[:, j] = cands.present.sum(axis=1)
    mean = s.mean(axis=1, dtype=np.float64)
    X[:, j + 1] = mean
    X[:, j + 2] = s.max(axis=1) if M else 0.0
    X[:, j + 3] = s.std(axis=1, dtype=np.float64)
    X[:, j + 4] = _rank_within_video(cands.row, mean, cands.label)
    j += 5
    if class_prior is not None:
        prior = np.asarray(class_prior, dtype=np.float64)
        if prior.shape == (cands.num_classes,):
            prior = prior[cands.label]
        elif prior.shape != (R,):
            raise InputError(f"class_prior must have shape ({cands.num_classes},) or ({R},), got {prior.shape}")
        X[:, j] = np.log(np.maximum(prior, _EPS))
        names.append("log_class_prior")
        j += 1
    if verticals is not None:
        X[:, j] = class_verticals(verticals, cands.num_classes)[cands.label]
        names.append("vertical")
    return X, names


def monotone_directions(names: list[str]) -> list[int]:
    """xgboost monotone constraint of each feature: +1 where more is never worse (a member's score,
    ``n_present``, ``score_mean``, ``score_max``), -1 for ranks (``rank_<m>``, ``mean_rank``), else 0."""
    def direction(name: str) -> int:
        if name.startswith(("score_", "present_")) and name != "score_std" or name == "n_present":
            return 1
        if name.startswith("rank_") or name == "mean_rank":
            return -1
        return 0
    return [direction(n) for n in names]


def _split_videos(n_videos: int, fraction: float, random_state) -> np.ndarray:
    """(n_videos,) bool: the videos held out for early stopping (at least one, never all)."""
    n_val = min(n_videos - 1, max(1, int(round(fraction * n_videos))))
    held = np.zeros(n_videos, dtype=bool)
    held[np.random.default_rng(random_state).permutation(n_videos)[:n_val]] = True
    return held


def _rank_within_video(row: np.ndarray, score: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(R,) 0-based rank of each candidate's score within its video (ties by label id)."""
    order = np.lexsort((label, -score, row))
    rows = row[order]
    starts = np.searchsorted(rows, rows, side="left")
    rank = np.empty(len(row), dtype=np.int64)
    rank[order] = np.arange(len(rows)) - starts
    return rank


# --------------------------------------------------------------------------
# combiners
# --------------------------------------------------------------------------
def _check_prior_folds(name: str, value) -> None:
    if not (is_integer(value) and (value == 0 or 2 <= value <= 1000)):
        raise InputError(f"{name} must be 0 (in-sample priors) or an integer in [2, 1000], got {value!r}")


def _check_n_jobs(name: str, value) -> None:
    if value is not None and not (is_integer(value) and value != 0 and abs(value) <= 4096):
        raise InputError(f"{name} must be None or a non-zero integer (-1: all cores), got {value!r}")


def _check_device(name: str, value) -> None:
    if not (value in ("auto", "cpu", "cuda", "gpu") or (isinstance(value, str) and re.fullmatch(r"cuda:\d+", value))):
        raise InputError(f"{name} must be auto, cpu or cuda[:N], got {value!r}")


class _Stacker(Combiner):
    """Shared feature handling of the stacking combiners (fit-time priors, verticals).

    Fitted: ``verticals_`` (C,) int64 or None (``verticals`` resolved: a vocabulary
    file is read at fit), ``missing_rank_``, ``class_prior_``, ``feature_names_``.
    """

    learned = True
    _present_flags = True        # include the present_<m> columns

    _parameter_constraints = {
        "class_prior": Choice(True, False),
        "prior_alpha": Num(lo=0, lo_open=True, hi=1e12),
        "prior_folds": Check(_check_prior_folds, "0 (in-sample priors) or an integer in [2, 1000]"),
        "random_state": Num(lo=0, hi=MAX_SEED, integer=True, none=True),
    }

    def _train_features(self, cands: Candidates, labels: Labels) -> np.ndarray:
        labels = labels.reindex(cands.ids)
        self.verticals_ = None if self.verticals is None else class_verticals(self.verticals, cands.num_classes)
        self.missing_rank_ = missing_ranks(cands)
        self.class_prior_ = class_priors(labels, self.prior_alpha)
        if not self.class_prior:
            prior = None
        elif self.prior_folds >= 2:
            prior = oof_class_priors(labels, cands.row, cands.label, self.prior_folds, self.prior_alpha,
                                     self.random_state)
        else:
            prior = self.class_prior_
        X, self.feature_names_ = stacking_features(cands, missing_rank=self.missing_rank_,
                                                   class_prior=prior, verticals=self.verticals_,
                                                   present_flags=self._present_flags)
        return X

    def _features(self, cands: Candidates) -> np.ndarray:
        if len(self.class_prior_) != cands.num_classes:
            raise InputError(f"candidates have {cands.num_classes} classes, the combiner was fitted "
                             f"on {len(self.class_prior_)}")
        X, _ = stacking_features(cands, missing_rank=self.missing_rank_,
                                 class_prior=self.class_prior_ if self.class_prior else None,
                                 verticals=self.verticals_, present_flags=self._present_flags)
        return X

    def _constant(self, y: np.ndarray) -> bool:
        """Degenerate target (all one class): predict its rate, fit nothing."""
        if len(y) == 0 or y.all() or not y.any():
            self.constant_ = float(y.mean()) if len(y) else 0.0
            return True
        self.constant_ = None
        return False


def _fit_on_dask(client, xgboost, params: dict, X: np.ndarray, y: np.ndarray, eval_set=None):
    """Train through xgboost's Dask interface; return an equivalent local XGBClassifier."""
    import dask.array as da
    from xgboost import dask as dxgb

    n_workers = max(1, len(client.scheduler_info().get("workers", {})))

    def darr(X, y):
        rows = max(1, -(-len(X) // n_workers))
        return da.from_array(X, chunks=(rows, X.shape[1])), da.from_array(y.astype(np.int8), chunks=rows)

    model = dxgb.DaskXGBClassifier(**params)
    model.client = client
    model.fit(*darr(X, y), eval_set=None if eval_set is None else [darr(*eval_set)], verbose=False)
    local = xgboost.XGBClassifier(**params)
    local.load_model(bytearray(model.get_booster().save_raw("ubj")))
    return local


@register_combiner("xgboost")
class XGBoostStacker(_Stacker):
    """Gradient-boosted trees (xgboost ``binary:logistic``) on the candidate features.

    The defaults were chosen by nested measurement (docs/python-api.md,
    "Choosing the stacker"): shallow trees (depth 3), a floor on the hessian
    per leaf (``min_child_weight``) and L2 shrinkage (``reg_lambda``), and the
    number of trees found by early stopping on ``validation_fraction`` of the
    fit videos (held out by whole videos, inside whatever data ``fit`` gets:
    inside each training fold of a cross-fit). ``early_stopping_rounds=None``
    trains ``n_estimators`` trees on all fit videos. ``monotone=True`` adds
    monotone constraints (a member's score can only raise the combined score,
    its rank only lower it; see :func:`monotone_directions`): measured 0.001-0.002
    GAP lower on real predictions, so off by default.

    ``device="auto"`` picks ``"cuda"`` when xgboost is built with CUDA and a GPU
    is visible, else ``"cpu"``. ``n_jobs=None`` uses all cores. The trees do
    not get the ``present_<m>`` columns (``rank_<m>`` already encodes absence),
    which saves a third of the fit time with 16 members.

    Fitted (besides the shared ones): ``model_``, ``device_``, ``n_trees_``
    (trees used at predict time).
    """

    _present_flags = False

    def __init__(self, n_estimators=1000, max_depth=3, learning_rate=0.05, subsample=0.8,
                 colsample_bytree=0.8, min_child_weight=10.0, reg_lambda=10.0, early_stopping_rounds=50,
                 validation_fraction=0.2, monotone=False, tree_method="hist", max_bin=64, n_jobs=None,
                 random_state=0, device="auto", verticals=None, class_prior=True, prior_alpha=10.0, prior_folds=5):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.monotone = monotone
        self.tree_method = tree_method
        self.max_bin = max_bin
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.device = device
        self.verticals = verticals
        self.class_prior = class_prior
        self.prior_alpha = prior_alpha
        self.prior_folds = prior_folds

    _parameter_constraints = {
        **_Stacker._parameter_constraints,
        "n_estimators": Num(lo=1, hi=100_000, integer=True), "max_depth": Num(lo=1, hi=64, integer=True),
        "max_bin": Num(lo=2, hi=65_536, integer=True), "learning_rate": Num(lo=0, lo_open=True, hi=10),
        "subsample": Num(lo=0, lo_open=True, hi=1), "colsample_bytree": Num(lo=0, lo_open=True, hi=1),
        "min_child_weight": Num(lo=0, hi=1e12), "reg_lambda": Num(lo=0, hi=1e12),
        "early_stopping_rounds": Num(lo=1, hi=100_000, integer=True, none=True),
        "validation_fraction": Num(lo=0, lo_open=True, hi=0.5), "monotone": Choice(True, False),
        "tree_method": Choice("hist", "approx", "exact"), "device": Check(_check_device, "auto, cpu or cuda[:N]"),
        "n_jobs": Check(_check_n_jobs, "None or a non-zero integer (-1: all cores)"),
    }

    def _check(self) -> None:
        super()._check()
        check_available("xgboost", "xgboost", what="the xgboost stacking scheme")   # before any input is read

    def _resolve_device(self) -> str:
        if self.device != "auto":
            return self.device
        import shutil

        xgboost = _import_xgboost()
        cuda = bool(xgboost.build_info().get("USE_CUDA"))
        return "cuda" if cuda and shutil.which("nvidia-smi") else "cpu"

    def _fit(self, cands, labels, y) -> None:
        xgboost = _import_xgboost()
        X = self._train_features(cands, labels)
        self.device_ = self._resolve_device()
        if self._constant(y):
            self.model_, self.n_trees_ = None, 0
            return
        ftypes = ["q"] * X.shape[1]
        if self.verticals_ is not None:
            ftypes[-1] = "c"
        n_jobs = self.n_jobs
        if n_jobs is not None and n_jobs < 0:
            n_jobs = max(1, (os.cpu_count() or 1) + 1 + n_jobs)   # joblib convention: -1 = all cores
        params = dict(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate,
            subsample=self.subsample, colsample_bytree=self.colsample_bytree,
            min_child_weight=float(self.min_child_weight), reg_lambda=float(self.reg_lambda),
            tree_method=self.tree_method, max_bin=self.max_bin, random_state=self.random_state, device=self.device_,
            objective="binary:logistic", eval_metric="logloss", feature_types=ftypes,
            enable_categorical=self.verticals_ is not None)
        if self.monotone:
            params["monotone_constraints"] = tuple(monotone_directions(self.feature_names_))
        eval_set = None
        if self.early_stopping_rounds is not None and cands.n_videos >= 2:
            # early stopping on videos held out of the fit data (whole videos, so no label leaks in)
            held = _split_videos(cands.n_videos, self.validation_fraction, self.random_state)[cands.row]
            val_y = y[held]
            if val_y.any() and not val_y.all() and y[~held].any() and not y[~held].all():
                params["early_stopping_rounds"] = int(self.early_stopping_rounds)
                eval_set = (X[held], val_y)
                X, y = X[~held], y[~held]
        client = active_client()
        if client is None:
            self.model_ = xgboost.XGBClassifier(n_jobs=n_jobs, **params)
            self.model_.fit(X, y.astype(np.int8), verbose=False,
                            eval_set=None if eval_set is None else [(eval_set[0], eval_set[1].astype(np.int8))])
        else:
            self.model_ = _fit_on_dask(client, xgboost, params, X, y, eval_set)
        best = getattr(self.model_, "best_iteration", None) if eval_set is not None else None
        self.n_trees_ = int(best) + 1 if best is not None else int(self.n_estimators)

    def _predict(self, cands: Candidates) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(cands), self.constant_, dtype=np.float32)
        if len(cands) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.model_.predict_proba(self._features(cands), iteration_range=(0, self.n_trees_))[:, 1]

    def describe(self) -> dict:
        out = {"features": list(getattr(self, "feature_names_", []))}
        if getattr(self, "model_", None) is not None:
            gain = self.model_.get_booster().get_score(importance_type="gain")
            out["gain"] = {name: float(gain.get(f"f{i}", 0.0)) for i, name in enumerate(out["features"])}
            out["device"] = self.device_
            out["n_trees"] = self.n_trees_
        return out


@register_combiner("lr")
class LogisticStacker(_Stacker):
    """Logistic regression on the standardised candidate features (verticals one-hot)."""

    def __init__(self, C=1.0, max_iter=1000, random_state=0, verticals=None, class_prior=True, prior_alpha=10.0,
                 prior_folds=5):
        self.C = C
        self.max_iter = max_iter
        self.random_state = random_state
        self.verticals = verticals
        self.class_prior = class_prior
        self.prior_alpha = prior_alpha
        self.prior_folds = prior_folds

    _parameter_constraints = {**_Stacker._parameter_constraints, "C": Num(lo=0, lo_open=True, hi=1e12),
                              "max_iter": Num(lo=1, hi=1_000_000, integer=True)}

    def _design(self, X: np.ndarray) -> np.ndarray:
        """Standardise numeric columns; one-hot the vertical (last column) when present."""
        if self.verticals_ is None:
            num, vert = X, None
        else:
            num, vert = X[:, :-1], X[:, -1].astype(np.int64)
        Z = (num - self.mean_) / self.scale_
        if vert is not None:
            onehot = np.zeros((len(X), self.n_verticals_), dtype=np.float32)
            ok = vert < self.n_verticals_
            onehot[np.flatnonzero(ok), vert[ok]] = 1.0
            Z = np.hstack([Z, onehot])
        return Z

    def _fit(self, cands, labels, y) -> None:
        from sklearn.linear_model import LogisticRegression

        X = self._train_features(cands, labels)
        num = X if self.verticals_ is None else X[:, :-1]
        self.mean_ = num.mean(axis=0, dtype=np.float64).astype(np.float32)
        sd = num.std(axis=0, dtype=np.float64)
        self.scale_ = np.where(sd > 0, sd, 1.0).astype(np.float32)
        self.n_verticals_ = 0 if self.verticals_ is None else int(np.max(self.verticals_)) + 1
        if self._constant(y):
            self.model_ = None
            return
        self.model_ = LogisticRegression(C=self.C, max_iter=self.max_iter, random_state=self.random_state)
        self.model_.fit(self._design(X), y)

    def _predict(self, cands: Candidates) -> np.ndarray:
        if self.model_ is None:
            return np.full(len(cands), self.constant_, dtype=np.float32)
        if len(cands) == 0:
            return np.zeros(0, dtype=np.float32)
        return self.model_.predict_proba(self._design(self._features(cands)))[:, 1]

    def describe(self) -> dict:
        names = list(getattr(self, "feature_names_", []))
        out = {"features": names}
        if getattr(self, "model_", None) is not None:
            if self.verticals_ is not None:
                names = names[:-1] + [f"vertical={v}" for v in range(self.n_verticals_)]
            out["coef"] = {n: float(c) for n, c in zip(names, self.model_.coef_[0])}
            out["intercept"] = float(self.model_.intercept_[0])
        return out
