"""``ensemble build``: fit a scheme on the held-out split, estimate it honestly, apply it everywhere.

:func:`build` is four steps, each its own function:

1. :func:`find_fit_members` finds the members (one per model and split;
   crops folded) among the stores and picks the fit split.
2. :func:`~ensembler.ensemble.fit_ensemble` fits the scheme on the fit
   split's members, in memory: for a learned scheme, on the whole split with
   baselines and a cross-fitted estimate; for a fixed scheme, on one chunk
   (it sees no labels, so memory stays bounded at any size).
3. :func:`apply_to_splits` streams every split's members in row chunks
   through the fitted scheme into an output store ``<name>.<split>.full.h5``
   (itself a valid member) and scores it on every split that has labels.
4. The :class:`~ensembler.record.BuildRecord` is written to
   ``<name>.build.json`` beside the stores and returned.
"""
from __future__ import annotations

import contextlib
import re
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from predictions import metrics
from predictions.errors import InputError
from predictions.store import StoreWriter, read_store
from predictions.types import Labels, Predictions

from .base import Combiner, combiner_class
from .candidates import Candidates
from .distributed import map_ordered, use_client
from .ensemble import FitResult, fit_ensemble, make_factory
from .evaluate import evaluate_members, find_labels
from .members import ChunkTask, MemberStores, align_members, chunk_tasks, discover, read_chunk, read_members
from .record import BuildRecord, RecordMember, package_versions

__all__ = ["build", "find_fit_members", "apply_to_splits", "auto_chunk_rows", "combine_chunk"]

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

#: Candidate entries (videos x members x k) per streamed chunk: about 0.5 GB of working memory.
CHUNK_ENTRIES = 4_000_000


