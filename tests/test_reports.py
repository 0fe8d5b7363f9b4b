"""Tests of reports/: the HTML report (write_report). The vocabulary loader: tests/test_vocabulary.py."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import numpy as np
import pytest

from predictions import metrics
from predictions.errors import InputError
from predictions.labels import write_labels
from predictions.store import write_store
from predictions.types import Labels, Predictions
from reports import write_report
from reports.report import calibration

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

N, C, K = 300, 40, 20
NOISE = {"good": 0.6, "fair": 0.75, "poor": 0.95}
FOLD_SCORES = [0.8, 0.82, 0.81, 0.79, 0.83]          # the build record's: fold standard error 0.00707


def _make_labels(rng) -> Labels:
    freq = np.geomspace(0.25, 0.005, C)  # skewed class frequencies
    dense = rng.random((N, C)) < freq
    dense[np.arange(N), rng.integers(0, C, N)] = True  # every video has a positive
    ids = np.array([f"v{i:04d}" for i in range(N)])
    return Labels.from_lists(ids, [np.flatnonzero(r) for r in dense], C)


def _member(rng, truth: Labels, noise: float, seed_shift: int) -> Predictions:
    dense = truth.dense().astype(np.float32)
    s = 0.3 * dense + noise * rng.random((N, C)).astype(np.float32) + 0.01 * seed_shift
    s = np.clip(s / s.max(), 0, 1).astype(np.float32)
    return Predictions.from_dense(truth.ids, s, k=K)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    stores = root / "stores"
    stores.mkdir()
    rng = np.random.default_rng(0)
    truth = _make_labels(rng)
    write_labels(root / "labels.eval.h5", truth, split="eval")
    preds = {}
    for i, (name, noise) in enumerate(NOISE.items()):
        preds[name] = _member(rng, truth, noise, i)
        write_store(stores / f"{name}.eval.full.h5", preds[name], model=name, split="eval")
    avg = np.mean([p.dense() for p in preds.values()], axis=0)
    preds["ens-uniform"] = Predictions.from_dense(truth.ids, avg, k=K)
    write_store(stores / "ens-uniform.eval.full.h5", preds["ens-uniform"], model="ens-uniform", split="eval",
                extra={"ensemble": {"scheme": "uniform", "members": list(NOISE)}})
    record = {"scheme": "caruana", "name": "ens-uniform", "fit_split": "heldout",
              "members": [{"name": n, "paths": [str(stores / f"{n}.heldout.full.h5")]} for n in NOISE],
              "member_gap": {"good": 0.8, "fair": 0.7, "poor": 0.5}, "best_single": ["good", 0.8],
              "uniform_gap": 0.81, "crossfit": {"n_folds": 5, "fold_scores": FOLD_SCORES,
                                                "estimate": 0.81},
              "fitted": {"weights": {"good": 0.5, "fair": 0.3, "poor": 0.2},
                         "trajectory": [{"member": "good", "score": 0.8}, {"member": "fair", "score": 0.81},
                                        {"member": "good", "score": 0.815}]},
              "outputs": {"eval": str(stores / "ens-uniform.eval.full.h5")}, "scores": {}}
    (stores / "ens-uniform.build.json").write_text(json.dumps(record))
    out = root / "report"
    index = write_report(out, members=[stores], labels=[root / "labels.eval.h5"], split="eval",
                         builds=[stores], vocabulary=None, k=K, title="Test report")
    return dict(root=root, stores=stores, truth=truth, preds=preds, out=out, index=index,
                summary=json.loads((out / "summary.json").read_text()))


def _img_sources(html: str) -> list[str]:
    return re.findall(r'<img[^>]*\bsrc="([^"]+)"', html)


def test_report_files_and_images(setup):
    index = setup["index"]
    assert index == setup["out"] / "index.html" and index.is_file()
    html = index.read_text()
    srcs = _img_sources(html)
    assert len(srcs) >= 8  # leaderboard, weights, trajectory, correlation, loo, size, per-class, pr, reliability
    for src in srcs:
        assert "/" not in src and not src.startswith("http")
        data = (setup["out"] / src).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 2000
    # self-contained: no external resources, no script
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert (setup["out"] / "summary.md").read_text().startswith("# Test report")
    # no temporary directory left beside the report
    assert sorted(p.name for p in setup["root"].iterdir() if p.name.startswith(".")) == []


def test_leaderboard_sorted_and_exact(setup):
    s, truth = setup["summary"], setup["truth"]
    lb = s["leaderboard"]
    assert [r["name"] for r in lb] == sorted((r["name"] for r in lb), key=lambda n: -next(
        x["gap"] for x in lb if x["name"] == n))
    gaps = [r["gap"] for r in lb]
    assert gaps == sorted(gaps, reverse=True)
    assert {r["name"] for r in lb} == set(setup["preds"])
    for r in lb:
        direct = metrics.evaluate(setup["preds"][r["name"]], truth, k=K)
        for key in ("gap", "map", "hit1", "perr"):
            assert r[key] == pytest.approx(direct[key], abs=1e-12), (r["name"], key)
        assert r["n"] == N
    # member quality ordering holds, the ensemble is flagged and carries the build's estimate
    by = {r["name"]: r for r in lb}
    assert by["good"]["gap"] > by["fair"]["gap"] > by["poor"]["gap"]
    assert by["ens-uniform"]["kind"] == "ensemble" and by["ens-uniform"]["estimate"] == pytest.approx(0.81)
    assert by["good"]["kind"] == "member" and by["good"]["estimate"] is None
    # the estimate's uncertainty: fold standard error of the record's fold scores, and how far eval landed
    assert by["ens-uniform"]["std_error"] == pytest.approx(np.std(FOLD_SCORES, ddof=1) / np.sqrt(5), abs=1e-12)
    assert by["ens-uniform"]["gap_minus_estimate"] == pytest.approx(by["ens-uniform"]["gap"] - 0.81, abs=1e-12)
    assert by["good"]["std_error"] is None and by["good"]["gap_minus_estimate"] is None
    build = s["builds"]["ens-uniform"]
    assert build["std_error"] == by["ens-uniform"]["std_error"] and build["estimate"] == pytest.approx(0.81)
    assert s["best"]["member"] == "good" and s["best"]["ensemble"] == "ens-uniform"
    assert s["best"]["model"] == lb[0]["name"]
    assert 'class="best"' in setup["index"].read_text()


def test_diversity_and_greedy(setup):
    s = setup["summary"]
    div = s["diversity"]
    assert div["members"] == ["fair", "good", "poor"]
    corr = np.array(div["correlation"])
    assert corr.shape == (3, 3) and np.allclose(np.diag(corr), 1) and np.allclose(corr, corr.T)
    # uniform average of the three members over the union of their top-20 = GAP of the dense average's top 20
    truth = setup["truth"]
    assert div["uniform_gap"] == pytest.approx(metrics.gap(setup["preds"]["ens-uniform"], truth, K), abs=1e-5)
    # leave-one-out: GAP without "poor" = GAP of the average of good and fair
    without_poor = Predictions.from_dense(truth.ids, (setup["preds"]["good"].dense()
                                                      + setup["preds"]["fair"].dense()) / 2, k=K)
    assert div["loo"]["poor"] == pytest.approx(metrics.gap(without_poor, truth, K) - div["uniform_gap"], abs=1e-6)
    greedy = s["greedy"]
    assert [g["member"] for g in greedy][0] == "good"  # best single member first
    assert greedy[0]["gap"] == pytest.approx(metrics.gap(setup["preds"]["good"], truth, K), abs=1e-12)
    assert sorted(g["member"] for g in greedy) == ["fair", "good", "poor"]
    assert greedy[-1]["gap"] == pytest.approx(div["uniform_gap"], abs=1e-12)


def test_per_class_and_calibration(setup):
    s, truth = setup["summary"], setup["truth"]
    pc = s["per_class"]
    assert pc["models"] == ["good", "ens-uniform"]
    ap_m = metrics.per_class_ap(setup["preds"]["good"], truth, K)
    ap_e = metrics.per_class_ap(setup["preds"]["ens-uniform"], truth, K)
    delta = ap_e - ap_m
    assert pc["worse"] == int(np.sum(delta < 0)) and pc["better"] == int(np.sum(delta > 0))
    lost = pc["lost"]
    assert [r["delta"] for r in lost] == sorted(r["delta"] for r in lost)
    if lost:
        assert lost[0]["delta"] == pytest.approx(np.nanmin(delta))
        assert lost[0]["name"] == f"class {lost[0]['class']}"  # no vocabulary given
    cal = s["calibration"]
    assert set(cal) == {"good", "ens-uniform"}
    bins = cal["good"]["bins"]
    assert sum(bins["count"]) == N * K


def test_calibration_hand_computed():
    # 2 videos, C=3, top-2: entries (0.95, pos), (0.15, neg), (0.55, pos), (0.45, neg);
    # bins [0, .5): mean 0.30, rate 0; [.5, 1]: mean 0.75, rate 1
    pred = Predictions(np.array(["a", "b"]), np.array([[0.95, 0.15], [0.55, 0.45]], np.float32),
                       np.array([[0, 1], [2, 0]], np.int32), 3)
    truth = Labels.from_lists(["a", "b"], [[0], [2]], 3)
    c = calibration(pred, truth, k=2, bins=2)
    assert c["count"] == [2, 2]
    assert c["mean_pred"] == pytest.approx([0.30, 0.75])
    assert c["observed"] == pytest.approx([0.0, 1.0])
    assert c["ece"] == pytest.approx(0.5 * 0.30 + 0.5 * 0.25)


def test_single_member_no_build(tmp_path, setup):
    """One member, no ensemble, no build record, a vocabulary: sections are skipped with notes."""
    stores = tmp_path / "s"
    stores.mkdir()
    shutil.copy(setup["stores"] / "good.eval.full.h5", stores)
    vocab = tmp_path / "vocabulary.csv"
    vocab.write_text("Index,Name,Vertical1\n" + "".join(f"{i},Label {i},V{i % 3}\n" for i in range(C)))
    index = write_report(tmp_path / "r", members=[stores], labels=setup["truth"], split="eval", vocabulary=vocab)
    html = index.read_text()
    for src in _img_sources(html):
        assert (tmp_path / "r" / src).read_bytes()[:8] == PNG_MAGIC
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [r["name"] for r in s["leaderboard"]] == ["good"]
    assert s["diversity"] is None and s["greedy"] is None and s["builds"] == {}
    assert "diversity" in s["notes"] and "ensemble" in s["notes"]
    assert "No build record given" in html and 'class="note"' in html
    # a second run replaces the previous report atomically
    index2 = write_report(tmp_path / "r", members=[stores], labels=setup["truth"], split="eval")
    assert index2.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["r", "s", "vocabulary.csv"]


def test_bad_inputs_leave_nothing(tmp_path, setup):
    out = tmp_path / "r"
    with pytest.raises(InputError, match="split 'test'"):
        write_report(out, members=[setup["stores"]], labels=[setup["root"] / "labels.eval.h5"], split="test")
    with pytest.raises(InputError, match="k must be"):
        write_report(out, members=[setup["stores"]], labels=setup["truth"], k=0)
    bad = tmp_path / "bad.build.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="bad.build.json"):
        write_report(out, members=[setup["stores"]], labels=setup["truth"], builds=[bad])
    assert list(tmp_path.iterdir()) == [bad]
    # refuses to replace a directory that is not a report
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(InputError, match="not a previous report"):
        write_report(other, members=[setup["stores"]], labels=setup["truth"])
    assert (other / "keep.txt").exists()


# --------------------------------------------------------------------------- rendering
# In CI (CI=true) .ci/run installs Debian's chromium and chromium-driver, and these tests must run
# there: a missing browser fails them instead of skipping them.
def _browser_or_skip(*names) -> str:
    for name in names:
        if shutil.which(name):
            return shutil.which(name)
    message = f"no {names[0]} binary (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; .ci/run installs it when CI=true")
    pytest.skip(message)


def _chromium() -> str:
    return _browser_or_skip("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.mark.slow
def test_renders_in_headless_chromium(setup, tmp_path):
    browser = _chromium()
    shot = tmp_path / "page.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,6000",
           f"--screenshot={shot}", setup["index"].as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists() and shot.read_bytes()[:8] == PNG_MAGIC
    import matplotlib.image as mpimg
    img = mpimg.imread(shot)
    assert img.shape[1] == 1280
    # the page is not blank: the dark header and the figures give many distinct colours
    assert len(np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3)[::97], axis=0)) > 50


class _WebDriver:
    """The few W3C WebDriver calls we need, spoken to chromedriver over HTTP (no selenium dependency)."""

    ELEMENT = "element-6066-11e4-a52e-4f735466cecf"     # the W3C web element identifier

    def __init__(self, driver: str, browser: str, profile):
        import socket
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen([driver, f"--port={port}"], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError("chromedriver did not start within 30 s")
            time.sleep(0.2)
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1400,2400",
                f"--user-data-dir={profile}"]
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome",
                                                 "goog:chromeOptions": {"binary": browser, "args": args}}}}
        self.session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body=None):
        import urllib.request
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())["value"]

    def get(self, url: str) -> None:
        self._call("POST", f"/session/{self.session}/url", {"url": url})

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", f"/session/{self.session}/elements", {"using": "css selector", "value": css})
        return [e[self.ELEMENT] for e in found]

    def text(self, element: str) -> str:
        """The element's rendered text (what a reader sees; hidden text is not included)."""
        return self._call("GET", f"/session/{self.session}/element/{element}/text")

    def rect(self, element: str) -> dict:
        return self._call("GET", f"/session/{self.session}/element/{element}/rect")

    def close(self) -> None:
        try:
            self._call("DELETE", f"/session/{self.session}")
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=30)


