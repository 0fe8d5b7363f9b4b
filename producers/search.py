"""A small hyper-parameter search: ``produce search CONFIG`` trains trials one after another.

The job TOML gets a ``[search]`` table whose sub-tables mirror the config::

    [search]
    strategy = "grid"          # grid (every combination) | random
    trials = 6                 # random: trials drawn; grid: at most this many (a seeded subset)
    seed = 0
    [search.train]
    lr = [0.001, 0.003]                        # a list: these values
    weight_decay = {min = 1e-6, max = 1e-3, log = true}   # a range (random only)
    [search.model.hparams]
    hidden_dim = [1024, 2048]

Each trial is the job with its values substituted, validated before any
training starts, and trained like ``produce train`` under
``<run_dir>/<name>/search/trial-NNN/`` (checkpoints, resumable). Trials are
compared on their best **dev** GAP@20 only, the 5 % of the train split used for
early stopping: held-out and eval labels are never read. The trials table is
``<run_dir>/<name>/search/trials.tsv`` (and ``.json``); the best trial's
checkpoint becomes the job's (``<name>/checkpoints/best.pt``), its config the
job's ``config.json``, and ``<name>/search.json`` records its values, which
``produce predict`` applies to the job config before building the model.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from predictions.atomic import atomic_write_text
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


# --------------------------------------------------------------------------- running

def trial_configs(cfg) -> list:
    """(overrides, JobConfig) per trial, every one validated (model built on the meta device) up front."""
    from .config import config_from_dict

    if cfg.search is None:
        raise InputError("the config has no [search] table", cfg.path)
    base = cfg.to_dict()
    out = []
    for i, ov in enumerate(cfg.search.overrides()):
        raw = apply_overrides(base, ov)
        raw["output"] = {"run_dir": str(cfg.job_dir / "search"), "name": f"trial-{i:03d}"}
        try:
            trial = config_from_dict(raw, path=cfg.path, base_dir=Path(cfg.path or ".").resolve().parent)
        except InputError as err:
            raise InputError(f"[search] trial {i} ({_fmt(ov)}): {err.problem}", cfg.path) from None
        out.append((ov, trial))
    return out


def _fmt(ov: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in ov.items())


def search_job(cfg, *, quiet: bool = False, log=None) -> dict:
    """Train every trial (skipping finished ones), pick the best dev GAP, install it as the job's result.

    Returns ``{"trials": [row, ...], "best": row}``; a row holds ``trial``,
    ``overrides``, ``best_epoch``, ``dev_gap``, ``seconds``.
    """
    from .jobs import _logger, train_job

    trials = trial_configs(cfg)
    root = cfg.job_dir / "search"
    root.mkdir(parents=True, exist_ok=True)
    log = log or _logger(cfg.job_dir / "train.log", quiet)
    table_path = root / "trials.json"
    done = {r["trial"]: r for r in json.loads(table_path.read_text())} if table_path.exists() else {}
    rows = []
    bar = None
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(trials), desc=f"search {cfg.output.name}", unit="trial")
    log(f"search {cfg.output.name}: {len(trials)} trials ({cfg.search.strategy}), chosen on dev GAP@20")
    for i, (ov, trial) in enumerate(trials):
        name = trial.output.name
        row = done.get(name)
        if row is None or row.get("overrides") != ov:
            t0 = time.perf_counter()
            h = train_job(trial, quiet=True)
            row = {"trial": name, "overrides": ov, "best_epoch": h.best_epoch, "dev_gap": h.best_gap,
                   "epochs_run": len(h.epochs), "seconds": round(time.perf_counter() - t0, 1)}
            done[name] = row
            atomic_write_text(table_path, json.dumps(list(done.values()), indent=2) + "\n")
        rows.append(row)
        log(f"{name}: {_fmt(ov)} -> dev GAP@20 {row['dev_gap']:.4f} (epoch {row['best_epoch']})")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(best=f"{max(r['dev_gap'] for r in rows):.4f}")
    if bar is not None:
        bar.close()
    best = max(rows, key=lambda r: r["dev_gap"])
    _write_table(root / "trials.tsv", rows)
    _install(cfg, trials[rows.index(best)][1], best)
    log(f"best: {best['trial']} ({_fmt(best['overrides'])}) dev GAP@20 {best['dev_gap']:.4f}")
    return {"trials": rows, "best": best}


def _write_table(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r["overrides"]})
    lines = ["\t".join(["trial", *keys, "best_epoch", "epochs_run", "dev_gap", "seconds"])]
    for r in rows:
        lines.append("\t".join([r["trial"], *(str(r["overrides"].get(k, "")) for k in keys), str(r["best_epoch"]),
                                str(r.get("epochs_run", "")), f"{r['dev_gap']:.4f}", str(r["seconds"])]))
    atomic_write_text(path, "\n".join(lines) + "\n")


def _install(cfg, trial, best: dict) -> None:
    """Make the best trial the job's result: its best.pt, config.json, history.json and search.json."""
    src, dst = trial.job_dir, cfg.job_dir
    ckpt = dst / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    for old in ckpt.iterdir():  # the job's own earlier checkpoints belong to another configuration
        if old.is_file():
            old.unlink()
    tmp = ckpt / ".best.pt.search-tmp"
    shutil.copyfile(src / "checkpoints" / "best.pt", tmp)
    tmp.replace(ckpt / "best.pt")
    job = json.loads(json.dumps(trial.to_dict()))
    job["output"] = cfg.to_dict()["output"]
    atomic_write_text(dst / "config.json", json.dumps(job, indent=2) + "\n")
    shutil.copyfile(src / "history.json", dst / "history.json")
    atomic_write_text(dst / "search.json", json.dumps({"best": best, "overrides": best["overrides"]}, indent=2)
                      + "\n")


def searched_config(cfg):
    """``cfg`` with the values of its finished search's best trial applied (``cfg`` itself if none)."""
    from .config import config_from_dict

    path = cfg.job_dir / "search.json"
    if not path.exists():
        return cfg
    try:
        overrides = json.loads(path.read_text(encoding="utf-8"))["overrides"]
        raw = apply_overrides(cfg.to_dict(), overrides)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise InputError(f"unreadable search result ({type(err).__name__})", path) from None
    out = config_from_dict(raw, path=cfg.path, base_dir=Path(cfg.path or ".").resolve().parent)
    out.search = cfg.search
    return out
