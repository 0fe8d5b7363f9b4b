"""``ensemble build``: fit a scheme on the fit split, estimate it honestly, apply it everywhere.

:func:`build` is a short pipeline of named steps:

1. :func:`resolve_scheme` resolves the scheme once (its class, an unfitted,
   validated prototype, whether it is learned);
2. :func:`resolve_inputs` imports CSV members into the cache, discovers the
   members of every split (crops folded), finds the truth (labels stores or
   truth CSVs) and the order in which the user gave the members;
3. :func:`plan_build` checks everything that can fail before a fit (output
   paths, class counts, each split's coverage under ``--missing``, labels
   covering every scored video) and returns one :class:`~ensembler.streaming.SplitPlan`
   per split written;
4. :func:`fit_step` fits the scheme on the fit split in memory
   (:func:`~ensembler.ensemble.fit_ensemble`: a learned scheme on all its
   videos with a cross-fitted estimate; a fixed one on one chunk, since it
   sees no labels);
5. :func:`~ensembler.streaming.apply_to_splits` streams every split through
   the fitted model into ``<name>.<split>.full.h5``; the fitted model is saved
   as ``<name>.model.npz`` (:mod:`ensembler.persist`, no pickle) so that
   ``ensemble apply`` can reuse it, and the optional submission CSV is written;
6. :func:`make_record` builds the :class:`~ensembler.record.BuildRecord` once,
   written as ``<name>.build.json``.

All outputs are written to temporary files and renamed together, under a lock
file that keeps a second build of the same outputs away. A fixed scheme's
members have their checksums taken on the rows step 5 streams, compared
before anything is renamed into place.
"""
from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from predictions.align import align_labels
from predictions.atomic import AtomicSet, check_directory, check_not_input, check_target, file_kind, output_lock
from predictions.errors import InputError
from predictions.params import MAX_SEED, Num, check_params
from predictions.types import Labels, Predictions

from .base import Combiner
from .coverage import MISSING_RULES, split_alignment
from .crossfit import fold_std_error
from .distributed import use_client
from .ensemble import FitResult, fit_ensemble, make_combiner
from .evaluate import check_labels_cover, evaluate_members
from .members import MemberStores, chunk_tasks, discover, has_csv, read_chunk, read_members, verify_members, \
    with_csv_stores
from .order import given_member_order, weights_by_name
from .record import BuildRecord, RecordMember, package_versions
from .streaming import SplitPlan, apply_to_splits, auto_chunk_rows, combine_chunk, local_readers
from .truth import find_truth, read_truth

__all__ = ["build", "BuildOptions", "Scheme", "resolve_scheme", "resolve_inputs", "plan_build", "fit_step",
           "make_record", "apply_to_splits", "auto_chunk_rows", "combine_chunk"]

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
#: Longest ensemble name: its output file names must fit the file system's 255 bytes.
MAX_NAME = 128
#: Videos a fixed scheme is "fitted" on: it sees no labels and needs only the members' names and
#: widths, so a small first chunk will do.
FIXED_FIT_ROWS = 256


