"""DDP training under torchrun (gloo backend, CPU): sharding, lockstep, rank-0 writes, equivalence.

The multi-process tests launch this file as a torchrun worker script
(``python -m torch.distributed.run --nproc_per_node=2 ... tests/test_distributed.py``)
on 127.0.0.1 with a free port.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from predictions.errors import InputError
from predictions.types import Labels
from producers import distributed
from producers.datasets import FrameShards, VideoArrays, video_loader

D, C, N, BS, EPOCHS = 16, 12, 256, 16, 3  # 2 ranks x BS = global batch 32; N divides evenly


def _data(n=N + 64, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(D, C))
    X = rng.normal(size=(n, D)).astype(np.float32)
    labs = np.argsort(-(X @ W), axis=1)[:, :2]
    return X, Labels.from_lists([f"v{i}" for i in range(n)], labs, C)


def _model():
    from producers.models.registry import create_model

    torch.manual_seed(0)
    return create_model("lr", input_dim=D, num_classes=C)


FIT = dict(epochs=EPOCHS, lr=3e-2, patience=2, device="cpu", seed=0)


# --------------------------------------------------------------------------- worker (run by torchrun)

def _worker(out: Path) -> None:
    import producers.train as train

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    saves = out / f"saves-rank{rank}.txt"
    real_save = train._atomic_save

    def recording_save(obj, path):
        with open(saves, "a") as fh:
            fh.write(f"{Path(path).name}\n")
        real_save(obj, path)

    train._atomic_save = recording_save
    X, L = _data()
    model = _model()
    loader = video_loader(VideoArrays(X[:N], L.take(np.arange(N))), BS, shuffle=True)
    h = train.fit(model, loader, (X[N:], L.take(np.arange(N, len(X)))), checkpoint_dir=out / "ckpt",
                  log=lambda line: saves.with_suffix(".log").open("a").write(line + "\n"), **FIT)
    torch.save(model.state_dict(), out / f"weights-rank{rank}.pt")
    (out / f"history-rank{rank}.json").write_text(json.dumps(h.to_dict()))

    # uneven plain iterables (3 vs 5 batches): lockstep must stop both ranks after 3 steps
    m2 = _model()
    batches = [(torch.from_numpy(X[i * BS:(i + 1) * BS]), torch.ones(BS, C) * 0.5) for i in range(3 + 2 * rank)]
    h2 = train.fit(m2, batches, None, epochs=1, lr=1e-2, device="cpu", seed=0)
    torch.save(m2.state_dict(), out / f"uneven-rank{rank}.pt")
    (out / f"uneven-rank{rank}.json").write_text(json.dumps({"vps": h2.videos_per_s, "sec": h2.seconds}))


# --------------------------------------------------------------------------- helpers

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           "--master_addr=127.0.0.1", f"--master_port={_free_port()}", "--max_restarts=0", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


class _GlobalBatches:
    """Single-process reference: per step, the union of what ranks 0 and 1 get from a DistributedSampler."""

    def __init__(self, X, L, seed=0, world=2):
        self.X, self.L, self.seed, self.world, self.epoch = X, L, seed, world, 0

    def __iter__(self):
        from producers.datasets import multi_hot

        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)  # DistributedSampler's permutation of this epoch
        perm = torch.randperm(len(self.X), generator=g).numpy()
        self.epoch += 1
        shards = [perm[r::self.world] for r in range(self.world)]
        for a in range(0, len(shards[0]), BS):
            rows = np.concatenate([s[a:a + BS] for s in shards])
            yield torch.from_numpy(self.X[rows]), torch.from_numpy(multi_hot(self.L, rows))


# --------------------------------------------------------------------------- tests

@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    t0 = time.perf_counter()
    res = _torchrun([str(Path(__file__).resolve()), str(out)], cwd=out)
    seconds = time.perf_counter() - t0
    assert res.returncode == 0, f"torchrun failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return out, seconds


@pytest.mark.slow  # torchrun: 3 processes importing torch (~30 s on 2 cores)
def test_ddp_ranks_agree_and_only_rank0_writes(ddp_run):
    out, seconds = ddp_run
    w0, w1 = (torch.load(out / f"weights-rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(w0[k], w1[k]) for k in w0)  # gradients averaged: identical weights
    h0, h1 = (json.loads((out / f"history-rank{r}.json").read_text()) for r in (0, 1))
    assert h0["loss"] == h1["loss"] and h0["dev_gap"] == h1["dev_gap"] and h0["best_epoch"] == h1["best_epoch"]
    assert h0["epochs"] == [1, 2, 3]
    assert (out / "saves-rank0.txt").read_text().count("epoch-") == EPOCHS
    assert not (out / "saves-rank1.txt").exists() and not (out / "saves-rank1.log").exists()
    assert (out / "saves-rank0.log").read_text().count("\nepoch ") + 1 >= EPOCHS  # rank 0 logs
    assert sorted(p.name for p in (out / "ckpt").iterdir()) == ["best.pt", "epoch-0003.pt"]
    from producers.train import load_checkpoint

    ck = load_checkpoint(out / "ckpt" / "epoch-0003.pt")
    assert len(ck["rng_ranks"]) == 2 and not any(k.startswith("module.") for k in ck["model"])
    print(f"torchrun 2 ranks: {seconds:.1f}s")


@pytest.mark.slow  # torchrun: 3 processes importing torch (~30 s on 2 cores)
def test_ddp_matches_single_process_same_global_batch(ddp_run, tmp_path):
    """2 ranks x batch 16 == 1 process x batch 32 (same rows per step): equal up to float rounding.

    Measured max |dW| ~1e-7 after 3 epochs (24 Adam steps); tolerance 1e-5 on
    weights and loss, dev GAP equal to 1e-6.
    """
    from producers.train import fit

    out, _ = ddp_run
    X, L = _data()
    torch.set_num_threads(1)
    model = _model()
    h = fit(model, _GlobalBatches(X[:N], L.take(np.arange(N))), (X[N:], L.take(np.arange(N, len(X)))),
            checkpoint_dir=tmp_path, **FIT)
    ref = model.state_dict()
    got = torch.load(out / "weights-rank0.pt")
    diff = max(float((ref[k] - got[k]).abs().max()) for k in ref)
    print(f"max |weight difference| DDP vs single process: {diff:.2e}")
    assert diff < 1e-5
    h0 = json.loads((out / "history-rank0.json").read_text())
    np.testing.assert_allclose(h0["loss"], h.loss, rtol=1e-5)
    np.testing.assert_allclose(h0["dev_gap"], h.dev_gap, atol=1e-6)
    assert h0["best_epoch"] == h.best_epoch


@pytest.mark.slow  # torchrun: 3 processes importing torch (~30 s on 2 cores)
def test_lockstep_uneven_batches_keeps_ranks_identical(ddp_run):
    out, _ = ddp_run
    u0, u1 = (torch.load(out / f"uneven-rank{r}.pt") for r in (0, 1))
    assert all(torch.equal(u0[k], u1[k]) for k in u0)  # same 3 steps on both ranks, no hang


def test_single_process_is_not_distributed(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    assert not distributed.launched_by_torchrun() and distributed.setup("cpu") is None
    assert distributed.is_main_process() and distributed.broadcast_object(7) == 7
    assert distributed.all_reduce_sum([1.5, 2]).tolist() == [1.5, 2.0]
    monkeypatch.setenv("RANK", "0"), monkeypatch.setenv("WORLD_SIZE", "1"), monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.launched_by_torchrun() and distributed.setup("cpu") is None  # world of one
    monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match="bad torchrun environment"):
        distributed.setup("cpu")


def test_shard_loader_video_rows_are_disjoint_and_cover():
    X, L = _data(n=10)
    loader = video_loader(VideoArrays(X, L), 3, shuffle=True)
    got = []
    for r in (0, 1):
        ctx = distributed.DistContext(r, 2, r, torch.device("cpu"), "gloo")
        sharded = distributed.shard_loader(loader, ctx, seed=5)
        distributed.set_epoch(sharded, 1)
        ids = [list(b.ids) for b in sharded]
        assert [len(i) for i in ids] == [3, 2]  # 5 rows per rank, batches of 3
        got.append(sum(ids, []))
    assert not set(got[0]) & set(got[1]) and len(set(got[0]) | set(got[1])) == 10
    assert distributed.shard_loader(loader, None) is loader
    plain = [1, 2]
    assert distributed.shard_loader(plain, ctx) is plain


def test_rank_frame_shards_split_files(tmp_path):
    for i in range(5):
        (tmp_path / f"train-{i}.tfrecord").write_bytes(b"")
    base = FrameShards(str(tmp_path / "*.tfrecord"), C, shuffle=True, seed=1)
    for epoch in (0, 1):
        parts = []
        for r in range(2):
            ds = distributed.RankFrameShards(base, r, 2)
            ds.set_epoch(epoch)
            parts.append(ds.rank_files())
            assert ds.seed == 1 + r * 2**32 and ds.base_seed == 1
        assert [len(p) for p in parts] == [3, 2]
        assert sorted(parts[0] + parts[1]) == sorted(base.files)
    with pytest.raises(InputError, match="at least 6 shard files"):
        distributed.RankFrameShards(base, 0, 6)


FRAME_JOB = """
[model]
name = "dbof"
[model.hparams]
cluster_size = 16
hidden_size = 16
[data]
train = "data/frame/train-*.tfrecord"
num_classes = 20
[split]
heldout = 10
dev_fraction = 0.2
[train]
epochs = 2
batch_size = 4
device = "cpu"
[predict]
top_k = 0
"""


@pytest.mark.slow  # torchrun + data generation (~30-40 s on 2 cores)
def test_torchrun_cli_frame_level_train(tmp_path):
    """``torchrun -m producers.cli train``: frame shards per rank, one train.log/history, predict refuses."""
    from producers.cli import main
    from producers.train import load_checkpoint

    assert main(["generate", str(tmp_path / "data"), "--videos", "40", "--test-videos", "0", "--classes", "20",
                 "--level", "frame", "--shards", "4", "--quiet"]) == 0
    (tmp_path / "f.toml").write_text(FRAME_JOB)
    res = _torchrun(["-m", "producers.cli", "train", str(tmp_path / "f.toml")], cwd=tmp_path)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "dev GAP@20" in res.stdout  # cli.py prints its summary line on every rank
    job = tmp_path / "runs" / "dbof"
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["best.pt", "epoch-0002.pt"]
    log = (job / "train.log").read_text()
    assert log.count("epoch 1/2") == 1 and log.count("epoch 2/2") == 1  # rank 0 only
    assert json.loads((job / "history.json").read_text())["epochs"] == [1, 2]
    assert len(load_checkpoint(job / "checkpoints" / "epoch-0002.pt")["rng_ranks"]) == 2


if __name__ == "__main__":  # torchrun worker: python -m torch.distributed.run ... test_distributed.py OUT
    _worker(Path(sys.argv[1]))
