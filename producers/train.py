"""The one training loop shared by every producer model, and batch prediction.

:func:`fit` trains on the binary cross-entropy of the model's logits (summed
over classes, averaged over the batch) plus the model's ``auxiliary_loss(y)``
if it has one, with the optimisation :class:`Recipe` (Adam/AdamW, weight
decay, gradient-norm clipping, warm-up and decay counted in examples or
epochs, label smoothing); after each epoch it scores the dev videos with
GAP@20, keeps the best weights, stops early after ``patience`` epochs without
improvement, and writes a checkpoint. :func:`predict` yields probabilities
(the sigmoid of the logits).

Checkpoints (``<checkpoint_dir>/epoch-0003.pt`` ...) hold the model,
optimizer and AMP scaler states, the examples seen (the learning-rate
schedule is a function of them), the Python/numpy/torch(/CUDA) RNG
states (as tensors and plain types, loadable with ``weights_only=True``), the
epoch, the best score so far and the history. ``best.pt`` holds the best
weights. Both are written atomically (temporary file + ``os.replace``).
Calling :func:`fit` again with the same ``checkpoint_dir`` resumes after the
latest checkpoint and ends with exactly the weights an uninterrupted run with
the same seed would have had (on CPU; cuDNN kernels may not be bit-exact).
"""
from __future__ import annotations

import dataclasses
import os
import random
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from predictions.errors import InputError
from predictions.types import Labels, Predictions

from . import distributed
from .datasets import Batch, arrays_batches, seed_everything
from .models.losses import bce_loss, distillation_loss
from .recipe import Recipe
from .schedule import LRSchedule

_CKPT = re.compile(r"^epoch-(\d{4,})\.pt$")


@dataclass
class History:
    """What happened per epoch (1-based epoch numbers).

    loss : mean training loss per epoch; dev_gap : dev GAP@20 per epoch (NaN
    without dev data); seconds : wall time per epoch (training + dev scoring);
    best_epoch / best_gap : the epoch whose weights the model ends with;
    stopped_early : whether patience ran out; resumed_from : epoch of the
    checkpoint this run resumed from (0 for a fresh start).
    """

    epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    dev_gap: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    videos_per_s: list[float] = field(default_factory=list)
    best_epoch: int = 0
    best_gap: float = float("-inf")
    stopped_early: bool = False
    resumed_from: int = 0

    def to_dict(self) -> dict:
        """Plain JSON-serialisable dict (``-inf`` best_gap -> None)."""
        d = asdict(self)
        d["best_gap"] = None if not np.isfinite(self.best_gap) else self.best_gap
        d["dev_gap"] = [None if not np.isfinite(g) else g for g in self.dev_gap]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "History":
        d = dict(d)
        d["best_gap"] = float("-inf") if d.get("best_gap") is None else d["best_gap"]
        d["dev_gap"] = [float("nan") if g is None else g for g in d.get("dev_gap", [])]
        return cls(**d)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else as given, if this machine has it.

    InputError for a device this machine lacks (``"cuda"`` without CUDA,
    ``"cuda:7"`` with fewer GPUs, ``"mps"`` off Apple silicon).
    """
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"bad device {device!r}: {err}") from None
    if dev.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise InputError(f"device {str(device)!r}: this machine has no CUDA GPU; use device = \"auto\" or \"cpu\"")
        if dev.index is not None and dev.index >= n:
            raise InputError(f"device {str(device)!r}: this machine has {n} CUDA GPU(s) (cuda:0..cuda:{n - 1})")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise InputError(f"device {str(device)!r}: MPS is not available on this machine")
    return dev


def _unpack(batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(x, y, lengths, teacher) of a batch."""
    if isinstance(batch, Batch):
        return batch.x, batch.y, batch.lengths, batch.teacher
    if len(batch) == 2:
        return batch[0], batch[1], None, None
    if len(batch) == 3:
        return batch[0], batch[2], batch[1], None  # (x, lengths, y)
    raise InputError(f"a training batch must be a Batch, (x, y) or (x, lengths, y); got {len(batch)} items")


# --------------------------------------------------------------------------- RNG / checkpoints