# --------------------------------------------------------------------------- options and scheme
@dataclass(frozen=True)
class BuildOptions:
    """How a build reads, fits and writes (the ``ensemble build`` options; see :func:`build`)."""

    name: str
    fit_split: str = "heldout"
    k: int | None = None
    n_folds: int = 5
    random_state: int = 0
    chunk_rows: int | None = None
    fold_crops: str = "mean"
    member_k: int | None = None
    require_same_ids: bool = False
    allow_mixed_k: bool = False
    verify: bool = True
    missing: str = "error"
    classes: int | None = None
    progress: bool = True

    _constraints = {"n_folds": Num(lo=2, hi=1000, integer=True),
                    "random_state": Num(lo=0, hi=MAX_SEED, integer=True),
                    "k": Num(lo=1, hi=1_000_000, integer=True, none=True),
                    "chunk_rows": Num(lo=1, hi=10_000_000, integer=True, none=True),
                    "member_k": Num(lo=1, hi=1_000_000, integer=True, none=True),
                    "classes": Num(lo=1, hi=1_000_000, integer=True, none=True)}
    _flags = {"n_folds": "--folds", "random_state": "--seed", "k": "--top", "chunk_rows": "--chunk-rows",
              "member_k": "--member-k", "classes": "--classes"}

    def check(self) -> None:
        """One-line InputError for an invalid option (named as on the command line)."""
        if not _NAME.fullmatch(self.name):
            raise InputError(f"ensemble name {self.name!r} must match [A-Za-z0-9_-]+")
        if len(self.name) > MAX_NAME:
            raise InputError(f"ensemble name is {len(self.name)} characters long; at most {MAX_NAME}")
        for attr, rule in self._constraints.items():
            rule.check(self._flags[attr], getattr(self, attr))
        if self.missing not in MISSING_RULES:
            raise InputError(f"--missing must be one of {', '.join(MISSING_RULES)}, got {self.missing!r}")

    @property
    def align_kw(self) -> dict:
        return {"require_same_ids": self.require_same_ids, "allow_mixed_k": self.allow_mixed_k}


@dataclass(frozen=True)
class Scheme:
    """A scheme resolved once: its name, parameters as given and an unfitted, validated prototype."""

    name: str
    params: dict
    prototype: Combiner

    @property
    def learned(self) -> bool:
        return self.prototype.learned

    def with_params(self, params: dict, random_state, n_folds) -> "Scheme":
        return resolve_scheme(self.name, params, random_state, n_folds)


def resolve_scheme(scheme: str, params: dict | None, random_state, n_folds) -> Scheme:
    """Look ``scheme`` up once and check its parameters (unknown ones, bad values) before any file is read."""
    params = dict(params or {})
    return Scheme(scheme, params, make_combiner(scheme, params, random_state, n_folds))


# --------------------------------------------------------------------------- step 2: inputs
@dataclass
class Inputs:
    """The members of every split, the truth, and the members' order as the user gave them."""

    by_split: dict
    fit_split: str
    truth: dict = field(default_factory=dict)
    truth_files: dict = field(default_factory=dict)
    given_order: list | None = None


def resolve_inputs(members, labels, opts: BuildOptions, *, learned: bool, scheme_name: str = "", csv_cache=None,
                   log=print, need_order: bool = False) -> Inputs:
    """Members of every split (CSV members imported into the cache), truth, the given member order."""
    if isinstance(members, (str, os.PathLike)):
        members = [members]
    members = list(members)
    order = given_member_order(members) if need_order else None
    truth_files = find_truth(labels) if labels else {}
    if has_csv(members):  # each CSV replaced by its store in the CSV cache (imported once)
        h5 = [p for p in truth_files.values() if p.suffix == ".h5"] if opts.classes is None else ()
        members = with_csv_stores(members, classes=opts.classes, label_files=h5, csv_cache=csv_cache,
                                  progress=opts.progress, log=log)
    by_split = discover(members, fold_crops=opts.fold_crops)
    by_split = {s: [m for m in ms if m.name != opts.name] for s, ms in by_split.items()}
    fit_split = opts.fit_split
    if fit_split not in by_split:
        if learned or len(by_split) != 1:
            raise InputError(f"no member store for the fit split {fit_split!r}; splits found: "
                             f"{', '.join(sorted(by_split)) or 'none'}")
        fit_split = next(iter(by_split))  # a fixed scheme may fit on the only split there is
    if not by_split[fit_split]:
        raise InputError("no members to combine")
    classes = opts.classes or by_split[fit_split][0].num_classes
    truth = read_truth(truth_files, classes)
    if learned and fit_split not in truth:
        raise InputError(f"scheme {scheme_name!r} is learned: it needs labels of the {fit_split!r} videos (give --labels "
                         f"labels.{fit_split}.h5 or a truth CSV, {fit_split}=truth.csv)")
    return Inputs(by_split, fit_split, truth, truth_files, order)


# --------------------------------------------------------------------------- step 3: plan
def _single_file(out: Path) -> bool:
    """``--out x.h5`` names one store (unless it is an existing directory)."""
    return out.suffix == ".h5" and not out.is_dir()


