"""The one way to validate parameters: declarative constraints, one-line errors.

In the style of scikit-learn's ``_parameter_constraints``: a class (or a
function) states what each parameter accepts, and :func:`check_params`
checks the values against it up front::

    class Caruana(Combiner):
        _parameter_constraints = {
            "n_iterations": Num(lo=1, hi=100_000, integer=True),
            "bag_fraction": Num(lo=0, lo_open=True, hi=1),
            "init": Choice("empty", "best"),
        }

Rules kept everywhere: a bool is never a number (``True`` is not ``1``); NaN
is never accepted; +-inf only where ``inf=True``; integers must also fit in
int64 (``MAX_INT``) whatever ``hi`` says, so no value reaches numpy or a
library that would overflow on it; every failure is an
:class:`~predictions.errors.InputError` naming the parameter and the value.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping

import numpy as np

from .errors import InputError

__all__ = ["Num", "Choice", "Check", "check_number", "check_params", "is_integer", "MAX_INT", "MAX_SEED"]

#: Largest integer any parameter accepts (int64).
MAX_INT = 2**63 - 1
#: Largest seed accepted: every consumer (numpy, scikit-learn, xgboost, torch) takes [0, 2**32 - 1].
MAX_SEED = 2**32 - 1


def is_integer(value) -> bool:
    """True for an integral number that is not a bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Num:
    """A number in ``[lo, hi]`` (``lo_open``/``hi_open`` make a bound strict).

    ``integer``: integral values only; ``none``: None accepted; ``inf``:
    +-inf accepted (never NaN).
    """

    def __init__(self, lo=None, hi=None, *, integer: bool = False, lo_open: bool = False, hi_open: bool = False,
                 none: bool = False, inf: bool = False):
        self.lo, self.hi, self.integer = lo, hi, integer
        self.lo_open, self.hi_open, self.none, self.inf = lo_open, hi_open, none, inf

    def describe(self) -> str:
        """Plain-text description, e.g. ``integer >= 1`` or ``number in (0, 1]``."""
        kind = "integer" if self.integer else "number"
        if self.integer and self.lo == 1 and not self.lo_open:      # the common count: say it in words
            kind, bound = "a positive integer", ""
            if self.hi is not None:
                bound = f" {'<' if self.hi_open else '<='} {self.hi}"
            return kind + bound + (" or None" if self.none else "")
        if self.lo is not None and self.hi is not None:
            text = f"{kind} in {'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {self.lo}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.hi_open else '<='} {self.hi}"
        else:
            text = kind
        return text + (" or None" if self.none else "")

    def check(self, name: str, value) -> None:
        if value is None and self.none:
            return
        if self.integer:
            ok = is_integer(value) and abs(int(value)) <= MAX_INT
        else:
            ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
                  and _finite_or_inf(value, self.inf))
        if not ok:
            what = "an integer" if self.integer else "a number" if self.inf else "a finite number"
            if self.integer and is_integer(value):   # beyond int64: state the rule's own range where it has one
                what = self.describe() if (self.lo is not None or self.hi is not None) else \
                    f"an integer of at most {MAX_INT}"
                raise InputError(f"{name} must be {what}, got {_short(value)}")
            raise InputError(f"{name} must be {what}{' or None' if self.none else ''}, got {_short(value)}")
        lo_bad = self.lo is not None and (value < self.lo or (self.lo_open and value == self.lo))
        hi_bad = self.hi is not None and (value > self.hi or (self.hi_open and value == self.hi))
        if lo_bad or hi_bad:
            raise InputError(f"{name} must be {self.describe()}, got {_short(value)}")


def _finite_or_inf(value, inf_ok: bool) -> bool:
    try:
        v = float(value)
    except (OverflowError, TypeError, ValueError):
        return False
    return not math.isnan(v) and (inf_ok or not math.isinf(v))


class Choice:
    """One of a fixed set of values (compared with ``==``; bools only match bools)."""

    def __init__(self, *options):
        self.options = options

    def describe(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)

    def check(self, name: str, value) -> None:
        for option in self.options:
            if type(option) is bool or type(value) is bool:
                if value is option:
                    return
            elif isinstance(value, type(option)) and value == option:
                return
        raise InputError(f"{name} must be {self.describe()}, got {_short(value)}")


class Check:
    """A custom rule: ``fn(name, value)`` raises InputError; ``text`` describes it for help output."""

    def __init__(self, fn: Callable[[str, Any], None], text: str):
        self.fn, self.text = fn, text

    def describe(self) -> str:
        return self.text

    def check(self, name: str, value) -> None:
        self.fn(name, value)


def check_number(name: str, value, *, lo=None, hi=None, lo_open=False, hi_open=False, integer=False,
                 allow_none=False, allow_inf=False) -> None:
    """One numeric check without a constraints table (see :class:`Num`)."""
    Num(lo, hi, integer=integer, lo_open=lo_open, hi_open=hi_open, none=allow_none, inf=allow_inf).check(name, value)


def check_params(values: Mapping[str, Any] | object, constraints: Mapping[str, Any], *, prefix: str = "") -> None:
    """Check each constrained parameter of ``values`` (a mapping, or an object's attributes).

    ``constraints`` maps a name to a :class:`Num`, :class:`Choice` or
    :class:`Check`; names absent from ``values`` are skipped. ``prefix`` is
    put before each name in errors (e.g. ``"caruana: "``).
    """
    get = values.get if isinstance(values, Mapping) else (lambda n, d=None: getattr(values, n, d))
    missing = object()
    for name, rule in constraints.items():
        value = get(name, missing)
        if value is not missing:
            rule.check(prefix + name, value)
