"""Multi-process (DistributedDataParallel) training under ``torchrun``.

Launch any producer training with ``torchrun``, e.g.::

    torchrun --nproc_per_node=4 -m producers.cli train job.toml

:func:`setup` reads the torchrun environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``; ``MASTER_ADDR``/``MASTER_PORT`` are used by
``init_process_group``), initialises the process group (backend ``"nccl"``
for CUDA, ``"gloo"`` for CPU) and picks the device ``cuda:LOCAL_RANK``.
Without torchrun (or with ``WORLD_SIZE=1``) it returns ``None`` and
:func:`producers.train.fit` runs exactly as a single process.

Under DDP each process trains on its own shard (:func:`shard_loader`):

* video level (:class:`~producers.datasets.VideoArrays` loaders): a
  :class:`~torch.utils.data.DistributedSampler` (same seeded permutation on
  every rank, rank ``r`` takes rows ``r, r + W, ...``; padded so every rank
  has the same number of rows);
* frame level (:class:`~producers.datasets.FrameShards`): rank ``r`` reads
  shard files ``r, r + W, ...`` of a per-epoch permutation shared by all ranks
  (:class:`RankFrameShards`), dropping its last incomplete batch;
* any other iterable is taken to be this rank's shard already.

``batch_size`` stays per process: the global batch is ``W * batch_size``.
Gradients are averaged by DDP, so ``W`` processes with batch ``b`` take the
same steps as one process with batch ``W * b`` (up to float rounding).
Ranks step in lockstep (:func:`lockstep`): an epoch ends on every rank when
any rank runs out of batches (frame shards of unequal size), so the weights
and optimizer states stay identical on every rank.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, IterableDataset, RandomSampler

from predictions.errors import InputError

from .datasets import FrameShards

_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistContext:
    """One process of a DDP run: ``rank`` in [0, world_size), ``local_rank`` on its node, its ``device``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where collective tensors must live (CUDA for nccl, CPU for gloo)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")


def launched_by_torchrun() -> bool:
    """True if ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` are all set (torchrun sets them)."""
    return all(k in os.environ for k in _ENV)


def _env_ints() -> tuple[int, int, int]:
    try:
        rank, world, local = (int(os.environ[k]) for k in _ENV)
    except ValueError:
        raise InputError("RANK, WORLD_SIZE and LOCAL_RANK must be integers: "
                         + ", ".join(f"{k}={os.environ[k]!r}" for k in _ENV)) from None
    if not (world >= 1 and 0 <= rank < world and local >= 0):
        raise InputError(f"bad torchrun environment: RANK={rank} WORLD_SIZE={world} LOCAL_RANK={local}")
    return rank, world, local


_CONTEXT: DistContext | None = None


def setup(device: str | torch.device = "auto") -> DistContext | None:
    """Initialise the process group once if launched by torchrun with ``WORLD_SIZE > 1``; else ``None``.

    ``device``: ``"auto"``/``"cuda"``/``"cuda:N"`` use ``cuda:LOCAL_RANK`` and
    nccl when CUDA is available; ``"cpu"`` (or no CUDA) uses the CPU and gloo.
    Idempotent: later calls return the same context (the first call's device
    wins). If the caller already initialised a process group, it is used.
    """
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    if not launched_by_torchrun():
        return None
    rank, world, local = _env_ints()
    if world == 1:
        return None
    want = str(device)
    use_cuda = torch.cuda.is_available() and (want == "auto" or want.startswith("cuda"))
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise InputError(f"LOCAL_RANK={local} but only {torch.cuda.device_count()} CUDA device(s); "
                             f"use --nproc_per_node <= the number of GPUs")
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    elif want not in ("auto", "cpu"):
        raise InputError(f"device {want!r} is not supported for multi-process training (use cuda or cpu)")
    else:
        dev = torch.device("cpu")
    if dist.is_initialized():
        backend = str(dist.get_backend())
    else:
        backend = "nccl" if use_cuda else "gloo"
        kwargs = {"device_id": dev} if use_cuda else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
        atexit.register(cleanup)  # destroy the group we created when the process ends
    _CONTEXT = DistContext(rank, world, local, dev, backend)
    return _CONTEXT


def context() -> DistContext | None:
    """The context of :func:`setup`, or None when not distributed."""
    return _CONTEXT


def is_main_process() -> bool:
    """True on rank 0 and in a single-process run."""
    return _CONTEXT is None or _CONTEXT.is_main


def barrier() -> None:
    """Wait for every rank (no-op when not distributed)."""
    if _CONTEXT is not None:
        if _CONTEXT.backend == "nccl":
            dist.barrier(device_ids=[_CONTEXT.device.index])
        else:
            dist.barrier()


def cleanup() -> None:
    """Destroy the process group set up by :func:`setup` (no-op when not distributed)."""
    global _CONTEXT
    if _CONTEXT is not None and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None


