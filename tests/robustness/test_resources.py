"""A small hostile file cannot make a command use gigabytes.

Kind "resources" of the robustness table. Video ids are stored fixed-width (the longest id sets the
width of every row), so a store of a few hundred KB holding one 10 MB id used to make ``ensemble
build`` hold n x 10 MB strings, copied several times (9.1 GB measured). Ids are now at most
``MAX_ID_BYTES`` (256) UTF-8 bytes, checked from the dataset's dtype before anything is read; the
same bound applies to labels files, TFRecord ids and CSV imports. A declared vocabulary of 2^31
classes, an HDF5 chunk of hundreds of MB (one row read = one chunk decompressed) and a 20 MB JSON
attribute are refused the same way. Each case asserts the refusal and a peak of traced memory (numpy
arrays included) far below the size the file claims.
"""
from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions.errors import InputError
from predictions.store import MAX_ID_BYTES, open_store, write_store
from predictions.types import Predictions

from .conftest import C, assert_clear_error, cli, ids_of, make_labels, make_store, snapshot

PEAK_LIMIT = 64 << 20     # bytes of traced memory a refused file may cost


def _huge_id_store(p: Path, width: int, n: int = 1, fill_first: bool = True):
    """A gzip store whose ids dataset is ``width`` bytes wide: its first id that long (if
    ``fill_first``); the other rows are never written (HDF5 stores no chunk for them)."""
    make_store(p, n=n, model="m1", seed=2)
    with h5py.File(p, "r+") as f:
        del f["ids"]
        ds = f.create_dataset("ids", shape=(n,), dtype=f"S{width}", chunks=(1,), compression="gzip")
        if fill_first:
            ds[0] = b"v" * width


def _attr_bytes(name: str, size: int):
    def mutate(p: Path):
        with h5py.File(p, "r+", libver="latest") as f:  # dense attribute storage: attributes > 64 KB
            f.attrs[name] = '{"x": "' + "y" * size + '"}'
    return mutate


def _num_classes(value: int):
    def mutate(p: Path):
        with h5py.File(p, "r+") as f:
            f.attrs["num_classes"] = value
    return mutate


def _big_chunks(p: Path):
    """Chunks of 200 MB declared (never written: reading a row would allocate and inflate one)."""
    with h5py.File(p, "r+") as f:
        shape, dtype = f["scores"].shape, f["scores"].dtype
        del f["scores"]
        f.create_dataset("scores", shape=shape, maxshape=(None, shape[1]), dtype=dtype,
                         chunks=(10_000_000, shape[1]))


def _declared_unwritten(p: Path):
    """n = 10^9 rows declared, none written: a few KB on disk."""
    n = 10**9
    with h5py.File(p, "r+") as f:
        for name in ("ids", "scores", "indices"):
            ds = f[name]
            dtype, width = ds.dtype, (ds.shape[1:] or ())
            del f[name]
            f.create_dataset(name, shape=(n, *width), dtype=dtype, chunks=(4096, *width))
        f.attrs["n"] = n


def _ids_gzip_bomb(p: Path):
    """10^7 ids of 8 zero bytes, every chunk written, gzip: 80 MB in memory from about 100 KB on disk."""
    with h5py.File(p, "r+") as f:
        del f["ids"]
        f.create_dataset("ids", data=np.zeros(10**7, "S8"), chunks=(1 << 20,), compression="gzip")


STORE_CASES = {
    "10^9-rows-declared-none-written": (_declared_unwritten, "not fully written"),
    "ids-gzip-bomb-800x": (_ids_gzip_bomb, "inflates"),
    "one-10MB-id": (lambda p: _huge_id_store(p, 10_000_000), "bytes wide"),
    "ids-10MB-wide-n-100": (lambda p: _huge_id_store(p, 10_000_000, n=100), "bytes wide"),
    "ids-257-bytes": (lambda p: _huge_id_store(p, MAX_ID_BYTES + 1, n=30), "bytes wide"),
    "ids-wide-dtype-short-content": (lambda p: _huge_id_store(p, 1_000_000, n=30, fill_first=False), "bytes wide"),
    "num-classes-2^31": (_num_classes(2**31 - 1), "num_classes"),
    "num-classes-2^24+1": (_num_classes(2**24 + 1), "num_classes"),
    "chunks-of-200MB": (_big_chunks, "chunks of"),
    "config-attribute-20MB": (_attr_bytes("config", 20 << 20), "attribute config"),
    "extra-attribute-20MB": (_attr_bytes("extra", 20 << 20), "attribute extra"),
}


def _members(tmp_path: Path):
    d = tmp_path / "preds"
    make_store(d / "m0.heldout.full.h5", model="m0", seed=1)
    m1 = make_store(d / "m1.heldout.full.h5", model="m1", seed=2)
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids_of(30))
    return d, m1, tmp_path / "labels"


