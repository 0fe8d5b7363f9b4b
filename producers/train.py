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
import math
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
        torch.save(obj, tmp)
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

@dataclass
class Recipe:
    """How every producer is optimised (the ``[train]`` options that :func:`fit` uses).

    Adam (``optimizer = "adam"``, L2 ``weight_decay`` added to the gradient)
    or AdamW (decoupled ``weight_decay``); the learning rate follows
    :class:`~producers.schedule.LRSchedule` (``lr``, ``lr_schedule``,
    ``lr_decay``, ``decay_examples``, ``warmup_examples``, ``min_lr_ratio``),
    updated before every step; ``clip_grad_norm`` > 0 clips the global
    gradient norm; ``label_smoothing`` = e trains on ``(1 - e) y + e q``, ``q``
    the class prior given to :func:`fit` (uniform 1/C without one);
    ``patience`` epochs without a better dev GAP stop the run (None: never).
    """

    epochs: int = 10
    lr: float = 1e-3
    lr_schedule: str = "exponential"
    lr_decay: float = 0.95
    decay_examples: int = 0
    warmup_examples: int = 0
    min_lr_ratio: float = 0.0
    optimizer: str = "adam"
    weight_decay: float = 0.0
    clip_grad_norm: float = 0.0
    label_smoothing: float = 0.0
    patience: int | None = None

    def check(self) -> None:
        """Raise ValueError naming the first bad option."""
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer >= 1, got {self.epochs!r}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 (or left out), got {self.patience}")
        if self.optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {self.optimizer!r}")
        for name in ("weight_decay", "clip_grad_norm"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v}")
        if not (math.isfinite(self.label_smoothing) and 0 <= self.label_smoothing < 1):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        self.schedule(1)

    def schedule(self, examples_per_epoch: int) -> LRSchedule:
        return LRSchedule(self.lr, self.lr_schedule, self.lr_decay, self.decay_examples, self.warmup_examples,
                          self.epochs * max(int(examples_per_epoch), 1), self.min_lr_ratio)


def _smoothing_target(prior, num_classes: int, eps: float, device) -> torch.Tensor | None:
    if eps <= 0:
        return None
    q = (torch.full((num_classes,), 1.0 / num_classes) if prior is None
         else torch.as_tensor(np.asarray(prior, dtype=np.float32)))
    return (eps * q).to(device)