def check_out(out) -> Path:
    """``--out``: a directory (existing or new under an existing one) or one ``.h5`` store."""
    if not str(out).strip():
        raise InputError("--out is empty: give an output directory or a .h5 file")
    out = Path(out)
    if _single_file(out):
        check_target(out)
        check_target(out.with_suffix(".json"), what="build record")
        return out
    if out.suffix.lower() in (".csv", ".json", ".h5", ".hdf5", ".gz") and not out.is_dir():
        raise InputError(f"--out {out} looks like a file name, but a build writes a directory of stores (one per "
                         f"split) and its record; give a directory (and --submit FILE.csv for the submission)")
    try:
        st = os.stat(out)
    except OSError:
        st = None  # missing, or a parent is a file: check_directory names the cause
    if st is not None and not stat.S_ISDIR(st.st_mode):
        raise InputError(f"--out is {file_kind(st.st_mode)}, expected a directory (or a new .h5 file name "
                         f"for a single-split build)", out)
    check_directory(out, what="output directory")
    return out


@dataclass
class BuildPlan:
    """Step 3's result: per split the members, alignment and output; the record's and model's paths."""

    splits: list[SplitPlan]
    record_path: Path
    model_path: Path
    skipped: dict = field(default_factory=dict)
    top: int | None = None           # labels kept per video in the outputs (set once the model is fitted)

    @property
    def fit(self) -> SplitPlan:
        return self.splits[0]

    def coverage(self) -> dict:
        return {p.split: p.coverage for p in self.splits if p.coverage.get("lacking")}


def plan_build(inputs: Inputs, opts: BuildOptions, out: Path, *, learned: bool, submit=None) -> BuildPlan:
    """Every split to write, checked (see the module docstring); nothing is read beyond ids and metadata."""
    by_split, fit_split = inputs.by_split, inputs.fit_split
    names = [m.name for m in by_split[fit_split]]
    splits, skipped = [fit_split], {}
    for split in sorted(s for s in by_split if s != fit_split):
        have = {m.name for m in by_split[split]}
        missing = [n for n in names if n not in have]
        if missing:
            skipped[split] = missing
        else:
            splits.append(split)
    single = _single_file(out)
    if single and len(splits) > 1:
        raise InputError(f"--out names one store but the members have stores for {len(splits)} splits "
                         f"({', '.join(sorted(splits))}): give a directory, or one split's stores as members", out)
    if submit is not None and "test" not in splits:
        why = f" (members missing there: {', '.join(skipped['test'])})" if "test" in skipped else ""
        raise InputError(f"--submit needs the test split, but the members have no complete test split{why}; "
                         f"splits: {', '.join(splits)}")
    record_path = out.with_suffix(".json") if single else out / f"{opts.name}.build.json"
    model_path = out.with_suffix(".model.npz") if single else out / f"{opts.name}.model.npz"
    used = {s: [next(m for m in by_split[s] if m.name == n) for n in names] for s in splits}
    inputs_paths = [p for ms in by_split.values() for m in ms for p in m.paths] + list(inputs.truth_files.values())
    plans = []
    for s in splits:
        alignment, coverage = split_alignment(used[s], split=s, fit_split=fit_split, rule=opts.missing,
                                              align_kw=opts.align_kw)
        plans.append(SplitPlan(s, used[s], alignment, out if single else out / f"{opts.name}.{s}.full.h5",
                               coverage))
    for t in [p.path for p in plans] + [record_path, model_path] + ([Path(submit)] if submit else []):
        check_target(t)
        check_not_input(t, inputs_paths)
    _check_same_vocabulary(used, splits, fit_split, inputs.truth, inputs.truth_files, opts.allow_mixed_k)
    return BuildPlan(plans, record_path, model_path, skipped)


