"""Kaggle CSVs as members: ``ensemble import`` of several CSVs, and CSVs given to build/evaluate
directly (imported once into the CSV cache, reused while unchanged, re-imported when changed)."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from ensembler.cli import main
from predictions.csvimport import cached_store, member_of_csv
from predictions import metrics
from predictions.csvio import read_submission, write_submission
from predictions.errors import InputError
from predictions.store import open_store, read_store

from .ensemble_fixtures import write_members

C = 60


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Stores m0..m2 of heldout/eval/test with labels, and the same members as Kaggle CSVs."""
    root = tmp_path_factory.mktemp("csvm")
    run = write_members(root)
    csv_dir = root / "csv"
    csv_dir.mkdir()
    for split in ("heldout", "eval", "test"):
        for m in ("m0", "m1", "m2"):
            p = read_store(run["predictions"] / f"{m}.{split}.full.h5")
            # the test split as a plain Kaggle file name (MODEL.csv), the others as MODEL.SPLIT.csv
            name = f"{m}.csv" if split == "test" else f"{m}.{split}.csv"
            write_submission(csv_dir / name, p, top=20)
    run["csv"] = csv_dir
    return run


def _cli(argv, capsys):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_member_of_csv_names():
    assert member_of_csv("dir/team_a.heldout.csv") == ("team_a", "heldout")
    assert member_of_csv("team_a.csv") == ("team_a", "test")
    assert member_of_csv("team.v2.csv") == ("team.v2", "test")  # "v2" is no split name
    assert member_of_csv("x.eval.CSV") == ("x", "eval")


def test_import_several_csvs_in_one_call(run, tmp_path, capsys):
    out = tmp_path / "stores"
    rc, text, err = _cli(["import", "--members", run["csv"] / "m*.heldout.csv", run["csv"] / "m0.csv",
                          "--classes", C, "--out", out, "--json"], capsys)
    assert rc == 0, err
    res = json.loads(text)["stores"]
    # in the order given, each glob sorted
    assert [(r["model"], r["split"]) for r in res] == [("m0", "heldout"), ("m1", "heldout"), ("m2", "heldout"),
                                                       ("m0", "test")]
    for r in res:
        want = read_store(run["predictions"] / f"{r['model']}.{r['split']}.full.h5")
        with open_store(out / f"{r['model']}.{r['split']}.full.h5") as s:
            s.verify()
            got = s.read()
        assert r["videos"] == len(want) and r["k"] == 20
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_allclose(got.scores, want.scores, atol=5e-7)


def test_import_is_all_or_nothing(run, tmp_path, capsys):
    src = tmp_path / "src"
    shutil.copytree(run["csv"], src)
    bad = src / "m2.heldout.csv"
    lines = bad.read_text().splitlines()
    lines[5] = lines[5].split(",")[0] + ",3 0.5 7"  # odd token count on line 6
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "stores"
    rc, _, err = _cli(["import", "--members", src / "*.heldout.csv", "--classes", C, "--out", out, "--quiet"],
                      capsys)
    assert rc == 1 and "m2.heldout.csv" in err and "line 6" in err and "\n" not in err.strip()
    assert not out.exists()  # m0, m1 were fine, but nothing was written (not even the directory)


def test_rank_csv_header_with_a_space_is_named(tmp_path, capsys):
    src = tmp_path / "team.csv"
    src.write_text("VideoId, Label\nv1,3 7\n")
    rc, _, err = _cli(["import", src, "--classes", C, "--out", tmp_path / "o", "--quiet"], capsys)
    assert rc == 1
    assert "team.csv: line 1: expected header 'VideoId,LabelConfidencePairs' (or 'VideoId,Label'" in err
    src.write_text("VideoId,Label\nv1,3 7\n")
    rc, out, err = _cli(["import", src, "--classes", C, "--out", tmp_path / "o", "--json"], capsys)
    assert rc == 0, err
    p = read_store(tmp_path / "o" / "team.test.full.h5")
    assert p.indices[0, :2].tolist() == [3, 7] and p.scores[0, :2].tolist() == [1.0, 0.5]


@pytest.mark.parametrize("argv, message", [
    (["--model", "x"], "--model names one member, but 2 CSVs"),
    (["--out-file"], "--out names one store, but 2 CSVs"),
])
def test_import_several_refuses_one_name(run, tmp_path, capsys, argv, message):
    out = tmp_path / ("one.h5" if argv == ["--out-file"] else "o")
    extra = [] if argv == ["--out-file"] else argv
    rc, _, err = _cli(["import", run["csv"] / "m0.csv", run["csv"] / "m1.csv", *extra, "--classes", C,
                       "--out", out, "--quiet"], capsys)
    assert rc == 1 and message in err


def test_import_two_csvs_of_one_member_named(run, tmp_path, capsys):
    other = tmp_path / "elsewhere"
    other.mkdir()
    shutil.copy(run["csv"] / "m0.csv", other / "m0.test.csv")
    rc, _, err = _cli(["import", run["csv"] / "m0.csv", other / "m0.test.csv", "--classes", C,
                       "--out", tmp_path / "o", "--quiet"], capsys)
    assert rc == 1 and "are both model 'm0', split 'test'" in err
    rc, _, err = _cli(["import", "--classes", C, "--out", tmp_path / "o", "--quiet"], capsys)
    assert rc == 1 and "no CSV to import" in err


