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

import json
import shutil
import time
from pathlib import Path

from predictions.atomic import atomic_write_text
from predictions.errors import InputError

from .config import config_from_dict
from .jobs import _logger, check_run_dir, train_job, writing_under
from .search_space import apply_overrides

# --------------------------------------------------------------------------- running

def trial_configs(cfg) -> list:
    """(overrides, JobConfig) per trial, every one validated (model built on the meta device) up front."""
    if cfg.search is None:
        raise InputError("the config has no [search] table", cfg.path)
    base = cfg.to_dict()
    out = []
    for i, ov in enumerate(cfg.search.overrides()):
        raw = apply_overrides(base, ov)
        raw["output"] = {"run_dir": str(cfg.job_dir / "search"), "name": f"trial-{i:03d}"}
        raw["train"] = dict(raw.get("train", {}), folds=0)  # a trial is one model; [train] folds uses the best
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
    trials = trial_configs(cfg)
    check_run_dir(cfg)
    with writing_under(cfg.job_dir):
        return _search(cfg, trials, quiet, log)


def _search(cfg, trials: list, quiet: bool, log) -> dict:
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
    try:  # the bar is closed (and cleared) before an error line is printed
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
    except BaseException:
        if bar is not None:
            bar.leave = False  # cleared from the terminal: the error line is the last thing shown
        raise
    finally:
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
