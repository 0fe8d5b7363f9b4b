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

    def execute(self, script: str, *args):
        """Run ``script`` (a function body) in the page; its return value."""
        return self._call("POST", f"/session/{self.session}/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self, path) -> None:
        import base64
        path.write_bytes(base64.b64decode(self._call("GET", f"/session/{self.session}/screenshot")))

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


# --------------------------------------------------------------------------- telling a gain from noise
LONG = ["Frame_level_Pooling_all", "Frame_level_Pooling_audio", "Frame_level_Pooling_rgb"]
N_VERT = 4


@pytest.fixture(scope="module")
def rich(tmp_path_factory, setup):
    """Members with look-alike long names, an ensemble, a stacker's build record (importances) and a
    vocabulary with verticals."""
    root = tmp_path_factory.mktemp("rich")
    stores = root / "stores"
    stores.mkdir()
    truth = setup["truth"]
    preds = {}
    for long, short in zip(LONG, NOISE):
        preds[long] = setup["preds"][short]
        write_store(stores / f"{long}.eval.full.h5", preds[long], model=long, split="eval")
    avg = np.mean([p.dense() for p in preds.values()], axis=0)
    preds["ens-xgb"] = Predictions.from_dense(truth.ids, avg, k=K)
    write_store(stores / "ens-xgb.eval.full.h5", preds["ens-xgb"], model="ens-xgb", split="eval",
                extra={"ensemble": {"scheme": "xgboost", "members": LONG}})
    record = {"scheme": "xgboost", "name": "ens-xgb", "fit_split": "heldout", "members": LONG,
              "best_single": [LONG[0], 0.8], "uniform_gap": 0.81,
              "crossfit": {"n_folds": 5, "fold_scores": FOLD_SCORES, "estimate": 0.81},
              "importance": {LONG[0]: 0.6, LONG[1]: 0.3, LONG[2]: 0.1},
              "fitted": {"features": ["score_a", "rank_a"], "gain": {"score_a": 12.5, "rank_a": 3.0}}}
    (stores / "ens-xgb.build.json").write_text(json.dumps(record))
    vocab = root / "vocabulary.csv"
    vocab.write_text("Index,Name,Vertical1\n" + "".join(f"{i},Label {i},V{i % N_VERT}\n" for i in range(C)))
    out = root / "report"
    write_report(out, members=[stores], labels=truth, split="eval", builds=[stores], vocabulary=vocab, k=K)
    return dict(root=root, stores=stores, truth=truth, preds=preds, vocab=vocab, out=out,
                index=out / "index.html", summary=json.loads((out / "summary.json").read_text()))


def _fold_gaps(pred, truth, n_folds=10):
    """GAP@K of each fold of the report's folds, by predictions.metrics on the fold's videos alone."""
    from ensembler.crossfit import make_folds
    folds = make_folds(len(truth), n_folds, 0)
    return np.array([metrics.gap(pred.reindex(truth.ids[folds == f]), truth.reindex(truth.ids[folds == f]), K)
                     for f in range(n_folds)])


def test_standard_errors_match_fold_gaps(setup):
    """Each GAP's s.e. is the fold s.e. of per-fold GAPs; a gain's s.e. is paired over the same folds."""
    s, truth, preds = setup["summary"], setup["truth"], setup["preds"]
    by = {r["name"]: r for r in s["leaderboard"]}
    folds = {n: _fold_gaps(p, truth) for n, p in preds.items()}
    for name, f in folds.items():
        assert by[name]["gap_se"] == pytest.approx(f.std(ddof=1) / np.sqrt(10), abs=1e-9), name
    d = folds["ens-uniform"] - folds["good"]
    paired = d.std(ddof=1) / np.sqrt(10)
    best = s["best"]
    assert best["member"] == "good" and best["n_folds"] == 10
    assert best["gain_over_best_member"] == pytest.approx(by["ens-uniform"]["gap"] - by["good"]["gap"], abs=1e-12)
    assert best["gain_se"] == pytest.approx(paired, abs=1e-9)
    assert best["gain_z"] == pytest.approx(best["gain_over_best_member"] / paired, rel=1e-6)
    expected = ("within noise" if abs(best["gain_over_best_member"]) < 2 * paired else
                "above noise" if best["gain_over_best_member"] > 0 else "below noise")
    assert best["gain_verdict"] == expected
    # pairing matters: the gain's s.e. is below the quadrature sum of the two models' own s.e.
    assert paired < np.hypot(by["ens-uniform"]["gap_se"], by["good"]["gap_se"])
    assert by["good"]["gain_vs_best_member"] is None and by["poor"]["gain_verdict"] == "below noise"
    # the headline cards show the numbers with their s.e. and the verdict in words
    html = setup["index"].read_text()
    cards = re.findall(r'<div class="card[^"]*">.*?</div></div>', html)
    gain_card = next(c for c in cards if "ensemble gain" in c)
    assert f"\u00b1 {best['gain_se']:.4f}" in gain_card and f"{best['gain_over_best_member']:+.4f}" in gain_card
    assert {"within noise": "within noise", "above noise": "a real gain",
            "below noise": "a real loss"}[best["gain_verdict"]] in gain_card
    best_card = next(c for c in cards if "best on eval" in c)
    assert f"\u00b1 {by[best['model']]['gap_se']:.4f}" in best_card


def test_grouped_gap_equals_gap_pooled():
    from reports.noise import entries, grouped_gap
    rng = np.random.default_rng(3)
    n, C = 400, 30
    ids = np.array([f"v{i}" for i in range(n)])
    truth = Labels.from_lists(ids, [rng.choice(C, rng.integers(1, 4), replace=False) for _ in range(n)], C)
    scores = np.round(rng.random((n, C)) * 0.5 + 0.5 * truth.dense(), 1).astype(np.float32)  # many ties
    e = entries(Predictions.from_dense(ids, scores, k=K), truth, K)
    cls_group = rng.integers(0, 5, C)  # a "vertical" per class
    group = cls_group[e.labels]
    n_pos = np.bincount(cls_group[truth.indices], minlength=5)
    got = grouped_gap(group, e.scores, e.is_pos, n_pos)
    for g in range(5):
        m = group == g
        ref = metrics.gap_pooled(e.rows[m], e.scores[m], e.is_pos[m], int(n_pos[g]), k=None)
        assert got[g] == pytest.approx(ref, abs=1e-12), g
    whole = grouped_gap(np.zeros(len(e.rows), np.int64), e.scores, e.is_pos, [len(truth.indices)])[0]
    assert whole == pytest.approx(metrics.gap(Predictions.from_dense(ids, scores, k=K), truth, K), abs=1e-12)
    assert np.isnan(grouped_gap(np.zeros(3, np.int64), np.ones(3), np.zeros(3, bool), [0])[0])


def test_per_vertical_breakdown(rich):
    """GAP per vertical of the best member and the best ensemble, by an independent computation."""
    s, truth, preds = rich["summary"], rich["truth"], rich["preds"]
    member, ens = s["best"]["member"], s["best"]["ensemble"]
    assert (member, ens) == ("Frame_level_Pooling_all", "ens-xgb")
    rows = {r["vertical"]: r for r in s["verticals"]}
    assert set(rows) == {f"V{v}" for v in range(N_VERT)}
    vert_of = np.arange(C) % N_VERT
    for v in range(N_VERT):
        r = rows[f"V{v}"]
        assert r["classes"] == int(np.sum(vert_of == v))
        assert r["positives"] == int(np.sum(vert_of[truth.indices] == v))
        for name in (member, ens):
            top = preds[name].topk(K)
            rws = np.repeat(np.arange(N), top.scores.shape[1])
            lab = top.indices.ravel()
            m = vert_of[lab] == v
            ref = metrics.gap_pooled(rws[m], top.scores.ravel()[m], truth.is_positive(rws, lab)[m],
                                     r["positives"], k=None)
            assert r["gap"][name] == pytest.approx(ref, abs=1e-9), (v, name)
        assert r["change"] == pytest.approx(r["gap"][ens] - r["gap"][member], abs=1e-12)
        assert r["change_se"] > 0 and r["verdict"] in ("within noise", "above noise", "below noise")
    html = rich["index"].read_text()
    assert 'id="verticals"' in html and "GAP Frame_level_Pooling_all" in html


def test_importances_shown(rich):
    s = rich["summary"]
    b = s["builds"]["ens-xgb"]
    assert b["importance"] == {LONG[0]: 0.6, LONG[1]: 0.3, LONG[2]: 0.1}
    assert b["features"] == ["gain", {"score_a": 12.5, "rank_a": 3.0}]
    for key in ("importance:ens-xgb", "features:ens-xgb"):
        assert (rich["out"] / s["figures"][key]).read_bytes()[:8] == PNG_MAGIC
    html = rich["index"].read_text()
    assert "ens-xgb: member importance" in html and "60.0%" in html
    # the fit-split gain of the estimate over the best single, judged against the estimate's s.e.:
    # 0.81 - 0.80 = 0.01 < 2 x 0.0071, within noise
    assert b["gain_over_best_single"] == pytest.approx(0.01) and b["gain_verdict"] == "within noise"


def test_names_are_never_truncated_into_look_alikes():
    from reports.plots import distinct_labels
    assert len(set(distinct_labels(LONG, 18))) == 3
    assert all(len(x) <= 18 for x in distinct_labels(LONG, 18))
    assert distinct_labels(["lr", "moe"], 18) == ["lr", "moe"]
    # names that differ only inside the cut keep their full text
    names = ["a" * 20 + "1" + "b" * 20, "a" * 20 + "2" + "b" * 20]
    assert distinct_labels(names, 18) == names


def test_correlation_cells_tell_0996_from_1():
    from reports.plots import corr_text
    assert [corr_text(x) for x in (0.996, 0.9996, 0.99999, 1.0, 0.5)] == ["0.996", "0.9996", ">0.9999", "1", "0.500"]


def test_trajectory_axis_does_not_magnify_tiny_steps():
    from matplotlib.figure import Figure

    from reports.plots import MIN_SPAN, _floor_span
    ax = Figure().add_subplot()
    _floor_span(ax, np.array([0.69777, 0.69781, 0.69787]), MIN_SPAN)
    lo, hi = ax.get_ylim()
    assert hi - lo >= MIN_SPAN and lo < 0.69777 and hi > 0.69787
    _floor_span(ax, np.array([0.5, 0.7]), MIN_SPAN)  # a real climb keeps its own range (+10 %)
    assert ax.get_ylim() == pytest.approx((0.48, 0.72))


# --------------------------------------------------------------------------- bad inputs (issue 25)
def test_vocabulary_of_another_class_count_is_refused(tmp_path, setup):
    for n in (100, 4716):  # 100 names for 40 classes; a vocabulary of another class set
        vocab = tmp_path / f"v{n}.csv"
        vocab.write_text("label_id,label_name\n" + "".join(f"{i},name {i}\n" for i in range(n)))
        with pytest.raises(InputError) as err:
            write_report(tmp_path / "r", members=[setup["stores"]], labels=setup["truth"], vocabulary=vocab)
        assert str(err.value).startswith(str(vocab)) and f"lists {n:,} classes" in str(err.value)
        assert f"have {C}" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "r").exists()


