"""The producer jobs behind the ``produce`` CLI: generate data, train, predict, list models.

Output layout under ``[output] run_dir`` (several jobs may share it; each
job's files carry its ``[output] name``)::

    <name>/checkpoints/epoch-NNNN.pt, best.pt     training state (see producers.train)
    <name>/train.log, history.json, config.json
    predictions/<name>.<split>.<crop>.h5          one store per split (and crop)
    labels/labels.<split>.h5                      ground truth of heldout / eval (/ test)

Splits come from :func:`predictions.split.assign_splits` over *all* labelled
ids, so "heldout" and "eval" videos are never trained on; the early-stopping
dev videos are :func:`predictions.split.dev_mask` of the train ids.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from predictions.atomic import atomic_write_text
from predictions.errors import InputError
from predictions.types import Labels, Predictions, as_ids

from .config import JobConfig, build_model, searched_config

LogFn = Callable[[str], None]


# --------------------------------------------------------------------------- helpers

def _logger(path: Path | None, quiet: bool) -> LogFn:
    """Log lines to ``path`` (appended, timestamped) and, unless quiet, to stderr."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)

    def log(line: str) -> None:
        if path is not None:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    return log


def _base_splits(cfg: JobConfig, ids: np.ndarray) -> np.ndarray:
    """Split name per id (train / heldout / eval) over all labelled ``ids``."""
    from predictions.split import assign_splits

    try:
        return assign_splits(ids, heldout=cfg.split.heldout, eval=cfg.split.eval, salt=cfg.split.salt)
    except InputError as err:
        raise InputError(f"[split] {err.problem}", cfg.path) from None


def _splits(cfg: JobConfig, ids: np.ndarray) -> np.ndarray:
    """Split name per id, as this job's model sees them.

    A fold job (``cfg.fold``, a :class:`~producers.config.Fold`) trains on its
    pool: pool videos of fold ``index`` become ``"fold-out"`` (never seen), the
    rest of the pool ``"train"``.
    """
    from predictions.split import fold_of

    split = _base_splits(cfg, ids)
    if cfg.fold is not None:
        split = split.astype("<U8")
        in_pool = np.isin(split, cfg.fold.pool)
        split[in_pool] = "train"
        if cfg.fold.index is not None:
            split[in_pool & (fold_of(ids, cfg.fold.n_folds, cfg.split.salt) == cfg.fold.index)] = "fold-out"
    return split


def _write_labels_once(path: Path, labels: Labels, split: str, source: str) -> str:
    """Write a labels file unless an identical one is there; InputError if a different one is."""
    from predictions.labels import read_labels, write_labels

    if path.exists():
        old = read_labels(path)
        same = (old.num_classes == labels.num_classes and np.array_equal(old.ids, labels.ids)
                and np.array_equal(old.indptr, labels.indptr) and np.array_equal(old.indices, labels.indices))
        if same:
            return "unchanged"
        raise InputError(f"exists with different {split} labels (another job with other data or [split] "
                         f"settings shares this run dir); remove it or use another run_dir", path)
    write_labels(path, labels, split=split, source=source)
    return "written"


def _checkpoint_dir(cfg: JobConfig) -> Path:
    return cfg.job_dir / "checkpoints"


# --------------------------------------------------------------------------- generate

def generate_job(out_dir, *, videos: int, test_videos: int, classes: int, level: str, seed: int,
                 shards: int = 8, progress: bool = True) -> dict:
    """Write a generated data set (see :func:`producers.data.generator.generate`)."""
    from .data.generator import generate

    return generate(out_dir, n_train=videos, n_test=test_videos, num_classes=classes, level=level,
                    shards=shards, seed=seed, progress=progress)


# --------------------------------------------------------------------------- train