def _rng_state() -> dict:
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:  # through a Python file: a full disk is an OSError (ENOSPC), not torch's
            torch.save(obj, fh)      # "unexpected pos" RuntimeError
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def latest_checkpoint(checkpoint_dir) -> Path | None:
    """The ``epoch-NNNN.pt`` file with the highest epoch in ``checkpoint_dir``, or None."""
    d = Path(checkpoint_dir)
    if not d.is_dir():
        return None
    found = sorted((int(m.group(1)), p) for p in d.iterdir() if (m := _CKPT.match(p.name)))
    return found[-1][1] if found else None


def load_checkpoint(path) -> dict:
    """Load a checkpoint (``weights_only=True``); InputError naming the file if unreadable."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling problem is a bad file
        raise InputError(f"not a readable checkpoint ({type(err).__name__}: {err})", path) from None


def _check_state(state, path, keys) -> None:
    """InputError naming ``path`` unless ``state`` is a dict holding ``keys``."""
    if not isinstance(state, dict):
        raise InputError(f"not a training checkpoint (holds a {type(state).__name__}, expected a dict)", path)
    missing = [k for k in keys if k not in state]
    if missing:
        raise InputError(f"not a training checkpoint (no {', '.join(map(repr, missing))})", path)


def load_best(model: nn.Module, checkpoint_dir) -> nn.Module:
    """Load ``<checkpoint_dir>/best.pt`` into ``model`` (in place) and return it in eval mode."""
    path = Path(checkpoint_dir) / "best.pt"
    if not path.exists():
        raise InputError("no best.pt checkpoint; train the model first", path.parent)
    state = load_checkpoint(path)
    _check_state(state, path, ("model",))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise InputError(f"checkpoint does not fit the configured model ({str(err).splitlines()[0]})",
                         path) from None
    return model.eval()


# --------------------------------------------------------------------------- evaluation

def _dev_batches(dev_x, batch_size: int) -> Iterable:
    if isinstance(dev_x, (np.ndarray, torch.Tensor)):
        x = np.asarray(dev_x, dtype=np.float32)
        return arrays_batches(x, np.arange(len(x)).astype(str), batch_size)
    return dev_x


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable, device: str | torch.device = "auto", *, amp: bool = False,
            progress: bool = False, total: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``(ids (b,), probs (b, C) float32 numpy)`` per batch, model in eval mode.

    ``batches`` yields :class:`~producers.datasets.Batch` (``ids`` may be None,
    then ids are running row numbers as strings) or ``(x,)`` / ``(x, lengths)``.
    ``total`` (videos) sizes the progress bar.
    """
    dev = resolve_device(device)
    model.to(dev).eval()
    use_amp = amp and dev.type == "cuda"
    bar = _bar(progress, total, "predict")
    seen = 0
    try:
        for batch in batches:
            if isinstance(batch, Batch):
                x, lengths, ids = batch.x, batch.lengths, batch.ids
            else:
                x, lengths, ids = batch[0], (batch[1] if len(batch) > 1 else None), None
            x = x.to(dev, non_blocking=True)
            lengths = None if lengths is None else lengths.to(dev)
            with torch.autocast(dev.type, enabled=use_amp):
                z = model(x, lengths) if lengths is not None else model(x)
            probs = torch.sigmoid(z.float()).cpu().numpy()
            if ids is None:
                ids = np.arange(seen, seen + len(probs)).astype(str)
            seen += len(probs)
            if bar is not None:
                bar.update(len(probs))
            yield np.asarray(ids), probs
    finally:
        if bar is not None:
            bar.close()


class FoldMean(nn.Module):
    """The mean probability of several models (the K fold models of a job), as logits for :func:`predict`.

    ``forward(x[, lengths]) -> (B, C)`` logits ``logit(mean_k sigmoid(z_k))``,
    computed in float64 and clamped at 1e-12 from 0 and 1, so that
    :func:`predict`'s sigmoid gives back the mean to float32 precision.
    """

    def __init__(self, models: list[nn.Module]):
        super().__init__()
        if not models:
            raise InputError("FoldMean needs at least one model")
        self.members = nn.ModuleList(models)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        total = None
        for m in self.members:
            z = m(x) if lengths is None else m(x, lengths)
            p = torch.sigmoid(z.double())
            total = p if total is None else total + p
        return torch.logit(total / len(self.members), eps=1e-12)