def test_vocabulary_fifo_is_refused_unopened(tmp_path, setup):
    import threading
    fifo = tmp_path / "vocab.csv"
    os.mkfifo(fifo)

    def rescue():  # if the report opened the FIFO it would block: give it an empty writer instead
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        os.close(fd)

    timer = threading.Timer(10, rescue)
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(InputError, match="FIFO"):
            write_report(tmp_path / "r", members=[setup["stores"]], labels=setup["truth"], vocabulary=fifo)
    finally:
        timer.cancel()
    assert time.monotonic() - start < 10
    assert not (tmp_path / "r").exists()


def _leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_full_disk_is_one_line_error_and_keeps_previous_report(tmp_path, setup, monkeypatch):
    import errno

    from reports import report
    out = tmp_path / "r"
    write_report(out, members=[setup["stores"]], labels=setup["truth"])
    before = (out / "index.html").read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report.plots, "leaderboard", full)
    with pytest.raises(InputError) as err:
        write_report(out, members=[setup["stores"]], labels=setup["truth"])
    assert str(err.value) == f"{out}: cannot write the report (No space left on device); nothing was written"
    assert (out / "index.html").read_bytes() == before and _leftovers(tmp_path) == []


def _mount_tmpfs(where, options: str):
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root")
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")


@pytest.mark.parametrize("options, why", [("size=64k", "No space left on device"),
                                          ("ro,size=1m", "Read-only file system")])