def train_job(cfg: JobConfig, *, restart: bool = False, quiet: bool = False, distill: bool = False,
              fold: int | str | None = None):
    """Train the configured model, checkpointing (and resuming) under ``<run_dir>/<name>/``.

    Returns the :class:`~producers.train.History`; writes ``history.json``,
    ``config.json`` and appends to ``train.log``. With ``[predict]
    train_folds = K`` (and ``"train"`` among the splits) it then trains the K
    fold models under ``<name>/folds/fold-k/``, each without fold k of the
    train split. ``distill=True`` (``produce distill``) trains on the
    ``[distill]`` teacher's soft targets too; a config with ``[distill]``
    needs it.

    With ``[train] folds = K`` it trains the K fold models of the pool instead
    (``fold``: only fold ``k``, or ``"refit"``: only the model on the whole
    pool) and returns ``{"fold-k" or "refit": History}``.
    """
    if cfg.distill is not None and not distill:
        raise InputError("this job has a [distill] teacher: train it with `produce distill`", cfg.path)
    if distill and cfg.distill is None:
        raise InputError("`produce distill` needs a [distill] section naming the teacher", cfg.path)
    if cfg.train.folds:
        return _train_pool_folds(cfg, fold, restart=restart, quiet=quiet)
    if fold is not None:
        raise InputError("--fold needs [train] folds = K (K >= 2) in the job", cfg.path)
    history = _train_one(cfg, restart=restart, quiet=quiet)
    if cfg.predict.train_folds and "train" in cfg.predict.splits and cfg.fold is None:
        for k in range(cfg.predict.train_folds):
            fold_history = _train_one(_fold_config(cfg, k), restart=restart, quiet=quiet)
            if not quiet:
                print(f"fold {k + 1}/{cfg.predict.train_folds}: best dev GAP@20 {fold_history.best_gap:.4f}",
                      file=sys.stderr)
    return history


def fold_targets(cfg: JobConfig, fold: int | str | None = None) -> list[int | None]:
    """The fold models ``produce train [--fold F]`` trains: fold indices, None for the refit.

    ``fold`` None: every fold (plus the refit with ``fold_eval = "refit"`` or ``"both"``);
    an index 0..K-1 (or its decimal string) or ``"refit"``: that one.
    """
    n_folds = cfg.train.folds
    if fold is None:
        return list(range(n_folds)) + ([None] if cfg.predict.fold_eval in ("refit", "both") else [])
    if fold == "refit":
        return [None]
    if isinstance(fold, str) and fold.isdecimal() and len(fold) < 4:
        fold = int(fold)
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < n_folds:
        raise InputError(f"--fold must be 0..{n_folds - 1} (the job has [train] folds = {n_folds}) or "
                         f"'refit', got {fold!r}", cfg.path)
    return [fold]


def _train_pool_folds(cfg: JobConfig, fold, *, restart: bool, quiet: bool) -> dict:
    """Train the fold models of ``[train] folds`` (see :func:`train_job`), each resumable on its own."""
    targets = fold_targets(cfg, fold)
    out = {}
    for i, k in enumerate(targets):
        label = "refit" if k is None else f"fold-{k}"
        if not quiet:
            print(f"{label} ({i + 1}/{len(targets)}): training on the pool "
                  f"{'+'.join(cfg.train.pool)}" + ("" if k is None else f" minus fold {k} of {cfg.train.folds}"),
                  file=sys.stderr, flush=True)
        out[label] = h = _train_one(_fold_config(cfg, k), restart=restart, quiet=quiet)
        if not quiet:
            print(f"{label} ({i + 1}/{len(targets)}): best epoch {h.best_epoch}, dev GAP@20 {h.best_gap:.4f}",
                  file=sys.stderr, flush=True)
    return out


def _fold_config(cfg: JobConfig, k: int | None) -> JobConfig:
    """The job of fold ``k``'s model: same model and recipe, fold k of the pool unseen.

    The pool is ``[train] pool`` with ``[train] folds``, else the train split
    (``[predict] train_folds``). ``k`` None: the refit on the whole pool, which
    is the job's own model (its own directory).
    """
    import dataclasses

    from .config import Fold

    if cfg.train.folds:
        n_folds, pool = cfg.train.folds, tuple(cfg.train.pool)
    else:
        n_folds, pool = cfg.predict.train_folds, ("train",)
    pred = dataclasses.replace(cfg.predict, train_folds=0)
    if k is None:
        return dataclasses.replace(cfg, predict=pred, fold=Fold(None, n_folds, pool))
    out = dataclasses.replace(cfg.output, run_dir=str(cfg.job_dir / "folds"), name=f"fold-{k}")
    return dataclasses.replace(cfg, output=out, predict=pred, fold=Fold(k, n_folds, pool))