@pytest.mark.slow
def test_uncertainty_column_renders_in_chromium(setup, tmp_path):
    """Chromium lays out the leaderboard's and the builds' standard-error columns with the record's values."""
    driver = _browser_or_skip("chromedriver")
    wd = _WebDriver(driver, _chromium(), tmp_path / "profile")
    try:
        wd.get(setup["index"].as_uri())
        se = f"\u00b1 {np.std(FOLD_SCORES, ddof=1) / np.sqrt(5):.4f}"            # "± 0.0071"
        for section, header in (("leaderboard", "\u00b1 s.e."), ("builds", "\u00b1 s.e.")):
            heads = [wd.text(e) for e in wd.find_all(f"#{section} th")]
            assert header in heads, (section, heads)
            cells = wd.find_all(f"#{section} td.se")
            texts = [wd.text(e) for e in cells]
            assert se in texts, (section, texts)
            box = wd.rect(cells[texts.index(se)])
            assert box["width"] > 20 and box["height"] > 8 and box["x"] >= 0, (section, box)
        # members have no estimate: their s.e. cell shows a dash
        rows = {wd.text(e).split()[1]: wd.text(e) for e in wd.find_all("#leaderboard tbody tr")}
        assert "\u2013" in rows["good"] and se in rows["ens-uniform"]
    finally:
        wd.close()


