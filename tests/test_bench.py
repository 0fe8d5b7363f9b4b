"""Smoke test of bench/run.py (tiny sizes) and of the plain GAP baseline it compares against."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_baseline_gap_hand_computed():
    b = _bench()
    # video 0: scores for labels 0..3, truth {1}; video 1: truth {0, 2}; k = 2
    s = [np.array([0.9, 0.8, 0.1, 0.0]), np.array([0.7, 0.2, 0.6, 0.5])]
    # pooled top-2: (0.9,-) (0.8,+) (0.7,+) (0.6,+) -> AP = (1/2 + 2/3 + 3/4) / 3
    g = b.baseline_gap_rows(lambda i: s[i], lambda i: None, [[1], [0, 2]], 2, 3)
    assert g == pytest.approx((1 / 2 + 2 / 3 + 3 / 4) / 3, abs=1e-15)


def test_baseline_matches_metrics_gap():
    b = _bench()
    from predictions import metrics
    from predictions.types import Predictions

    rng = np.random.default_rng(0)
    ids = b.video_ids(300, "t")
    pool = b._pools(300, rng)
    truth, cnt = b.make_labels(ids, pool, rng)
    member = b.make_member(ids, pool, cnt, rng)
    lists = [l.tolist() for l in truth.lists()]
    ours = metrics.gap(member, truth, k=20)
    base = b.baseline_gap_rows(lambda i: member.scores[i], lambda i: member.indices[i], lists, 20,
                               len(truth.indices))
    assert abs(ours - base) <= 1e-12
    full = rng.random((300, b.C)).astype(np.float32)
    pred = Predictions(ids, full, None, b.C)
    base = b.baseline_gap_rows(lambda i: full[i], lambda i: None, lists, 20, len(truth.indices))
    assert abs(metrics.gap(pred, truth, k=20) - base) <= 1e-12


def test_quick_run_subset(tmp_path):
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "gap", "read",
                           "--data-dir", str(tmp_path / "data"), "--json", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["figure"] for r in rows] == ["1 GAP@20"] * 3 + ["3 read"]
    for r in rows:
        assert "error" not in r
        assert r["ours_s"] > 0 and r["base_s"] > 0 and r["ours_peak_mib"] > 10
    assert all(r["check"].startswith("equal") for r in rows[:3])
    assert rows[3]["check"] == "same labels"
    assert "| figure | case | ours | baseline | ratio |" in proc.stdout


def test_quick_csv_rows(tmp_path):
    """Figure 6 (Kaggle CSVs): import vs pandas.read_csv, and K CSVs -> submission vs the pandas pipeline."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "csv",
                           "--data-dir", str(tmp_path / "data"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["figure"] for r in rows] == ["6 csv"] * 4, rows
    imp, imp_g, *subs = rows
    for r in (imp, imp_g):
        assert r["ours_s"] > 0 and r["base_s"] > 0 and r["check"].startswith("same labels")
    assert "|d score| <= 0e+00" in imp["check"]      # 6 printed decimals read back to the same float32
    assert "%g" in imp_g["case"]
    assert [s["case"].split()[0] for s in subs] == ["16", "36"]
    for sub in subs:
        assert sub["ours_s"] > 0 and sub["base_s"] > 0 and sub["ratio"] > 1   # faster than the pandas pipeline
        agree = float(sub["check"].split(" on ")[1].split()[0])
        assert agree >= 0.999


def test_numpy_floor_is_the_weighted_top_k(tmp_path):
    """The floor of figure 8 selects each video's top 20 of the weighted sum of the members' top-k scores."""
    b = _bench()
    from predictions.store import write_store

    rng = np.random.default_rng(5)
    n = 700  # more than one block and one chunk below
    ids = b.video_ids(n, "f")
    pool = b._pools(n, rng)
    _, cnt = b.make_labels(ids, pool, rng)
    members = [b.make_member(ids, pool, cnt, rng) for _ in range(3)]
    paths = [write_store(tmp_path / f"m{j}.test.full.h5", m, model=f"m{j}", split="test")
             for j, m in enumerate(members)]
    w = np.array([0.5, 0.3, 0.2])
    got = b.numpy_floor(paths, w, chunk_rows=256, block_rows=100)
    dense = sum(wj * m.dense() for wj, m in zip(w, members))
    want = np.argsort(-dense, axis=1, kind="stable")[:, :20]
    kth = np.take_along_axis(dense, want[:, -1:], axis=1)
    # equal label sets, except where the 20th best ties with the 21st (continuous scores: never here)
    assert ((dense > kth).sum(axis=1) == 19).all()
    np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1))
    uniform = b.numpy_floor(paths, chunk_rows=4096, block_rows=512)
    want_u = np.argsort(-sum(m.dense() for m in members), axis=1, kind="stable")[:, :20]
    np.testing.assert_array_equal(np.sort(uniform, axis=1), np.sort(want_u, axis=1))


@pytest.mark.slow
def test_quick_build_and_startup_rows(tmp_path):
    """Figures 8 (build vs the numpy floor) and 9 (CLI start-up) at quick sizes."""
    out = tmp_path / "rows.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "build", "startup",
                           "--data-dir", str(tmp_path / "data"), "--json", str(out)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert [r["figure"] for r in rows] == ["8 build"] * 8 + ["9 startup"] * 3, rows
    for r in rows[:8]:
        assert r["ours_s"] > 0 and r["base_s"] > 0 and "x the floor wall" in r["check"]
        assert float(r["check"].split(" on ")[1].split()[0]) >= 0.999  # same top-20 sets as the floor
    assert rows[-1]["case"] == "produce --help" and rows[-1]["note"].startswith("loads: none")
