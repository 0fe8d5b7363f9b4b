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

Before step 2 everything that can fail is checked (options, output paths,
every split's members and alignment, labels covering the scored videos, the
member checksums), so a bad input never costs a fit or leaves a file; the
stores and the record of step 3 and 4 are written to temporary files and
renamed together, under a lock file that keeps a second build of the same
outputs away. A fixed scheme, whose fit costs nothing (it reads the first
rows only for the members' names and widths), has its members' checksums
taken on the rows step 3 streams, in the same read, and compared before
anything is renamed into place (a store read out of row order is verified in
a pass of its own).
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import time
from pathlib import Path

import numpy as np

from predictions import metrics
from predictions.align import align_labels
from predictions.atomic import AtomicSet, check_directory, check_not_input, check_target, file_kind, output_lock
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import StoreWriter, read_store
from predictions.types import Labels, Predictions

from .base import Combiner, combiner_class
from .candidates import Candidates, weighted_top_k
from .crossfit import fold_std_error, plain_fold_scores
from .distributed import map_ordered, use_client
from .ensemble import FitResult, fit_ensemble, make_factory
from .evaluate import check_labels_cover, evaluate_members, find_label_files
from .members import (ChunkTask, MemberStores, align_members, chunk_tasks, discover, read_chunk, read_members,
                      verify_members, has_csv, with_csv_stores)
from .record import BuildRecord, RecordMember, package_versions

__all__ = ["build", "find_fit_members", "plan_splits", "apply_to_splits", "auto_chunk_rows", "combine_chunk",
           "linear_weights"]

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
#: Longest ensemble name: its output file names must fit the file system's 255 bytes.
MAX_NAME = 128

#: Candidate entries (videos x members x k) per streamed chunk: about 0.5 GB of working memory.
CHUNK_ENTRIES = 4_000_000
#: Videos a fixed scheme is "fitted" on: it sees no labels and needs only the members' names and
#: widths, so a small first chunk will do (a whole chunk cost as much as streaming one more).
FIXED_FIT_ROWS = 256


def auto_chunk_rows(members: list[MemberStores]) -> int:
    """Videos per chunk so that a chunk holds about CHUNK_ENTRIES member entries (500 to 50,000)."""
    width = sum(m.k or 100 for m in members) or 1
    return int(min(50_000, max(500, CHUNK_ENTRIES // width)))


def combine_chunk(task: ChunkTask, combiner: Combiner, names, member_ks, k_out: int, member_k: int | None,
                  reader_for=None, weights=None) -> Predictions:
    """Read one chunk and combine it with the fitted scheme: the chunk's top ``k_out`` predictions.

    ``weights`` (:func:`linear_weights` of the combiner, when its score is a weighted mean of the
    member scores): the chunk is combined by :func:`~ensembler.candidates.weighted_top_k`, which
    adds the scores straight into a dense block instead of building the candidates' (R, M) matrix.
    Runs in this process or on a Dask worker (``reader_for`` None: stores opened by path and cached).
    """
    preds = read_chunk(task, member_ks, member_k=member_k, reader_for=reader_for)
    if weights is not None:
        return weighted_top_k(preds, weights, k=k_out, names=names)
    return combiner.predict(Candidates.from_members(preds, names), k=k_out)


def _weighted_mean_schemes() -> tuple:
    """The ``_predict`` functions known to be ``weighted_mean(cands.scores, self.member_weights_)``."""
    from .schemes.averaging import GapWeighted, UniformAverage
    from .schemes.caruana import CaruanaSelection
    from .schemes.optimized import OptimizedWeights
    return tuple(c._predict for c in (UniformAverage, GapWeighted, CaruanaSelection, OptimizedWeights))


def linear_weights(combiner: Combiner) -> np.ndarray | None:
    """(M,) weights when the fitted ``combiner`` scores a candidate by the weighted mean of the member
    scores (``uniform``, ``gap``, ``caruana``, ``optimized``; a FoldBag of such models, whose mean is
    the weighted mean with the mean weights; ``auto`` when it chose one), else None.

    Only classes whose scoring is known are trusted: a subclass that overrides ``_predict``,
    ``predict_scores`` or ``predict`` is not linear here.
    """
    from .crossfit import FoldBag
    from .schemes.auto import AutoScheme

    cls = type(combiner)
    if cls.predict_scores is not Combiner.predict_scores or cls.predict is not Combiner.predict:
        return None
    if cls is FoldBag:
        parts = [linear_weights(m) for m in combiner.models_]
        return None if not parts or any(w is None for w in parts) else np.mean(parts, axis=0)
    if cls is AutoScheme:
        return linear_weights(combiner.final_)
    if cls._predict in _weighted_mean_schemes() and getattr(combiner, "member_weights_", None) is not None:
        return np.asarray(combiner.member_weights_, dtype=np.float64)
    return None


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
        task = next(chunk_tasks(members, alignment, min(chunk_rows, FIXED_FIT_ROWS)))
        preds = read_chunk(task, [m.k for m in members], member_k=member_k, reader_for=_local_readers(members))
    return {m.name: p for m, p in zip(members, preds)}


def plan_splits(by_split: dict, fit_split: str, names, log=print) -> list[str]:
    """The splits an ensemble of the members ``names`` is written for: the fit split first, then
    every other split where all the members have a store (the others are logged as skipped)."""
    out = [fit_split]
    for split in sorted(s for s in by_split if s != fit_split):
        have = {m.name for m in by_split[split]}
        missing = [n for n in names if n not in have]
        if missing:
            log(f"skipping split {split!r}: members missing there: {', '.join(missing)}")
        else:
            out.append(split)
    return out


def apply_to_splits(fit: FitResult, by_split: dict, fit_split: str, truth: dict[str, Labels], *, name: str,
                    out: Path, k_out: int, chunk_rows: int, member_k: int | None, align_kw: dict,
                    progress: bool, log, client=None, alignments: dict | None = None,
                    staging: AtomicSet | None = None, folds: tuple[int, int] | None = None) -> tuple[dict, dict]:
    """Stream every split that has all the members through the fitted scheme; return ``(outputs, scores)``.

    ``outputs`` is ``{split: store path}``; ``scores`` is ``{split: {"ensemble":
    metrics, "members": rows}}`` for the labelled splits (member rows on the
    other splits than the fit split). ``alignments`` (``{split: Alignment}``)
    are computed when not given. With ``staging`` every store is written to
    its temporary file in that :class:`~predictions.atomic.AtomicSet`, renamed
    into place by the caller's commit (all outputs appear together or not at all).
    """
    names = list(fit.member_names)
    single_file = _single_file(out)
    outputs, scores = {}, {}
    combiner_ref = client.scatter(fit.combiner, broadcast=True) if client is not None else fit.combiner
    weights = linear_weights(fit.combiner)  # a weighted mean: summed straight into dense blocks
    splits = plan_splits(by_split, fit_split, names, log)
    if single_file:
        splits = [fit_split]
    for split in splits:
        by_name = {m.name: m for m in by_split[split]}
        members = [by_name[n] for n in names]
        alignment = (alignments or {}).get(split) or align_members(members, **align_kw)
        path = out if single_file else out / f"{name}.{split}.full.h5"
        write_to = path if staging is None else staging.add(path)
        extra = {"ensemble": {"scheme": fit.scheme, "members": names, "fit_split": fit_split,
                              "member_paths": [p for m in members for p in m.paths]}}
        tasks = chunk_tasks(members, alignment, chunk_rows)
        opts = (names, [m.k for m in members], k_out, member_k)
        if client is None:
            results = (combine_chunk(t, fit.combiner, *opts, reader_for=_local_readers(members), weights=weights)
                       for t in tasks)
        else:
            results = map_ordered(client, combine_chunk, tasks, combiner_ref, *opts, None, weights)  # reader_for=None
        bar = _progress_bar(total=len(alignment.ids), unit="video", desc=f"{name} {split}", disable=not progress)
        with StoreWriter(write_to, ids=alignment.ids, num_classes=members[0].num_classes, k=k_out, model=name,
                         split=split, crop="full", config={"scheme": fit.scheme, "params": fit.params},
                         extra=extra, atomic=staging is None) as writer:
            for pred in results:
                writer.write(pred)
                bar.update(len(pred))
        bar.close()
        outputs[split] = str(path)
        if split in truth:
            pred = read_store(write_to)
            scores[split] = {"ensemble": metrics.evaluate(pred, truth[split].reindex(pred.ids))}
            if split == fit_split and fit.crossfit is None and folds is not None:
                # a fixed scheme's fold scores, on the folds a learned scheme is cross-fitted on (its s.e.)
                scores[split]["fold_gaps"] = plain_fold_scores(pred, truth[split], *folds)
            if split != fit_split:
                scores[split]["members"] = evaluate_members(members, truth[split], chunk_rows=chunk_rows,
                                                            client=client)
    return outputs, scores


class _NoBar:
    def update(self, n=1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(*, disable: bool, **kw):
    """A tqdm bar, imported only when shown (``ensemble --help`` and quiet builds do not pay for it)."""
    if disable:
        return _NoBar()
    from tqdm.auto import tqdm
    return tqdm(**kw)


@contextlib.contextmanager
def _corrupt_first(readers):
    """For checksums taken on the streamed rows: when anything fails before they are all compared, the
    stores not yet verified are verified first, so that a corrupt store is named as the cause (a
    checksum mismatch) rather than by what it broke (a video id without labels, ...)."""
    try:
        yield
    except InputError:
        for r in readers:
            r.end_verify()  # compared already when streamed to the end; else a pass of its own
        raise


def _single_file(out: Path) -> bool:
    """``--out x.h5`` names one store (unless it is an existing directory)."""
    return out.suffix == ".h5" and not out.is_dir()


def _positive(option: str, value, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{option} must be a positive integer, got {value}")


def _check_options(name: str, n_folds, k, chunk_rows, member_k, random_state) -> None:
    if not _NAME.fullmatch(name):
        raise InputError(f"ensemble name {name!r} must match [A-Za-z0-9_-]+")
    if len(name) > MAX_NAME:
        raise InputError(f"ensemble name is {len(name)} characters long; at most {MAX_NAME}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise InputError(f"--folds must be >= 2, got {n_folds}")
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise InputError(f"--seed (random_state) must be a non-negative integer, got {random_state}")
    _positive("--k", k)
    _positive("--chunk-rows", chunk_rows)
    _positive("--member-k", member_k)


def _check_out_dir(out: Path) -> None:
    """``--out`` as a directory: an existing directory, or a new path under an existing directory."""
    try:
        st = os.stat(out)
    except OSError:
        st = None  # missing, or a parent is a file: check_directory names the cause
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"--out is {file_kind(st.st_mode)}, expected a directory (or a new .h5 file name "
                         f"for a single-split build)", out)
    check_directory(out, what="output directory")


@contextlib.contextmanager
def _locked_outputs(out: Path, name: str, single_file: bool):
    """Hold the lock of this ensemble's outputs; remove the output directory again if we created it
    and the build failed before writing anything into it."""
    where = out.parent if single_file else out
    made = []
    probe = where
    while not probe.exists() and probe.parent != probe:
        made.append(probe)
        probe = probe.parent
    lock = where / (f".{out.name}.lock" if single_file else f".{name}.lock")
    try:
        with output_lock(lock, what=f"the ensemble {name!r} in {where}"):
            yield
    except BaseException:
        for d in made:  # innermost first; only empty directories go
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


def _check_labels_cover(labels: Labels, members: list[MemberStores], label_path, ids=None) -> None:
    """Every video to be scored has an entry in the labels file (else nothing is written). Each distinct
    ids array is checked once (members of the same videos share one)."""
    seen = set()
    for m in members:
        for r in m.readers:
            wanted = r.ids if ids is None else ids
            if id(wanted) not in seen:
                seen.add(id(wanted))
                check_labels_cover(labels, wanted, label_path, r.path)


def _check_same_vocabulary(used: dict, splits, fit_split: str, truth: dict, label_files: dict,
                           allow_mixed_k: bool) -> None:
    """Every split's members have the fit split's class count (and k, unless mixed k is allowed), and so
    has every labels file: a scheme fitted on one vocabulary is never applied to another."""
    ref = used[fit_split][0].readers[0]
    for s in splits:
        for m in used[s]:
            for r in m.readers:
                if r.num_classes != ref.num_classes:
                    raise InputError(f"{r.num_classes} classes, but the fit split's member {ref.path} has "
                                     f"{ref.num_classes}", r.path)
                fit_m = next(f for f in used[fit_split] if f.name == m.name)
                if not allow_mixed_k and s != fit_split and r.k != fit_m.k:
                    shown = {None: "full scores"}
                    raise InputError(f"{shown.get(r.k, f'top-{r.k}')} on split {s!r}, but "
                                     f"{shown.get(fit_m.k, f'top-{fit_m.k}')} on the fit split "
                                     f"({fit_m.paths[0]}): a scheme fitted on one is not applied to the "
                                     f"other (pass allow_mixed_k to do it anyway)", r.path)
    for s, labels in truth.items():
        if labels.num_classes != ref.num_classes:
            raise InputError(f"{labels.num_classes} classes, but the members have {ref.num_classes} "
                             f"(as {ref.path})", label_files[s])


def build(members, *, scheme: str = "uniform", params: dict | None = None, labels=None, out,
          name: str | None = None, fit_split: str = "heldout", k: int | None = None, n_folds: int = 5,
          random_state: int = 0, chunk_rows: int | None = None, fold_crops: str = "mean", member_k: int | None = None,
          require_same_ids: bool = False, allow_mixed_k: bool = False, verify: bool = True, progress: bool = True,
          command: str | None = None, log=print, client=None, classes: int | None = None,
          csv_cache=None) -> BuildRecord:
    """Build one ensemble (see the module docstring); returns its record, also written as JSON.

    Parameters
    ----------
    members : the member stores: files, directories or globs; Kaggle CSVs too (a file or glob
        ending in ``.csv``, named ``MODEL.SPLIT.csv`` or ``MODEL.csv`` for the test split), each
        imported once into the CSV cache (:mod:`predictions.csvimport`).
    scheme, params : the weighting scheme and its parameters.
    labels : labels files ``labels.<split>.h5`` (files, directories or globs).
    out : output directory, or one ``.h5`` file for a single-split build.
    name : ensemble name (default ``ens-<scheme>``); ``[A-Za-z0-9_-]+``, at most 128 characters.
    fit_split : the split the scheme is fitted on.
    k : labels kept per video in the output (default: the members' largest k).
    n_folds, random_state : folds of the cross-fitted estimate; seed of the
        folds and of seeded schemes.
    chunk_rows : videos per streamed chunk (default :func:`auto_chunk_rows`,
        which bounds memory whatever the number of members).
    fold_crops, member_k, require_same_ids, allow_mixed_k : how members are
        read and aligned (see ``ensemble build --help``).
    verify : check every member store's checksum (a corrupt store is an error
        before anything is written): a learned scheme's members before its fit,
        a fixed scheme's on the rows as they are streamed (no pass of its own).
    progress, command, log : progress bars, the command line to record, where
        messages go.
    client : a dask.distributed Client; chunks are then combined on its
        workers and the xgboost stacker trains through xgboost's Dask interface.
    classes, csv_cache : for CSV members: their class count (default: that of the
        stores or labels given, else 3862) and the cache directory (default
        ``$ENSEMBLE_CSV_CACHE`` or ``~/.cache/yt8m-ensembler/csv``).

    Everything is checked before anything is written (options, output paths,
    members of every split, labels covering the videos scored, checksums); the
    stores and the record are then written to temporary files and renamed
    together. A lock file (``.<name>.lock`` beside the outputs) makes a second
    build of the same outputs fail with a clear error while this one runs.
    """
    t0 = time.perf_counter()
    params = dict(params or {})
    name = f"ens-{scheme}" if name is None else name
    _check_options(name, n_folds, k, chunk_rows, member_k, random_state)
    _positive("--classes", classes)
    make_factory(scheme, params, random_state)  # unknown scheme or parameter: fail before reading anything
    learned = combiner_class(scheme).learned
    if not str(out).strip():
        raise InputError("--out is empty: give an output directory or a .h5 file")
    out = Path(out)
    single_file = _single_file(out)
    if single_file:
        check_target(out)
        check_target(out.with_suffix(".json"), what="build record")
    else:
        _check_out_dir(out)
    if has_csv(members):  # each CSV replaced by its store in the CSV cache (imported once)
        files = find_label_files(labels).values() if labels and classes is None else ()
        members = with_csv_stores(members, classes=classes, label_files=files, csv_cache=csv_cache,
                                  progress=progress, log=log)

    with _locked_outputs(out, name, single_file):
        by_split, fit_split = find_fit_members(members, name=name, fit_split=fit_split, learned=learned,
                                               fold_crops=fold_crops)
        label_files = find_label_files(labels) if labels else {}
        truth = {split: read_labels(path) for split, path in label_files.items()}
        fit_members = by_split[fit_split]
        if learned and fit_split not in truth:
            raise InputError(f"scheme {scheme!r} is learned: it needs labels.{fit_split}.h5 (give --labels)")
        names = [m.name for m in fit_members]
        splits = plan_splits(by_split, fit_split, names, log)
        if single_file and len(splits) > 1:
            raise InputError(f"--out names one store but the members have stores for {len(splits)} splits "
                             f"({', '.join(sorted(splits))}): give a directory, or one split's stores as members",
                             out)
        targets = [out] if single_file else [out / f"{name}.{s}.full.h5" for s in splits]
        inputs = [p for ms in by_split.values() for m in ms for p in m.paths] + list(label_files.values())
        for t in targets + [out.with_suffix(".json") if single_file else out / f"{name}.build.json"]:
            check_target(t)
            check_not_input(t, inputs)
        chunk_rows = chunk_rows or auto_chunk_rows(fit_members)

        align_kw = dict(require_same_ids=require_same_ids, allow_mixed_k=allow_mixed_k)
        used = {s: [next(m for m in by_split[s] if m.name == n) for n in names] for s in splits}
        _check_same_vocabulary(used, splits, fit_split, truth, label_files, allow_mixed_k)
        alignments = {s: align_members(used[s], **align_kw) for s in splits}
        # a fixed scheme's members are verified on the rows streamed in step 3 (see the module doc)
        streamed = verify and not learned and client is None
        if verify and not streamed:
            verify_members([m for s in splits for m in used[s]], progress=progress)
        checked = [r for s in splits for m in used[s] for r in m.readers] if streamed else []
        with _corrupt_first(checked):
            for s in splits:
                if s in truth:
                    scored_alone = s != fit_split or not learned  # members scored on all their own videos
                    _check_labels_cover(truth[s], used[s], label_files[s],
                                        ids=None if scored_alone else alignments[s].ids)
            if learned:
                truth[fit_split] = align_labels(truth[fit_split], alignments[fit_split].ids,
                                                label_files[fit_split])

            alignment = alignments[fit_split]
            fit_preds = _read_fit_members(fit_members, alignment, learned=learned, chunk_rows=chunk_rows,
                                          member_k=member_k)
            with use_client(client) if client is not None else contextlib.nullcontext():
                fit = fit_ensemble(fit_preds, truth[fit_split] if learned else None, scheme, params,
                                   n_folds=n_folds, random_state=random_state, progress=progress)
            del fit_preds

            # default: the members' largest k; full members keep 100 labels (all of them under 100 classes)
            k_out = k or max((m.k or min(100, m.num_classes)) for m in fit_members)
            if k_out > fit_members[0].num_classes:
                raise InputError(f"--k {k_out} exceeds the number of classes {fit_members[0].num_classes}")
            record_path = out.with_suffix(".json") if single_file else out / f"{name}.build.json"
            with AtomicSet() as staging:
                for r in checked:
                    r.begin_verify()
                outputs, scores = apply_to_splits(fit, by_split, fit_split, truth, name=name, out=out,
                                                  k_out=k_out, chunk_rows=chunk_rows, member_k=member_k,
                                                  align_kw=align_kw, progress=progress, log=lambda _: None,
                                                  client=client, alignments=alignments, staging=staging,
                                                  folds=(n_folds, random_state))
                for r in checked:  # compared already when streamed in order; else a pass of its own
                    r.end_verify()
                record = BuildRecord(name=name, scheme=scheme, params=params, fit_split=fit_split,
                                     members=[RecordMember(m.name, tuple(m.paths)) for m in fit_members],
                                     n_fit_videos=len(alignment.ids), member_gap=fit.member_gap,
                                     best_single=fit.best_single, uniform_gap=fit.uniform_gap,
                                     crossfit=fit.crossfit, estimate=fit.estimate, fit_seconds=fit.fit_seconds,
                                     fitted=fit.combiner.describe(), outputs=outputs, scores=scores)
                if not learned and fit_split in scores:
                    # A fixed scheme never sees labels, so its plain score on the fit split is already honest.
                    rows = evaluate_members(fit_members, truth[fit_split], chunk_rows=chunk_rows,
                                            client=client)
                    scores[fit_split]["members"] = rows
                    record.member_gap = {r["name"]: r["gap"] for r in rows}
                    record.best_single = (rows[0]["name"], rows[0]["gap"])
                    record.estimate = scores[fit_split]["ensemble"]["gap"]
                    record.std_error = fold_std_error(scores[fit_split].get("fold_gaps", ()))
                record.build_seconds = time.perf_counter() - t0
                record.versions = package_versions()
                record.command = command or " ".join(sys.argv)
                staging.add(record_path).write_text(record.to_json(), encoding="utf-8")
        record.path = str(record_path)
    return record
