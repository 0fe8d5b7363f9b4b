"""The combiner interface and registry (scikit-learn conventions).

A combiner turns the members' scores of candidate (video, label) pairs into one
score per candidate::

    comb = create_combiner("caruana", random_state=0)
    comb.fit(members_heldout, labels_heldout)     # learned schemes use labels
    pred = comb.predict(members_test, k=20)       # Predictions: top 20 per video
    score = comb.predict_scores(cands_test)       # (R,) float32 in [0, 1], one per candidate

``members`` are the members' predictions of the same videos: a list or dict of
:class:`~predictions.types.Predictions`, a list of ``(n_videos, n_classes)``
score arrays, or :class:`~ensembler.candidates.Candidates`; labels are
:class:`~predictions.types.Labels` or a 0/1 ``(n_videos, n_classes)`` matrix
(see :mod:`ensembler.inputs`).

As in scikit-learn, parameters are plain constructor arguments stored
unchanged; ``get_params``/``set_params`` read and set them, so
``sklearn.base.clone`` works; they are validated by ``_validate`` at the start
of ``fit`` (InputError). Fitted state lives in attributes ending with ``_``;
using a combiner before ``fit`` is a :class:`NotFittedError` (a programming
error, not bad input). ``describe()`` returns the fitted state as JSON-ready
data for the build record.

Subclasses set ``learned`` (whether ``fit`` looks at labels, which makes the
build cross-fit them) and implement ``_fit`` and ``_predict``;
:func:`register_combiner` gives them a scheme name. Parameters are checked
declaratively: ``_parameter_constraints`` maps a parameter to a rule of
:mod:`predictions.params` (checked by ``_validate`` before the scheme's own
extra checks in ``_check``). A scheme whose score is a weighted mean of the
member scores says so by overriding :meth:`Combiner.linear_weights`
(``ensemble build`` then streams it through the dense fast path).

Combiners are scikit-learn estimators as far as sklearn can tell:
``sklearn.base.clone``, ``get_params``/``set_params``, ``is_classifier``
(``_estimator_type`` and ``__sklearn_tags__``, the latter importing
scikit-learn only when scikit-learn itself asks) and ``score(members, labels)``
(GAP@20).
"""
from __future__ import annotations

import copy
import inspect
import warnings
from typing import Callable, ClassVar

import numpy as np

from predictions.errors import InputError
from predictions.params import MAX_SEED, Check, Num, check_params
from predictions.types import Labels, Predictions

from .candidates import Candidates
from .inputs import as_candidates, as_labels

__all__ = ["Combiner", "NotFittedError", "register_combiner", "combiner_class", "list_combiners",
           "create_combiner"]


class NotFittedError(ValueError, AttributeError):
    """A combiner was used before ``fit`` (a programming error; same bases as scikit-learn's)."""



def _check_seed(name: str, value) -> None:
    if value is None or isinstance(value, (np.random.Generator, np.random.RandomState)):
        return
    Num(lo=0, hi=MAX_SEED, integer=True).check(name, value)


#: Rules every combiner shares (a scheme's own ``_parameter_constraints`` win).
COMMON_CONSTRAINTS = {"random_state": Check(_check_seed, f"None, a numpy Generator or an integer in [0, {MAX_SEED}]")}

