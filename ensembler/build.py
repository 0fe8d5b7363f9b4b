"""``ensemble build``: fit a scheme on the held-out split, estimate it honestly, apply it everywhere.

1. Find the members (one per model and split; crops folded) among the stores.
2. Read the held-out split's members, build candidates, and measure the best
   single member and the uniform average there.
3. Cross-fit the scheme (K folds over held-out videos) for an honest estimate,
   then fit it once on all held-out videos.
4. Stream every split's members in row chunks through the fitted scheme into an
   output store ``<name>.<split>.full.h5`` (itself a valid member), and score it
   on every split that has labels.
5. Record everything in ``<name>.build.json`` beside the stores.
"""
from __future__ import annotations

import contextlib
import inspect
import json
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from predictions import metrics
from predictions.atomic import atomic_write_text
from predictions.errors import InputError
from predictions.store import StoreWriter, read_store
from predictions.types import Predictions

from .base import Combiner, create_combiner
from .candidates import Candidates
from .crossfit import crossfit
from .distributed import map_ordered, use_client
from .evaluate import evaluate_members, find_labels
from .members import ChunkTask, align_members, chunk_tasks, discover, read_chunk, read_members

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def make_factory(weights: str, params: dict, random_state: int):
    """A zero-argument function building a fresh, unfitted combiner (validated now, once)."""
    probe = create_combiner(weights, **params)
    if "random_state" in inspect.signature(type(probe).__init__).parameters and "random_state" not in params:
        params = {**params, "random_state": random_state}
    return lambda: create_combiner(weights, **params)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in ("numpy", "xgboost", "scikit-learn", "h5py", "yt8m-ensembler"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x)}")


def combine_chunk(task: ChunkTask, combiner: Combiner, names, member_ks, k_out: int, member_k: int | None,
                  reader_for=None) -> Predictions:
    """Read one chunk and combine it with the fitted scheme: the chunk's top ``k_out`` predictions.

    Runs in this process or on a Dask worker (``reader_for`` None: stores opened by path and cached).
    """
    preds = read_chunk(task, member_ks, member_k=member_k, reader_for=reader_for)
    cands = Candidates.from_members(preds, names)
    return cands.to_predictions(combiner.predict_scores(cands), k=k_out)


#: Candidate entries (videos x members x k) per streamed chunk: about 0.5 GB of working memory.
CHUNK_ENTRIES = 4_000_000