def test_correlation_matches_numpy():
    from reports.report import correlation
    rng = np.random.default_rng(1)
    x = rng.random((1000, 4)).astype(np.float32)
    x[:, 1] = 0.5 * x[:, 0] + 0.5 * x[:, 1]
    assert np.allclose(correlation(x, chunk_rows=77), np.corrcoef(x.T.astype(np.float64)), atol=1e-9)
    x[:, 3] = 0.25  # constant column: NaN off the diagonal, 1 on it
    c = correlation(x)
    assert np.isnan(c[3, :3]).all() and c[3, 3] == 1.0


def test_uniform_gap_equals_dense_reference():
    """The leave-one-out / greedy-size GAPs equal GAP@k of a dense uniform average of the same members."""
    from ensembler.candidates import Candidates
    from predictions.types import Labels, Predictions
    from reports.report import _uniform_gap
    rng = np.random.default_rng(2)
    n, C = 300, 40
    ids = np.array([f"v{i}" for i in range(n)])
    truth = Labels.from_lists(ids, [rng.choice(C, rng.integers(1, 4), replace=False) for _ in range(n)], C)
    dense = [rng.random((n, C)).astype(np.float32) + 0.5 * truth.dense() for _ in range(3)]
    dense = [d / d.max() for d in dense]
    members = [Predictions.from_dense(ids, d, k=C) for d in dense]  # every label: no top-k cut effects
    cands = Candidates.from_members(members)
    y = cands.targets(truth)
    n_pos = int(truth.counts().sum())
    for cols in ([0], [0, 2], [0, 1, 2]):
        for k in (1, 5, 20):
            ref = metrics.gap(Predictions.from_dense(ids, np.mean([dense[c] for c in cols], axis=0)), truth, k=k)
            assert _uniform_gap(cands, cols, y, n_pos, k) == pytest.approx(ref, abs=1e-6)
    assert metrics.gap_pooled(cands.row, cands.scores[:, 0], np.zeros(len(y), bool), 0, k=5) == 0.0


def test_trajectory_and_bag_size_of_bagged_and_auto_records():
    from reports.report import _bagged, _first_trajectory
    traj = [{"member": "good", "gap": 0.8}]
    assert _first_trajectory({"trajectory": traj}) == traj
    bag = {"weights": {"good": 1.0}, "bagged_models": 5, "folds": [{"trajectory": traj}, {"trajectory": []}]}
    assert _first_trajectory(bag) == traj and _bagged(bag) == 5
    auto = {"chosen": "caruana", "chosen_fitted": bag}
    assert _first_trajectory(auto) == traj and _bagged(auto) == 5
    assert _first_trajectory({"weights": {}}) is None and _bagged({"weights": {}}) is None