class Combiner:
    """Base class of every ensembling scheme; see the module docstring."""

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False
    #: {parameter: rule} checked by ``_validate`` (rules from :mod:`predictions.params`).
    _parameter_constraints: ClassVar[dict] = {}
    #: Fitted attributes not needed to predict, left out when the model is saved (:mod:`ensembler.persist`).
    _transient: ClassVar[tuple] = ()
    _estimator_type = "classifier"  # sklearn.base.is_classifier (scikit-learn < 1.6)

    # --- public API -------------------------------------------------------
    def fit(self, members, labels=None) -> "Combiner":
        """Fit on the members' scores of the fit (held-out) videos.

        ``labels`` (Labels or 0/1 matrix of the same videos) are required by
        learned schemes and ignored by the others.
        """
        self._validate()
        cands = as_candidates(members)
        if self.learned:
            if labels is None:
                raise InputError(f"combiner {self.name!r} needs labels of the held-out videos")
            labels = as_labels(labels, cands)
            self._fit(cands, labels, cands.targets(labels))
        else:
            self._fit(cands, None, None)
        self.member_names_ = cands.member_names
        self.n_members_ = cands.n_members
        return self

    def predict_scores(self, members) -> np.ndarray:
        """(R,) float32 combined score of each candidate of ``members``, in [0, 1]."""
        cands = self._candidates(members)
        out = np.asarray(self._predict(cands), dtype=np.float32)
        if out.shape != (len(cands),):
            raise AssertionError(f"{type(self).__name__}._predict returned shape {out.shape}, expected ({len(cands)},)")
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)

    def predict(self, members, k: int = 20) -> Predictions:
        """The ensemble's top-``k`` predictions of each video of ``members``."""
        cands = self._candidates(members)
        return cands.to_predictions(self.predict_scores(cands), k=k)

    def get_params(self, deep: bool = True) -> dict:
        """Constructor parameters and their current values (``deep``: no nested estimators here)."""
        return {p: getattr(self, p) for p in self._param_names()}

    def set_params(self, **params) -> "Combiner":
        """Set constructor parameters (validated at the next ``fit``); returns self."""
        known = self._param_names()
        for key, value in params.items():
            if key not in known:
                raise InputError(f"scheme {self.name or type(self).__name__!r} has no parameter {key!r}; "
                                 f"parameters: {', '.join(known)}")
            setattr(self, key, value)
        return self

    def clone(self) -> "Combiner":
        """A new, unfitted combiner with the same (copied) parameters."""
        return type(self)(**copy.deepcopy(self.get_params()))

    def describe(self) -> dict:
        """JSON-ready fitted state: at least ``weights`` per member when the scheme has them."""
        return {}

    def linear_weights(self) -> np.ndarray | None:
        """(M,) float64 weights when the fitted score is ``sum_m w_m s_m`` of the member scores, else None.

        The weighted-mean schemes override it; a scheme that returns weights is
        combined by the dense fast path of ``ensemble build``, so the weights
        must describe ``_predict`` exactly. A subclass that changes how it
        predicts (overriding ``predict_scores`` or ``predict``) is not linear.
        """
        return None

    def importance(self) -> dict | None:
        """``{member: importance}`` of a stacker whose model has one (None otherwise)."""
        return None

    def score(self, members, labels, k: int = 20) -> float:
        """GAP@``k`` (default 20) of the fitted ensemble on ``members`` against ``labels``."""
        from predictions.metrics import gap
        cands = self._candidates(members)
        labels = as_labels(labels, cands)
        pred = cands.to_predictions(self.predict_scores(cands), k=k)
        return float(gap(pred, labels, k=k))

    def __sklearn_tags__(self):
        """Tags for scikit-learn >= 1.6 (imported here: only scikit-learn calls this)."""
        from sklearn.utils import ClassifierTags, Tags, TargetTags
        tags = Tags(estimator_type="classifier", target_tags=TargetTags(required=self.learned))
        tags.classifier_tags = ClassifierTags(multi_label=True)
        return tags

    def __repr__(self) -> str:
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        shown = [f"{k}={_short(v)}" for k, v in self.get_params().items() if not _same(v, defaults.get(k))]
        return f"{type(self).__name__}({', '.join(shown)})"

    # --- for subclasses ---------------------------------------------------
    @classmethod
    def parameter_rules(cls) -> dict:
        """Every parameter's rule: the scheme's ``_parameter_constraints`` over the shared ones (the seed)."""
        return {**COMMON_CONSTRAINTS, **cls._parameter_constraints}

    def _validate(self) -> None:
        """Raise InputError for invalid parameters (called first thing in fit)."""
        check_params(self, self.parameter_rules(), prefix=f"{self.name or type(self).__name__}: ")
        self._check()

    def _check(self) -> None:
        """Checks beyond ``_parameter_constraints`` (parameters that depend on each other)."""

    def _fit(self, cands: Candidates, labels: Labels | None, y: np.ndarray | None) -> None:
        """Learn from the (R, M) member scores and, if ``learned``, the labels and (R,) targets ``y``."""

    def _predict(self, cands: Candidates) -> np.ndarray:
        raise NotImplementedError

    # --- internals --------------------------------------------------------
    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p.name for p in list(sig.parameters.values())[1:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]

    def _candidates(self, members) -> Candidates:
        if not hasattr(self, "member_names_"):
            raise NotFittedError(f"combiner {self.name or type(self).__name__!r} is not fitted yet: call fit first")
        cands = as_candidates(members, fitted_names=self.member_names_)
        if tuple(cands.member_names) != tuple(self.member_names_):
            raise InputError(f"members {list(cands.member_names)} differ from the fitted members "
                             f"{list(self.member_names_)}")
        return cands


def _same(value, default) -> bool:
    if value is default:
        return True
    if isinstance(value, np.ndarray) or isinstance(default, np.ndarray) or type(value) is not type(default):
        return False
    try:
        return bool(value == default)
    except (TypeError, ValueError):
        return False


def _short(value) -> str:
    if isinstance(value, np.ndarray):
        return f"array(shape={value.shape}, dtype={value.dtype})"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- registry
_COMBINERS: dict[str, type[Combiner]] = {}

#: Old parameter names still accepted by :func:`create_combiner` (``--param weights=...``).
_RENAMED = {"weights": "member_weights"}


def register_combiner(name: str) -> Callable[[type[Combiner]], type[Combiner]]:
    """Class decorator: make a Combiner available as scheme ``name`` (``ensemble build --weights=NAME``)."""

    def deco(cls: type[Combiner]) -> type[Combiner]:
        if name in _COMBINERS:
            raise ValueError(f"combiner {name!r} registered twice")
        cls.name = name
        _COMBINERS[name] = cls
        return cls

    return deco


def list_combiners() -> list[str]:
    """Names of the registered schemes, sorted."""
    return sorted(_COMBINERS)


def combiner_class(scheme: str) -> type[Combiner]:
    """The class of scheme ``scheme``; InputError naming the known ones otherwise."""
    if scheme not in _COMBINERS:
        raise InputError(f"unknown weighting scheme {scheme!r}; known: {', '.join(sorted(_COMBINERS))}")
    return _COMBINERS[scheme]


def create_combiner(scheme: str, **params) -> Combiner:
    """A new combiner of scheme ``scheme``; unknown schemes or parameters give a one-line InputError."""
    cls = combiner_class(scheme)
    known = cls._param_names()
    for old, new in _RENAMED.items():
        if old in params and new in known and new not in params:
            warnings.warn(f"parameter {old!r} of scheme {scheme!r} is now {new!r}", DeprecationWarning,
                          stacklevel=2)
            params[new] = params.pop(old)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(f"scheme {scheme!r} has no parameter(s) {', '.join(unknown)}; parameters: {', '.join(known)}")
    return cls(**params)