def auto_chunk_rows(members: list[MemberStores]) -> int:
    """Videos per chunk so that a chunk holds about CHUNK_ENTRIES member entries (500 to 50,000)."""
    width = sum(m.k or 100 for m in members) or 1
    return int(min(50_000, max(500, CHUNK_ENTRIES // width)))


def combine_chunk(task: ChunkTask, combiner: Combiner, names, member_ks, k_out: int, member_k: int | None,
                  reader_for=None) -> Predictions:
    """Read one chunk and combine it with the fitted scheme: the chunk's top ``k_out`` predictions.

    Runs in this process or on a Dask worker (``reader_for`` None: stores opened by path and cached).
    """
    preds = read_chunk(task, member_ks, member_k=member_k, reader_for=reader_for)
    return combiner.predict(Candidates.from_members(preds, names), k=k_out)


def _local_readers(members: list[MemberStores]):
    return {p: r for m in members for p, r in zip(m.paths, m.readers)}.__getitem__


def find_fit_members(stores, *, name: str, fit_split: str, learned: bool, fold_crops: str = "mean"):
    """Discover the members of every split; return ``(by_split, fit_split)``.

    This ensemble's own earlier outputs (model ``name``) are never members. A
    fixed scheme may fit on the only split there is when ``fit_split`` is absent.
    """
    by_split = discover(stores, fold_crops=fold_crops)
    by_split = {s: [m for m in ms if m.name != name] for s, ms in by_split.items()}
    if fit_split not in by_split:
        if learned or len(by_split) != 1:
            raise InputError(f"no member store for the fit split {fit_split!r}; splits found: "
                             f"{', '.join(sorted(by_split)) or 'none'}")
        fit_split = next(iter(by_split))
    if not by_split[fit_split]:
        raise InputError("no members to combine")
    return by_split, fit_split


def _read_fit_members(members: list[MemberStores], alignment, *, learned: bool, chunk_rows: int,
                      member_k: int | None) -> dict[str, Predictions]:
    """The fit split's members in memory: all videos for a learned scheme, the first chunk for a fixed one."""
    if learned:
        preds = read_members(members, alignment, chunk_rows=chunk_rows, member_k=member_k)
    else:
        task = next(chunk_tasks(members, alignment, chunk_rows))
        preds = read_chunk(task, [m.k for m in members], member_k=member_k, reader_for=_local_readers(members))
    return {m.name: p for m, p in zip(members, preds)}


def apply_to_splits(fit: FitResult, by_split: dict, fit_split: str, truth: dict[str, Labels], *, name: str,
                    out: Path, k_out: int, chunk_rows: int, member_k: int | None, align_kw: dict,
                    progress: bool, log, client=None) -> tuple[dict, dict]:
    """Stream every split that has all the members through the fitted scheme; return ``(outputs, scores)``.

    ``outputs`` is ``{split: store path}``; ``scores`` is ``{split: {"ensemble":
    metrics, "members": rows}}`` for the labelled splits (member rows on the
    other splits than the fit split).
    """
    names = list(fit.member_names)
    single_file = out.suffix == ".h5"
    outputs, scores = {}, {}
    combiner_ref = client.scatter(fit.combiner, broadcast=True) if client is not None else fit.combiner
    for split in [fit_split] + sorted(s for s in by_split if s != fit_split):
        by_name = {m.name: m for m in by_split[split]}
        missing = [n for n in names if n not in by_name]
        if missing:
            log(f"skipping split {split!r}: members missing there: {', '.join(missing)}")
            continue
        if single_file and split != fit_split:
            continue
        members = [by_name[n] for n in names]
        alignment = align_members(members, **align_kw)
        path = out if single_file else out / f"{name}.{split}.full.h5"
        extra = {"ensemble": {"scheme": fit.scheme, "members": names, "fit_split": fit_split,
                              "member_paths": [p for m in members for p in m.paths]}}
        tasks = chunk_tasks(members, alignment, chunk_rows)
        opts = (names, [m.k for m in members], k_out, member_k)
        if client is None:
            results = (combine_chunk(t, fit.combiner, *opts, reader_for=_local_readers(members)) for t in tasks)
        else:
            results = map_ordered(client, combine_chunk, tasks, combiner_ref, *opts)
        bar = tqdm(total=len(alignment.ids), unit="video", desc=f"{name} {split}", disable=not progress)
        with StoreWriter(path, ids=alignment.ids, num_classes=members[0].num_classes, k=k_out, model=name,
                         split=split, crop="full", config={"scheme": fit.scheme, "params": fit.params},
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
                scores[split]["members"] = evaluate_members(members, truth[split], chunk_rows=chunk_rows,
                                                            client=client)
    return outputs, scores


def build(members, *, scheme: str = "uniform", params: dict | None = None, labels=None, out,
          name: str | None = None, fit_split: str = "heldout", k: int | None = None, n_folds: int = 5,
          random_state: int = 0, chunk_rows: int | None = None, fold_crops: str = "mean", member_k: int | None = None,
          require_same_ids: bool = False, allow_mixed_k: bool = False, progress: bool = True,
          command: str | None = None, log=print, client=None) -> BuildRecord:
    """Build one ensemble (see the module docstring); returns its record, also written as JSON.

    Parameters
    ----------
    members : the member stores: files, directories or globs.
    scheme, params : the weighting scheme and its parameters.
    labels : labels files ``labels.<split>.h5`` (files, directories or globs).
    out : output directory, or one ``.h5`` file for a single-split build.
    name : ensemble name (default ``ens-<scheme>``); ``[A-Za-z0-9_-]+``.
    fit_split : the split the scheme is fitted on.
    k : labels kept per video in the output (default: the members' largest k).
    n_folds, random_state : folds of the cross-fitted estimate; seed of the
        folds and of seeded schemes.
    chunk_rows : videos per streamed chunk (default :func:`auto_chunk_rows`,
        which bounds memory whatever the number of members).
    fold_crops, member_k, require_same_ids, allow_mixed_k : how members are
        read and aligned (see ``ensemble build --help``).
    progress, command, log : progress bars, the command line to record, where
        messages go.
    client : a dask.distributed Client; chunks are then combined on its
        workers and the xgboost stacker trains through xgboost's Dask interface.
    """
    t0 = time.perf_counter()
    params = dict(params or {})
    name = f"ens-{scheme}" if name is None else name
    if not _NAME.fullmatch(name):
        raise InputError(f"ensemble name {name!r} must match [A-Za-z0-9_-]+")
    if n_folds < 2:
        raise InputError(f"--folds must be >= 2, got {n_folds}")
    make_factory(scheme, params, random_state)  # unknown scheme or parameter: fail before reading anything
    learned = combiner_class(scheme).learned
    out = Path(out)

    by_split, fit_split = find_fit_members(members, name=name, fit_split=fit_split, learned=learned,
                                           fold_crops=fold_crops)
    truth = find_labels(labels) if labels else {}
    fit_members = by_split[fit_split]
    chunk_rows = chunk_rows or auto_chunk_rows(fit_members)
    if learned and fit_split not in truth:
        raise InputError(f"scheme {scheme!r} is learned: it needs labels.{fit_split}.h5 (give --labels)")

    align_kw = dict(require_same_ids=require_same_ids, allow_mixed_k=allow_mixed_k)
    alignment = align_members(fit_members, **align_kw)
    fit_preds = _read_fit_members(fit_members, alignment, learned=learned, chunk_rows=chunk_rows, member_k=member_k)
    with use_client(client) if client is not None else contextlib.nullcontext():
        fit = fit_ensemble(fit_preds, truth[fit_split] if learned else None, scheme, params, n_folds=n_folds,
                           random_state=random_state, progress=progress)
    del fit_preds

    k_out = k or max((m.k or 100) for m in fit_members)
    outputs, scores = apply_to_splits(fit, by_split, fit_split, truth, name=name, out=out, k_out=k_out,
                                      chunk_rows=chunk_rows, member_k=member_k, align_kw=align_kw,
                                      progress=progress, log=log, client=client)
    record = BuildRecord(name=name, scheme=scheme, params=params, fit_split=fit_split,
                         members=[RecordMember(m.name, tuple(m.paths)) for m in fit_members],
                         n_fit_videos=len(alignment.ids), member_gap=fit.member_gap, best_single=fit.best_single,
                         uniform_gap=fit.uniform_gap, crossfit=fit.crossfit, estimate=fit.estimate,
                         fit_seconds=fit.fit_seconds, fitted=fit.combiner.describe(), outputs=outputs, scores=scores)
    if not learned and fit_split in scores:
        # A fixed scheme never sees labels, so its plain score on the fit split is already honest.
        rows = evaluate_members(fit_members, truth[fit_split], chunk_rows=chunk_rows, client=client)
        scores[fit_split]["members"] = rows
        record.member_gap = {r["name"]: r["gap"] for r in rows}
        record.best_single = (rows[0]["name"], rows[0]["gap"])
        record.estimate = scores[fit_split]["ensemble"]["gap"]
    record.build_seconds = time.perf_counter() - t0
    record.versions = package_versions()
    record.command = command or " ".join(sys.argv)
    record.write(out.with_suffix(".json") if out.suffix == ".h5" else out / f"{name}.build.json")
    return record
