"""The everyday blend (issue 20): a few prediction files and a truth file in, a submission out, with no
silent wrong answer on the way: weights go to the member named, no test video is dropped unless asked,
truth and predictions come as files or DataFrames, and a fitted ensemble re-applies byte for byte."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main
from predictions.csvio import read_submission, write_submission
from predictions.store import read_store, write_store
from predictions.types import Labels, Predictions

from .ensemble_fixtures import write_members

ROOT = Path(__file__).resolve().parents[1]
C = 60


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Members ``moe`` (good) and ``lr`` (poor), written in that order, for heldout/eval/test."""
    return write_members(tmp_path_factory.mktemp("blend"), names=["moe", "lr"], noises=(1.2, 3.0))


def _ens(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _stores(run, *names, splits=("heldout", "test")):
    return [run["predictions"] / f"{n}.{s}.full.h5" for n in names for s in splits]


def _record(out: Path, name: str = "ens-uniform") -> dict:
    return json.loads((out / f"{name}.build.json").read_text())


def _dense(path) -> np.ndarray:
    return read_store(path).dense()


# ----------------------------------------------------------------------------------- weights by name

def test_list_weights_follow_the_command_line_order(run, tmp_path, capsys):
    """moe given first with [1, 0]: the ensemble is moe (it used to be lr: alphabetical order)."""
    rc, out, err = _ens(["build", "--weights=uniform", "--members", *_stores(run, "moe", "lr"), "--labels",
                         run["labels"], "--param", "member_weights=[1,0]", "--out", tmp_path], capsys)
    assert rc == 0, err
    rec = _record(tmp_path)
    assert rec["weights"] == {"moe": 1.0, "lr": 0.0}
    assert "weights: lr 0.000, moe 1.000" in out
    ens = read_store(tmp_path / "ens-uniform.test.full.h5")
    moe = read_store(run["predictions"] / "moe.test.full.h5")
    np.testing.assert_array_equal(ens.ids, moe.ids)
    np.testing.assert_array_equal(ens.indices, moe.indices)
    np.testing.assert_allclose(ens.scores, moe.scores, rtol=1e-6)


def test_named_weights_mapping_is_applied_by_name_and_shown_in_json(run, tmp_path, capsys):
    rc, out, err = _ens(["build", "--weights=uniform", "--members", run["predictions"], "--labels", run["labels"],
                         "--param", 'member_weights={"moe": 0.7, "lr": 0.3}', "--out", tmp_path, "--json"], capsys)
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["weights"] == pytest.approx({"moe": 0.7, "lr": 0.3})
    moe, lr = (_dense(run["predictions"] / f"{n}.heldout.full.h5") for n in ("moe", "lr"))
    ens = read_store(tmp_path / "ens-uniform.heldout.full.h5")
    mix = 0.7 * moe + 0.3 * lr
    rows = np.arange(len(ens.ids))[:, None]
    np.testing.assert_allclose(ens.scores, mix[rows, ens.indices], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weights, needle", [
    ("[1,0,0]", "3 values for 2 members"),
    ('{"moe": 1, "xgb": 0}', "xgb"),
])
def test_weights_that_cannot_be_matched_are_one_line_errors(run, tmp_path, capsys, weights, needle):
    rc, _, err = _ens(["build", "--weights=uniform", "--members", *_stores(run, "moe", "lr"), "--labels",
                       run["labels"], "--param", f"member_weights={weights}", "--out", tmp_path / "o"], capsys)
    assert rc == 1 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "o").exists()


def test_list_weights_with_a_directory_pattern_are_refused(run, tmp_path, capsys):
    rc, _, err = _ens(["build", "--weights=uniform", "--members", run["predictions"], "--labels", run["labels"],
                       "--param", "member_weights=[1,0]", "--out", tmp_path / "o"], capsys)
    assert rc == 1 and "by name" in err, err


# ----------------------------------------------------------------------------------- coverage rules

