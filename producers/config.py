"""A producer job's whole configuration in one TOML file, validated before any work starts.

Example (relative paths are relative to the config file's directory)::

    [model]
    name = "moe"                      # see `produce models`
    input_norm = "l2"                 # default; none | l2 | standardize | batchnorm (producers.models.producer)
    output_prior = true               # default; add the training set's class log-odds to the logits
    features = "all"                  # all | rgb | audio: the part of the video vector the model sees
    [model.hparams]
    num_experts = 4

    [data]
    train = ["data/video/train-*.tfrecord"]   # labelled pool (glob or list of globs)
    test = "data/video/test-*.tfrecord"       # optional unlabelled test shards
    test_truth = "data/test_truth.csv"        # optional: labels for the test split
    level = "video"                           # default: the model's level
    num_classes = 3862

    [split]           # predictions.split.assign_splits over all labelled ids
    heldout = 20000
    eval = 0
    dev_fraction = 0.05
    salt = "yt8m-ensemble-v1"

    [train]                           # the recipe: producers.train.Recipe
    epochs = 10
    batch_size = 1024                 # default 1024 (video) / 128 (frame)
    lr = 0.001
    lr_schedule = "exponential"       # exponential | cosine | constant (producers.schedule)
    lr_decay = 0.95                   # exponential: factor per epoch, or per decay_examples
    decay_examples = 0                # 0: decay per epoch; e.g. 4000000 as the starter code
    warmup_examples = 0               # linear warm-up over this many examples
    min_lr_ratio = 0.0                # cosine: floor as a fraction of lr
    optimizer = "adam"                # adam | adamw
    weight_decay = 0.0
    clip_grad_norm = 0.0              # > 0: clip the global gradient norm
    label_smoothing = 0.0             # e: train on (1 - e) y + e * class prior
    patience = 3                      # epochs without a better dev GAP@20 before stopping
    seed = 0
    device = "auto"
    amp = true                        # used on CUDA only
    workers = 0
    frames = "crop"                   # frame-level input: crop | all | sample (producers.crops); default:
                                      # the input of the model's paper (`produce models`), else crop
    num_frames = 300                  # frames = "sample": frames drawn per video
    folds = 0                         # K >= 2: K fold models over the pool (out-of-fold stacking, see below)
    pool = ["train", "heldout"]       # folds > 0: the labelled splits the fold models share out

    [predict]
    crops = 1                         # frame-level models: inference crops (1..5)
    top_k = 100                       # 0 (or >= num_classes): the full score matrix
    splits = ["heldout", "eval", "test"]   # "train" too: predictions of the training videos (a teacher)
    train_folds = 0                   # K >= 2: train-split predictions out of fold, from K more models
                                      # (each trained without one fold); 0: in-sample, from the model
    crop_top_k = 0                    # > 0: Zou's multi-crop rule, each crop's scores outside its top k
                                      # set to 0 before the mean (20 in the paper); 0: plain mean
    fold_eval = "mean"                # [train] folds > 0: eval/test scored by the mean of the K fold
                                      # models ("mean") or by one more model trained on the whole pool ("refit");
                                      # "both": the mean as <name>, the refit as <name>-refit (to compare them)

    [distill]                         # optional: `produce distill` (see DistillConfig)
    teacher = "runs/ensembles/ens-lr.train.full.h5"
    alpha = 0.5
    temperature = 1.0

    [output]
    run_dir = "runs"
    name = "moe"                      # default: the model name; [A-Za-z0-9_-]+

Out-of-fold producers (``[train] folds = K``): the videos of the ``pool``
splits (default train + heldout; never eval) are dealt into K folds by
:func:`predictions.split.fold_of` (a hash of the id, so every job agrees with
no shared file); fold model k trains on the pool minus fold k (minus its
hashed dev slice) under ``<name>/folds/fold-k/``. ``produce train job.toml``
trains every fold (each resumable), ``--fold k`` one of them (a batch job per
fold); ``produce predict`` writes ``<name>.oof.<crop>.h5`` (every pool video
predicted by the fold model that did not see it, ``labels/labels.oof.h5``
beside it), the pool's own splits (train, heldout) out of fold too, and
eval/test by the mean of the fold models (``fold_eval = "mean"``) or a refit
on the whole pool (``"refit"``, trained by ``produce train`` as the job's own
model, or ``--fold refit``); ``"both"`` writes the mean under ``<name>`` and
the refit's stores under ``<name>-refit``, so that one run measures both.

Every problem (unknown section or key, wrong type, unknown model or model
option, bad value) is one :class:`~predictions.errors.InputError` naming the
config file. :meth:`JobConfig.to_dict` gives a plain dict (absolute paths,
no ``None``) that :func:`config_from_dict` turns back into an equal config.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

from predictions.errors import InputError
from predictions.params import Num
from predictions.paths import check_input_file
from predictions.split import DEFAULT_SALT
from predictions.storeformat import MAX_CLASSES

from .models.producer import FEATURES, NORMS
from .search_space import apply_overrides, parse_search
from .recipe import Recipe

#: Width of a YouTube-8M video/frame feature vector (1024 RGB + 128 audio).
FEATURE_DIM = 1152
SPLIT_NAMES = ("train", "heldout", "eval", "test")
DEFAULT_SPLITS = ("heldout", "eval", "test")
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass
class ModelConfig:
    """``[model]``: the registered architecture, its hyper-parameters and what the Producer wrapper adds.

    Defaults measured on the real YouTube-8M shards (docs/real-data-training.md):
    ``input_norm = "l2"`` (the starter code's normalisation; +0.005 eval GAP
    for the MLP over none, batch norm and standardisation lose 0.009) and
    ``output_prior = true`` (+0.02 at 15 epochs; most of the first epoch is no
    longer spent pushing 3,862 sigmoids from 0.5 to the class prior).
    """

    name: str
    input_norm: str = "l2"
    output_prior: bool = True
    features: str = "all"
    hparams: dict = field(default_factory=dict)


@dataclass
class DataConfig:
    train: list[str]
    test: list[str] | None = None
    test_truth: str | None = None
    level: str | None = None
    num_classes: int = 3862


@dataclass
class SplitConfig:
    heldout: int = 20000
    eval: int = 0
    dev_fraction: float = 0.05
    salt: str = DEFAULT_SALT


@dataclass
class TrainConfig(Recipe):
    """The :class:`~producers.train.Recipe` plus how to feed and where to run it."""

    patience: int | None = 3
    batch_size: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    workers: int = 0
    frames: str | None = None  # frame level: "crop" (Zou's crops), "all" (<= 300 frames), "sample" (num_frames);
    #                            None: the input the model's paper used (its registry entry), else "crop"
    num_frames: int = 300     # frames = "sample": frames per video (random in training, evenly spaced at prediction)
    folds: int = 0            # K >= 2: K fold models over the pool (module docstring)
    pool: list[str] = field(default_factory=lambda: ["train", "heldout"])

    def recipe(self) -> Recipe:
        return Recipe(**{f.name: getattr(self, f.name) for f in dataclasses.fields(Recipe)})


@dataclass
class PredictConfig:
    crops: int = 1
    top_k: int = 100
    splits: list[str] = field(default_factory=lambda: list(DEFAULT_SPLITS))
    train_folds: int = 0
    crop_top_k: int = 0
    fold_eval: str = "mean"


@dataclass
class DistillConfig:
    """``produce distill``: train on the teacher's soft predictions of the training videos as well as the labels.

    ``teacher``: store(s) of the ``train`` split (files or globs; several are
    averaged: a uniform ensemble); ``alpha``: weight of the teacher's soft
    targets (1 - alpha: the labels'); ``temperature``: divides the teacher's and
    the student's logits in the soft term (Hinton et al.; the soft loss is
    scaled by T^2); ``floor``: probability given to classes outside a top-k
    teacher's k.
    """

    teacher: list[str]
    alpha: float = 0.5
    temperature: float = 1.0
    floor: float = 0.0


@dataclass
class OutputConfig:
    run_dir: str = "runs"
    name: str | None = None


@dataclass(frozen=True)
class Fold:
    """The videos one fold model trains on: the ``pool`` splits, minus fold ``index`` of ``n_folds``.

    ``index`` None: the whole pool (the refit of ``fold_eval = "refit"``).
    ``[predict] train_folds`` uses ``pool = ("train",)``; ``[train] folds`` the job's pool.
    """

    index: int | None
    n_folds: int
    pool: tuple = ("train",)


@dataclass
class JobConfig:
    """A validated job; see the module docstring. ``path`` is the config file (not serialised)."""

    model: ModelConfig
    data: DataConfig
    split: SplitConfig = field(default_factory=SplitConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    distill: DistillConfig | None = None
    path: str | None = field(default=None, compare=False)
    search: object = field(default=None, compare=False)  # producers.search_space.SearchSpace or None
    #: set on the job of one fold model (see :class:`Fold`); None for a job's own model
    fold: "Fold | None" = field(default=None, compare=False)

    @property
    def level(self) -> str:
        return self.data.level  # type: ignore[return-value]  (always set after validation)

    @property
    def job_dir(self) -> Path:
        """``<run_dir>/<name>``: checkpoints, train.log, history.json."""
        return Path(self.output.run_dir) / self.output.name

    def to_dict(self) -> dict:
        """Plain nested dict (TOML/JSON-serialisable: ``None`` values are dropped)."""
        out = {}
        for f in dataclasses.fields(self):
            if f.name in ("path", "search", "fold") or getattr(self, f.name) is None:
                continue
            sec = dataclasses.asdict(getattr(self, f.name))
            out[f.name] = {k: v for k, v in sec.items() if v is not None}
        return out


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "split": SplitConfig, "train": TrainConfig,
             "predict": PredictConfig, "output": OutputConfig}


# --------------------------------------------------------------------------- type checking

def _type_ok(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, h) for h in typing.get_args(hint))
    if origin is list:
        (item,) = typing.get_args(hint)
        return isinstance(value, list) and all(_type_ok(v, item) for v in value)
    if hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, hint)


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _section(cls, raw, name: str, path: str):
    if not isinstance(raw, dict):
        raise InputError(f"[{name}] must be a table", path)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise InputError(f"[{name}] has unknown option(s) {', '.join(unknown)}; "
                         f"options: {', '.join(fields)}", path)
    values = {}
    for key, f in fields.items():
        if key not in raw:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise InputError(f"[{name}] is missing the required option {key!r}", path)
            continue
        v = raw[key]
        if (name, key) in (("data", "train"), ("data", "test"), ("distill", "teacher")) and isinstance(v, str):
            v = [v]  # one glob or a list of globs
        if not _type_ok(v, hints[key]):
            raise InputError(f"[{name}] {key} = {v!r}: expected {_type_name(hints[key])}", path)
        values[key] = float(v) if hints[key] is float else v
    return cls(**values)


#: Model options that may name a file (a vocabulary): resolved like every config path.
_PATH_HPARAMS = ("verticals", "class_order")


def _check_hparams(model: ModelConfig, path: str, base: Path) -> dict:
    """Validate hparams against the registry (names and types of the defaults); returns them.

    A string given for a file-valued option (``verticals``, ``class_order``) is
    a path, resolved against ``base`` like every other path of the config.
    """
    from producers.models.registry import get_entry

    try:
        entry = get_entry(model.name)
    except InputError as err:
        raise InputError(f"[model] {err}", path) from None
    known = entry.hparams()
    unknown = sorted(set(model.hparams) - set(known))
    if unknown:
        raise InputError(f"[model.hparams] model {model.name!r} has no option(s) {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(known)) or 'none'}", path)
    out = {}
    for key, v in model.hparams.items():
        default = known[key]
        if key in _PATH_HPARAMS and isinstance(v, str):
            out[key] = _resolve(v, base)
            continue
        if default is None or default is inspect.Parameter.empty:
            ok = True
        elif isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, int):
            ok = isinstance(v, int) and not isinstance(v, bool)
        elif isinstance(default, float):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool)
            v = float(v) if ok else v
        elif isinstance(default, (list, tuple)):
            ok = isinstance(v, list)
        else:
            ok = isinstance(v, type(default))
        if not ok:
            raise InputError(f"[model.hparams] {key} = {v!r}: expected {type(default).__name__} "
                             f"(default {default!r}) for model {model.name!r}", path)
        out[key] = v
    return out


#: Splits a fold pool may merge (eval is scored by nobody until the end).
POOL_SPLITS = ("train", "heldout")
FOLD_EVAL = ("mean", "refit", "both")


def _check_folds(train: TrainConfig, predict: PredictConfig, path: str) -> None:
    """``[train] folds / pool`` and ``[predict] fold_eval``; InputError naming the option."""
    if train.folds < 0 or train.folds == 1 or train.folds > 100:
        raise InputError(f"[train] folds must be 0 (one model) or 2..100, got {train.folds}", path)
    if not train.pool or len(set(train.pool)) != len(train.pool) or set(train.pool) - set(POOL_SPLITS) \
            or "train" not in train.pool:
        raise InputError(f"[train] pool must be distinct names from {', '.join(POOL_SPLITS)} including "
                         f"'train', got {train.pool}", path)
    if predict.fold_eval not in FOLD_EVAL:
        raise InputError(f"[predict] fold_eval must be one of {', '.join(map(repr, FOLD_EVAL))}, "
                         f"got {predict.fold_eval!r}", path)
    if train.folds and predict.train_folds:
        raise InputError("[train] folds already predicts the pool (train included) out of fold; "
                         "leave [predict] train_folds at 0", path)


def _resolve(p: str, base: Path) -> str:
    q = Path(p).expanduser()
    return os.path.normpath(q if q.is_absolute() else base / q)  # normpath keeps glob characters


# --------------------------------------------------------------------------- loading

def config_from_dict(raw: dict, *, path: str | Path = "<config>", base_dir: str | Path | None = None,
                     check_model: bool = True) -> JobConfig:
    """Validate a nested dict (as parsed from TOML) into a :class:`JobConfig`.

    Relative paths are resolved against ``base_dir`` (default: the directory of
    ``path``). ``check_model`` also builds the model on the meta device (no
    memory) so that bad option values fail here, not mid-run.
    """
    path = str(path)
    base = Path(base_dir) if base_dir is not None else Path(path).resolve().parent
    if not isinstance(raw, dict):
        raise InputError("the config must be a TOML table", path)
    unknown = sorted(set(raw) - set(_SECTIONS) - {"search", "distill"})
    if unknown:
        raise InputError(f"unknown section(s) {', '.join('[' + u + ']' for u in unknown)}; "
                         f"sections: {', '.join(_SECTIONS)}, distill, search", path)
    for required in ("model", "data"):
        if required not in raw:
            raise InputError(f"missing section [{required}]", path)
    sec = {name: _section(cls, raw.get(name, {}), name, path) for name, cls in _SECTIONS.items()}
    model, data, split, train, predict, output = (sec[n] for n in _SECTIONS)

    model.hparams = _check_hparams(model, path, base)
    from producers.models.registry import get_entry

    level = get_entry(model.name).level
    if data.level is None:
        data.level = level
    if data.level not in ("video", "frame"):
        raise InputError(f"[data] level must be 'video' or 'frame', got {data.level!r}", path)
    if data.level != level:
        raise InputError(f"[data] level is {data.level!r} but model {model.name!r} is a {level}-level model",
                         path)
    if not data.train:
        raise InputError("[data] train lists no shard pattern", path)
    data.train = [_resolve(p, base) for p in data.train]
    data.test = None if data.test is None else [_resolve(p, base) for p in data.test]
    data.test_truth = None if data.test_truth is None else _resolve(data.test_truth, base)
    if data.test_truth is not None and os.path.lexists(data.test_truth):
        check_input_file(Path(data.test_truth), "a truth CSV file")  # a FIFO would block the job later
    try:
        Num(1, MAX_CLASSES, integer=True).check("[data] num_classes", data.num_classes)
    except InputError as err:
        raise InputError(err.problem, path) from None

    if split.heldout < 0 or split.eval < 0:
        raise InputError(f"[split] heldout and eval must be >= 0, got {split.heldout}, {split.eval}", path)
    if not 0.0 <= split.dev_fraction < 1.0:
        raise InputError(f"[split] dev_fraction must be in [0, 1), got {split.dev_fraction}", path)

    if train.batch_size is None:
        train.batch_size = 1024 if data.level == "video" else 128
    for key, low in (("epochs", 1), ("batch_size", 1), ("workers", 0)):
        if getattr(train, key) < low:
            raise InputError(f"[train] {key} must be >= {low}, got {getattr(train, key)}", path)
    try:
        train.recipe().check()
    except ValueError as err:
        raise InputError(f"[train] {err}", path) from None
    from .crops import FRAME_MODES

    if train.frames is None:   # the paper's input, never silently another paper's crops
        train.frames = (get_entry(model.name).frames or "crop") if data.level == "frame" else "crop"
    if train.frames not in FRAME_MODES:
        raise InputError(f"[train] frames must be one of {', '.join(map(repr, FRAME_MODES))}, "
                         f"got {train.frames!r}", path)
    if train.num_frames < 1:
        raise InputError(f"[train] num_frames must be >= 1, got {train.num_frames}", path)
    if data.level == "video" and (train.frames, train.num_frames) != ("crop", 300):
        raise InputError("[train] frames and num_frames apply to frame-level models only", path)
    if train.frames != "crop" and predict.crops > 1:
        raise InputError(f"[predict] crops > 1 needs [train] frames = 'crop' (frames = {train.frames!r} "
                         f"predicts from one set of frames)", path)
    if model.input_norm not in NORMS:
        raise InputError(f"[model] input_norm must be one of {', '.join(NORMS)}, got {model.input_norm!r}", path)
    if model.features not in FEATURES:
        raise InputError(f"[model] features must be one of {', '.join(FEATURES)}, got {model.features!r}", path)
    if model.features != "all" and data.level == "frame":
        raise InputError("[model] features applies to video-level models (frame-level models split the "
                         "modalities themselves)", path)
    if train.device != "auto" and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", train.device):
        raise InputError(f"[train] device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', "
                         f"got {train.device!r}", path)

    if not 1 <= predict.crops <= 5:
        raise InputError(f"[predict] crops must be in 1..5, got {predict.crops}", path)
    if predict.crops > 1 and data.level == "video":
        raise InputError("[predict] crops > 1 applies to frame-level models only", path)
    if predict.top_k < 0:
        raise InputError(f"[predict] top_k must be >= 0 (0 = full matrix), got {predict.top_k}", path)
    if predict.crop_top_k < 0:
        raise InputError(f"[predict] crop_top_k must be >= 0 (0: plain mean of crops), got {predict.crop_top_k}",
                         path)
    if predict.train_folds < 0 or predict.train_folds == 1:
        raise InputError(f"[predict] train_folds must be 0 (in-sample train predictions) or >= 2, "
                         f"got {predict.train_folds}", path)
    _check_folds(train, predict, path)
    bad = [s for s in predict.splits if s not in SPLIT_NAMES]
    if bad or len(set(predict.splits)) != len(predict.splits):
        raise InputError(f"[predict] splits must be distinct names from {', '.join(SPLIT_NAMES)}, "
                         f"got {predict.splits}", path)

    output.run_dir = _resolve(output.run_dir, base)
    if output.name is None:
        output.name = model.name
    if not _NAME.fullmatch(output.name):
        raise InputError(f"[output] name {output.name!r} must match [A-Za-z0-9_-]+", path)

    distill = None
    if "distill" in raw:
        distill = _section(DistillConfig, raw["distill"], "distill", path)
        distill.teacher = [_resolve(p, base) for p in distill.teacher]
        if not distill.teacher:
            raise InputError("[distill] teacher lists no store", path)
        checks = ((0 <= distill.alpha <= 1, "alpha must be in [0, 1]"),
                  (math.isfinite(distill.temperature) and distill.temperature > 0, "temperature must be > 0"),
                  (0 <= distill.floor < 1, "floor must be in [0, 1)"))
        for ok, message in checks:
            if not ok:
                raise InputError(f"[distill] {message}, got alpha={distill.alpha}, "
                                 f"temperature={distill.temperature}, floor={distill.floor}", path)
    search = None
    if "search" in raw:
        search = parse_search(raw["search"], path)
    cfg = JobConfig(model, data, split, train, predict, output, distill, path=path, search=search)
    if check_model:
        check_model_size(build_model(cfg, device="meta"), cfg)
    return cfg


#: Most trainable parameters a job's model may have: 2^30 (4 GiB of float32 weights, about 16 GiB with
#: Adam's two moments and the gradient). The largest shipped models have well under 10^9.
MAX_PARAMETERS = 1 << 30


def check_model_size(model, cfg: JobConfig) -> None:
    """InputError before any allocation when the model (built on the meta device) is absurdly large."""
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_PARAMETERS:
        raise InputError(f"[model.hparams] model {cfg.model.name!r} would have {n:,} parameters "
                         f"({4 * n / 2**30:,.0f} GiB of float32 weights); the bound is {MAX_PARAMETERS:,}: "
                         f"make it smaller", cfg.path)


#: Largest job config read (a job is a few hundred bytes; a search table a few KiB).
MAX_CONFIG_BYTES = 1 << 20


def load_config(path) -> JobConfig:
    """Read and validate a TOML job file; InputError (one line, naming the file) on any problem."""
    p = Path(path)
    try:
        check_input_file(p, "a TOML config file")  # a FIFO or a device is refused before it is opened
    except InputError as err:
        raise InputError("config file not found" if err.problem == "file not found" else err.problem, p) from None
    try:
        if p.stat().st_size > MAX_CONFIG_BYTES:
            raise InputError(f"is {p.stat().st_size:,} bytes, too large for a job config "
                             f"(at most {MAX_CONFIG_BYTES:,})", p)
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("config file not found", p) from None
    except IsADirectoryError:
        raise InputError("is a directory, expected a TOML config file", p) from None
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", p) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"not valid TOML ({err})", p) from None
    return config_from_dict(raw, path=p, base_dir=p.resolve().parent)


def build_model(cfg: JobConfig, device: str = "cpu"):
    """The configured model behind its :class:`~producers.models.producer.Producer` wrapper.

    On ``device`` (``"meta"`` allocates nothing); InputError on bad values.
    """
    import torch

    from producers.models.registry import create_model

    from producers.models.producer import Producer, feature_width

    try:
        with torch.device(device):
            model = create_model(cfg.model.name, input_dim=feature_width(cfg.model.features, FEATURE_DIM),
                                 num_classes=cfg.data.num_classes, **cfg.model.hparams)
            return Producer(model, FEATURE_DIM, cfg.data.num_classes, input_norm=cfg.model.input_norm,
                            output_prior=cfg.model.output_prior, features=cfg.model.features)
    except InputError as err:  # a file an option names (a vocabulary) keeps its own path in the message
        raise InputError(f"[model.hparams] {err}", cfg.path) from None
    except (ValueError, TypeError) as err:
        raise InputError(f"[model.hparams] bad value for model {cfg.model.name!r}: {err}", cfg.path) from None


def searched_config(cfg: JobConfig) -> JobConfig:
    """``cfg`` with the values of its finished search's best trial applied (``cfg`` itself if none)."""
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