def auto_chunk_rows(members) -> int:
    """Videos per chunk so that a chunk holds about CHUNK_ENTRIES member entries (500 to 50,000)."""
    width = sum(m.k or 100 for m in members) or 1
    return int(min(50_000, max(500, CHUNK_ENTRIES // width)))


def build(members, *, weights: str = "uniform", params: dict | None = None, labels=None, out,
          name: str | None = None, fit_split: str = "heldout", k: int | None = None, n_folds: int = 5,
          random_state: int = 0, chunk_rows: int | None = None, fold_crops: str = "mean", member_k: int | None = None,
          require_same_ids: bool = False, allow_mixed_k: bool = False, progress: bool = True,
          command: str | None = None, log=print, client=None) -> dict:
    """Build one ensemble; returns the build record (also written as JSON). See the module docstring.

    ``chunk_rows``: videos per streamed chunk (default: :func:`auto_chunk_rows`, which bounds
    memory whatever the number of members). ``client``: a dask.distributed Client; chunks are then combined on its workers and the
    xgboost stacker trains through xgboost's Dask interface.
    """
    t0 = time.perf_counter()
    params = dict(params or {})
    name = f"ens-{weights}" if name is None else name
    if not _NAME.fullmatch(name):
        raise InputError(f"ensemble name {name!r} must match [A-Za-z0-9_-]+")
    if n_folds < 2:
        raise InputError(f"--folds must be >= 2, got {n_folds}")
    factory = make_factory(weights, params, random_state)
    learned = factory().learned
    out = Path(out)
    single_file = out.suffix == ".h5"
    out_dir = out.parent if single_file else out

    by_split = discover(members, fold_crops=fold_crops)
    # Never ingest this ensemble's own earlier output.
    by_split = {s: [m for m in ms if m.name != name] for s, ms in by_split.items()}
    truth = find_labels(labels) if labels else {}
    if fit_split not in by_split:
        if learned or len(by_split) != 1:
            raise InputError(f"no member store for the fit split {fit_split!r}; splits found: "
                             f"{', '.join(sorted(by_split)) or 'none'}")
        fit_split = next(iter(by_split))
    fit_members = by_split[fit_split]
    names = [m.name for m in fit_members]
    chunk_rows = chunk_rows or auto_chunk_rows(fit_members)
    if len(names) < 1:
        raise InputError("no members to combine")
    if learned and fit_split not in truth:
        raise InputError(f"scheme {weights!r} is learned: it needs labels.{fit_split}.h5 (give --labels)")

    # --- fit split: candidates, baselines, honest estimate, final fit -----------------
    # A learned scheme needs the whole fit split in memory (it is the held-out split, ~20,000
    # videos); a fixed scheme only needs one chunk to fit, so memory stays bounded at any N.
    align_kw = dict(require_same_ids=require_same_ids, allow_mixed_k=allow_mixed_k)
    fit_alignment = align_members(fit_members, **align_kw)
    record: dict = {"scheme": weights, "name": name, "params": params, "fit_split": fit_split,
                    "members": [{"name": m.name, "paths": m.paths} for m in fit_members],
                    "n_fit_videos": len(fit_alignment.ids)}
    ks = [m.k for m in fit_members]
    if learned:
        parts = read_members(fit_members, fit_alignment, chunk_rows=chunk_rows, member_k=member_k)
    else:
        parts = read_chunk(next(chunk_tasks(fit_members, fit_alignment, chunk_rows)), ks, member_k=member_k,
                           reader_for={p: r for m in fit_members for p, r in zip(m.paths, m.readers)}.__getitem__)
    cands = Candidates.from_members(parts, names)
    fit_labels = truth[fit_split].reindex(cands.ids) if learned else None
    if learned:
        y = cands.targets(fit_labels)
        single = {n: cands.gap(cands.scores[:, j], fit_labels, y=y) for j, n in enumerate(names)}
        record["member_gap"] = single
        record["best_single"] = max(single.items(), key=lambda kv: kv[1])
        record["uniform_gap"] = cands.gap(cands.scores.mean(axis=1), fit_labels, y=y)
        t = time.perf_counter()
        with use_client(client) if client is not None else contextlib.nullcontext():
            cv = crossfit(factory, cands, fit_labels, n_folds=n_folds, random_state=random_state,
                          progress=progress)
        record["crossfit"] = {"n_folds": n_folds, "fold_scores": list(cv.fold_scores), "estimate": cv.estimate,
                              "seconds": time.perf_counter() - t}
    t = time.perf_counter()
    with use_client(client) if client is not None else contextlib.nullcontext():
        combiner: Combiner = factory().fit(cands, fit_labels)
    record["fit_seconds"] = time.perf_counter() - t
    record["fitted"] = combiner.describe()
    del parts, cands

    # --- apply to every split that has all the members --------------------------------
    k_out = k or max((m.k or 100) for m in fit_members)
    outputs, scores = {}, {}
    splits = [fit_split] + sorted(s for s in by_split if s != fit_split)
    combiner_ref = client.scatter(combiner, broadcast=True) if client is not None else combiner
    for split in splits:
        by_name = {m.name: m for m in by_split[split]}
        missing = [n for n in names if n not in by_name]
        if missing:
            log(f"skipping split {split!r}: members missing there: {', '.join(missing)}")
            continue
        if single_file and split != fit_split:
            continue
        split_members = [by_name[n] for n in names]
        alignment = align_members(split_members, **align_kw)
        path = out if single_file else out_dir / f"{name}.{split}.full.h5"
        extra = {"ensemble": {"scheme": weights, "members": names, "fit_split": fit_split,
                              "member_paths": [p for m in split_members for p in m.paths]}}
        tasks = chunk_tasks(split_members, alignment, chunk_rows)
        opts = (names, [m.k for m in split_members], k_out, member_k)
        if client is None:
            local = {p: r for m in split_members for p, r in zip(m.paths, m.readers)}
            results = (combine_chunk(t, combiner, *opts, reader_for=local.__getitem__) for t in tasks)
        else:
            results = map_ordered(client, combine_chunk, tasks, combiner_ref, *opts)
        bar = tqdm(total=len(alignment.ids), unit="video", desc=f"{name} {split}", disable=not progress)
        with StoreWriter(path, ids=alignment.ids, num_classes=split_members[0].num_classes, k=k_out, model=name,
                         split=split, crop="full", config={"scheme": weights, "params": params},
                         extra=extra) as writer:
            for pred in results:
                writer.write(pred)
                bar.update(len(pred))
        bar.close()
        outputs[split] = str(path)
        if split in truth:
            pred = read_store(path)
            scores[split] = {"ensemble": metrics.evaluate(pred, truth[split].reindex(pred.ids))}
            if split != fit_split:
                scores[split]["members"] = evaluate_members(split_members, truth[split], chunk_rows=chunk_rows,
                                                            client=client)
    record["outputs"] = outputs
    record["scores"] = scores
    if not learned and fit_split in scores:
        # A fixed scheme never sees labels, so its plain score on the fit split is already honest.
        fit_rows = evaluate_members(fit_members, truth[fit_split], chunk_rows=chunk_rows, client=client)
        scores[fit_split]["members"] = fit_rows
        record["member_gap"] = {r["name"]: r["gap"] for r in fit_rows}
        record["best_single"] = (fit_rows[0]["name"], fit_rows[0]["gap"])
        record["estimate"] = scores[fit_split]["ensemble"]["gap"]
    record["build_seconds"] = time.perf_counter() - t0
    record["versions"] = _versions()
    record["command"] = command or " ".join(sys.argv)
    json_path = out.with_suffix(".json") if single_file else out_dir / f"{name}.build.json"
    atomic_write_text(json_path, json.dumps(record, indent=2, default=_json_default))
    record["record_path"] = str(json_path)
    return record
