"""SIGKILL in the middle of a write never corrupts an output; a killed training run resumes.

Each command runs as a subprocess (``python -m producers.cli`` / ``-m ensembler.cli``); the
test polls until the atomic writer's temporary file (``.<name>.tmp*``) appears, kills the
process with SIGKILL, and checks that every output is either absent or the previous one,
intact (same data checksum, ``verify()`` passes). Killed writers may leave a hidden temporary
file; it is never picked up by the readers' globs.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from predictions.store import expand_paths, open_store, write_store
from predictions.types import Predictions

from .conftest import REPO, job_toml

BIG_C = 3862


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _start(module: str, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _run(module: str, *args) -> None:
    p = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 120.0, extra_delay: float = 0.05) -> bool:
    """Poll ``ready()`` every 5 ms; SIGKILL the process once true. Returns whether it was killed mid-run."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            time.sleep(extra_delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return proc.returncode == -signal.SIGKILL
        time.sleep(0.005)
    proc.kill()
    raise AssertionError("the command never reached the point to kill")


def _temps(d: Path) -> list[Path]:
    return [p for p in d.glob(".*.tmp*")] if d.exists() else []


def _store_sums(d: Path) -> dict[str, str]:
    out = {}
    for p in sorted(d.glob("*.h5")):
        with open_store(p) as s:
            s.verify()
            out[p.name] = s.meta.checksum
    return out


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def big_video_data(tmp_path_factory) -> Path:
    """1,500 labelled + 1,500 test video-level records, 3,862 classes (about a second to predict)."""
    from producers.data.generator import generate

    root = tmp_path_factory.mktemp("yt8m-big")
    generate(root, n_train=1500, n_test=1500, num_classes=BIG_C, level="video", shards=2, seed=1)
    return root


@pytest.fixture(scope="module")
def small_c_data(tmp_path_factory) -> Path:
    """1,000 labelled video-level records, 100 classes (fast epochs, for the resume test)."""
    from producers.data.generator import generate

    root = tmp_path_factory.mktemp("yt8m-c100")
    generate(root, n_train=1000, n_test=0, num_classes=100, level="video", shards=2, seed=2)
    return root


def _untrained_checkpoint(cfg_path: Path) -> None:
    """best.pt of a freshly initialised model: predict needs weights, not a trained model."""
    import torch

    from producers.config import build_model, load_config

    cfg = load_config(cfg_path)
    torch.manual_seed(0)
    ckpt = cfg.job_dir / "checkpoints"
    ckpt.mkdir(parents=True)
    torch.save({"model": build_model(cfg).state_dict(), "epoch": 1, "dev_gap": 0.0}, ckpt / "best.pt")


def _big_topk(n: int, seed: int, k: int = 20) -> Predictions:
    rng = np.random.default_rng(seed)
    ids = np.array([f"vid{i:07d}" for i in range(n)])
    idx = (np.arange(k)[None, :] * 97 + rng.integers(0, BIG_C, (n, 1))) % BIG_C
    sc = np.sort(rng.random((n, k), dtype=np.float32), axis=1)[:, ::-1]
    return Predictions(ids, np.ascontiguousarray(sc), idx.astype(np.int32), BIG_C)


