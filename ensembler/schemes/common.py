"""Helpers shared by the schemes: parameter checks and per-member weight vectors."""
from __future__ import annotations

import numbers

import numpy as np

from predictions.errors import InputError

__all__ = ["check_number", "check_member_weights", "check_member_weights_param", "weighted_mean", "by_member"]


def check_number(name: str, value, *, lo=None, hi=None, lo_open=False, integer=False, allow_none=False,
                 allow_inf=False) -> None:
    """Validate a numeric parameter; InputError naming it otherwise.

    ``lo``/``hi`` bound it (``lo_open``: strictly above ``lo``); ``integer``
    requires an integral value; ``allow_none`` accepts None; ``allow_inf``
    accepts +-inf. Booleans are never numbers here.
    """
    if value is None and allow_none:
        return
    kind = numbers.Integral if integer else numbers.Real
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or np.isnan(value)
            or (np.isinf(value) and not allow_inf)):
        what = "an integer" if integer else "a number" if allow_inf else "a finite number"
        raise InputError(f"{name} must be {what}, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise InputError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise InputError(f"{name} must be <= {hi}, got {value!r}")


def check_member_weights(member_weights, n_members: int, what: str = "member_weights") -> np.ndarray:
    """(M,) float64 weights summing to 1 from ``None`` (uniform) or one number per member.

    InputError unless there is one finite non-negative number per member and
    their sum is positive.
    """
    if member_weights is None:
        return np.full(n_members, 1.0 / n_members)
    try:
        w = np.asarray(member_weights, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a list of numbers, got {member_weights!r}") from None
    if w.ndim != 1:
        raise InputError(f"{what} must be a list with one number per member, got {member_weights!r}")
    if len(w) != n_members:
        raise InputError(f"{what} must have one value per member ({n_members}), got {len(w)}")
    if not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise InputError(f"{what} must be finite, non-negative and not all zero, got {w.tolist()}")
    return w / w.sum()


def check_member_weights_param(member_weights) -> None:
    """The checks of :func:`check_member_weights` that do not need the number of members (fit checks that)."""
    if member_weights is None:
        return
    arr = np.asarray(member_weights, dtype=object)
    check_member_weights(member_weights, len(arr) if arr.ndim == 1 else 1)


def weighted_mean(scores: np.ndarray, member_weights: np.ndarray) -> np.ndarray:
    """(R,) float32 ``scores @ member_weights`` for (R, M) float32 scores, weights summing to 1."""
    return np.asarray(scores, dtype=np.float32) @ np.asarray(member_weights, dtype=np.float32)


def by_member(member_names, values) -> dict:
    """``{member name: float(value)}``: a per-member vector as JSON-ready data."""
    return {str(m): float(x) for m, x in zip(member_names, values)}