def _labels_from_targets(ids: list, ys: list, num_classes: int) -> Labels:
    """Labels from per-batch ids and (b, C) multi-hot targets."""
    y = np.concatenate(ys) if ys else np.zeros((0, num_classes), np.float32)
    ids = [np.asarray(i) for i in ids]
    rows, cols = np.nonzero(y > 0.5)
    indptr = np.zeros(len(y) + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=len(y)), out=indptr[1:])
    return Labels(np.concatenate(ids) if ids else np.zeros(0, "<U1"), indptr, cols.astype(np.int32), y.shape[1])


def dev_gap(model: nn.Module, dev_batches: Iterable, labels: Labels | None, device, *, amp: bool = False,
            k: int = 20) -> float:
    """GAP@k of ``model`` on dev batches.

    With ``labels`` the batch rows must follow it (same order and count); with
    ``labels=None`` the truth is read from the batches' ``y`` and ``ids``
    (:class:`~producers.datasets.Batch` es, e.g. a frame-level loader).
    """
    from predictions.metrics import gap

    seen_ids, seen_y = [], []

    def tap():
        for b in dev_batches:
            if labels is None:
                seen_ids.append(np.asarray(b.ids))
                seen_y.append(b.y.numpy())
            yield b

    idx, sc = [], []
    for _, probs in predict(model, tap(), device, amp=amp):
        top = Predictions.from_dense(np.arange(len(probs)).astype(str), probs, k=min(k, probs.shape[1]))
        idx.append(top.indices)
        sc.append(top.scores)
    if labels is None:
        labels = _labels_from_targets(seen_ids, seen_y, seen_y[0].shape[1] if seen_y else 1)
    n = sum(len(s) for s in sc)
    if n != len(labels) or n == 0:
        raise InputError(f"dev batches gave {n} videos but the dev labels have {len(labels)}")
    pred = Predictions(labels.ids, np.concatenate(sc), np.concatenate(idx), labels.num_classes)
    return float(gap(pred, labels, k=k))


def _bar(progress: bool, total: int | None, desc: str):
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="videos", unit_scale=True, dynamic_ncols=True, leave=False)


# --------------------------------------------------------------------------- training

def _smoothing_target(prior, num_classes: int, eps: float, device) -> torch.Tensor | None:
    if eps <= 0:
        return None
    q = (torch.full((num_classes,), 1.0 / num_classes) if prior is None
         else torch.as_tensor(np.asarray(prior, dtype=np.float32)))
    return (eps * q).to(device)