def check_labels(plan: BuildPlan, truth: dict, truth_files: dict, *, learned: bool) -> None:
    """Every video to be scored has an entry in its split's labels (else nothing is written)."""
    for p in plan.splits:
        if p.split not in truth:
            continue
        if p.split == plan.fit.split and learned:
            check_labels_cover(truth[p.split], p.alignment.ids, truth_files[p.split])
            continue
        seen = set()  # members scored on all their own videos; each distinct ids array checked once
        for m in p.members:
            for r in m.readers:
                if id(r.ids) not in seen:
                    seen.add(id(r.ids))
                    check_labels_cover(truth[p.split], r.ids, truth_files[p.split], r.path)


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


# --------------------------------------------------------------------------- step 4: fit
def fit_step(plan: BuildPlan, scheme: Scheme, truth: dict, opts: BuildOptions, *, chunk_rows: int,
             client=None) -> FitResult:
    """Fit the scheme on the fit split: all its videos in memory for a learned scheme, the first chunk
    for a fixed one (it sees no labels and needs only the members' names and widths)."""
    fit = plan.fit
    if scheme.learned:
        preds = read_members(fit.members, fit.alignment, chunk_rows=chunk_rows, member_k=opts.member_k)
        labels = align_labels(truth[fit.split], fit.alignment.ids)
    else:
        task = next(chunk_tasks(fit.members, fit.alignment, min(chunk_rows, FIXED_FIT_ROWS)))
        preds = read_chunk(task, [m.k for m in fit.members], member_k=opts.member_k,
                           reader_for=local_readers(fit.members))
        labels = None
    members = {m.name: p for m, p in zip(fit.members, preds)}
    with use_client(client) if client is not None else contextlib.nullcontext():
        return fit_ensemble(members, labels, scheme.prototype, n_folds=opts.n_folds,
                            random_state=opts.random_state, progress=opts.progress)


# --------------------------------------------------------------------------- step 6: record
def make_record(fit: FitResult, scheme: Scheme, plan: BuildPlan, inputs: Inputs, opts: BuildOptions, *,
                outputs: dict, scores: dict, chunk_rows: int, client, t0: float, command: str | None,
                extra_outputs: dict) -> BuildRecord:
    """The build's record, made once from what the steps measured."""
    fit_split = plan.fit.split
    member_gap, best_single, estimate, std_error = fit.member_gap, fit.best_single, None, None
    if not scheme.learned and fit_split in scores:
        # A fixed scheme never sees labels, so its plain score on the fit split is already honest.
        rows = evaluate_members(plan.fit.members, inputs.truth[fit_split], chunk_rows=chunk_rows, client=client)
        scores[fit_split]["members"] = rows
        member_gap = {r["name"]: r["gap"] for r in rows}
        best_single = (rows[0]["name"], rows[0]["gap"])
        estimate = scores[fit_split]["ensemble"]["gap"]
        std_error = fold_std_error(scores[fit_split].get("fold_gaps", ()))
    return BuildRecord(name=opts.name, scheme=scheme.name, params=scheme.params, fit_split=fit_split,
                       members=[RecordMember(m.name, tuple(m.paths)) for m in plan.fit.members],
                       n_fit_videos=len(plan.fit.alignment.ids), member_gap=member_gap, best_single=best_single,
                       uniform_gap=fit.uniform_gap, crossfit=fit.crossfit,
                       estimate=fit.estimate if fit.crossfit is not None else estimate,
                       std_error=fit.std_error if fit.crossfit is not None else std_error,
                       fit_seconds=fit.fit_seconds, fitted=fit.combiner.describe(),
                       weights=fit.weights, importance=fit.combiner.importance(),
                       coverage=plan.coverage(), missing=opts.missing, skipped_splits=plan.skipped,
                       outputs=outputs, scores=scores, extra_outputs=extra_outputs,
                       build_seconds=time.perf_counter() - t0, versions=package_versions(),
                       command=command or " ".join(sys.argv))


# --------------------------------------------------------------------------- the pipeline
@contextlib.contextmanager
def locked_outputs(out: Path, name: str):
    """Hold the lock of this ensemble's outputs; remove the output directory again if we created it
    and the build failed before writing anything into it."""
    single_file = _single_file(out)
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


