"""Helpers shared by the schemes: per-member weight vectors (parameter rules: :mod:`predictions.params`)."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from predictions.errors import InputError
from predictions.params import Check, check_number

__all__ = ["check_number", "check_member_weights", "check_member_weights_param", "MEMBER_WEIGHTS", "declared_linear", "weighted_mean",
           "by_member"]


def check_member_weights(member_weights, n_members: int, what: str = "member_weights",
                         member_names=None) -> np.ndarray:
    """(M,) float64 weights summing to 1 from ``None`` (uniform), one number per member, or a mapping.

    A mapping ``{member name: weight}`` is matched by name against
    ``member_names`` (the fitted members, in their order): every member must
    be named exactly once. A list is one number per member in the members'
    order. InputError unless the weights are finite, non-negative and their
    sum is positive.
    """
    if member_weights is None:
        return np.full(n_members, 1.0 / n_members)
    if isinstance(member_weights, Mapping):
        if member_names is None:
            member_weights = list(member_weights.values())
        else:
            names = [str(n) for n in member_names]
            given = [str(n) for n in member_weights]
            unknown = sorted(set(given) - set(names))
            missing = [n for n in names if n not in set(given)]
            if unknown or missing:
                parts = ([f"unknown member(s) {', '.join(unknown)}"] if unknown else []) + (
                    [f"no weight for {', '.join(missing)}"] if missing else [])
                raise InputError(f"{what}: {'; '.join(parts)} (members: {', '.join(names)})")
            by_name = {str(k): v for k, v in member_weights.items()}
            member_weights = [by_name[n] for n in names]
    try:
        w = np.asarray(member_weights, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{what} must be a list of numbers or a {{member: weight}} mapping, "
                         f"got {member_weights!r}") from None
    if w.ndim != 1:
        raise InputError(f"{what} must be a list with one number per member, got {member_weights!r}")
    if len(w) != n_members:
        shown = f" ({', '.join(map(str, member_names))})" if member_names is not None else ""
        raise InputError(f"{what} must have one value per member: {n_members} members{shown}, got {len(w)} "
                         f"values")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"{what} must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def check_member_weights_param(name: str, member_weights) -> None:
    """The checks of :func:`check_member_weights` that do not need the members (fit checks the rest)."""
    if member_weights is None:
        return
    if isinstance(member_weights, Mapping):
        if not member_weights:
            raise InputError(f"{name}: the mapping names no member")
        check_member_weights(list(member_weights.values()), len(member_weights), name)
        return
    if isinstance(member_weights, (str, bytes)):
        raise InputError(f"{name} must be a list of numbers or a {{member: weight}} mapping, got {member_weights!r}")
    arr = np.asarray(member_weights, dtype=object)
    check_member_weights(member_weights, len(arr) if arr.ndim == 1 else 1, name)


#: The rule of every ``member_weights`` parameter.
MEMBER_WEIGHTS = Check(check_member_weights_param,
                       "None (uniform), a list (one weight per member, in the members' order) or "
                       "{member: weight}")


def weighted_mean(scores: np.ndarray, member_weights: np.ndarray) -> np.ndarray:
    """(R,) float32 ``scores @ member_weights`` for (R, M) float32 scores, weights summing to 1."""
    return np.asarray(scores, dtype=np.float32) @ np.asarray(member_weights, dtype=np.float32)


def by_member(member_names, values) -> dict:
    """``{member name: float(value)}``: a per-member vector as JSON-ready data."""
    return {str(m): float(x) for m, x in zip(member_names, values)}


def declared_linear(comb, cls: type) -> np.ndarray | None:
    """``comb.member_weights_`` when ``comb`` predicts as the weighted-mean scheme ``cls`` does, else None.

    For :meth:`~ensembler.base.Combiner.linear_weights`: a subclass that overrides ``_predict``,
    ``predict_scores`` or ``predict`` is not trusted to be a weighted mean.
    """
    from ..base import Combiner
    same = (type(comb)._predict is cls._predict and type(comb).predict_scores is Combiner.predict_scores
            and type(comb).predict is Combiner.predict)
    w = getattr(comb, "member_weights_", None)
    return np.asarray(w, dtype=np.float64) if same and w is not None else None