@pytest.fixture
def uneven(run, tmp_path):
    """moe covers all 200 test videos, lr only the first 150 (and 10 of its own)."""
    d = tmp_path / "uneven"
    d.mkdir()
    for n in ("moe", "lr"):
        for s in ("heldout", "test"):
            src = run["predictions"] / f"{n}.{s}.full.h5"
            p = read_store(src)
            if n == "lr" and s == "test":
                extra = Predictions(np.array([f"z{i}" for i in range(10)]), p.scores[:10], p.indices[:10], C)
                p = Predictions(np.concatenate([p.ids[:150], extra.ids]), np.concatenate([p.scores[:150],
                                extra.scores]), np.concatenate([p.indices[:150], extra.indices]), C)
            write_store(d / src.name, p, model=n, split=s)
    return d


def test_members_covering_different_test_videos_are_an_error_by_default(run, uneven, tmp_path, capsys):
    rc, _, err = _ens(["build", "--weights=uniform", "--members", uneven, "--labels", run["labels"],
                       "--out", tmp_path / "o"], capsys)
    assert rc == 1 and "test" in err and "lr" in err and "50" in err and "--missing" in err, err
    assert not (tmp_path / "o").exists()


def test_missing_zero_keeps_the_union_and_drop_the_intersection(run, uneven, tmp_path, capsys):
    rc, out, err = _ens(["build", "--weights=uniform", "--members", uneven, "--labels", run["labels"],
                         "--missing", "zero", "--out", tmp_path / "z"], capsys)
    assert rc == 0, err
    union = read_store(tmp_path / "z" / "ens-uniform.test.full.h5")
    assert len(union.ids) == 210
    moe = read_store(run["predictions"] / "moe.test.full.h5")
    # a video only moe has: the mean of moe's score and lr's 0
    i = int(np.flatnonzero(union.ids == moe.ids[180])[0])
    np.testing.assert_allclose(union.scores[i], 0.5 * moe.scores[180][:union.scores.shape[1]], rtol=1e-6)
    rc, out, err = _ens(["build", "--weights=uniform", "--members", uneven, "--labels", run["labels"],
                         "--missing", "drop", "--out", tmp_path / "d"], capsys)
    assert rc == 0, err
    assert len(read_store(tmp_path / "d" / "ens-uniform.test.full.h5").ids) == 150
    assert "dropped" in out and "60" in out, out


def test_submit_refuses_a_heldout_store_unless_told(run, tmp_path, capsys):
    store = run["predictions"] / "moe.heldout.full.h5"
    rc, _, err = _ens(["submit", store, "--out", tmp_path / "s.csv"], capsys)
    assert rc == 1 and "heldout" in err and "--any-split" in err, err
    assert not (tmp_path / "s.csv").exists()
    rc, _, err = _ens(["submit", store, "--out", tmp_path / "s.csv", "--any-split", "--quiet"], capsys)
    assert rc == 0, err
    assert len(read_submission(tmp_path / "s.csv", C).ids) == 400


@pytest.mark.parametrize("change, needle", [("drop", "lacks 1"), ("add", "not expected")])
def test_submit_expect_catches_a_missing_and_an_extra_video(run, tmp_path, capsys, change, needle):
    store = run["predictions"] / "moe.test.full.h5"
    ids = list(read_store(store).ids)
    ids = ids[1:] if change == "add" else ids + ["zz-not-in-the-store"]
    expect = tmp_path / "sample.csv"
    expect.write_text("VideoId,LabelConfidencePairs\n" + "".join(f"{i},1 0.5\n" for i in ids))
    rc, _, err = _ens(["submit", store, "--out", tmp_path / "s.csv", "--expect", expect], capsys)
    assert rc == 1 and needle in err, err
    assert not (tmp_path / "s.csv").exists()


# ----------------------------------------------------------------------------------- truth and frames

def _truth_csv(labels: Labels, path: Path) -> Path:
    rows = [f"{v}," + " ".join(map(str, labels.indices[a:b])) for v, a, b in
            zip(labels.ids, labels.indptr[:-1], labels.indptr[1:])]
    path.write_text("VideoId,Labels\n" + "\n".join(rows) + "\n")
    return path


