"""End-to-end tests of `ensemble build / evaluate / submit / import` on generated stores."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ensembler.cli import main
from predictions import metrics
from predictions.csvio import read_submission
from predictions.store import open_store, read_store

from .ensemble_fixtures import write_members


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return write_members(tmp_path_factory.mktemp("ens"), crops={"frame": 3})


def _build(run, out, *args):
    return main(["build", "--members", str(run["predictions"] / "m*.h5"), str(run["predictions"] / "frame.*.h5"),
                 "--labels", str(run["labels"]), "--out", str(out), "--quiet", *args])


def test_uniform_build_writes_stores_record_and_beats_worst(run, tmp_path):
    assert _build(run, tmp_path, "--weights", "uniform") == 0
    rec = json.loads((tmp_path / "ens-uniform.build.json").read_text())
    assert set(rec["outputs"]) == {"heldout", "eval", "test"}
    assert [m["name"] for m in rec["members"]] == ["frame", "m0", "m1", "m2"]  # 3 crops folded into one member
    ev = rec["scores"]["eval"]
    member_gaps = [r["gap"] for r in ev["members"]]
    assert ev["ensemble"]["gap"] > min(member_gaps)
    # The stored ensemble equals the mean of the members computed independently.
    out = read_store(tmp_path / "ens-uniform.eval.full.h5")
    truth = run["truth"]["eval"]
    dense = [read_store(run["predictions"] / f"m{i}.eval.full.h5").reindex(out.ids).dense() for i in range(3)]
    crops = [read_store(run["predictions"] / f"frame.eval.crop{c}.h5").reindex(out.ids).dense() for c in range(3)]
    ref = (np.mean(crops, axis=0) + sum(dense)) / 4
    assert metrics.gap(out, truth.reindex(out.ids)) == pytest.approx(
        metrics.gap(type(out).from_dense(out.ids, ref, k=20), truth.reindex(out.ids)), abs=2e-3)


def test_learned_build_reports_crossfit_and_is_reproducible(run, tmp_path):
    assert _build(run, tmp_path / "a", "--weights", "caruana", "--seed", "3") == 0
    assert _build(run, tmp_path / "b", "--weights", "caruana", "--seed", "3") == 0
    a = json.loads((tmp_path / "a" / "ens-caruana.build.json").read_text())
    b = json.loads((tmp_path / "b" / "ens-caruana.build.json").read_text())
    assert len(a["crossfit"]["fold_scores"]) == 5
    assert a["crossfit"]["estimate"] == b["crossfit"]["estimate"]
    assert a["fitted"]["weights"] == b["fitted"]["weights"]
    assert open_store(tmp_path / "a" / "ens-caruana.test.full.h5").meta.checksum == \
        open_store(tmp_path / "b" / "ens-caruana.test.full.h5").meta.checksum
    # The best member (m0, lowest noise) carries the most weight.
    w = a["fitted"]["weights"]
    assert max(w, key=w.get) == "m0"


def test_ensemble_is_a_member_and_no_self_ingestion(run, tmp_path):
    assert _build(run, run["predictions"], "--weights", "uniform", "--name", "lvl1") == 0
    # Second level: the previous ensemble is a member now; rerunning lvl1 ignores its own output.
    assert main(["build", "--members", str(run["predictions"]), "--labels", str(run["labels"]),
                 "--out", str(tmp_path), "--weights", "gap", "--name", "lvl2", "--quiet"]) == 0
    rec = json.loads((tmp_path / "lvl2.build.json").read_text())
    assert "lvl1" in [m["name"] for m in rec["members"]]
    assert _build(run, run["predictions"], "--weights", "uniform", "--name", "lvl1") == 0
    for p in run["predictions"].glob("lvl1.*"):
        p.unlink()


def test_evaluate_and_submit(run, tmp_path, capsys):
    assert main(["evaluate", "--members", str(run["predictions"] / "m*.h5"), "--labels", str(run["labels"]),
                 "--split", "eval", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    truth = run["truth"]["eval"]
    m0 = read_store(run["predictions"] / "m0.eval.full.h5")
    assert rows[0]["name"] == "m0"
    assert rows[0]["gap"] == pytest.approx(metrics.gap(m0, truth.reindex(m0.ids)), abs=1e-12)
    csv = tmp_path / "sub.csv"
    assert main(["submit", str(run["predictions"] / "m0.test.full.h5"), "--out", str(csv), "--quiet"]) == 0
    back = read_submission(csv, 60)
    test = read_store(run["predictions"] / "m0.test.full.h5")
    np.testing.assert_array_equal(back.ids, test.ids)
    np.testing.assert_array_equal(back.indices, test.indices)
    np.testing.assert_allclose(back.scores, np.round(test.scores, 6), atol=1e-6)
    # import turns the CSV back into a valid store
    assert main(["import", str(csv), "--model", "sub", "--split", "test", "--classes", "60",
                 "--out", str(tmp_path), "--quiet"]) == 0
    assert len(read_store(tmp_path / "sub.test.full.h5")) == len(test)


@pytest.mark.parametrize("argv, message", [
    (["build", "--members", "/nonexistent/*.h5", "--out", "x"], "no .h5 file matches"),
    (["build", "--weights", "nope", "--members", "x.h5", "--out", "x"], "unknown weighting scheme"),
])
def test_user_errors_are_one_line_exit_1(argv, message, capsys, tmp_path):
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err and err.startswith("ensemble: error:")


def test_usage_error_exit_2():
    with pytest.raises(SystemExit) as e:
        main(["build"])
    assert e.value.code == 2


def test_learned_scheme_without_labels_is_a_clear_error(run, tmp_path, capsys):
    assert main(["build", "--members", str(run["predictions"] / "m*.h5"), "--out", str(tmp_path),
                 "--weights", "caruana", "--quiet"]) == 1
    assert "needs labels" in capsys.readouterr().err


def test_full_members_under_100_classes_keep_every_class(tmp_path):
    """Full-score members of C < 100 classes: the default output k is C (it was 100, an error)."""
    run = write_members(tmp_path / "m", C=30, k=None)
    assert main(["build", "--members", str(run["predictions"]), "--labels", str(run["labels"]),
                 "--out", str(tmp_path / "out"), "--quiet"]) == 0
    with open_store(tmp_path / "out" / "ens-uniform.eval.full.h5") as s:
        assert s.meta.k == 30


def test_fixed_scheme_record_has_fold_standard_error(run, tmp_path):
    """A fixed scheme's estimate gets a fold standard error comparable with a learned scheme's."""
    assert _build(run, tmp_path, "--weights", "uniform") == 0
    rec = json.loads((tmp_path / "ens-uniform.build.json").read_text())
    folds = rec["scores"]["heldout"]["fold_gaps"]
    assert len(folds) == 5 and min(folds) < rec["estimate"] < max(folds)
    assert rec["std_error"] == pytest.approx(np.std(folds, ddof=1) / np.sqrt(5))