def test_report_onto_a_full_or_read_only_tmpfs(tmp_path, setup, options, why):
    """A real tiny (or read-only) file system: a one-line error naming the report, nothing left on it."""
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, options)
    try:
        out = mnt / "report"
        with pytest.raises(InputError) as err:
            write_report(out, members=[setup["stores"]], labels=setup["truth"])
        assert str(err.value).startswith(f"{out}: cannot write the report ({why})")
        assert list(mnt.iterdir()) == []
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def test_missing_matplotlib_says_what_to_install(tmp_path, setup, monkeypatch):
    import sys
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(InputError, match=re.escape('pip install "yt8m-ensembler[report]"')) as err:
        write_report(tmp_path / "r", members=[setup["stores"]], labels=setup["truth"])
    assert "\n" not in str(err.value) and list(tmp_path.iterdir()) == []


def test_report_cli(tmp_path, setup, capsys):
    import argparse

    from reports import cli
    parser = argparse.ArgumentParser()
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--json", action="store_true")
    cli.add_arguments(parser)
    out = tmp_path / "r"
    args = parser.parse_args(["--members", str(setup["stores"]), "--labels", str(setup["root"] / "labels.eval.h5"),
                              "--builds", str(setup["stores"]), "--out", str(out), "--json"])
    assert cli.run(args) == 0
    assert json.loads(capsys.readouterr().out) == {"index": str(out / "index.html")}
    vocab = tmp_path / "v.csv"
    vocab.write_text("label_id,label_name\n" + "".join(f"{i},n{i}\n" for i in range(100)))
    args = parser.parse_args(["--members", str(setup["stores"]), "--labels", str(setup["root"] / "labels.eval.h5"),
                              "--vocabulary", str(vocab), "--out", str(tmp_path / "r2"), "--quiet"])
    assert cli.run(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ensemble: error: {vocab}: the vocabulary lists 100 classes")
    with pytest.raises(SystemExit):
        parser.parse_args(["--members", "x", "--labels", "y", "--out", "z", "--k", "0"])


@pytest.mark.slow
def test_page_fits_1400px_and_tells_noise_in_chromium(rich, tmp_path):
    """At 1400 px nothing scrolls sideways (page or table), names stay whole and distinct, the headline
    cards carry their standard errors and verdict, the per-vertical and importance parts are laid out."""
    driver = _browser_or_skip("chromedriver")
    wd = _WebDriver(driver, _chromium(), tmp_path / "profile")
    try:
        wd.get(rich["index"].as_uri())
        wd.execute("document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; });")
        deadline = time.monotonic() + 20
        while not wd.execute("return Array.from(document.images).every(i => i.complete);"):
            assert time.monotonic() < deadline, "images did not load within 20 s"
            time.sleep(0.2)
        width = wd.execute("return document.documentElement.clientWidth;")
        assert 1350 <= width <= 1400, width
        assert wd.execute("return document.documentElement.scrollWidth;") <= width
        wide = wd.execute("return Array.from(document.querySelectorAll('.scroll'))"
                          ".filter(e => e.scrollWidth > e.clientWidth).map(e => e.parentNode.id);")
        assert wide == [], wide
        names = [wd.text(e) for e in wd.find_all("#leaderboard td.name")]
        assert sorted(names) == sorted(LONG + ["ens-xgb"])
        for e in wd.find_all("#leaderboard td.name"):
            box = wd.rect(e)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, box
        cards = {wd.text(e).split("\n")[0]: wd.text(e) for e in wd.find_all(".card")}
        best = rich["summary"]["best"]
        assert f"\u00b1 {best['gain_se']:.4f}" in cards["ensemble gain"]
        assert best["gain_verdict"].replace("above noise", "a real gain").replace(
            "below noise", "a real loss") in cards["ensemble gain"]
        gap_se = next(r["gap_se"] for r in rich["summary"]["leaderboard"] if r["name"] == best["model"])
        assert f"\u00b1 {gap_se:.4f}" in cards["best on eval"]
        rows = wd.find_all("#verticals tbody tr")
        assert len(rows) == N_VERT and all(wd.rect(r)["height"] > 8 for r in rows)
        imgs = wd.execute("return Array.from(document.querySelectorAll('#builds img'))"
                          ".map(i => [i.getAttribute('src'), i.naturalWidth, i.getBoundingClientRect().right]);")
        assert {"importance_0.png", "features_0.png"} <= {src for src, _, _ in imgs}
        assert all(natural > 100 and right <= width for _, natural, right in imgs), imgs
        wd.screenshot(tmp_path / "page.png")
        assert (tmp_path / "page.png").read_bytes()[:8] == PNG_MAGIC
        if os.environ.get("REPORT_SCREENSHOT"):
            shutil.copy(tmp_path / "page.png", os.environ["REPORT_SCREENSHOT"])
    finally:
        wd.close()


def test_matplotlib_is_imported_lazily():
    """``import reports`` (and its CLI module) leaves matplotlib unimported: it is the [report] extra."""
    import sys
    code = ("import sys, reports, reports.cli, reports.plots; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