def test_truth_csv_as_labels_gives_the_same_build_as_the_labels_store(run, tmp_path, capsys):
    truth = _truth_csv(run["truth"]["heldout"], tmp_path / "truth.heldout.csv")
    rc, _, err = _ens(["build", "--weights=lr", "--members", *_stores(run, "moe", "lr"), "--labels", truth,
                       "--folds", 2, "--out", tmp_path / "a", "--quiet"], capsys)
    assert rc == 0, err
    rc, _, err = _ens(["build", "--weights=lr", "--members", *_stores(run, "moe", "lr"), "--labels",
                       run["labels"] / "labels.heldout.h5", "--folds", 2, "--out", tmp_path / "b", "--quiet"], capsys)
    assert rc == 0, err
    a, b = (_record(tmp_path / d, "ens-lr") for d in "ab")
    assert a["crossfit"]["estimate"] == pytest.approx(b["crossfit"]["estimate"], abs=1e-12)
    assert _dense(tmp_path / "a/ens-lr.test.full.h5").tobytes() == _dense(tmp_path / "b/ens-lr.test.full.h5").tobytes()


def test_import_labels_writes_a_labels_store(run, tmp_path, capsys):
    from predictions.labels import read_labels
    truth = _truth_csv(run["truth"]["heldout"], tmp_path / "truth.csv")
    rc, _, err = _ens(["import", "--labels", truth, "--split", "heldout", "--classes", C, "--out", tmp_path / "l",
                       "--quiet"], capsys)
    assert rc == 0, err
    got = read_labels(tmp_path / "l" / "labels.heldout.h5")
    want = run["truth"]["heldout"]
    np.testing.assert_array_equal(got.ids, want.ids)
    assert (got.dense() == want.dense()).all()


def test_dataframes_and_csv_paths_as_members_and_labels(run, tmp_path):
    pytest.importorskip("pandas")
    import ensembler
    preds = {n: read_store(run["predictions"] / f"{n}.heldout.full.h5") for n in ("moe", "lr")}
    truth = run["truth"]["heldout"]
    want = ensembler.fit_ensemble(preds, truth, "caruana", n_folds=2)
    frames = {"moe": preds["moe"].to_frame(kaggle=True), "lr": preds["lr"].to_frame()}  # both layouts
    shuffled = frames["lr"].sample(frac=1.0, random_state=0)                          # rows in any order
    got = ensembler.fit_ensemble({"moe": frames["moe"], "lr": shuffled}, truth.to_frame(kaggle=True), "caruana",
                                 n_folds=2, num_classes=C)
    assert got.estimate == pytest.approx(want.estimate, abs=1e-6)
    assert got.weights == pytest.approx(want.weights)
    paths = []
    for n, p in preds.items():
        paths.append(tmp_path / f"{n}.heldout.csv")
        write_submission(paths[-1], p, top=20, precision=7)
    truth_csv = _truth_csv(truth, tmp_path / "truth.heldout.csv")
    from_csv = ensembler.fit_ensemble(paths, truth_csv, "caruana", n_folds=2, num_classes=C)
    assert from_csv.member_names == ("moe", "lr")
    assert from_csv.estimate == pytest.approx(want.estimate, abs=1e-4)
    board = from_csv.leaderboard()
    assert {"name", "kind", "estimate", "std_error", "weight"} <= set(board.columns)
    assert board.loc[board["kind"] == "ensemble", "estimate"].item() == pytest.approx(from_csv.estimate)
    assert set(board.loc[board["kind"] == "member", "name"]) == {"moe", "lr"}


def test_dataframe_members_covering_different_videos_are_an_error(run):
    pytest.importorskip("pandas")
    import ensembler
    from predictions.errors import InputError
    p = read_store(run["predictions"] / "moe.heldout.full.h5")
    with pytest.raises(InputError, match="cover different videos"):
        ensembler.fit_ensemble({"a": p.to_frame(), "b": p.take(np.arange(10, 400)).to_frame()}, None,
                               num_classes=C)