@dataclass
class Runtime:
    """Where a run executes, decided once per model by :func:`start_runtime`.

    ``device``: the resolved torch device (this rank's under torchrun);
    ``ddp``: the :class:`~producers.distributed.DistContext` or None in one
    process; ``amp``: float16 autocast + grad scaling (CUDA only).
    """

    device: torch.device
    ddp: distributed.DistContext | None = None
    amp: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 (or the only process): writes files, logs, draws progress bars."""
        return self.ddp is None or self.ddp.is_main

    @property
    def world_size(self) -> int:
        return 1 if self.ddp is None else self.ddp.world_size


def start_runtime(device: str | torch.device = "auto", *, seed: int | None = 0, amp: bool = False) -> Runtime:
    """The one place that resolves the device, joins torchrun's process group and seeds the RNGs.

    ``seed`` (None: leave the RNGs) seeds Python/numpy/torch with ``seed +
    rank``: the model built next gets its initial weights from it (DDP then
    copies rank 0's to every rank) and each rank its own dropout and
    shuffling. InputError for a device this machine lacks.
    """
    dev = resolve_device(device)
    ddp = distributed.setup(device)  # None unless launched by torchrun with WORLD_SIZE > 1
    if ddp is not None:
        dev = ddp.device
    if seed is not None:
        seed_everything(seed + (ddp.rank if ddp else 0))
    return Runtime(dev, ddp, bool(amp) and dev.type == "cuda")


@dataclass
class _Loop:
    """The state :func:`fit` carries from step to step (one model's training)."""

    model: nn.Module
    net: nn.Module                      # the model, or its DDP wrapper
    recipe: Recipe
    rt: Runtime
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    lr_at: LRSchedule
    history: History = field(default_factory=History)
    examples: int = 0                   # training examples seen (all ranks): the schedule's clock
    start: int = 0                      # first epoch (0-based) to run
    best_state: dict | None = None
    stale: int = 0                      # epochs since the best one
    smooth: torch.Tensor | None = None  # label smoothing's target (set on the first batch)


def fit(model: nn.Module, train_loader: Iterable, dev=None, recipe: Recipe | None = None, *,
        runtime: Runtime | None = None, device: str | torch.device = "auto", amp: bool = False,
        checkpoint_dir=None, seed: int | None = 0, progress: bool = False, dev_batch_size: int = 1024,
        log: Callable[[str], None] | None = None, train_size: int | None = None, label_prior=None,
        distill: tuple[float, float] | None = None, **options) -> History:
    """Train ``model`` in place and return its :class:`History`; the model ends with the best weights.

    Parameters
    ----------
    model : ``forward(x[, lengths]) -> (B, C) logits``; its
        ``auxiliary_loss(y)`` (if any, may return None) is added to the loss.
    train_loader : iterable of :class:`~producers.datasets.Batch` (or ``(x, y)``
        / ``(x, lengths, y)``); re-iterated each epoch. If its ``dataset`` has
        ``set_epoch`` (frame shards) it is called with the 0-based epoch.
    dev : ``None``, ``(X, labels)`` with ``X`` an (n, D) array or an iterable
        of batches whose rows follow ``labels`` (:class:`Labels`), or
        ``(loader, None)`` to take the truth from the batches' ``y``. Scored by
        GAP@20 after each epoch; without it the last epoch counts as best.
    recipe : the optimisation options (:class:`Recipe`), one object;
        ``**options`` override its fields (``fit(m, loader, epochs=3, lr=0.01)``).
    runtime : a :class:`Runtime` from :func:`start_runtime` (the jobs make it
        once, before building the model); None: made here from ``device``,
        ``seed`` and ``amp`` (``"auto"``, ``"cpu"``, ``"cuda"``...; amp: float16
        autocast + grad scaling, CUDA only; seed None: leave the RNGs).
    checkpoint_dir : write ``epoch-NNNN.pt`` + ``best.pt`` there, and resume
        from the latest ``epoch-NNNN.pt`` if one exists.
    progress : tqdm bar per epoch with videos/s and ETA; log : called with one
        line per epoch. train_size : videos per epoch (bar's ETA, cosine schedule).
    label_prior : (C,) class frequencies, the target of ``label_smoothing``.
    distill : ``(alpha, temperature)``: batches carry ``teacher`` soft targets
        and the loss is :func:`distillation_loss` (see ``produce distill``).

    The loss is the binary cross-entropy of the logits, summed over classes and
    averaged over the batch. Steps: :func:`_start` (optimiser, resume),
    :func:`_train_epoch`, :func:`_evaluate`, :func:`_save`.
    """
    try:
        recipe = dataclasses.replace(recipe or Recipe(), **options)
        recipe.check()
    except (TypeError, ValueError) as err:
        raise InputError(f"bad training option: {err}") from None
    rt = runtime or start_runtime(device, seed=seed, amp=amp)
    if not rt.is_main:
        progress, log = False, None
    if rt.ddp is not None:  # see producers.distributed: sharded data, rank 0 writes
        train_loader = distributed.shard_loader(train_loader, rt.ddp, seed=seed or 0)
    if train_size is None:
        try:
            train_size = len(getattr(train_loader, "dataset", None))  # type: ignore[arg-type]
        except TypeError:
            train_size = None
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    loop = _start(model, recipe, rt, train_size, ckpt_dir, log)
    for epoch in range(loop.start, recipe.epochs):
        if recipe.patience is not None and loop.stale >= recipe.patience:
            loop.history.stopped_early = True
            break
        t0 = time.perf_counter()
        loss, n_seen, lr_now = _train_epoch(loop, train_loader, epoch, label_prior, distill,
                                            _bar(progress, train_size, f"epoch {epoch + 1}/{recipe.epochs}"))
        train_s = time.perf_counter() - t0
        g = float("nan") if dev is None else _evaluate(loop, dev, dev_batch_size)
        improved = _record(loop, epoch, loss, n_seen, g, dev is not None, t0, train_s)
        if log:
            h = loop.history
            log(f"epoch {epoch + 1}/{recipe.epochs} loss {h.loss[-1]:.4f} dev_gap {g:.4f} "
                f"lr {lr_now:.3g} {h.videos_per_s[-1]:.0f} videos/s {h.seconds[-1]:.1f}s{' *' if improved else ''}")
        if ckpt_dir is not None:
            _save(loop, ckpt_dir, epoch + 1, improved, g)
    if loop.best_state is not None:
        model.load_state_dict(loop.best_state)
    distributed.barrier()  # rank 0 has written its last checkpoint
    return loop.history


def _start(model: nn.Module, recipe: Recipe, rt: Runtime, train_size: int | None, ckpt_dir: Path | None,
           log) -> _Loop:
    """Model on the device, optimiser, scaler and schedule; resumed from the latest checkpoint if any."""
    model.to(rt.device)
    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    loop = _Loop(model, model, recipe, rt, opt_cls(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay),
                 torch.amp.GradScaler("cuda", enabled=rt.amp), recipe.schedule(train_size or 1))
    latest = distributed.broadcast_object(None if ckpt_dir is None else latest_checkpoint(ckpt_dir))
    if latest is not None:
        _resume(loop, latest, ckpt_dir)
        if log:
            log(f"resumed from {latest} (epoch {loop.start})")
    loop.net = distributed.wrap_model(model, rt.ddp)  # the model itself when not distributed
    return loop


def _resume(loop: _Loop, latest: Path, ckpt_dir: Path) -> None:
    """Load the model, optimiser, scaler, RNG states and history of checkpoint ``latest`` into ``loop``."""
    state = load_checkpoint(latest)
    _check_state(state, latest, ("model", "optimizer", "scaler", "rng", "epoch", "history"))
    try:
        loop.model.load_state_dict(state["model"])
        loop.optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise InputError(f"checkpoint does not fit this model and recipe ({str(err).splitlines()[0]}); "
                         f"restart training", latest) from None
    loop.scaler.load_state_dict(state["scaler"])
    ddp, ranks = loop.rt.ddp, state.get("rng_ranks")
    _set_rng_state(ranks[ddp.rank] if ddp and ranks and len(ranks) == ddp.world_size else state["rng"])
    loop.history = History.from_dict(state["history"])
    loop.start = loop.history.resumed_from = int(state["epoch"])
    loop.examples = int(state.get("examples", 0))
    loop.stale = 0 if not loop.history.epochs else loop.history.epochs[-1] - loop.history.best_epoch
    if (ckpt_dir / "best.pt").exists():
        best = load_checkpoint(ckpt_dir / "best.pt")
        _check_state(best, ckpt_dir / "best.pt", ("model",))
        loop.best_state = best["model"]


def _train_epoch(loop: _Loop, train_loader: Iterable, epoch: int, label_prior, distill, bar) -> tuple[float, int, float]:
    """One pass over the training batches: ``(mean loss, videos seen over all ranks, last lr)``.

    The progress ``bar`` (or None) is closed whatever happens, so that an
    error line printed next is the last thing on the terminal.
    """
    dataset = getattr(train_loader, "dataset", None)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    distributed.set_epoch(train_loader, epoch)
    loop.net.train()
    total_loss, n_seen, lr_now = 0.0, 0, loop.lr_at(loop.examples, epoch)
    try:
        for batch in distributed.lockstep(train_loader, loop.rt.ddp):
            lr_now = loop.lr_at(loop.examples, epoch)
            loss, b = _step(loop, batch, lr_now, label_prior, distill, epoch)
            loop.examples += b * loop.rt.world_size
            total_loss += loss * b
            n_seen += b
            if bar is not None:
                bar.update(b * loop.rt.world_size)
                bar.set_postfix(loss=f"{total_loss / n_seen:.3f}", lr=f"{lr_now:.2g}")
    finally:
        if bar is not None:
            bar.close()
    if loop.rt.ddp is not None:  # global mean loss and videos over all ranks
        total_loss, n_seen = distributed.all_reduce_sum([total_loss, n_seen])
        total_loss, n_seen = float(total_loss), int(n_seen)
    if n_seen == 0:
        raise InputError("the training data is empty")
    return total_loss / n_seen, n_seen, lr_now


def _step(loop: _Loop, batch, lr_now: float, label_prior, distill, epoch: int) -> tuple[float, int]:
    """One optimiser step on one batch: ``(its loss, its videos)``."""
    dev, recipe = loop.rt.device, loop.recipe
    x, y, lengths, teacher = _unpack(batch)
    x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
    lengths = None if lengths is None else lengths.to(dev)
    if loop.smooth is None and recipe.label_smoothing > 0:
        loop.smooth = _smoothing_target(label_prior, y.shape[1], recipe.label_smoothing, dev)
    target = y if loop.smooth is None else y * (1.0 - recipe.label_smoothing) + loop.smooth
    for group in loop.optimizer.param_groups:
        group["lr"] = lr_now
    loop.optimizer.zero_grad(set_to_none=True)
    with torch.autocast(dev.type, enabled=loop.rt.amp):
        z = loop.net(x, lengths) if lengths is not None else loop.net(x)
        aux_fn = getattr(loop.model, "auxiliary_loss", None)
        aux = aux_fn(y) if aux_fn is not None else None
    if distill is not None:
        if teacher is None:
            raise InputError("distillation needs batches with teacher targets")
        loss = distillation_loss(z, target, teacher.to(dev, non_blocking=True), *distill)
    else:
        loss = bce_loss(z, target)
    if aux is not None:
        loss = loss + aux.float()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"training loss became {loss.item()} in epoch {epoch + 1}; "
                                 f"try a smaller lr or clip_grad_norm")
    loop.scaler.scale(loss).backward()
    if recipe.clip_grad_norm > 0:
        loop.scaler.unscale_(loop.optimizer)
        nn.utils.clip_grad_norm_(loop.model.parameters(), recipe.clip_grad_norm)
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()
    return float(loss.detach()), x.shape[0]


def _evaluate(loop: _Loop, dev, dev_batch_size: int) -> float:
    """Dev GAP@20 of the model now (rank 0's score decides for every rank)."""
    dev_x, dev_labels = dev
    g = dev_gap(loop.model, _dev_batches(dev_x, dev_batch_size), dev_labels, loop.rt.device, amp=loop.rt.amp)
    return distributed.broadcast_object(g)


def _record(loop: _Loop, epoch: int, loss: float, n_seen: int, g: float, scored: bool, t0: float,
            train_s: float) -> bool:
    """Append the epoch to the history and keep its weights if best; returns whether it improved."""
    h = loop.history
    h.epochs.append(epoch + 1)
    h.loss.append(loss)
    h.dev_gap.append(g)
    h.seconds.append(time.perf_counter() - t0)
    h.videos_per_s.append(n_seen / max(train_s, 1e-9))
    improved = not scored or g > h.best_gap
    if improved:
        h.best_epoch, h.best_gap = epoch + 1, (g if scored else h.best_gap)
        loop.best_state = {k: v.detach().cpu().clone() for k, v in loop.model.state_dict().items()}
        loop.stale = 0
    else:
        loop.stale += 1
    return improved


def _save(loop: _Loop, ckpt_dir: Path, epoch: int, improved: bool, g: float) -> None:
    """Rank 0 writes ``best.pt`` (if improved) and ``epoch-NNNN.pt``, then drops older epoch checkpoints."""
    rng_ranks = distributed.all_gather_object(_rng_state()) if loop.rt.ddp else None
    if not distributed.is_main_process():
        return
    if improved:
        _atomic_save({"model": loop.best_state, "epoch": epoch, "dev_gap": g}, ckpt_dir / "best.pt")
    _atomic_save({"model": loop.model.state_dict(), "optimizer": loop.optimizer.state_dict(),
                  "scaler": loop.scaler.state_dict(), "examples": loop.examples,
                  "rng": _rng_state(), "epoch": epoch, "history": loop.history.to_dict(),
                  **({"rng_ranks": rng_ranks} if rng_ranks else {})},
                 ckpt_dir / f"epoch-{epoch:04d}.pt")
    for old in ckpt_dir.iterdir():  # keep only the newest epoch checkpoint
        m = _CKPT.match(old.name)
        if m and int(m.group(1)) < epoch:
            old.unlink(missing_ok=True)