def _traced(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        result = fn()
    finally:
        seconds = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return result, peak, seconds


@pytest.mark.parametrize("command", ["build", "evaluate", "submit"])
@pytest.mark.parametrize("case", sorted(STORE_CASES))
def test_hostile_store_is_refused_cheaply(case, command, tmp_path, capsys):
    mutate, needle = STORE_CASES[case]
    d, m1, labels = _members(tmp_path)
    mutate(m1)
    if case == "one-10MB-id":
        assert m1.stat().st_size < 300_000, "the hostile file is small"
    out = tmp_path / "out"
    argv = {"build": ["build", "--members", d, "--labels", labels, "--out", out, "--folds", 2, "--quiet"],
            "evaluate": ["evaluate", "--members", d, "--labels", labels, "--quiet"],
            "submit": ["submit", m1, "--out", out / "s.csv", "--quiet", "--any-split"]}[command]
    before = snapshot(tmp_path)
    (rc, err), peak, seconds = _traced(lambda: cli(ensemble, argv, capsys))
    assert_clear_error(rc, err, "ensemble", "m1.heldout.full.h5", needle)
    assert peak < PEAK_LIMIT, f"refusing the file cost {peak / 2**20:.0f} MB"
    assert seconds < 30
    assert snapshot(tmp_path) == before


def test_id_width_bound_is_exact(tmp_path):
    """256 UTF-8 bytes is a valid id (stored and read back); 257 bytes, or 86 three-byte characters, is not."""
    ok = "a" * MAX_ID_BYTES
    p = write_store(tmp_path / "ok.h5", Predictions(np.array([ok, "b"]), np.ones((2, 1), np.float32),
                                                   np.zeros((2, 1), np.int32), C), model="m", split="s")
    with open_store(p) as s:
        s.verify()
        assert s.ids[0] == ok
    for bad in ("a" * (MAX_ID_BYTES + 1), "\u20ac" * 86):   # 86 euro signs = 258 bytes
        with pytest.raises(InputError, match="ids are at most 256 bytes"):
            write_store(tmp_path / "bad.h5", Predictions(np.array([bad, "b"]), np.ones((2, 1), np.float32),
                                                         np.zeros((2, 1), np.int32), C), model="m", split="s")
    assert not (tmp_path / "bad.h5").exists()


LABEL_CASES = {
    "labels-ids-10MB-wide": "bytes wide",
    "labels-num-classes-2^31": "num_classes",
}


@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_hostile_labels_file_is_refused_cheaply(case, tmp_path, capsys):
    d, m1, labels = _members(tmp_path)
    lab = labels / "labels.heldout.h5"
    with h5py.File(lab, "r+") as f:
        if case == "labels-num-classes-2^31":
            f.attrs["num_classes"] = 2**31 - 1
        else:
            n = len(f["ids"])
            del f["ids"]
            ds = f.create_dataset("ids", shape=(n,), dtype="S10000000", chunks=(1,), compression="gzip")
            ds[0] = b"v" * 10_000_000
    (rc, err), peak, _ = _traced(lambda: cli(ensemble, ["evaluate", "--members", d, "--labels", labels, "--quiet"],
                                             capsys))
    assert_clear_error(rc, err, "ensemble", "labels.heldout.h5", LABEL_CASES[case])
    assert peak < PEAK_LIMIT, f"refusing the file cost {peak / 2**20:.0f} MB"


def test_csv_with_a_10MB_id_names_the_csv(tmp_path, capsys):
    src = tmp_path / "team.csv"
    src.write_text("VideoId,LabelConfidencePairs\nv1,3 0.9\n" + "w" * 10_000_000 + ",1 0.5\n")
    out = tmp_path / "out"
    rc, err = cli(ensemble, ["import", src, "--model", "team", "--split", "test", "--classes", C, "--out", out,
                             "--quiet"], capsys)
    line = assert_clear_error(rc, err, "ensemble", "team.csv", "at most 256 bytes")
    assert len(line) < 500
    assert not out.exists()


def test_tfrecord_with_a_10MB_id_names_shard_and_record(tmp_path):
    from producers.data.examples import VideoExample, encode_video
    from producers.data.readers import load_video_level, scan_ids
    from producers.data.tfrecord_io import write_tfrecord

    ok = encode_video(VideoExample("ok", np.array([1]), np.zeros(1024, np.float32), np.zeros(128, np.float32)))
    bad = encode_video(VideoExample("x" * 10_000_000, np.array([1]), np.zeros(1024, np.float32),
                                    np.zeros(128, np.float32)))
    shard = tmp_path / "train-0000.tfrecord"
    write_tfrecord(shard, [ok, ok.replace(b"ok", b"o2"), bad])
    for read in (lambda: load_video_level(shard, num_classes=C), lambda: scan_ids(shard)):
        with pytest.raises(InputError) as err:
            _traced(read)
        msg = str(err.value)
        assert "train-0000.tfrecord" in msg and "record 2" in msg and "10000000 bytes" in msg and len(msg) < 300