def test_load_members_reads_csvs(run, tmp_path):
    import ensembler
    p = read_store(run["predictions"] / "moe.heldout.full.h5")
    write_submission(tmp_path / "team.heldout.csv", p, top=20, precision=7)
    got = ensembler.load_members([tmp_path / "team.heldout.csv"], split="heldout", classes=C,
                                 csv_cache=tmp_path / "cache")
    assert list(got) == ["team"]
    np.testing.assert_array_equal(got["team"].ids, p.ids)
    np.testing.assert_allclose(got["team"].scores, p.scores, atol=1e-6)


# ----------------------------------------------------------------------------------- apply later

@pytest.mark.parametrize("scheme", ["caruana", "lr", "optimized"])
def test_apply_reproduces_the_build_byte_for_byte(run, tmp_path, capsys, scheme):
    rc, _, err = _ens(["build", "--weights", scheme, "--members", run["predictions"], "--labels", run["labels"],
                       "--folds", 2, "--out", tmp_path / "b", "--quiet"], capsys)
    assert rc == 0, err
    test_members = [run["predictions"] / f"{n}.test.full.h5" for n in ("lr", "moe")]
    rc, _, err = _ens(["apply", tmp_path / "b" / f"ens-{scheme}.build.json", "--members", *test_members,
                       "--out", tmp_path / "a", "--quiet"], capsys)
    assert rc == 0, err
    name = f"ens-{scheme}.test.full.h5"
    with h5py.File(tmp_path / "b" / name) as fb, h5py.File(tmp_path / "a" / name) as fa:
        assert fb.attrs["checksum"] == fa.attrs["checksum"]
    import ensembler
    fitted = ensembler.load_build(tmp_path / "b" / f"ens-{scheme}.build.json")
    got = fitted.apply(test_members)["test"]
    np.testing.assert_array_equal(got.scores, read_store(tmp_path / "b" / name).scores)