def _train_one(cfg: JobConfig, *, restart: bool, quiet: bool):
    """One model's training (the job's own or a fold's); see :func:`train_job`.

    A run that fails before its first checkpoint leaves no job directory behind
    if it created it (nothing to resume; no stray config.json or train.log).
    """
    from .train import latest_checkpoint, start_runtime

    # device, torchrun's process group and the seed, once per model; a device this machine lacks is one
    # line, before any file is written
    rt = start_runtime(cfg.train.device, seed=cfg.train.seed, amp=cfg.train.amp)
    check_run_dir(cfg)
    created = [d for d in (Path(cfg.output.run_dir), cfg.job_dir) if not d.exists()]
    try:
        with writing_under(cfg.job_dir):
            return _train_steps(cfg, rt, restart=restart, quiet=quiet)
    except BaseException:
        if cfg.job_dir in created and latest_checkpoint(_checkpoint_dir(cfg)) is None:
            shutil.rmtree(cfg.job_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the run dir too, if this run made it and left it empty
                if Path(cfg.output.run_dir) in created:
                    Path(cfg.output.run_dir).rmdir()
        raise


def check_run_dir(cfg: JobConfig) -> None:
    """InputError naming ``[output] run_dir`` if nothing can be written under it (a file, read-only)."""
    from predictions.atomic import check_directory

    try:
        check_directory(cfg.job_dir, what="[output] run_dir")
    except InputError as err:
        raise InputError(err.problem, cfg.output.run_dir) from None


@contextlib.contextmanager
def writing_under(where: Path):
    """Turn a full or read-only disk (or a path component that is a file) met while writing under
    ``where`` into a one-line InputError naming the file, instead of a traceback."""
    from predictions.atomic import disk_error, why

    try:
        yield
    except (OSError, RuntimeError) as err:
        if not (disk_error(err) or isinstance(err, (NotADirectoryError, PermissionError, FileExistsError))):
            raise
        raise InputError(f"cannot write ({why(err)})", getattr(err, "filename", None) or where) from None


def _train_steps(cfg: JobConfig, rt, *, restart: bool, quiet: bool):
    from predictions.split import dev_mask

    from . import distributed
    from .train import fit

    main = rt.is_main  # under torchrun: rank 0 writes files, logs, progress bars
    quiet = quiet or not main
    job = cfg.job_dir
    ckpt = _checkpoint_dir(cfg)
    if restart and ckpt.exists():
        if main:
            shutil.rmtree(ckpt)
    elif ckpt.exists() and (job / "config.json").exists():
        old = json.loads((job / "config.json").read_text(encoding="utf-8"))
        if old.get("model") != cfg.to_dict()["model"] or old.get("data", {}).get("num_classes") \
                != cfg.data.num_classes:
            raise InputError(f"{ckpt} holds checkpoints of a different [model] configuration; "
                             f"use --restart to discard them or pick another [output] name", cfg.path)
    if main:
        job.mkdir(parents=True, exist_ok=True)
        atomic_write_text(job / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n")
    distributed.barrier()
    log = _logger(job / "train.log" if main else None, quiet)
    log(f"train {cfg.output.name}: model {cfg.model.name} {cfg.model.hparams} from {cfg.path}")
    model = build_model(cfg)  # initial weights from the runtime's seed (DDP copies rank 0's)
    t0 = time.perf_counter()
    if cfg.level == "video":
        loader, dev, stats = _video_training_data(cfg, log, quiet, dev_mask)
    else:
        loader, dev, stats = _frame_training_data(cfg, log, dev_mask)
    n_train, n_dev = stats.n_train, stats.n_dev
    log(f"data: {n_train} training videos, {n_dev} dev videos ({time.perf_counter() - t0:.1f}s)")
    model.fit_stats(stats.feature_sample)
    model.set_prior(stats.class_frequency, n_train)
    t = cfg.train
    t1 = time.perf_counter()
    d = cfg.distill
    history = fit(model, loader, dev, t.recipe(), runtime=rt, checkpoint_dir=ckpt, seed=t.seed,
                  progress=not quiet, log=log, train_size=n_train, dev_batch_size=t.batch_size,
                  label_prior=stats.class_frequency, distill=None if d is None else (d.alpha, d.temperature))
    seconds = time.perf_counter() - t1
    log(f"done: best epoch {history.best_epoch} dev GAP@20 {history.best_gap:.4f}; {seconds:.1f}s")
    info = dict(history.to_dict(), model=cfg.model.name, name=cfg.output.name, n_train=n_train, n_dev=n_dev,
                fit_seconds=seconds)
    if main:
        atomic_write_text(job / "history.json", json.dumps(info, indent=2) + "\n")
    return history


def _video_training_data(cfg: JobConfig, log: LogFn, quiet: bool, dev_mask):
    from .data.readers import load_video_level
    from .datasets import VideoArrays, video_loader

    ids, X, labels = load_video_level(cfg.data.train, num_classes=cfg.data.num_classes, progress=not quiet,
                                      require_labels=True)  # unlabelled training shards: an error
    split = _splits(cfg, ids)
    log(f"splits: " + ", ".join(f"{s} {int((split == s).sum())}" for s in ("train", "heldout", "eval")))
    tr = np.flatnonzero(split == "train")
    is_dev = dev_mask(ids[tr], cfg.split.dev_fraction, cfg.split.salt)
    fit_rows, dev_rows = tr[~is_dev], tr[is_dev]
    if len(fit_rows) == 0:
        raise InputError("no training videos left after the held-out, eval and dev splits", cfg.path)
    fit_labels = labels.take(fit_rows)
    teacher = _teacher(cfg, ids[fit_rows], log)
    loader = video_loader(VideoArrays(X[fit_rows], fit_labels, teacher), cfg.train.batch_size, shuffle=True,
                          workers=cfg.train.workers)
    dev = (X[dev_rows], labels.take(dev_rows)) if len(dev_rows) else None
    return loader, dev, TrainingStats(len(fit_rows), len(dev_rows), X[fit_rows], _frequency(fit_labels))


def _teacher(cfg: JobConfig, ids: np.ndarray, log: LogFn) -> np.ndarray | None:
    """The ``[distill]`` teacher's (len(ids), C) soft targets for the training videos ``ids`` (None if none)."""
    if cfg.distill is None:
        return None
    from .teacher import teacher_targets

    soft = teacher_targets(cfg.distill, ids, cfg.data.num_classes)
    log(f"teacher: {', '.join(cfg.distill.teacher)} (alpha {cfg.distill.alpha}, "
        f"temperature {cfg.distill.temperature})")
    return soft


def _frame_training_data(cfg: JobConfig, log: LogFn, dev_mask):
    from .crops import FrameSelection
    from .data.readers import scan_ids
    from .datasets import FrameShards, TeacherRows, frame_loader

    ids = scan_ids(cfg.data.train, level="frame", require_labels=True)
    split = _splits(cfg, ids)
    tr = ids[split == "train"]
    is_dev = dev_mask(tr, cfg.split.dev_fraction, cfg.split.salt)
    fit_ids, dev_ids = tr[~is_dev], tr[is_dev]
    C, bs = cfg.data.num_classes, cfg.train.batch_size
    selection = FrameSelection(cfg.train.frames, cfg.train.num_frames)  # validated by the config
    log(f"frames: {selection.mode}"
        + (f", {selection.num_frames} per video" if selection.mode == "sample" else ""))
    train = FrameShards(cfg.data.train, C, crop="train", ids=fit_ids, shuffle=True, seed=cfg.train.seed,
                        frames=selection)
    soft = _teacher(cfg, fit_ids, log)
    teacher = None if soft is None else TeacherRows(fit_ids, soft)
    loader = frame_loader(train, bs, workers=cfg.train.workers, teacher=teacher)
    dev = None
    if len(dev_ids):  # scored on prediction crop 0 (the first crop, all frames, or evenly spaced frames)
        dev = (frame_loader(FrameShards(cfg.data.train, C, crop=0, ids=dev_ids, frames=selection), bs), None)
    sample = None
    if cfg.model.input_norm == "standardize":  # frames of the first few hundred training videos
        frames = [f for _, f, _ in FrameShards(cfg.data.train, C, crop=None, ids=fit_ids[:_STATS_VIDEOS])]
        sample = np.concatenate(frames) if frames else None
    need_prior = cfg.model.output_prior or cfg.train.label_smoothing > 0
    frequency = _frequency(_frame_labels(cfg, fit_ids)) if need_prior else None
    return loader, dev, TrainingStats(len(fit_ids), len(dev_ids), sample, frequency)


#: Frame-level videos whose frames give the input standardisation statistics.
_STATS_VIDEOS = 500


@dataclass
class TrainingStats:
    """What the recipe learns from the training videos before the first step.

    ``feature_sample`` (n, D): vectors for the input standardisation (None if
    not needed); ``class_frequency`` (C,): fraction of training videos with
    each label (the prior offset and label smoothing's target; None if not needed).
    """

    n_train: int
    n_dev: int
    feature_sample: np.ndarray | None
    class_frequency: np.ndarray | None


def _frequency(labels: Labels) -> np.ndarray:
    """(C,) fraction of the videos of ``labels`` that carry each class."""
    return np.bincount(labels.indices, minlength=labels.num_classes) / max(len(labels), 1)


# --------------------------------------------------------------------------- predict

def predict_job(cfg: JobConfig, *, crops: int | None = None, quiet: bool = False) -> list[Path]:
    """Write one store per requested split (and crop) plus the labels files; return the store paths.

    Video level: crop ``"full"``. Frame level: ``crops`` (default ``[predict]
    crops``) inference crops ``crop0..crop{N-1}`` and, for N > 1, their mean
    (crop ``"mean"``). Splits with no videos (eval = 0, no test shards) are
    skipped. Stores are top-``k`` (``[predict] top_k``; 0 = full matrix) and
    record the job config (``config``) and the checkpoint used (``extra``).
    """
    from . import distributed
    from .crops import check_n_crops
    from .train import load_best, load_checkpoint

    if distributed.launched_by_torchrun() and os.environ.get("WORLD_SIZE", "1") != "1":
        raise InputError("produce predict runs in one process; run it without torchrun", cfg.path)
    n_crops = check_n_crops(cfg.predict.crops if crops is None else crops)
    if cfg.level == "video" and n_crops != 1:
        raise InputError("--crops applies to frame-level models only", cfg.path)
    cfg = searched_config(cfg)  # after `produce search`: the best trial's values
    if cfg.train.folds:
        return _predict_pool_folds(cfg, n_crops, quiet)
    log = _logger(cfg.job_dir / "train.log" if cfg.job_dir.exists() else None, quiet)
    ckpt = _checkpoint_dir(cfg)
    model = load_best(build_model(cfg), ckpt)
    best = load_checkpoint(ckpt / "best.pt")
    extra = {"checkpoint": str(ckpt / "best.pt"), "best_epoch": int(best.get("epoch", 0)),
             "dev_gap": float(best.get("dev_gap", float("nan"))), "level": cfg.level}
    run = Path(cfg.output.run_dir)
    written: list[Path] = []
    for split, ids, labels, X in _prediction_splits(cfg, log):
        _labels_file(cfg, split, labels, log)
        t0 = time.perf_counter()
        if split == "train" and cfg.predict.train_folds:
            paths = _predict_out_of_fold(cfg, ids, X, n_crops, extra, quiet)
        else:
            paths = _predict_split(cfg, model, split, ids, X, n_crops,
                                   dict(extra, train_predictions="in-sample") if split == "train" else extra, quiet)
        log(f"predicted {split}: {len(ids)} videos in {time.perf_counter() - t0:.1f}s -> "
            + ", ".join(p.name for p in paths))
        written += paths
    return written


def _labels_file(cfg: JobConfig, split: str, labels: Labels | None, log: LogFn) -> None:
    """Write ``<run_dir>/labels/labels.<split>.h5`` (unless an identical one is there)."""
    if labels is None:
        return
    status = _write_labels_once(Path(cfg.output.run_dir) / "labels" / f"labels.{split}.h5", labels, split,
                                source=" ".join(cfg.data.test if split == "test" and cfg.data.test
                                                else cfg.data.train))
    log(f"labels.{split}.h5: {status}")


def _prediction_splits(cfg: JobConfig, log: LogFn, pool: tuple = ()):
    """Yield ``(split, ids, labels or None, X or None)`` per requested, non-empty split.

    ``ids`` are in file order; ``X`` (video level) holds their feature rows.
    The split of an id is decided over all labelled ids. ``pool`` (split
    names) adds a last labelled split ``"oof"``: the videos of those splits.
    """
    from predictions.csvio import read_truth_csv
    from predictions.paths import check_input_file

    from .data.readers import load_video_level, scan_ids

    want = cfg.predict.splits
    video = cfg.level == "video"
    if pool or any(s in want for s in ("train", "heldout", "eval")):
        all_ids = scan_ids(cfg.data.train, level=cfg.level)
        split = _splits(cfg, all_ids)
        X = labels = None
        if video:
            ids, X, labels = load_video_level(cfg.data.train, ids=all_ids[np.isin(split, list(want) + list(pool))],
                                              num_classes=cfg.data.num_classes, progress=False)
        for name, sel in [(n, all_ids[split == n]) for n in ("train", "heldout", "eval") if n in want] \
                + ([("oof", all_ids[np.isin(split, pool)])] if pool else []):
            if not len(sel):
                continue
            if video:
                rows = _positions(ids, sel)
                yield name, sel, labels.take(rows), X[rows]
            else:
                yield name, sel, _frame_labels(cfg, sel), None
    if "test" in want and cfg.data.test:
        X = None
        if video:
            ids, X, _ = load_video_level(cfg.data.test, num_classes=cfg.data.num_classes)
        else:
            ids = scan_ids(cfg.data.test, level="frame")
        truth = None
        if cfg.data.test_truth:
            try:
                check_input_file(Path(cfg.data.test_truth), "a truth CSV file")  # never open a FIFO
                truth = read_truth_csv(cfg.data.test_truth, cfg.data.num_classes).reindex(ids)
            except InputError as err:
                if err.path:
                    raise
                raise InputError(err.problem, cfg.data.test_truth) from None
        yield "test", ids, truth, X
    elif "test" in want:
        log("no [data] test shards: skipping the test split")


def _predict_out_of_fold(cfg: JobConfig, ids: np.ndarray, X: np.ndarray | None, n_crops: int, extra: dict,
                         quiet: bool) -> list[Path]:
    """Train-split stores of ``[predict] train_folds``: each video predicted by the fold model that did not see it."""
    from predictions.split import fold_of

    from .train import load_best

    n_folds = cfg.predict.train_folds
    ckpts = []
    for k in range(n_folds):
        ckpts.append(ckpt := _checkpoint_dir(_fold_config(cfg, k)))
        if not (ckpt / "best.pt").exists():
            raise InputError(f"no fold-{k} model in {ckpt}: with [predict] train_folds = {n_folds}, "
                             f"`produce train` trains the fold models; run it first", cfg.path)
    models = [load_best(build_model(cfg), c) for c in ckpts]
    info = dict(extra, train_predictions="out-of-fold", train_folds=n_folds,
                fold_checkpoints=[str(c / "best.pt") for c in ckpts])
    return _predict_by_fold(cfg, "train", ids, X, fold_of(ids, n_folds, cfg.split.salt), models, n_crops, info,
                            quiet)


def _predict_by_fold(cfg: JobConfig, split: str, ids: np.ndarray, X: np.ndarray | None, folds: np.ndarray,
                     models: list, n_crops: int, extra: dict, quiet: bool) -> list[Path]:
    """Stores of ``split`` whose video ``ids[i]`` is predicted by ``models[folds[i]]``.

    Each fold model writes its rows into a temporary directory; the parts are
    then merged into ``<name>.<split>.<crop>.h5``, rows grouped by fold, and the
    store's ``extra`` records ``fold_rows``: ``[start, stop, k]`` per fold
    (rows ``start:stop`` come from fold model ``k``).
    """
    import dataclasses
    import shutil
    import tempfile

    out_dir = Path(cfg.output.run_dir) / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.output.name}.oof-", dir=out_dir))
    try:
        parts, fold_rows, start = [], [], 0
        for k, model in enumerate(models):
            rows = np.flatnonzero(folds == k)
            if not len(rows):
                continue
            part_cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, run_dir=str(tmp / str(k))))
            parts.append(_predict_split(part_cfg, model, split, ids[rows], None if X is None else X[rows],
                                        n_crops, dict(extra, fold=k), quiet))
            fold_rows.append([start, start + len(rows), k])
            start += len(rows)
        info = dict(extra, fold_rows=fold_rows)
        return [_merge_stores([p[i] for p in parts], out_dir / parts[0][i].name, info)
                for i in range(len(parts[0]))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _predict_pool_folds(cfg: JobConfig, n_crops: int, quiet: bool) -> list[Path]:
    """The stores of a ``[train] folds`` job (see the config docstring): oof, the pool's splits, eval/test.

    InputError naming every fold model not trained yet, before anything is written.
    """
    import dataclasses

    from predictions.split import fold_of

    from .train import FoldMean, load_best

    n_folds, pool = cfg.train.folds, tuple(cfg.train.pool)
    refit = cfg.predict.fold_eval in ("refit", "both")
    ckpts = [_checkpoint_dir(_fold_config(cfg, k)) for k in range(n_folds)]
    missing = [str(k) for k, c in enumerate(ckpts) if not (c / "best.pt").exists()]
    if refit and not (_checkpoint_dir(cfg) / "best.pt").exists():
        missing.append("refit")
    if missing:
        raise InputError(f"fold model(s) {', '.join(missing)} of {n_folds} not trained yet (no best.pt under "
                         f"{cfg.job_dir / 'folds'}/fold-N/checkpoints): run `produce train {cfg.path} --fold N` "
                         f"for each", cfg.path)
    log = _logger(cfg.job_dir / "train.log" if cfg.job_dir.exists() else None, quiet)
    models = [load_best(build_model(cfg), c) for c in ckpts]
    extra = {"level": cfg.level, "n_folds": n_folds, "fold_pool": list(pool), "fold_salt": cfg.split.salt,
             "fold_checkpoints": [str(c / "best.pt") for c in ckpts]}
    written: list[Path] = []
    for split, ids, labels, X in _prediction_splits(cfg, log, pool=pool):
        _labels_file(cfg, split, labels, log)
        t0 = time.perf_counter()
        if split == "oof" or split in pool:
            paths = _predict_by_fold(cfg, split, ids, X, fold_of(ids, n_folds, cfg.split.salt), models, n_crops,
                                     dict(extra, fold_predictions="out-of-fold"), quiet)
        else:
            paths = []
            if cfg.predict.fold_eval in ("mean", "both"):
                paths += _predict_split(cfg, FoldMean(models), split, ids, X, n_crops,
                                        dict(extra, fold_predictions="mean"), quiet)
            if refit:  # "both": the refit's stores under <name>-refit, beside the mean's
                ckpt = _checkpoint_dir(cfg) / "best.pt"
                named = cfg if cfg.predict.fold_eval == "refit" else dataclasses.replace(
                    cfg, output=dataclasses.replace(cfg.output, name=f"{cfg.output.name}-refit"))
                paths += _predict_split(named, load_best(build_model(cfg), ckpt.parent), split, ids, X, n_crops,
                                        dict(extra, fold_predictions="refit", checkpoint=str(ckpt)), quiet)
        log(f"predicted {split}: {len(ids)} videos in {time.perf_counter() - t0:.1f}s -> "
            + ", ".join(p.name for p in paths))
        written += paths
    return written


def _merge_stores(parts: list[Path], out: Path, extra: dict) -> Path:
    """Concatenate the rows of stores of one model, split and crop into ``out`` (atomic)."""
    from predictions.store import StoreWriter, open_store

    readers = [open_store(p) for p in parts]
    try:
        meta = readers[0].meta
        ids = np.concatenate([r.ids for r in readers])
        with StoreWriter(out, ids=ids, num_classes=meta.num_classes, k=meta.k, model=meta.model,
                         split=meta.split, crop=meta.crop, config=meta.config, extra=extra) as writer:
            for r in readers:
                writer.write(r.read())
    finally:
        for r in readers:
            r.close()
    return out


def _frame_labels(cfg: JobConfig, ids: np.ndarray) -> Labels:
    """Labels of frame-level videos ``ids`` (in that order), read from the shards' context."""
    from .data.readers import iter_frame

    keep = set(ids.tolist())
    got, lists = [], []
    for ex in iter_frame(cfg.data.train, max_frames=1):
        if ex.id in keep:
            got.append(ex.id)
            lists.append(ex.labels)
    return Labels.from_lists(got, lists, cfg.data.num_classes).reindex(ids)


def _positions(have: np.ndarray, want: np.ndarray) -> np.ndarray:
    from predictions.types import row_index

    return row_index(as_ids(have), as_ids(want), "the shards")


def _predict_split(cfg: JobConfig, model, split: str, ids: np.ndarray, X: np.ndarray | None, n_crops: int,
                   extra: dict, quiet: bool) -> list[Path]:
    from contextlib import ExitStack

    from predictions.store import StoreWriter, store_name

    from .datasets import arrays_batches
    from .train import predict

    C = cfg.data.num_classes
    k = cfg.predict.top_k if 0 < cfg.predict.top_k < C else None
    out = Path(cfg.output.run_dir) / "predictions"
    crops = ["full"] if cfg.level == "video" else [str(i) for i in range(n_crops)] + (["mean"] if n_crops > 1
                                                                                       else [])
    paths = [out / store_name(cfg.output.name, split, c) for c in crops]
    with ExitStack() as stack:
        writers = [stack.enter_context(StoreWriter(p, ids=ids, num_classes=C, k=k, model=cfg.output.name,
                                                   split=split, crop=c, config=cfg.to_dict(),
                                                   extra=dict(extra, model_name=cfg.model.name)))
                   for p, c in zip(paths, crops)]
        if cfg.level == "video":
            batches = arrays_batches(X, ids, cfg.train.batch_size)
            for bid, probs in predict(model, batches, cfg.train.device,
                                      amp=cfg.train.amp, progress=not quiet, total=len(ids)):
                writers[0].write(Predictions.from_dense(bid, probs, k=k))
        else:
            from .crops import crop_mean

            top = cfg.predict.crop_top_k  # > 0: Zou's rule (each crop's top k only); 0: plain mean
            for bid, per_crop in _frame_predictions(cfg, model, split, ids, n_crops, quiet):
                for w, probs in zip(writers, per_crop + ([crop_mean(per_crop, top)] if n_crops > 1 else [])):
                    w.write(Predictions.from_dense(bid, probs, k=k))
    return paths


def _frame_predictions(cfg: JobConfig, model, split: str, ids: np.ndarray, n_crops: int, quiet: bool):
    """Yield ``(ids, [probs of crop 0, ..., crop N-1])`` per batch, rows in the order of ``ids``.

    Each crop's frames come from the job's :class:`~producers.crops.FrameSelection`
    (``frames = "crop"``: Zou's inference crops; "all" and "sample" have one
    crop). Reads with one process (the store writer needs rows in a known order).
    """
    from torch.utils.data import DataLoader

    from .crops import FrameSelection
    from .datasets import FrameShards, _identity, collate_frames
    from .train import predict

    frames = FrameSelection(cfg.train.frames, cfg.train.num_frames)
    if n_crops > frames.max_crops:
        raise InputError(f"{n_crops} prediction crops need [train] frames = 'crop' (frames = "
                         f"{frames.mode!r} predicts from one set of frames)", cfg.path)
    patterns = cfg.data.test if split == "test" else cfg.data.train
    shards = FrameShards(patterns, cfg.data.num_classes, crop=None, ids=ids)
    loader = DataLoader(shards, batch_size=cfg.train.batch_size, collate_fn=_identity)
    C = cfg.data.num_classes
    bar = None
    if not quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc=f"predict {split}", unit="videos", leave=False)
    for items in loader:
        if bar is not None:
            bar.update(len(items))
        per_crop = []
        for c in range(n_crops):
            cropped = [(i, f[frames.predict(len(f), c)] if len(f) else f, np.zeros(0, np.int64))
                       for i, f, _ in items]
            (_, probs), = predict(model, [collate_frames(cropped, C)], cfg.train.device, amp=cfg.train.amp)
            per_crop.append(probs)
        yield as_ids([i for i, _, _ in items]), per_crop
    if bar is not None:
        bar.close()


# --------------------------------------------------------------------------- models

def models_table(level: str | None = None) -> list[tuple[str, str, str]]:
    """``(name, level, one-line doc)`` of each registered model."""
    from .models.registry import get_entry, list_models

    return [(n, get_entry(n).level, get_entry(n).doc) for n in list_models(level)]
