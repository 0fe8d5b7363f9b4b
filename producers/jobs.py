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
from .datasets import seed_everything

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


def _splits(cfg: JobConfig, ids: np.ndarray) -> np.ndarray:
    """Split name per id; a fold job (``cfg.fold = (k, K)``) marks its train fold ``"fold-out"`` (unseen)."""
    from predictions.split import assign_splits, fold_of

    try:
        split = assign_splits(ids, heldout=cfg.split.heldout, eval=cfg.split.eval, salt=cfg.split.salt)
    except InputError as err:
        raise InputError(f"[split] {err.problem}", cfg.path) from None
    if cfg.fold is not None:
        k, n_folds = cfg.fold
        split = split.astype("<U8")
        split[(split == "train") & (fold_of(ids, n_folds, cfg.split.salt) == k)] = "fold-out"
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

def train_job(cfg: JobConfig, *, restart: bool = False, quiet: bool = False, distill: bool = False):
    """Train the configured model, checkpointing (and resuming) under ``<run_dir>/<name>/``.

    Returns the :class:`~producers.train.History`; writes ``history.json``,
    ``config.json`` and appends to ``train.log``. With ``[predict]
    train_folds = K`` (and ``"train"`` among the splits) it then trains the K
    fold models under ``<name>/folds/fold-k/``, each without fold k of the
    train split. ``distill=True`` (``produce distill``) trains on the
    ``[distill]`` teacher's soft targets too; a config with ``[distill]``
    needs it.
    """
    if cfg.distill is not None and not distill:
        raise InputError("this job has a [distill] teacher: train it with `produce distill`", cfg.path)
    if distill and cfg.distill is None:
        raise InputError("`produce distill` needs a [distill] section naming the teacher", cfg.path)
    history = _train_one(cfg, restart=restart, quiet=quiet)
    if cfg.predict.train_folds and "train" in cfg.predict.splits and cfg.fold is None:
        for k in range(cfg.predict.train_folds):
            fold_history = _train_one(_fold_config(cfg, k), restart=restart, quiet=quiet)
            if not quiet:
                print(f"fold {k + 1}/{cfg.predict.train_folds}: best dev GAP@20 {fold_history.best_gap:.4f}",
                      file=sys.stderr)
    return history


def _fold_config(cfg: JobConfig, k: int) -> JobConfig:
    """The job that trains fold ``k``'s model: same model and recipe, fold k of the train split unseen."""
    import dataclasses

    out = dataclasses.replace(cfg.output, run_dir=str(cfg.job_dir / "folds"), name=f"fold-{k}")
    pred = dataclasses.replace(cfg.predict, train_folds=0)
    return dataclasses.replace(cfg, output=out, predict=pred, fold=(k, cfg.predict.train_folds))


def _train_one(cfg: JobConfig, *, restart: bool, quiet: bool):
    """One model's training (the job's own or a fold's); see :func:`train_job`.

    A run that fails before its first checkpoint leaves no job directory behind
    if it created it (nothing to resume; no stray config.json or train.log).
    """
    from .train import latest_checkpoint, resolve_device

    resolve_device(cfg.train.device)  # a device this machine lacks: one line, before any file is written
    created = [d for d in (Path(cfg.output.run_dir), cfg.job_dir) if not d.exists()]
    try:
        return _train_steps(cfg, restart=restart, quiet=quiet)
    except BaseException:
        if cfg.job_dir in created and latest_checkpoint(_checkpoint_dir(cfg)) is None:
            shutil.rmtree(cfg.job_dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # the run dir too, if this run made it and left it empty
                if Path(cfg.output.run_dir) in created:
                    Path(cfg.output.run_dir).rmdir()
        raise


def _train_steps(cfg: JobConfig, *, restart: bool, quiet: bool):
    from predictions.split import dev_mask

    from . import distributed
    from .train import fit

    ddp = distributed.setup(cfg.train.device)  # under torchrun: rank 0 writes files, logs, progress bars
    main = ddp is None or ddp.is_main
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
    seed_everything(cfg.train.seed)  # the initial weights depend on the seed only, on every rank
    model = build_model(cfg)
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
    history = fit(model, loader, dev, t.recipe(), device=t.device, amp=t.amp, checkpoint_dir=ckpt, seed=t.seed,
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
    log = _logger(cfg.job_dir / "train.log" if cfg.job_dir.exists() else None, quiet)
    ckpt = _checkpoint_dir(cfg)
    model = load_best(build_model(cfg), ckpt)
    best = load_checkpoint(ckpt / "best.pt")
    extra = {"checkpoint": str(ckpt / "best.pt"), "best_epoch": int(best.get("epoch", 0)),
             "dev_gap": float(best.get("dev_gap", float("nan"))), "level": cfg.level}
    run = Path(cfg.output.run_dir)
    written: list[Path] = []
    for split, ids, labels, X in _prediction_splits(cfg, log):
        if labels is not None:
            status = _write_labels_once(run / "labels" / f"labels.{split}.h5", labels, split,
                                        source=" ".join(cfg.data.test if split == "test" and cfg.data.test
                                                        else cfg.data.train))
            log(f"labels.{split}.h5: {status}")
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


def _prediction_splits(cfg: JobConfig, log: LogFn):
    """Yield ``(split, ids, labels or None, X or None)`` per requested, non-empty split.

    ``ids`` are in file order; ``X`` (video level) holds their feature rows.
    The split of an id is decided over all labelled ids.
    """
    from predictions.csvio import read_truth_csv

    from .data.readers import load_video_level, scan_ids

    want = cfg.predict.splits
    video = cfg.level == "video"
    if any(s in want for s in ("train", "heldout", "eval")):
        all_ids = scan_ids(cfg.data.train, level=cfg.level)
        split = _splits(cfg, all_ids)
        X = labels = None
        if video:
            ids, X, labels = load_video_level(cfg.data.train, ids=all_ids[np.isin(split, want)],
                                              num_classes=cfg.data.num_classes, progress=False)
        for name in ("train", "heldout", "eval"):
            sel = all_ids[split == name]
            if name not in want or not len(sel):
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
    """Train-split stores whose every video is predicted by the fold model that did not see it.

    Each fold model writes its fold into a temporary directory; the parts are
    then merged into ``<name>.train.<crop>.h5`` (rows grouped by fold).
    """
    import dataclasses
    import shutil
    import tempfile

    from predictions.split import fold_of

    from .train import load_best

    n_folds = cfg.predict.train_folds
    folds = fold_of(ids, n_folds, cfg.split.salt)
    out_dir = Path(cfg.output.run_dir) / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.output.name}.oof-", dir=out_dir))
    try:
        parts = []
        for k in range(n_folds):
            ckpt = _checkpoint_dir(_fold_config(cfg, k))
            if not (ckpt / "best.pt").exists():
                raise InputError(f"no fold-{k} model in {ckpt}: with [predict] train_folds = {n_folds}, "
                                 f"`produce train` trains the fold models; run it first", cfg.path)
            model = load_best(build_model(cfg), ckpt)
            rows = np.flatnonzero(folds == k)
            part_cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, run_dir=str(tmp / str(k))))
            parts.append(_predict_split(part_cfg, model, "train", ids[rows], None if X is None else X[rows],
                                        n_crops, dict(extra, fold=k), quiet))
        info = dict(extra, train_predictions="out-of-fold", train_folds=n_folds,
                    fold_checkpoints=[str(_checkpoint_dir(_fold_config(cfg, k)) / "best.pt")
                                      for k in range(n_folds)])
        return [_merge_stores([p[i] for p in parts], out_dir / parts[0][i].name, info)
                for i in range(len(parts[0]))]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
