"""The ``[search]`` table of a job: values or ranges per config option, expanded into trials.

Pure (no training): parsed by :mod:`producers.config` with the rest of a job,
run by :mod:`producers.search`. See :mod:`producers.search` for the table's form.
"""
from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from predictions.errors import InputError

_OPTIONS = ("strategy", "trials", "seed")
_MAX_GRID = 200


@dataclass(frozen=True)
class Range:
    """A numeric range sampled uniformly (or log-uniformly) by the random strategy."""

    low: float
    high: float
    log: bool = False
    integer: bool = False

    def sample(self, rng: np.random.Generator):
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        v = rng.uniform(lo, hi)
        v = math.exp(v) if self.log else v
        return int(round(v)) if self.integer else float(v)


@dataclass(frozen=True)
class SearchSpace:
    """Parsed ``[search]`` table: ``params`` maps dotted config keys to a list of values or a :class:`Range`."""

    params: dict = field(default_factory=dict)
    strategy: str = "grid"
    trials: int | None = None
    seed: int = 0

    def overrides(self) -> list[dict]:
        """The trials, in order: one ``{dotted key: value}`` dict each (deterministic for a seed)."""
        keys = sorted(self.params)
        rng = np.random.default_rng(self.seed)
        if self.strategy == "random":
            n = self.trials or 10
            return [{k: (self.params[k].sample(rng) if isinstance(self.params[k], Range)
                         else self.params[k][int(rng.integers(len(self.params[k])))]) for k in keys}
                    for _ in range(n)]
        grid = [dict(zip(keys, combo)) for combo in itertools.product(*(self.params[k] for k in keys))]
        if self.trials is not None and self.trials < len(grid):
            pick = np.sort(rng.choice(len(grid), size=self.trials, replace=False))
            grid = [grid[i] for i in pick]
        return grid


def parse_search(raw, path) -> SearchSpace:
    """Validate a ``[search]`` table (see the module docstring); InputError naming ``path``."""
    if not isinstance(raw, dict):
        raise InputError("[search] must be a table", path)
    strategy = raw.get("strategy", "grid")
    if strategy not in ("grid", "random"):
        raise InputError(f"[search] strategy must be 'grid' or 'random', got {strategy!r}", path)
    trials = raw.get("trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
        raise InputError(f"[search] trials must be an integer >= 1, got {trials!r}", path)
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"[search] seed must be an integer, got {seed!r}", path)
    params: dict = {}

    def walk(table: dict, prefix: str) -> None:
        for key, value in table.items():
            name = f"{prefix}.{key}"
            if isinstance(value, dict) and not {"min", "max"} <= set(value):
                walk(value, name)
            else:
                params[name] = _spec(value, name, strategy, path)

    for key, value in raw.items():
        if key in _OPTIONS:
            continue
        if key not in ("model", "data", "split", "train", "predict") or not isinstance(value, dict):
            raise InputError(f"[search] {key!r} is not a search option ({', '.join(_OPTIONS)}) nor a config "
                             f"section table such as [search.train]", path)
        walk(value, key)
    if not params:
        raise InputError("[search] lists no values to search (e.g. [search.train] lr = [0.001, 0.003])", path)
    space = SearchSpace(params, strategy, trials, seed)
    if strategy == "grid" and trials is None and math.prod(len(v) for v in params.values()) > _MAX_GRID:
        raise InputError(f"[search] the grid has more than {_MAX_GRID} trials; set trials = N to sample some",
                         path)
    return space


def _spec(value, name: str, strategy: str, path):
    if isinstance(value, list):
        if not value:
            raise InputError(f"[search] {name} lists no values", path)
        return list(value)
    if isinstance(value, dict):
        extra = set(value) - {"min", "max", "log", "integer"}
        lo, hi = value.get("min"), value.get("max")
        ok = (not extra and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
              and math.isfinite(lo) and math.isfinite(hi) and lo < hi and (lo > 0 or not value.get("log")))
        if not ok:
            raise InputError(f"[search] {name} must be {{min = a, max = b[, log = true][, integer = true]}} "
                             f"with a < b (and a > 0 for log)", path)
        if strategy != "random":
            raise InputError(f"[search] {name} is a range: ranges need strategy = \"random\"", path)
        integer = bool(value.get("integer", isinstance(lo, int) and isinstance(hi, int)))
        return Range(float(lo), float(hi), bool(value.get("log", False)), integer)
    raise InputError(f"[search] {name} must be a list of values or a {{min, max}} range, got {value!r}", path)


def apply_overrides(raw: dict, overrides: dict) -> dict:
    """A deep copy of config dict ``raw`` with each dotted key of ``overrides`` set."""
    out = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out