@pytest.fixture(scope="module")
def big_members(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("big-members")
    for j in range(3):
        write_store(d / "members" / f"m{j}.heldout.full.h5", _big_topk(30000, seed=j), model=f"m{j}",
                    split="heldout")
    return d


# --------------------------------------------------------------------------- tests


@pytest.mark.slow  # three predict processes importing torch, ~33 s on 2 cores
def test_killed_predict_no_partial_store_and_previous_intact(big_video_data, tmp_path):
    cfg = job_toml(tmp_path / "job.toml", f"{big_video_data}/video/train-*.tfrecord",
                   test=f"{big_video_data}/video/test-*.tfrecord", num_classes=BIG_C, heldout=500,
                   batch_size=256, top_k=0)
    _untrained_checkpoint(cfg)
    preds = tmp_path / "runs" / "predictions"

    # 1. first run killed while writing: the store being written is absent, finished ones are whole
    proc = _start("producers.cli", "predict", cfg, "--quiet")
    assert _kill_when(proc, lambda: bool(_temps(preds))), "predict finished before it could be killed"
    writing = {p.name.split(".tmp")[0][1:] for p in _temps(preds)}
    assert writing and not any((preds / w).exists() for w in writing)
    _store_sums(preds)  # whatever exists opens and verifies
    assert all(not p.name.startswith(".") for p in expand_paths(preds, suffix=".h5")) if any(
        preds.glob("*.h5")) else True

    # 2. a complete run, then a killed rerun: the previous stores and labels are intact
    _run("producers.cli", "predict", cfg, "--quiet")
    before = _store_sums(preds)
    assert sorted(before) == ["job.heldout.full.h5", "job.test.full.h5"]
    labels_before = {p.name: _sha(p) for p in (tmp_path / "runs" / "labels").glob("*.h5")}
    for t in _temps(preds):
        t.unlink()
    proc = _start("producers.cli", "predict", cfg, "--quiet")
    assert _kill_when(proc, lambda: bool(_temps(preds)))
    assert _store_sums(preds) == before
    assert {p.name: _sha(p) for p in (tmp_path / "runs" / "labels").glob("*.h5")} == labels_before


def test_killed_build_keeps_previous_ensemble(big_members, tmp_path):
    out = tmp_path / "out"
    # "power" in chunks of 300 rows (100 chunks): the store being written stays open long enough to be
    # killed mid-write (the weighted means in 3,000-row chunks finish within the poll on 3 x 30,000 videos)
    args = ["build", "--weights", "power", "--members", big_members / "members", "--out", out,
            "--chunk-rows", "300", "--quiet"]
    _run("ensembler.cli", *args)
    target = out / "ens-power.heldout.full.h5"
    before = _store_sums(out)
    record = _sha(out / "ens-power.build.json")
    assert list(before) == [target.name]

    proc = _start("ensembler.cli", *args)
    assert _kill_when(proc, lambda: bool(_temps(out)), extra_delay=0.05), "build finished before it was killed"
    assert _store_sums(out) == before
    assert _sha(out / "ens-power.build.json") == record
    with open_store(target) as s:
        assert len(s) == 30000


def test_killed_submit_keeps_previous_csv(big_members, tmp_path):
    store = big_members / "members" / "m0.heldout.full.h5"
    sub = tmp_path / "sub.csv"
    _run("ensembler.cli", "submit", store, "--out", sub, "--quiet", "--any-split")
    digest = _sha(sub)
    lines = sub.read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs" and len(lines) == 30001

    proc = _start("ensembler.cli", "submit", store, "--out", sub, "--quiet", "--any-split")
    killed = _kill_when(proc, lambda: bool(_temps(tmp_path)), extra_delay=0.02)
    assert _sha(sub) == digest
    if not killed:  # submit was faster than the poll: still, the file is whole
        pytest.skip("submit finished before it could be killed (file checked intact)")


@pytest.mark.slow  # two training processes, ~45 s on 2 cores
def test_killed_train_resumes_from_last_checkpoint(small_c_data, tmp_path):
    epochs = 12
    cfg = job_toml(tmp_path / "job.toml", f"{small_c_data}/video/train-*.tfrecord", num_classes=100,
                   epochs=epochs, heldout=200, batch_size=64, patience=100)
    ckpt = tmp_path / "runs" / "job" / "checkpoints"
    proc = _start("producers.cli", "train", cfg, "--quiet")
    killed = _kill_when(proc, lambda: any(ckpt.glob("epoch-*.pt")), extra_delay=0.3)
    assert killed, "training finished before it could be killed"
    assert not (tmp_path / "runs" / "job" / "history.json").exists()
    done = sorted(p.name for p in ckpt.glob("epoch-*.pt"))
    assert done
    last = int(done[-1][6:10])
    assert 1 <= last < epochs

    _run("producers.cli", "train", cfg, "--quiet")
    hist = json.loads((tmp_path / "runs" / "job" / "history.json").read_text())
    assert hist["epochs"] == list(range(1, epochs + 1))
    assert hist["resumed_from"] == last
    log = (tmp_path / "runs" / "job" / "train.log").read_text()
    assert f"resumed from" in log and f"(epoch {last})" in log
    assert sorted(p.name for p in ckpt.glob("epoch-*.pt")) == [f"epoch-{epochs:04d}.pt"]