def build(members, *, scheme: str = "uniform", params: dict | None = None, labels=None, out,
          name: str | None = None, fit_split: str = "heldout", k: int | None = None, n_folds: int = 5,
          random_state: int = 0, chunk_rows: int | None = None, fold_crops: str = "mean", member_k: int | None = None,
          require_same_ids: bool = False, allow_mixed_k: bool = False, verify: bool = True, progress: bool = True,
          command: str | None = None, log=print, client=None, classes: int | None = None,
          csv_cache=None, missing: str = "error", submit=None, submit_top: int = 20,
          submit_precision: int = 6) -> BuildRecord:
    """Build one ensemble (see the module docstring); returns its record, also written as JSON.

    Parameters
    ----------
    members : the member stores: files, directories or globs; Kaggle CSVs too (a file or glob
        ending in ``.csv``, named ``MODEL.SPLIT.csv`` or ``MODEL.csv`` for the test split), each
        imported once into the CSV cache (:mod:`predictions.csvimport`). Their order is the
        order of a list ``member_weights`` (an error where a pattern matches several members).
    scheme, params : the weighting scheme and its parameters (``member_weights`` as a list in
        the members' given order, or ``{member: weight}``).
    labels : labels stores ``labels.<split>.h5`` and truth CSVs (``truth.heldout.csv`` or
        ``heldout=truth.csv``): files, directories or globs.
    out : output directory, or one ``.h5`` file for a single-split build.
    name : ensemble name (default ``ens-<scheme>``); ``[A-Za-z0-9_-]+``, at most 128 characters.
    fit_split : the split the scheme is fitted on.
    k : labels kept per video in the output (default: the members' largest k).
    n_folds, random_state : folds of the cross-fitted estimate; seed of the
        folds and of seeded schemes (0 .. 2**32 - 1).
    chunk_rows : videos per streamed chunk (default :func:`auto_chunk_rows`).
    fold_crops, member_k, require_same_ids, allow_mixed_k : how members are
        read and aligned (see ``ensemble build --help``).
    missing : ``"error"``, ``"zero"`` or ``"drop"``: what to do on a split other
        than the fit split where the members cover different videos (see
        :mod:`ensembler.coverage`).
    verify : check every member store's checksum first (a fixed scheme's on the rows streamed).
    progress, command, log : progress bars, the command line to record, where messages go (None: nowhere).
    client : a dask.distributed Client (chunks combined on its workers).
    classes, csv_cache : for CSV members and truth CSVs: their class count (default: that of the
        stores or labels given, else 3862) and the CSV cache directory.
    submit, submit_top, submit_precision : also write the test split's Kaggle submission CSV there
        (with the other outputs, all or none).
    """
    t0 = time.perf_counter()
    log = log or (lambda *args, **kw: None)   # log=None: silent
    name = f"ens-{scheme}" if name is None else name
    opts = BuildOptions(name=name, fit_split=fit_split, k=k, n_folds=n_folds, random_state=random_state,
                        chunk_rows=chunk_rows, fold_crops=fold_crops, member_k=member_k,
                        require_same_ids=require_same_ids, allow_mixed_k=allow_mixed_k, verify=verify,
                        missing=missing, classes=classes, progress=progress)
    opts.check()
    resolved = resolve_scheme(scheme, params, random_state, n_folds)   # fails before reading anything
    out = check_out(out)
    if submit is not None:
        from .submission import check_submission_target
        check_submission_target(submit, submit_top, submit_precision)
    list_weights = isinstance(resolved.params.get("member_weights"), (list, tuple))
    with locked_outputs(out, name):
        inputs = resolve_inputs(members, labels, opts, learned=resolved.learned, scheme_name=resolved.name,
                                csv_cache=csv_cache, log=log, need_order=list_weights)
        plan = plan_build(inputs, opts, out, learned=resolved.learned, submit=submit)
        if list_weights:
            resolved = _weights_by_name(resolved, plan, inputs, random_state, n_folds)
        for split, missing_members in plan.skipped.items():
            log(f"skipping split {split!r}: members missing there: {', '.join(missing_members)}")
        plan.top = _output_top(k, plan)      # checked before any work
        chunk_rows = opts.chunk_rows or auto_chunk_rows(plan.fit.members)
        streamed = verify and not resolved.learned and client is None   # checksums on the streamed rows
        if verify and not streamed:
            verify_members([m for p in plan.splits for m in p.members], progress=progress)
        checked = [r for p in plan.splits for m in p.members for r in m.readers] if streamed else []
        with _corrupt_first(checked):
            check_labels(plan, inputs.truth, inputs.truth_files, learned=resolved.learned)
            fit = fit_step(plan, resolved, inputs.truth, opts, chunk_rows=chunk_rows, client=client)
            with AtomicSet() as staging:
                outputs, scores = _apply_step(fit, resolved, plan, inputs, opts, staging, checked,
                                              chunk_rows=chunk_rows, client=client)
                extra = _save_extras(fit, plan, outputs, staging, submit, submit_top, submit_precision)
                record = make_record(fit, resolved, plan, inputs, opts, outputs=outputs, scores=scores,
                                     chunk_rows=chunk_rows, client=client, t0=t0, command=command,
                                     extra_outputs=extra)
                staging.add(plan.record_path).write_text(record.to_json(), encoding="utf-8")
        record.path = str(plan.record_path)
    return record