@pytest.fixture(scope="module")
def built(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("built")
    assert main(["build", "--weights", "lr", "--members", str(run["predictions"]), "--labels", str(run["labels"]),
                 "--folds", "2", "--out", str(out), "--quiet"]) == 0
    return out / "ens-lr.build.json"


def test_apply_errors_name_the_member_problem(run, built, tmp_path, capsys):
    moe = run["predictions"] / "moe.test.full.h5"
    rc, _, err = _ens(["apply", built, "--members", moe, "--out", tmp_path / "a"], capsys)
    assert rc == 1 and "lr" in err and "missing" in err, err
    other = tmp_path / "xgb.test.full.h5"
    write_store(other, read_store(moe), model="xgb", split="test")
    rc, _, err = _ens(["apply", built, "--members", moe, run["predictions"] / "lr.test.full.h5", other,
                       "--out", tmp_path / "a"], capsys)
    assert rc == 1 and "xgb" in err, err
    wide = tmp_path / "wide" / "lr.test.full.h5"
    p = read_store(run["predictions"] / "lr.test.full.h5")
    write_store(wide, Predictions(p.ids, p.scores, p.indices, C + 5), model="lr", split="test")
    rc, _, err = _ens(["apply", built, "--members", moe, wide, "--out", tmp_path / "a"], capsys)
    assert rc == 1 and str(C + 5) in err and str(C) in err, err
    assert not (tmp_path / "a").exists()


def test_saved_model_has_no_pickle(built):
    model = built.with_name("ens-lr.model.npz")
    with np.load(model, allow_pickle=False) as z:   # would raise on an object array
        assert len(z.files) > 0


# ----------------------------------------------------------------------------------- one command, CSVs

def test_one_command_from_csvs_to_a_checked_submission(run, tmp_path, capsys):
    d = tmp_path / "csv"
    d.mkdir()
    for n in ("moe", "lr"):
        write_submission(d / f"{n}.heldout.csv", read_store(run["predictions"] / f"{n}.heldout.full.h5"), top=20)
        write_submission(d / f"{n}.csv", read_store(run["predictions"] / f"{n}.test.full.h5"), top=20)
    truth = _truth_csv(run["truth"]["heldout"], d / "truth.heldout.csv")
    sub = tmp_path / "submission.csv"
    rc, out, err = _ens(["build", "--weights=caruana", "--members", d / "moe.heldout.csv", d / "moe.csv",
                         d / "lr.heldout.csv", d / "lr.csv", "--labels", truth, "--classes", C, "--folds", 2,
                         "--out", tmp_path / "o", "--submit", sub, "--csv-cache", tmp_path / "cache"], capsys)
    assert rc == 0, err
    got = read_submission(sub, C)
    assert sorted(got.ids) == sorted(read_store(run["predictions"] / "moe.test.full.h5").ids)
    assert "submission" in out and "200 test videos" in out


# ----------------------------------------------------------------------------------- the small ones

def _sh(cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", "-c", f"set -o pipefail; {cmd}"], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=120)


@pytest.mark.parametrize("cmd", [
    f"{sys.executable} -m ensembler.cli schemes | head -1",
    f"{sys.executable} -m ensembler.cli schemes caruana | true",
    f"{sys.executable} -m producers.cli models | head -1",
])
def test_a_closed_pipe_ends_quietly(cmd):
    p = _sh(cmd)
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_evaluate_json_into_a_closed_pipe_ends_quietly(run):
    p = _sh(f"{sys.executable} -m ensembler.cli evaluate --members {run['predictions']} --labels {run['labels']} "
            "--json | head -c 1 >/dev/null")
    assert "Traceback" not in p.stderr and "BrokenPipe" not in p.stderr, p.stderr


def test_version_flags():
    from predictions import __version__
    for module, prog in (("ensembler.cli", "ensemble"), ("producers.cli", "produce")):
        p = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True, cwd=ROOT)
        assert p.returncode == 0 and p.stdout.strip() == f"{prog} {__version__}", (p.stdout, p.stderr)


def test_schemes_lists_parameters_as_plain_text(capsys):
    rc, out, _ = _ens(["schemes", "caruana"], capsys)
    assert rc == 0 and "n_iterations" in out and "default" in out and "``" not in out and ":class:" not in out


def test_outputs_honour_the_umask(run, tmp_path, capsys):
    old = os.umask(0o022)
    try:
        rc, _, err = _ens(["build", "--weights=uniform", "--members", run["predictions"], "--labels", run["labels"],
                           "--out", tmp_path / "o", "--submit", tmp_path / "s.csv", "--quiet"], capsys)
    finally:
        os.umask(old)
    assert rc == 0, err
    for f in [*(tmp_path / "o").iterdir(), tmp_path / "s.csv"]:
        assert (f.stat().st_mode & 0o777) == 0o644, (f, oct(f.stat().st_mode))


def test_a_file_like_out_for_a_multi_split_build_is_an_error(run, tmp_path, capsys):
    rc, _, err = _ens(["build", "--weights=uniform", "--members", run["predictions"], "--labels", run["labels"],
                       "--out", tmp_path / "blend.csv"], capsys)
    assert rc == 1 and "directory" in err and "--submit" in err, err
    assert not (tmp_path / "blend.csv").exists()


# ----------------------------------------------------------------------------------- sklearn estimators

def test_every_combiner_is_an_sklearn_classifier(run):
    pytest.importorskip("sklearn")
    from sklearn.base import clone, is_classifier

    from ensembler.base import create_combiner, list_combiners
    preds = {n: read_store(run["predictions"] / f"{n}.heldout.full.h5") for n in ("moe", "lr")}
    truth = run["truth"]["heldout"]
    for name in list_combiners():
        comb = create_combiner(name)
        assert is_classifier(comb), name
        twin = clone(comb)
        assert type(twin) is type(comb) and twin.get_params() == comb.get_params(), name
    comb = create_combiner("caruana").fit(preds, truth)
    gap = comb.score(preds, truth)
    assert 0.5 < gap <= 1.0
    assert comb.score(preds, truth) == pytest.approx(comb.score(preds, truth, k=20))
