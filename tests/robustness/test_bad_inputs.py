"""Every bad input gives exit code 1, ONE stderr line naming the file and the problem, and no output.

Through the CLIs only: ``produce train`` (TFRecord shards, configs), ``ensemble build`` /
``evaluate`` / ``submit`` (stores), ``ensemble import`` (CSV).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions.store import open_store
from producers.cli import main as produce
from producers.data.examples import VideoExample, encode_video
from producers.data.tfrecord_io import iter_payloads, write_tfrecord

from .conftest import C, K, assert_clear_error, cli, ids_of, job_toml, make_labels, make_store, snapshot

# =========================================================================== TFRecord shards


def _copy_shards(small_data: Path, level: str, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((small_data / level).glob("train-*.tfrecord")):
        shutil.copy(p, dst / p.name)
    return dst


def _first_shard(d: Path) -> Path:
    return sorted(d.glob("train-*.tfrecord"))[0]


def _truncate(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2 + 3])


def _flip(p: Path):
    data = bytearray(p.read_bytes())
    data[40] ^= 0xFF            # inside record 0's payload
    p.write_bytes(bytes(data))


def _empty(p: Path):
    p.write_bytes(b"")


def _wrong_names(p: Path):
    from tfrecord import example_pb2

    ex = example_pb2.Example()
    ex.features.feature["video_id"].bytes_list.value.append(b"abc")
    ex.features.feature["rgb_mean"].float_list.value.extend([0.0] * 1024)
    write_tfrecord(p, [ex.SerializeToString()] + list(iter_payloads(p)))


def _wrong_sizes(p: Path):
    bad = encode_video(VideoExample("short", np.array([1], np.int64), np.zeros(100, np.float32),
                                    np.zeros(128, np.float32)))
    write_tfrecord(p, list(iter_payloads(p)) + [bad])


def _label_out_of_range(p: Path):
    bad = encode_video(VideoExample("biglabel", np.array([C + 5], np.int64), np.zeros(1024, np.float32),
                                    np.zeros(128, np.float32)))
    write_tfrecord(p, list(iter_payloads(p)) + [bad])


def _not_tfrecord(p: Path):
    p.write_text("hello, this is not a TFRecord file\n" * 10)


SHARD_CASES = {
    "truncated": (_truncate, "truncated"),
    "flipped-byte": (_flip, "CRC mismatch"),
    "empty-shard": (_empty, "empty shard"),
    "wrong-feature-names": (_wrong_names, "missing feature"),
    "wrong-feature-sizes": (_wrong_sizes, "expected 1024"),
    "label-out-of-range": (_label_out_of_range, "out of range"),
    "not-a-tfrecord": (_not_tfrecord, "record 0"),
}


@pytest.mark.parametrize("case", sorted(SHARD_CASES))
def test_bad_video_shard(case, small_data, tmp_path, capsys):
    mutate, problem = SHARD_CASES[case]
    d = _copy_shards(small_data, "video", tmp_path / "shards")
    bad = _first_shard(d)
    mutate(bad)
    cfg = job_toml(tmp_path / "job.toml", "shards/train-*.tfrecord")
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", bad.name, problem)
    assert not list(tmp_path.rglob("*.pt")) and not (tmp_path / "runs" / "job" / "checkpoints").exists()


def test_frame_shard_read_as_video_level(small_data, tmp_path, capsys):
    _copy_shards(small_data, "frame", tmp_path / "shards")
    cfg = job_toml(tmp_path / "job.toml", "shards/train-*.tfrecord", model="lr")
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "train-0000-of-0002.tfrecord", "frame-level")
    assert not list(tmp_path.rglob("*.pt"))


def test_video_shard_read_as_frame_level(small_data, tmp_path, capsys):
    _copy_shards(small_data, "video", tmp_path / "shards")
    cfg = job_toml(tmp_path / "job.toml", "shards/train-*.tfrecord", model="dbof",
                   hparams="cluster_size = 8\nhidden_size = 8")
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", ".tfrecord", "video-level")
    assert not list(tmp_path.rglob("*.pt"))


def test_missing_shards(tmp_path, capsys):
    cfg = job_toml(tmp_path / "job.toml", "nowhere/train-*.tfrecord")
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "nowhere", "matches no files")


# =========================================================================== configs

CONFIG_CASES = {
    "unknown-model": (dict(model="nope"), "nope"),
    "unknown-section": (dict(extra="[bogus]\nx = 1\n"), "bogus"),
    "unknown-option": (dict(), "cropz"),
    "unknown-train-option": (dict(hparams=""), None),
    "unknown-hparam": (dict(hparams="no_such_option = 3"), "no_such_option"),
    "hparam-wrong-type": (dict(model="moe", hparams='num_experts = "four"'), "num_experts"),
    "epochs-string": (dict(), "epochs"),
    "name-dotdot": (dict(name="../x"), "../x"),
    "name-slash": (dict(name="a/b"), "a/b"),
    "name-empty": (dict(name=""), "name"),
    "name-newline": (dict(name="ok\\n"), "name"),
    "not-toml": (dict(), "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_rejected_before_training(case, small_data, tmp_path, capsys):
    kw, needle = CONFIG_CASES[case]
    train = str(small_data / "video" / "train-*.tfrecord")
    cfg = job_toml(tmp_path / "job.toml", train, **kw)
    text = cfg.read_text()
    if case == "unknown-train-option":
        text = text.replace("[train]\n", "[train]\nepochz = 3\n")
        needle = "epochz"
    elif case == "epochs-string":
        text = text.replace("epochs = 2", 'epochs = "2"')
    elif case == "not-toml":
        text = text.replace("[model]", "[model")
    elif case == "unknown-option":
        text = text.replace("[predict]\n", "[predict]\ncropz = 2\n", 1)
    cfg.write_text(text)
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "job.toml", *([needle] if needle else []))
    assert not (tmp_path / "runs").exists(), "training started on a bad config"
    assert not (tmp_path / "x").exists() and not (tmp_path / "a").exists()


def test_config_wrong_types(small_data, tmp_path, capsys):
    train = str(small_data / "video" / "train-*.tfrecord")
    for old, new, needle in (("lr = 0.001", None, None), ("patience = 10", "patience = 1.5", "patience"),
                             ("batch_size = 16", "batch_size = true", "batch_size"),
                             ("top_k = 5", "top_k = [5]", "top_k"),
                             (f"num_classes = {C}", 'num_classes = "20"', "num_classes")):
        if new is None:
            continue
        cfg = job_toml(tmp_path / "job.toml", train)
        cfg.write_text(cfg.read_text().replace(old, new))
        rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
        assert_clear_error(rc, err, "produce", "job.toml", needle)
        assert not (tmp_path / "runs").exists()
    cfg = job_toml(tmp_path / "job.toml", train)
    cfg.write_text(cfg.read_text().replace('[data]\ntrain = "', "[data]\ntrain = 5\nxx = \""))
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", "job.toml")
    assert not (tmp_path / "runs").exists()


# =========================================================================== stores


def _members(tmp_path: Path, n: int = 30) -> tuple[Path, Path, Path]:
    """Directory with a good member m0, a (to-be-corrupted) member m1, and a labels dir."""
    d = tmp_path / "preds"
    make_store(d / "m0.heldout.full.h5", model="m0", seed=1, n=n)
    m1 = make_store(d / "m1.heldout.full.h5", model="m1", seed=2, n=n)
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids_of(n))
    return d, m1, tmp_path / "labels"


def _h5(p: Path, fn):
    with h5py.File(p, "r+") as f:
        fn(f)


def _set(name, row, value, col=0):
    def fn(f):
        a = f[name][:]
        a[row, col] = value
        f[name][:] = a
    return fn


def _rewrite_ids(f):
    ids = f["ids"][:]
    ids[3] = ids[0]
    del f["ids"]
    f.create_dataset("ids", data=ids)


def _unsorted(f):
    s = f["scores"][:]
    s[5] = np.sort(s[5])
    f["scores"][:] = s


def _truncate_h5(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


STORE_CASES = {
    "not-hdf5": (lambda p: p.write_text("VideoId,LabelConfidencePairs\n"), "not a readable HDF5"),
    "empty-file": (lambda p: p.write_bytes(b""), "HDF5"),
    "truncated": (_truncate_h5, ""),
    "missing-dataset": (lambda p: _h5(p, lambda f: f.__delitem__("indices")), "missing dataset 'indices'"),
    "missing-attribute": (lambda p: _h5(p, lambda f: f.attrs.__delitem__("num_classes")), "num_classes"),
    "format-version": (lambda p: _h5(p, lambda f: f.attrs.__setitem__("format_version", 2)),
                       "unknown format version 2"),
    "duplicate-ids": (lambda p: _h5(p, _rewrite_ids), "duplicate video id"),
    "nan": (lambda p: _h5(p, _set("scores", 3, np.nan)), "NaN"),
    "inf": (lambda p: _h5(p, _set("scores", 3, np.inf)), "inf"),
    "score-above-1": (lambda p: _h5(p, _set("scores", 2, 1.5)), "outside [0, 1]"),
    "score-negative": (lambda p: _h5(p, _set("scores", 2, -0.5, col=K - 1)), "outside [0, 1]"),
    "label-index-ge-C": (lambda p: _h5(p, _set("indices", 4, C)), "out of range"),
    "unsorted-topk": (lambda p: _h5(p, _unsorted), "not sorted"),
    "labels-file-given": (lambda p: make_labels(p, ids_of(30)), "labels file"),
    "directory": (lambda p: (p.unlink(), p.mkdir()), "directory"),
}


def _problem_seen(line: str, problem: str):
    assert problem in line, f"{problem!r} not in {line!r}"


@pytest.mark.parametrize("command", ["build", "evaluate", "submit"])
@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_bad_store(case, command, tmp_path, capsys):
    mutate, problem = STORE_CASES[case]
    d, m1, labels = _members(tmp_path)
    mutate(m1)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    if command == "build":
        argv = ["build", "--members", d, "--labels", labels, "--out", out, "--quiet", "--folds", "2"]
    elif command == "evaluate":
        argv = ["evaluate", "--members", d, "--labels", labels, "--quiet"]
    else:
        argv = ["submit", m1, "--out", out / "sub.csv", "--quiet", "--any-split"]
    rc, err = cli(ensemble, argv, capsys)
    line = assert_clear_error(rc, err, "ensemble", "m1.heldout.full.h5")
    _problem_seen(line, problem)
    assert snapshot(tmp_path) == before, "a failed command wrote or changed a file"


def _mismatch_c(d):
    make_store(d / "m1.heldout.full.h5", model="m1", num_classes=C + 10, seed=2)


def _mismatch_k(d):
    make_store(d / "m1.heldout.full.h5", model="m1", k=K - 2, seed=2)


def _disjoint(d):
    make_store(d / "m1.heldout.full.h5", model="m1", ids=ids_of(30, "w"), seed=2)


def _copy_other_name(d):
    p = d / "m1.heldout.full.h5"
    shutil.copy(d / "m0.heldout.full.h5", p)
    _h5(p, lambda f: f.attrs.__setitem__("model", "m1"))  # same data, another name


MEMBER_CASES = {
    "class-count-mismatch": (_mismatch_c, "classes"),
    "k-mismatch": (_mismatch_k, "top-"),
    "disjoint-ids": (_disjoint, "no video id in common"),
    "same-data-twice": (_copy_other_name, "same predictions"),
}


@pytest.mark.parametrize("command", ["build", "evaluate"])
@pytest.mark.parametrize("case", sorted(MEMBER_CASES))
def test_incompatible_members(case, command, tmp_path, capsys):
    make_fn, problem = MEMBER_CASES[case]
    d, m1, labels = _members(tmp_path)
    m1.unlink()
    make_fn(d)
    if command == "evaluate":
        if case != "class-count-mismatch":
            pytest.skip("evaluate scores each member on its own: no cross-member check")
        # against labels of another class count
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    argv = (["build", "--members", d, "--labels", labels, "--out", out, "--quiet", "--folds", "2"]
            if command == "build" else ["evaluate", "--members", d, "--labels", labels, "--quiet"])
    rc, err = cli(ensemble, argv, capsys)
    line = assert_clear_error(rc, err, "ensemble", "m1.heldout.full.h5" if command == "build" else "")
    assert problem in line
    assert snapshot(tmp_path) == before


def test_same_member_listed_twice(tmp_path, capsys):
    d, m1, labels = _members(tmp_path)
    m0 = d / "m0.heldout.full.h5"
    before = snapshot(tmp_path)
    for argv in (["build", "--members", m0, m0, m1, "--out", tmp_path / "out", "--quiet"],
                 ["evaluate", "--members", m0, m0, "--labels", labels, "--quiet"]):
        rc, err = cli(ensemble, argv, capsys)
        assert_clear_error(rc, err, "ensemble", "m0.heldout.full.h5", "same member twice")
    assert snapshot(tmp_path) == before


def test_empty_member_list(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    make_labels(empty / "labels.heldout.h5", ids_of(5))
    only_labels = tmp_path / "only-labels"
    only_labels.mkdir()
    make_labels(only_labels / "labels.heldout.h5", ids_of(5))
    (empty / "labels.heldout.h5").unlink()
    for members, needle in ((empty, "no .h5 file matches"), (only_labels, "no member store"),
                            (tmp_path / "none-*.h5", "no .h5 file matches")):
        rc, err = cli(ensemble, ["build", "--members", members, "--out", tmp_path / "out", "--quiet"], capsys)
        assert_clear_error(rc, err, "ensemble", needle)
    assert not (tmp_path / "out").exists()


def test_bad_labels_file(tmp_path, capsys):
    d, m1, labels = _members(tmp_path)
    lab = labels / "labels.heldout.h5"
    lab.write_bytes(lab.read_bytes()[:200])
    rc, err = cli(ensemble, ["evaluate", "--members", d, "--labels", labels, "--quiet"], capsys)
    assert_clear_error(rc, err, "ensemble", "labels.heldout.h5", "HDF5")


# =========================================================================== CSV import

GOOD = "VideoId,LabelConfidencePairs\nv1,3 0.9 7 0.5\nv2,1 0.8\n"

CSV_CASES = {
    "malformed-pairs": ("VideoId,LabelConfidencePairs\nv1,3 0.9 7 0.5\nv2,1 0.8,4 0.2\n", "line 3"),
    "odd-token-count": ("VideoId,LabelConfidencePairs\nv1,3 0.9 7\n", "odd number of tokens"),
    "non-numeric-score": ("VideoId,LabelConfidencePairs\nv1,3 abc\n", "line 2"),
    "non-numeric-label": ("VideoId,LabelConfidencePairs\nv1,x 0.5\n", "line 2"),
    "nan-score": ("VideoId,LabelConfidencePairs\nv1,3 nan\n", "line 2"),
    "score-above-1": ("VideoId,LabelConfidencePairs\nv1,3 1.5\n", "outside [0, 1]"),
    "label-ge-C": ("VideoId,LabelConfidencePairs\nv1,20 0.5\n", "out of range"),
    "repeated-label": ("VideoId,LabelConfidencePairs\nv1,3 0.5 3 0.4\n", "appears twice"),
    "duplicate-ids": ("VideoId,LabelConfidencePairs\nv1,3 0.9\nv2,1 0.8\nv1,2 0.7\n", "duplicate video id"),
    "missing-header": ("v1,3 0.9 7 0.5\nv2,1 0.8\n", "header"),
    "empty-file": ("", "empty"),
    "empty-id": ("VideoId,LabelConfidencePairs\n,3 0.9\n", "empty video id"),
    "rank-csv-bad-label": ("VideoId,Label\nv1,3 x\n", "line 2"),
    "not-utf8": (b"VideoId,LabelConfidencePairs\nv\xff\xfe1,3 0.9\n", "UTF-8"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_bad_csv_import(case, tmp_path, capsys):
    text, problem = CSV_CASES[case]
    src = tmp_path / "team.csv"
    (src.write_bytes if isinstance(text, bytes) else src.write_text)(text)
    out = tmp_path / "out"
    rc, err = cli(ensemble, ["import", src, "--model", "team", "--split", "test", "--classes", C,
                             "--out", out, "--quiet"], capsys)
    assert_clear_error(rc, err, "ensemble", "team.csv", problem)
    assert not out.exists() or not any(out.iterdir())


def test_csv_import_missing_file(tmp_path, capsys):
    rc, err = cli(ensemble, ["import", tmp_path / "nope.csv", "--model", "t", "--split", "test",
                             "--out", tmp_path / "out", "--quiet"], capsys)
    assert_clear_error(rc, err, "ensemble", "nope.csv")


@pytest.mark.parametrize("variant", ["plain", "bom", "crlf", "bom+crlf"])
def test_csv_bom_and_crlf_accepted(variant, tmp_path, capsys):
    text = GOOD
    if "crlf" in variant:
        text = text.replace("\n", "\r\n")
    data = text.encode()
    if "bom" in variant:
        data = b"\xef\xbb\xbf" + data
    src = tmp_path / "team.csv"
    src.write_bytes(data)
    rc, err = cli(ensemble, ["import", src, "--model", "team", "--split", "test", "--classes", C,
                             "--out", tmp_path, "--quiet"], capsys)
    assert rc == 0, err
    with open_store(tmp_path / "team.test.full.h5") as s:
        s.verify()
        p = s.read()
    assert p.ids.tolist() == ["v1", "v2"]
    np.testing.assert_array_equal(p.indices[0], [3, 7])
    np.testing.assert_allclose(p.scores[0], [0.9, 0.5])
    assert p.indices[1, 0] == 1 and p.scores[1, 0] == np.float32(0.8) and p.scores[1, 1] == 0


def test_submit_refuses_bad_top(tmp_path, capsys):
    store = make_store(tmp_path / "m0.test.full.h5", split="test")
    rc, err = cli(ensemble, ["submit", store, "--out", tmp_path / "s.csv", "--top", 0], capsys)
    assert_clear_error(rc, err, "ensemble", "top")
    assert not (tmp_path / "s.csv").exists()