def _apply_step(fit: FitResult, resolved: Scheme, plan: BuildPlan, inputs: Inputs, opts: BuildOptions,
                staging: AtomicSet, checked: list, *, chunk_rows: int, client=None) -> tuple[dict, dict]:
    """Stream every planned split through the fitted combiner into ``staging``; ``checked`` readers have their
    checksums compared on the rows streamed. Returns ``(outputs, scores)`` of :func:`apply_to_splits`."""
    for r in checked:
        r.begin_verify()
    outputs, scores = apply_to_splits(
        fit.combiner, plan.splits, inputs.truth, name=opts.name, fit_split=plan.fit.split, k_out=plan.top,
        chunk_rows=chunk_rows, member_k=opts.member_k, config={"scheme": resolved.name, "params": resolved.params},
        progress=opts.progress, client=client, staging=staging, folds=(opts.n_folds, opts.random_state),
        learned=resolved.learned)
    for r in checked:  # compared already when streamed in order; else a pass of its own
        r.end_verify()
    return outputs, scores


def _weights_by_name(resolved: Scheme, plan: BuildPlan, inputs: Inputs, random_state, n_folds) -> Scheme:
    """``resolved`` with a list ``member_weights`` (in the members' given order) turned into a mapping by name."""
    names = [m.name for m in plan.fit.members]
    by_name = weights_by_name(resolved.params["member_weights"], names, inputs.given_order)
    return resolved.with_params({**resolved.params, "member_weights": by_name}, random_state, n_folds)


def _output_top(k: int | None, plan: BuildPlan) -> int:
    """Labels kept per video in the output: ``k``, else the members' largest k (full members keep 100, all
    of them under 100 classes); an InputError above the class count."""
    top = k or max((m.k or min(100, m.num_classes)) for m in plan.fit.members)
    classes = plan.fit.members[0].num_classes
    if top > classes:
        raise InputError(f"--top {top} exceeds the number of classes {classes}")
    return top


def _save_extras(fit: FitResult, plan: BuildPlan, outputs: dict, staging: AtomicSet, submit, top: int,
                 precision: int) -> dict:
    """The fitted model (for ``ensemble apply``) and the optional submission, staged with the stores."""
    from .persist import save_combiner
    extra = {"top": plan.top, "num_classes": plan.fit.members[0].num_classes}
    try:
        save_combiner(fit.combiner, staging.add(plan.model_path))
        extra["model"] = str(plan.model_path)
    except InputError as err:
        # a model that cannot be saved without pickle is reported, not fatal: the stores are the product
        extra["model_error"] = str(err)
    if submit is not None:
        from .submission import write_checked_submission
        staged = next(p.path for p in plan.splits if p.split == "test")
        info = write_checked_submission(staging.temp_of(staged), staging.add(Path(submit)), top=top,
                                        precision=precision, split_ok=False, verify=False)
        extra["submission"] = {"path": str(submit), **info}
    return extra