def fit(model: nn.Module, train_loader: Iterable, dev=None, recipe: Recipe | None = None, *,
        device: str | torch.device = "auto", amp: bool = False, checkpoint_dir=None, seed: int | None = 0,
        progress: bool = False, dev_batch_size: int = 1024, log: Callable[[str], None] | None = None,
        train_size: int | None = None, label_prior=None, distill: tuple[float, float] | None = None,
        **options) -> History:
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
    recipe : the optimisation options (:class:`Recipe`); ``**options``
        override its fields (``fit(m, loader, epochs=3, lr=0.01)``).
    device : ``"auto"``, ``"cpu"``, ``"cuda"``...; amp : float16 autocast + grad
        scaling, used only on CUDA.
    checkpoint_dir : write ``epoch-NNNN.pt`` + ``best.pt`` there, and resume
        from the latest ``epoch-NNNN.pt`` if one exists.
    seed : seeds Python/numpy/torch RNGs on a fresh start (None: leave them).
    progress : tqdm bar per epoch with videos/s and ETA; log : called with one
        line per epoch. train_size : videos per epoch (bar's ETA, cosine schedule).
    label_prior : (C,) class frequencies, the target of ``label_smoothing``.
    distill : ``(alpha, temperature)``: batches carry ``teacher`` soft targets
        and the loss is :func:`distillation_loss` (see ``produce distill``).

    The loss is the binary cross-entropy of the logits, summed over classes and
    averaged over the batch.
    """
    try:
        recipe = dataclasses.replace(recipe or Recipe(), **options)
        recipe.check()
    except (TypeError, ValueError) as err:
        raise InputError(f"bad training option: {err}") from None
    dev_device = resolve_device(device)
    ddp = distributed.setup(device)  # None unless launched by torchrun with WORLD_SIZE > 1
    if ddp is not None:  # see producers.distributed: sharded data, rank 0 writes
        dev_device, progress, log = ddp.device, progress and ddp.is_main, log if ddp.is_main else None
        train_loader = distributed.shard_loader(train_loader, ddp, seed=seed or 0)
    use_amp = bool(amp) and dev_device.type == "cuda"
    model.to(dev_device)
    opt_cls = torch.optim.AdamW if recipe.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if train_size is None:
        try:
            train_size = len(getattr(train_loader, "dataset", None))  # type: ignore[arg-type]
        except TypeError:
            train_size = None
    lr_at = recipe.schedule(train_size or 1)
    history = History()
    ckpt_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    start = examples = 0
    latest = distributed.broadcast_object(None if ckpt_dir is None else latest_checkpoint(ckpt_dir))
    best_state = None
    if latest is not None:
        state = load_checkpoint(latest)
        _check_state(state, latest, ("model", "optimizer", "scaler", "rng", "epoch", "history"))
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as err:
            raise InputError(f"checkpoint does not fit this model and recipe ({str(err).splitlines()[0]}); "
                             f"restart training", latest) from None
        scaler.load_state_dict(state["scaler"])
        ranks = state.get("rng_ranks")
        _set_rng_state(ranks[ddp.rank] if ddp and ranks and len(ranks) == ddp.world_size else state["rng"])
        history = History.from_dict(state["history"])
        start = history.resumed_from = int(state["epoch"])
        examples = int(state.get("examples", 0))
        if ckpt_dir is not None and (ckpt_dir / "best.pt").exists():
            best = load_checkpoint(ckpt_dir / "best.pt")
            _check_state(best, ckpt_dir / "best.pt", ("model",))
            best_state = best["model"]
        if log:
            log(f"resumed from {latest} (epoch {start})")
    elif seed is not None:
        seed_everything(seed + (ddp.rank if ddp else 0))  # per-rank dropout; DDP syncs the weights
    net = distributed.wrap_model(model, ddp)  # the model itself when not distributed
    dev_x, dev_labels = (None, None) if dev is None else dev
    stale = 0 if not history.epochs else history.epochs[-1] - history.best_epoch
    smooth = None
    patience = recipe.patience

    for epoch in range(start, recipe.epochs):
        if patience is not None and stale >= patience:
            history.stopped_early = True
            break
        t0 = time.perf_counter()
        dataset = getattr(train_loader, "dataset", None)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        distributed.set_epoch(train_loader, epoch)
        net.train()
        total_loss, n_seen = 0.0, 0
        bar = _bar(progress, train_size, f"epoch {epoch + 1}/{recipe.epochs}")
        for batch in distributed.lockstep(train_loader, ddp):
            x, y, lengths, teacher = _unpack(batch)
            x, y = x.to(dev_device, non_blocking=True), y.to(dev_device, non_blocking=True)
            lengths = None if lengths is None else lengths.to(dev_device)
            if smooth is None and recipe.label_smoothing > 0:
                smooth = _smoothing_target(label_prior, y.shape[1], recipe.label_smoothing, dev_device)
            target = y if smooth is None else y * (1.0 - recipe.label_smoothing) + smooth
            lr_now = lr_at(examples, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(dev_device.type, enabled=use_amp):
                z = net(x, lengths) if lengths is not None else net(x)
                aux_fn = getattr(model, "auxiliary_loss", None)
                aux = aux_fn(y) if aux_fn is not None else None
            if distill is not None:
                if teacher is None:
                    raise InputError("distillation needs batches with teacher targets")
                loss = distillation_loss(z, target, teacher.to(dev_device, non_blocking=True), *distill)
            else:
                loss = bce_loss(z, target)
            if aux is not None:
                loss = loss + aux.float()
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} in epoch {epoch + 1}; "
                                         f"try a smaller lr or clip_grad_norm")
            scaler.scale(loss).backward()
            if recipe.clip_grad_norm > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), recipe.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            b = x.shape[0]
            examples += b * (ddp.world_size if ddp else 1)
            total_loss += float(loss.detach()) * b
            n_seen += b
            if bar is not None:
                bar.update(b * (ddp.world_size if ddp else 1))
                bar.set_postfix(loss=f"{total_loss / n_seen:.3f}", lr=f"{lr_now:.2g}")
        if bar is not None:
            bar.close()
        if ddp is not None:  # global mean loss and videos over all ranks
            total_loss, n_seen = distributed.all_reduce_sum([total_loss, n_seen])
            total_loss, n_seen = float(total_loss), int(n_seen)
        if n_seen == 0:
            raise InputError("the training data is empty")
        train_s = time.perf_counter() - t0
        g = float("nan")
        if dev_x is not None:
            g = dev_gap(model, _dev_batches(dev_x, dev_batch_size), dev_labels, dev_device, amp=use_amp)
            g = distributed.broadcast_object(g)  # rank 0's score decides for all ranks
        history.epochs.append(epoch + 1)
        history.loss.append(total_loss / n_seen)
        history.dev_gap.append(g)
        history.seconds.append(time.perf_counter() - t0)
        history.videos_per_s.append(n_seen / max(train_s, 1e-9))
        improved = dev_x is None or g > history.best_gap
        if improved:
            history.best_epoch, history.best_gap = epoch + 1, (g if dev_x is not None else history.best_gap)
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            stale = 0
        else:
            stale += 1
        if log:
            log(f"epoch {epoch + 1}/{recipe.epochs} loss {history.loss[-1]:.4f} dev_gap {g:.4f} "
                f"lr {lr_now:.3g} {history.videos_per_s[-1]:.0f} videos/s "
                f"{history.seconds[-1]:.1f}s{' *' if improved else ''}")
        rng_ranks = distributed.all_gather_object(_rng_state()) if ddp and ckpt_dir is not None else None
        if ckpt_dir is not None and distributed.is_main_process():
            if improved:
                _atomic_save({"model": best_state, "epoch": epoch + 1, "dev_gap": g}, ckpt_dir / "best.pt")
            _atomic_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                          "scaler": scaler.state_dict(), "examples": examples,
                          "rng": _rng_state(), "epoch": epoch + 1, "history": history.to_dict(),
                          **({"rng_ranks": rng_ranks} if rng_ranks else {})},
                         ckpt_dir / f"epoch-{epoch + 1:04d}.pt")
            for old in ckpt_dir.iterdir():  # keep only the newest epoch checkpoint
                m = _CKPT.match(old.name)
                if m and int(m.group(1)) < epoch + 1:
                    old.unlink(missing_ok=True)
    if best_state is not None:
        model.load_state_dict(best_state)
    distributed.barrier()  # rank 0 has written its last checkpoint
    return history
