"""The combiner interface and registry (scikit-learn style).

A combiner turns the members' scores of candidate (video, label) pairs into one
score per candidate::

    comb = create_combiner("caruana", random_state=0)
    comb.fit(cands_heldout, labels_heldout)       # learned schemes use labels
    score = comb.predict_scores(cands_test)       # (R,) float in [0, 1]
    preds = cands_test.to_predictions(score, k=20)

Subclasses set ``name``, ``learned`` (whether ``fit`` looks at labels, which
makes the build cross-fit them) and implement ``_fit`` and ``_predict``.
Parameters are plain constructor arguments stored unchanged (as in
scikit-learn) and validated by ``_validate`` at the start of ``fit``. Fitted
state lives in attributes ending with ``_``; ``describe()`` returns it as JSON-
ready data for the build record.
"""
from __future__ import annotations

import inspect
from typing import Callable, ClassVar

import numpy as np

from predictions.errors import InputError
from predictions.types import Labels

from .candidates import Candidates


class NotFittedError(InputError):
    """predict called before fit."""


class Combiner:
    """Base class of every ensembling scheme; see the module docstring."""

    name: ClassVar[str] = ""
    learned: ClassVar[bool] = False

    # --- public API -------------------------------------------------------
    def fit(self, cands: Candidates, labels: Labels | None = None) -> "Combiner":
        """Fit on candidates of held-out videos; ``labels`` aligned with ``cands.ids``."""
        self._validate()
        if self.learned:
            if labels is None:
                raise InputError(f"combiner {self.name!r} needs labels of the held-out videos")
            y = cands.targets(labels)
        else:
            y = None
        self._fit(cands, labels, y)
        self.members_ = cands.members
        self.n_members_ = cands.n_members
        return self

    def predict_scores(self, cands: Candidates) -> np.ndarray:
        """(R,) combined score of each candidate, in [0, 1]."""
        if not hasattr(self, "members_"):
            raise NotFittedError(f"combiner {self.name!r} is not fitted yet")
        if tuple(cands.members) != tuple(self.members_):
            raise InputError(f"members {list(cands.members)} differ from the fitted members {list(self.members_)}")
        out = np.asarray(self._predict(cands), dtype=np.float32)
        if out.shape != (len(cands),):
            raise AssertionError(f"{type(self).__name__}._predict returned shape {out.shape}, expected ({len(cands)},)")
        return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)

    def get_params(self) -> dict:
        """Constructor parameters and their current values."""
        sig = inspect.signature(type(self).__init__)
        return {p: getattr(self, p) for p in list(sig.parameters)[1:] if hasattr(self, p)}

    def describe(self) -> dict:
        """JSON-ready fitted state: at least ``weights`` per member when the scheme has them."""
        return {}

    # --- for subclasses ---------------------------------------------------
    def _validate(self) -> None:
        """Raise InputError for invalid parameters (called first thing in fit)."""

    def _fit(self, cands: Candidates, labels: Labels | None, y: np.ndarray | None) -> None:
        """Learn from the (R, M) member scores and, if ``learned``, the (R,) targets ``y``."""

    def _predict(self, cands: Candidates) -> np.ndarray:
        raise NotImplementedError


_COMBINERS: dict[str, type[Combiner]] = {}


def register_combiner(name: str) -> Callable[[type[Combiner]], type[Combiner]]:
    """Class decorator: make a Combiner available as ``ensemble build --weights=NAME``."""

    def deco(cls: type[Combiner]) -> type[Combiner]:
        if name in _COMBINERS:
            raise ValueError(f"combiner {name!r} registered twice")
        cls.name = name
        _COMBINERS[name] = cls
        return cls

    return deco


def _load_builtin() -> None:
    from . import schemes  # noqa: F401  (registers the built-in combiners)


def list_combiners() -> list[str]:
    _load_builtin()
    return sorted(_COMBINERS)


def create_combiner(name: str, **params) -> Combiner:
    """Build combiner ``name``; unknown names or parameters give a one-line InputError."""
    _load_builtin()
    if name not in _COMBINERS:
        raise InputError(f"unknown weighting scheme {name!r}; known: {', '.join(sorted(_COMBINERS))}")
    cls = _COMBINERS[name]
    known = list(inspect.signature(cls.__init__).parameters)[1:]
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise InputError(f"scheme {name!r} has no parameter(s) {', '.join(unknown)}; parameters: {', '.join(known)}")
    return cls(**params)