def test_build_from_csvs_equals_build_from_stores(run, tmp_path, capsys):
    """The same uniform and GAP-weighted ensembles whether the members are CSVs or their imported stores."""
    cache = tmp_path / "cache"
    for scheme in ("uniform", "gap"):
        rc, _, err = _cli(["build", "--weights", scheme, "--members", run["csv"] / "*.csv", "--labels", run["labels"],
                           "--out", tmp_path / "from_csv", "--csv-cache", cache, "--quiet"], capsys)
        assert rc == 0, err
        stores = tmp_path / "stores"
        if not stores.exists():
            assert _cli(["import", "--members", run["csv"] / "*.csv", "--classes", C, "--out", stores,
                         "--quiet"], capsys)[0] == 0
        rc, _, err = _cli(["build", "--weights", scheme, "--members", stores, "--labels", run["labels"],
                           "--out", tmp_path / "from_h5", "--quiet"], capsys)
        assert rc == 0, err
        for split in ("heldout", "eval", "test"):
            a = read_store(tmp_path / "from_csv" / f"ens-{scheme}.{split}.full.h5")
            b = read_store(tmp_path / "from_h5" / f"ens-{scheme}.{split}.full.h5")
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_array_equal(a.scores, b.scores)
        rec = json.loads((tmp_path / "from_csv" / f"ens-{scheme}.build.json").read_text())
        assert all(str(cache) in p for m in rec["members"] for p in m["paths"])
    # 9 CSVs, imported once each (the second build reused them), and nothing else in the cache
    assert len(list(cache.glob("*/*.h5"))) == 9 and not list(cache.glob("*/.*"))


def test_cache_reuses_then_reimports_a_changed_csv(run, tmp_path):
    src = tmp_path / "m0.csv"
    shutil.copy(run["csv"] / "m0.csv", src)
    cache = tmp_path / "cache"
    first, imported = cached_store(src, num_classes=C, cache_dir=cache)
    assert imported and first.is_file() and first.parent.parent == cache
    again, imported = cached_store(src, num_classes=C, cache_dir=cache)
    assert again == first and not imported
    # another class count is another store
    other, imported = cached_store(src, num_classes=C + 1, cache_dir=cache)
    assert imported and other != first
    # same size, same modification time, one score changed: still a new entry (the ends are hashed)
    st = os.stat(src)
    text = src.read_text()
    head, rest = text.split("\n", 1)
    row, tail = rest.split("\n", 1)
    vid, pairs = row.split(",")
    tok = pairs.split(" ")
    tok[1] = "0.000000" if tok[1] != "0.000000" else "0.000001"
    src.write_text(head + "\n" + vid + "," + " ".join(sorted_pairs(tok)) + "\n" + tail)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(src).st_size == st.st_size
    new, imported = cached_store(src, num_classes=C, cache_dir=cache)
    # a new entry; the old one stays (another build may be about to read it) until unused for PRUNE_DAYS
    assert imported and new != first and first.exists() and other.exists()
    row0 = read_store(new)
    changed = list(row0.indices[0]).index(int(tok[0]))
    assert row0.scores[0, changed] == np.float32(tok[1])


def sorted_pairs(tok):
    """Pairs re-ordered by descending score (the first score changed)."""
    pairs = sorted(zip(tok[0::2], tok[1::2]), key=lambda p: -float(p[1]))
    return [x for p in pairs for x in p]


def test_bad_csv_member_is_one_line_and_not_cached(run, tmp_path, capsys):
    bad = tmp_path / "m9.heldout.csv"
    bad.write_text("VideoId,LabelConfidencePairs\nh00000,3 0.5 99 0.25\n")
    cache = tmp_path / "cache"
    rc, _, err = _cli(["build", "--members", run["predictions"], bad, "--labels", run["labels"],
                       "--out", tmp_path / "o", "--csv-cache", cache, "--quiet"], capsys)
    assert rc == 1
    assert err.startswith("ensemble: error:") and "m9.heldout.csv: line 2" in err and "out of range" in err
    assert "\n" not in err.strip()
    assert not list(cache.glob("**/*.h5")) and not list(cache.glob("**/.*"))
    assert not (tmp_path / "o").exists()


def test_evaluate_csv_members_with_env_cache(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ENSEMBLE_CSV_CACHE", str(tmp_path / "envcache"))
    rc, text, err = _cli(["evaluate", "--members", run["csv"] / "*.eval.csv", "--labels", run["labels"],
                          "--split", "eval", "--json"], capsys)
    assert rc == 0, err
    rows = json.loads(text)
    truth = run["truth"]["eval"]
    for r in rows:  # each CSV's own GAP (its scores rounded to 6 decimals: ties differ from the stores')
        p = read_submission(run["csv"] / f"{r['name']}.eval.csv", C)
        assert r["gap"] == pytest.approx(metrics.gap(p, truth.reindex(p.ids)), abs=1e-12)
    assert sorted(r["name"] for r in rows) == ["m0", "m1", "m2"]
    assert len(list((tmp_path / "envcache").glob("*/*.h5"))) == 3


def test_csv_class_count_from_the_stores(run, tmp_path):
    """No --classes: a CSV member takes the class count of the stores beside it."""
    from ensembler.members import with_csv_stores

    out = with_csv_stores([run["predictions"] / "m0.test.full.h5", run["csv"] / "m1.csv"],
                          csv_cache=tmp_path / "c")
    assert out[0] == str(run["predictions"] / "m0.test.full.h5")
    with open_store(out[1]) as s:
        assert s.num_classes == C and s.meta.model == "m1" and s.meta.split == "test"
    with pytest.raises(InputError, match="two CSVs give the same member"):
        with_csv_stores([run["csv"] / "m1.csv", run["csv"] / "m1.csv"], classes=C, csv_cache=tmp_path / "c")