def all_reduce_sum(values: Iterable[float]) -> np.ndarray:
    """Sum float64 ``values`` (a short list of metrics) over ranks; a (len(values),) array on every rank."""
    v = np.asarray(list(values), dtype=np.float64)
    if _CONTEXT is None:
        return v
    t = torch.from_numpy(v).to(_CONTEXT.comm_device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` (picklable) on every rank; ``obj`` itself when not distributed."""
    if _CONTEXT is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src, device=_CONTEXT.comm_device)
    return box[0]


def all_gather_object(obj: Any) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank; ``[obj]`` when not distributed."""
    if _CONTEXT is None:
        return [obj]
    out: list = [None] * _CONTEXT.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap_model(model: nn.Module, ctx: DistContext | None, *, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` (already on ``ctx.device``) wrapped in DDP; the model itself when ``ctx`` is None.

    DDP broadcasts rank 0's parameters and buffers at construction, so every
    rank starts from the same weights.
    """
    if ctx is None:
        return model
    from torch.nn.parallel import DistributedDataParallel as DDP

    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return DDP(model, device_ids=ids, output_device=None if ids is None else ids[0],
               find_unused_parameters=find_unused_parameters)


# --------------------------------------------------------------------------- data sharding

class RankFrameShards(FrameShards):
    """A :class:`~producers.datasets.FrameShards` that reads only this rank's shard files.

    Each epoch the files are permuted with an RNG seeded by ``(seed, epoch)``
    (identical on every rank; no permutation without ``shuffle``) and rank
    ``r`` of ``W`` takes files ``r, r + W, ...``; DataLoader workers then split
    those. Crops and the shuffle buffer use the seed ``seed + r * 2**32`` so
    ranks draw independent crops.
    """

    def __init__(self, base: FrameShards, rank: int, world_size: int):
        self.__dict__.update(vars(base))
        if len(base.files) < world_size:
            raise InputError(f"frame-level training on {world_size} processes needs at least {world_size} "
                             f"shard files, found {len(base.files)}")
        self.all_files = list(base.files)
        self.base_seed = int(base.seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.seed = self.base_seed + self.rank * 2**32

    def rank_files(self) -> list[str]:
        """This rank's shard files for the current epoch."""
        files = self.all_files
        if self.shuffle:
            perm = np.random.default_rng([self.base_seed, self.epoch]).permutation(len(files))
            files = [files[i] for i in perm]
        return files[self.rank::self.world_size]

    def __iter__(self):
        self.files = self.rank_files()
        return super().__iter__()


def _find_distributed_sampler(loader) -> DistributedSampler | None:
    for s in (getattr(loader, "sampler", None), getattr(loader, "batch_sampler", None)):
        for cand in (s, getattr(s, "sampler", None)):
            if isinstance(cand, DistributedSampler):
                return cand
    return None


def shard_loader(loader, ctx: DistContext | None, *, seed: int = 0):
    """This rank's share of ``loader`` (``loader`` itself when not distributed).

    DataLoaders over :class:`FrameShards` or over map-style datasets (such as
    :func:`producers.datasets.video_loader`'s) are rebuilt with the same batch
    size, collate function and workers: frame shards per rank, map-style data
    through a :class:`DistributedSampler` (shuffled with ``seed`` if the
    original sampler was random). Loaders that already use a
    DistributedSampler, other iterable datasets and plain iterables are
    returned unchanged (taken to be this rank's shard). Frame-level loaders
    drop each rank's last incomplete batch.
    """
    if ctx is None or not isinstance(loader, DataLoader) or _find_distributed_sampler(loader) is not None:
        return loader
    ds = loader.dataset
    common = dict(collate_fn=loader.collate_fn, num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                  worker_init_fn=loader.worker_init_fn)
    if isinstance(ds, FrameShards):
        # drop_last: the ranks' tails differ anyway (see lockstep), and a tail of 1 breaks BatchNorm
        return DataLoader(RankFrameShards(ds, ctx.rank, ctx.world_size), batch_size=loader.batch_size,
                          drop_last=True, **common)
    if isinstance(ds, IterableDataset):
        return loader
    if loader.batch_size is None and isinstance(loader.sampler, BatchSampler):  # video_loader: batch gathers
        inner = loader.sampler
        sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=isinstance(inner.sampler, RandomSampler), seed=seed)
        return DataLoader(ds, sampler=BatchSampler(sampler, inner.batch_size, inner.drop_last), batch_size=None,
                          **common)
    if loader.batch_size is not None:
        sampler = DistributedSampler(ds, num_replicas=ctx.world_size, rank=ctx.rank,
                                     shuffle=isinstance(loader.sampler, RandomSampler), seed=seed)
        return DataLoader(ds, batch_size=loader.batch_size, sampler=sampler, drop_last=loader.drop_last, **common)
    return loader


def set_epoch(loader, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's DistributedSampler, if it has one (new shuffle each epoch)."""
    s = _find_distributed_sampler(loader)
    if s is not None:
        s.set_epoch(epoch)


def lockstep(batches: Iterable, ctx: DistContext | None) -> Iterator:
    """Yield ``batches`` while *every* rank still has one (one tiny all-reduce per step).

    DDP needs the same number of backward passes on every rank; with shards of
    unequal size the ranks with more batches drop their tail for this epoch.
    """
    if ctx is None:
        yield from batches
        return
    it = iter(batches)
    flag = torch.zeros(1, dtype=torch.int32, device=ctx.comm_device)
    while True:
        batch = next(it, None)
        flag.fill_(0 if batch is None else 1)
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        if int(flag.item()) == 0:
            return
        yield batch
