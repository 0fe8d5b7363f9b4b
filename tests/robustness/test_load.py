"""Load: ``ensemble build`` over 50 members x 100,000 videos (top-20, C=3862) in bounded memory.

Run with ``pytest -m slow tests/robustness/test_load.py -s``; prints the peak RSS and times.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from predictions.store import StoreWriter, open_store
from predictions.types import Predictions

from .conftest import REPO

N, M, K, NUM_C = 100_000, 50, 20, 3862
POOL = 30            # labels per video that members draw their top-20 from (members agree, as real ones do)
LIMIT_BYTES = 1.5e9


def _write_members(d: Path) -> None:
    rng = np.random.default_rng(0)
    ids = np.array([f"v{i:07d}" for i in range(N)])
    pool = (rng.integers(0, NUM_C, (N, 1)) + np.arange(POOL)[None, :] * 127) % NUM_C   # distinct per row
    base = rng.random((N, POOL), dtype=np.float32)
    for m in range(M):
        with StoreWriter(d / f"m{m:02d}.heldout.full.h5", ids=ids, num_classes=NUM_C, k=K, model=f"m{m:02d}",
                         split="heldout") as w:
            for a in range(0, N, 25_000):
                s = np.clip(base[a:a + 25_000] + 0.3 * rng.random((min(25_000, N - a), POOL), dtype=np.float32),
                            0, 1.3) / 1.3
                order = np.argsort(-s, axis=1, kind="stable")[:, :K]
                sc = np.take_along_axis(s, order, 1).astype(np.float32)
                idx = np.take_along_axis(pool[a:a + 25_000], order, 1).astype(np.int32)
                w.write(Predictions(ids[a:a + 25_000], sc, idx, NUM_C))


@pytest.mark.slow  # writes 50 x 100k-row stores (~0.9 GB) and ensembles them: a few minutes on 2 cores
def test_build_50_members_100k_videos_bounded_memory(tmp_path):
    members = tmp_path / "members"
    t0 = time.perf_counter()
    _write_members(members)
    write_s = time.perf_counter() - t0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "ensembler.cli", "build", "--weights", "uniform", "--members", str(members),
           "--out", str(out), "--quiet"]
    # a fresh wrapper process, so RUSAGE_CHILDREN covers the build alone
    wrapper = ("import resource, subprocess, sys, json, time; t = time.perf_counter(); "
               f"r = subprocess.run({cmd!r}, capture_output=True, text=True); "
               "print(json.dumps({'rc': r.returncode, 'err': r.stderr[-3000:], 'seconds': time.perf_counter() - t, "
               "'maxrss_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = json.loads(subprocess.run([sys.executable, "-c", wrapper], cwd=REPO, env=env, capture_output=True,
                                    text=True, timeout=3600).stdout)
    peak = res["maxrss_kb"] * 1024
    print(f"\nload: wrote {M} stores in {write_s:.1f}s; build rc={res['rc']} in {res['seconds']:.1f}s, "
          f"peak RSS {peak / 1e9:.2f} GB")
    assert res["rc"] == 0, res["err"]

    # reference: dense mean of the 50 members on a sample of 1,000 videos
    rng = np.random.default_rng(1)
    with open_store(out / "ens-uniform.heldout.full.h5") as s:
        s.verify()
        assert len(s) == N and s.k == K
        rows = np.sort(rng.choice(N, 1000, replace=False))
        ens = s.read_rows(rows)
    dense = np.zeros((1000, NUM_C), np.float64)
    for m in range(M):
        with open_store(members / f"m{m:02d}.heldout.full.h5") as r:
            p = r.read_rows(rows)
            assert np.array_equal(p.ids, ens.ids)
            dense += p.dense()
    dense /= M
    ref_top = -np.sort(-dense, axis=1)[:, :K]
    np.testing.assert_allclose(ens.scores, ref_top, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(dense, ens.indices.astype(np.int64), 1), ens.scores,
                               rtol=1e-5, atol=1e-6)
    assert peak < LIMIT_BYTES, f"peak RSS {peak / 1e9:.2f} GB >= 1.5 GB"
