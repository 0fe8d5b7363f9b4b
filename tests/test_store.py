"""HDF5 predictions store and labels file: round trips, checksum, atomicity, validation."""
from __future__ import annotations

import hashlib
import os
import time
from datetime import datetime

import h5py
import numpy as np
import pytest

from predictions.errors import InputError
from predictions.labels import read_labels, write_labels
from predictions.store import (FORMAT_VERSION, StoreWriter, expand_paths, open_store, read_store,
                               store_name, write_store)
from predictions.types import Labels, Predictions

C = 50


def make_topk(n=30, k=5, num_classes=C, seed=0, prefix="v"):
    rng = np.random.default_rng(seed)
    ids = np.array([f"{prefix}{i:04d}" for i in rng.permutation(n)])
    return Predictions.from_dense(ids, rng.random((n, num_classes), dtype=np.float32), k=k)


def make_full(n=30, num_classes=C, seed=0):
    rng = np.random.default_rng(seed)
    return Predictions([f"f{i}" for i in range(n)], rng.random((n, num_classes), dtype=np.float32),
                       None, num_classes)


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


def expect_error(path, fn, *args, match: str, **kw) -> str:
    """fn(*args) raises a one-line InputError naming the file name and containing ``match``."""
    msg = error_of(fn, *args, **kw)
    assert os.path.basename(str(path)) in msg, msg
    assert match in msg, msg
    return msg


# ---------------------------------------------------------------- round trips

def test_roundtrip_topk_and_meta(tmp_path):
    p = make_topk()
    out = write_store(tmp_path / "m.val.full.h5", p, model="m", split="val",
                      config={"lr": 0.1, "path": tmp_path}, extra={"members": ["a", "b"]})
    q = read_store(out)
    np.testing.assert_array_equal(q.ids, p.ids)
    np.testing.assert_array_equal(q.indices, p.indices)
    np.testing.assert_array_equal(q.scores, p.scores)
    assert q.indices.dtype == np.int32 and q.scores.dtype == np.float32 and q.num_classes == C
    with open_store(out) as r:
        m = r.meta
        assert (m.format_version, m.model, m.split, m.crop, m.layout, m.k, m.n, m.num_classes) == \
            (FORMAT_VERSION, "m", "val", "full", "topk", 5, 30, C)
        assert m.config == {"lr": 0.1, "path": str(tmp_path)} and m.extra == {"members": ["a", "b"]}
        assert datetime.fromisoformat(m.created).tzinfo is not None
        assert len(m.checksum) == 64 and len(r) == 30
        r.verify()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_roundtrip_full(tmp_path, dtype):
    p = make_full()
    path = write_store(tmp_path / "m.test.mean.h5", p, model="m", split="test", crop="mean", dtype=dtype)
    with open_store(path) as r:
        assert r.meta.layout == "full" and r.meta.k is None and r.meta.crop == "mean"
        q = r.read()
        assert q.indices is None and q.scores.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(q.scores, p.scores.astype(dtype))
        r.verify()


def test_unicode_ids_and_empty_store(tmp_path):
    p = Predictions(["é1", "漢字", "a"], np.array([[0.5], [0.25], [1.0]], np.float32),
                    np.array([[3], [0], [1]]), 4)
    q = read_store(write_store(tmp_path / "u.h5", p, model="m", split="s"))
    np.testing.assert_array_equal(q.ids, ["é1", "漢字", "a"])
    np.testing.assert_array_equal(q.indices[:, 0], [3, 0, 1])
    empty = Predictions(np.array([], dtype=str), np.zeros((0, 2), np.float32), np.zeros((0, 2), np.int32), 4)
    assert len(read_store(write_store(tmp_path / "e.h5", empty, model="m", split="s"))) == 0


def test_checksum_definition_and_chunked_equals_oneshot(tmp_path):
    p = make_topk(n=23)
    one = write_store(tmp_path / "one.h5", p, model="m", split="s", compression="gzip")
    with StoreWriter(tmp_path / "chunked.h5", ids=p.ids, num_classes=C, k=5, model="other",
                     split="s") as w:
        for a, b in [(0, 7), (7, 7), (7, 20), (20, 23)]:
            w.write(p.take(slice(a, b)))
    assert w.checksum is not None
    with open_store(one) as r1, open_store(tmp_path / "chunked.h5") as r2:
        assert r1.meta.checksum == r2.meta.checksum
        r2.verify()
    # checksum as documented in FORMAT.md
    h_ids = hashlib.sha256("".join(f"{i}\n" for i in p.ids).encode()).digest()
    h_idx = hashlib.sha256(p.indices.astype("<i4").tobytes()).digest()
    h_sc = hashlib.sha256(p.scores.astype("<f4").tobytes()).digest()
    expected = hashlib.sha256(b"yt8m-predictions-v1\n50\n" + h_ids + h_idx + h_sc).hexdigest()
    assert r1.meta.checksum == expected


def test_writer_checks_alignment_and_row_count(tmp_path):
    p = make_topk(n=10)
    path = tmp_path / "w.h5"
    with pytest.raises(InputError, match="next expected ids"):
        with StoreWriter(path, ids=p.ids, num_classes=C, k=5, model="m", split="s") as w:
            w.write(p.take(slice(0, 4)))
            w.write(p.take(slice(5, 8)))          # skipped row 4
    assert not path.exists()
    msg = expect_error(path, lambda: _write_partial(path, p), match="only 4 of 10 rows")
    assert msg
    assert not path.exists() and not list(tmp_path.iterdir())
    expect_error(path, lambda: _write_k(path, p), match="expected topk k=3")


def _write_partial(path, p):
    with StoreWriter(path, ids=p.ids, num_classes=C, k=5, model="m", split="s") as w:
        w.write(p.take(slice(0, 4)))


def _write_k(path, p):
    with StoreWriter(path, ids=p.ids, num_classes=C, k=3, model="m", split="s") as w:
        w.write(p)


def test_atomic_exception_leaves_no_file_and_keeps_previous(tmp_path):
    path = tmp_path / "m.s.full.h5"
    old = make_topk(seed=1)
    write_store(path, old, model="m", split="s")
    before = path.read_bytes()
    new = make_topk(seed=2)
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path, ids=new.ids, num_classes=C, k=5, model="m", split="s") as w:
            w.write(new.take(slice(0, 10)))
            raise RuntimeError("boom")
    assert path.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == [path.name]   # no temp file left
    np.testing.assert_array_equal(read_store(path).scores, old.scores)
    fresh = tmp_path / "fresh.h5"
    with pytest.raises(RuntimeError):
        with StoreWriter(fresh, ids=new.ids, num_classes=C, k=5, model="m", split="s") as w:
            raise RuntimeError("boom")
    assert not fresh.exists()


# ---------------------------------------------------------------- write validation

@pytest.mark.parametrize("case, match", [
    ("dup", "duplicate video id 'v0001'"),
    ("nan", "NaN or inf scores in rows 0..3 (first at row 2)"),
    ("big", "scores outside [0, 1]"),
    ("label", "label index out of range [0, 50)"),
    ("unsorted", "not sorted by descending score"),
    ("repeat", "repeated label id"),
])
def test_write_rejects_bad_rows(tmp_path, case, match):
    ids = ["v0000", "v0001", "v0002", "v0003"]
    s = np.array([[0.9, 0.5]] * 4, np.float32)
    x = np.array([[1, 2]] * 4, np.int32)
    if case == "dup":
        ids[2] = "v0001"
    elif case == "nan":
        s[2, 1] = np.nan
    elif case == "big":
        s[1] = [1.5, 0.5]
    elif case == "label":
        x[3, 1] = C
    elif case == "unsorted":
        s[0] = [0.1, 0.2]
    elif case == "repeat":
        x[1] = [7, 7]
    path = tmp_path / "bad.h5"
    expect_error(path, write_store, path, Predictions(ids, s, x, C), model="m", split="s", match=match)
    assert not path.exists()


def test_write_rejects_bad_options(tmp_path):
    p = make_topk()
    error_of(write_store, tmp_path / "a.h5", p, model="m", split="s", dtype="float16")
    error_of(write_store, tmp_path / "a.h5", p, model="m", split="s", crop="x")
    error_of(write_store, tmp_path / "a.h5", p, model="", split="s")
    assert not list(tmp_path.iterdir())


# ---------------------------------------------------------------- read validation

@pytest.fixture
def good(tmp_path):
    return write_store(tmp_path / "good.test.full.h5", make_topk(n=40, k=4), model="m", split="test")


def corrupt(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def test_open_missing_not_hdf5_truncated(tmp_path, good):
    expect_error(tmp_path / "nope.h5", open_store, tmp_path / "nope.h5", match="file not found")
    rnd = tmp_path / "random.h5"
    rnd.write_bytes(np.random.default_rng(0).bytes(5000))
    expect_error(rnd, open_store, rnd, match="not a readable HDF5 file")
    cut = tmp_path / "cut.h5"
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    expect_error(cut, read_store, cut, match="HDF5")
    expect_error(tmp_path, open_store, tmp_path, match="is a directory")


def _swap_ids(f):
    raw = f["ids"][:]
    raw[5] = raw[9]
    f["ids"][:] = raw


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.__delitem__("indices"), "missing dataset 'indices'"),
    (lambda f: f.attrs.__delitem__("checksum"), "missing attribute 'checksum'"),
    (lambda f: f.attrs.__setitem__("format_version", 99), "unknown format version 99"),
    (lambda f: f.attrs.__setitem__("n", 41), "has shape (40,) dtype |S5, expected (41,)"),
    (lambda f: f.attrs.__setitem__("k", 5), "k=5"),
    (lambda f: f.attrs.__setitem__("layout", "full"), "full layout with attribute k=4"),
    (lambda f: f.attrs.__setitem__("num_classes", 3), "k=4 and num_classes=3"),
    (_swap_ids, "duplicate video id"),
])
def test_open_rejects_bad_structure(good, edit, match):
    corrupt(good, edit)
    expect_error(good, open_store, good, match=match)


def _set(name, row, col, value):
    def edit(f):
        a = f[name][:]
        a[row, col] = value
        f[name][:] = a
    return edit


@pytest.mark.parametrize("edit, match", [
    (_set("scores", 33, 1, np.nan), "NaN or inf scores in rows 0..39 (first at row 33)"),
    (_set("scores", 7, 0, 1.5), "scores outside [0, 1] in rows 0..39 (row 7: 1.5)"),
    (_set("indices", 2, 3, C), "label index out of range [0, 50) in rows 0..39 (row 2: 50)"),
    (_set("indices", 2, 3, -1), "(row 2: -1)"),
    (_set("scores", 12, 3, 1.0), "not sorted by descending score in rows 0..39 (first at row 12)"),
])
def test_read_rejects_bad_rows(good, edit, match):
    corrupt(good, edit)
    with open_store(good) as r:          # structure is fine: opens
        expect_error(good, r.read, match=match)
        msg = expect_error(good, lambda: list(r.iter_chunks(16)), match="rows ")
        assert "rows 0..15" in msg or "rows 16..31" in msg or "rows 32..39" in msg


def test_verify_detects_changed_values(good):
    corrupt(good, _set("scores", 3, 3, 0.0))
    with open_store(good) as r:
        r.read()                        # still valid data
        expect_error(good, r.verify, match="checksum mismatch")


def test_labels_file_given_as_store(tmp_path):
    lab = write_labels(tmp_path / "labels.test.h5", Labels.from_lists(["a"], [[1]], C), split="test")
    expect_error(lab, open_store, lab, match="labels file, not a predictions store")


# ---------------------------------------------------------------- reading rows

def test_read_rows_any_order_and_chunks(tmp_path):
    p = make_topk(n=100, k=3, seed=4)
    path = write_store(tmp_path / "r.h5", p, model="m", split="s")
    rows = np.array([99, 0, 50, 50, 3, 98, 1])
    with open_store(path) as r:
        for block in (None, 1, 7, 1000):
            q = r.read_rows(rows, block_rows=block)
            np.testing.assert_array_equal(q.ids, p.ids[rows])
            np.testing.assert_array_equal(q.scores, p.scores[rows])
            np.testing.assert_array_equal(q.indices, p.indices[rows])
        assert len(r.read_rows(np.array([], int))) == 0
        chunks = list(r.iter_chunks(30))
        assert [len(c) for c in chunks] == [30, 30, 30, 10]
        np.testing.assert_array_equal(np.concatenate([c.scores for c in chunks]), p.scores)
        np.testing.assert_array_equal(r.read(10, 12).ids, p.ids[10:12])
        expect_error(path, r.read_rows, [100], match="out of range")
        expect_error(path, r.read, 5, 101, match="row range")


def test_expand_paths(tmp_path):
    p = make_topk()
    d = tmp_path / "d"
    for name in ["b.s.full.h5", "a.s.full.h5", ".a.s.full.h5.tmpxyz", "notes.txt"]:
        (d / name).parent.mkdir(exist_ok=True)
        (d / name).write_bytes(b"")
    f = write_store(tmp_path / "x.s.full.h5", p, model="x", split="s")
    assert expand_paths(d) == [d / "a.s.full.h5", d / "b.s.full.h5"]
    assert expand_paths(str(d / "*.h5*")) == [d / "a.s.full.h5", d / "b.s.full.h5"]
    assert expand_paths([str(f), str(d)]) == [f, d / "a.s.full.h5", d / "b.s.full.h5"]
    expect_error("zzz", expand_paths, str(tmp_path / "zzz*.h5"), match="no .h5 file matches")
    expect_error("missing.h5", expand_paths, str(tmp_path / "missing.h5"), match="file not found")
    assert store_name("dbof", "test", "3") == "dbof.test.crop3.h5"
    assert store_name("moe", "heldout") == "moe.heldout.full.h5"


# ---------------------------------------------------------------- labels

def test_labels_roundtrip(tmp_path):
    lab = Labels.from_lists(["a", "b", "c"], [[3, 1], [], [49]], C)
    path = write_labels(tmp_path / "labels.val.h5", lab, split="val", source="unit")
    got = read_labels(path)
    np.testing.assert_array_equal(got.ids, ["a", "b", "c"])
    np.testing.assert_array_equal(got.indptr, [0, 2, 2, 3])
    np.testing.assert_array_equal(got.indices, [1, 3, 49])
    assert got.num_classes == C


def _labels_file(tmp_path, edit=None):
    path = write_labels(tmp_path / "labels.val.h5", Labels.from_lists(["a", "b", "c"], [[3, 1], [], [4]], C),
                        split="val")
    if edit:
        corrupt(path, edit)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.__delitem__("indptr"), "missing dataset 'indptr'"),
    (lambda f: f["ids"].__setitem__(1, b"a"), "duplicate video id 'a'"),
    (lambda f: f["indices"].__setitem__(2, C), "label id 50 out of range [0, 50) (video row 2)"),
    (lambda f: f["indptr"].__setitem__(1, 3), "bad indptr"),
    (lambda f: f["indices"].__setitem__(1, 1), "label 1 repeated for video row 0"),
    (lambda f: f.attrs.__setitem__("format_version", 99), "unknown format version 99"),
])
def test_read_labels_rejects(tmp_path, edit, match):
    path = _labels_file(tmp_path, edit)
    expect_error(path, read_labels, path, match=match)


def test_read_labels_wrong_files(tmp_path):
    store = write_store(tmp_path / "m.s.full.h5", make_topk(), model="m", split="s")
    expect_error(store, read_labels, store, match="predictions store, not a labels file")
    rnd = tmp_path / "rnd.h5"
    rnd.write_bytes(b"x" * 3000)
    expect_error(rnd, read_labels, rnd, match="not a readable HDF5")
    expect_error("none.h5", read_labels, tmp_path / "none.h5", match="file not found")
    bad = tmp_path / "badlab.h5"
    with pytest.raises(InputError):
        write_labels(bad, Labels(["a", "a"], [0, 1, 2], [1, 2], C), split="s")
    assert not bad.exists()


# ---------------------------------------------------------------- speed

def _speed(tmp_path, capsys, compressions):
    n, k, num_classes = 200_000, 20, 3862
    rng = np.random.default_rng(0)
    ids = np.char.add("vid", np.arange(n).astype(str))
    scores = -np.sort(-rng.random((n, k), dtype=np.float32), axis=1)
    base = np.argsort(rng.random((256, num_classes)), axis=1)[:, :k].astype(np.int32)
    p = Predictions(ids, scores, base[rng.integers(0, 256, n)], num_classes)
    timings = {}
    for comp in compressions:
        path = tmp_path / f"speed_{comp}.h5"
        t0 = time.perf_counter()
        write_store(path, p, model="m", split="s", compression=comp)
        t1 = time.perf_counter()
        q = read_store(path)
        t2 = time.perf_counter()
        np.testing.assert_array_equal(q.indices, p.indices)
        timings[comp] = (t1 - t0, t2 - t1, path.stat().st_size / 1e6)
    with capsys.disabled():
        for comp, (w, r, mb) in timings.items():
            print(f"\n200000x20 top-k store, compression={comp}: write {w:.2f} s, full read "
                  f"{r:.2f} s, {mb:.1f} MB")
    return timings


def test_speed_200k_by_20(tmp_path, capsys):
    timings = _speed(tmp_path, capsys, [None])
    assert timings[None][1] < 5.0


@pytest.mark.slow
def test_speed_200k_by_20_compression(tmp_path, capsys):
    _speed(tmp_path, capsys, [None, "gzip", "lzf"])


@pytest.mark.parametrize("width", [4, 8, 13, 40])
def test_duplicate_ids_detected_at_any_id_width(tmp_path, width):
    """The integer-word duplicate check must agree with a string check for short and long ids."""
    import h5py as _h5py
    from predictions.errors import InputError as _InputError
    from predictions.store import open_store as _open, write_store as _write
    from predictions.types import Predictions as _P
    n = 50
    ids = np.array([f"{i:0{width}d}" for i in range(n)])
    scores = np.tile(np.linspace(1, 0.1, 5, dtype=np.float32), (n, 1))
    idx = np.tile(np.arange(5, dtype=np.int32), (n, 1))
    path = tmp_path / "m.heldout.full.h5"
    _write(path, _P(ids, scores, idx, 10), model="m", split="heldout")
    _open(path).close()  # unique ids open fine
    with _h5py.File(path, "r+") as f:
        raw = f["ids"][:]
        raw[7] = raw[31]
        f["ids"][:] = raw
    with pytest.raises(_InputError, match=f"duplicate video id '{ids[31]}'"):
        _open(path)


def test_checksum_of_ids_of_mixed_lengths_and_utf8(tmp_path):
    """The ids stream is each id's UTF-8 bytes then a newline (FORMAT.md), whatever the id widths, in
    blocks or at once; computed without a Python object per id."""
    from predictions import store

    stems = ["a", "bb", "é", "日本語", "x" * 40, "c"]
    ids = np.array([f"{stems[i % 6]}{i}" for i in range(17997)])  # more ids than one block of the stream
    p = Predictions(ids, np.zeros((len(ids), 1), np.float32), np.zeros((len(ids), 1), np.int32), 3)
    path = write_store(tmp_path / "u.h5", p, model="m", split="s")
    h_ids = hashlib.sha256("".join(f"{i}\n" for i in ids).encode()).digest()
    h_idx = hashlib.sha256(p.indices.astype("<i4").tobytes()).digest()
    h_sc = hashlib.sha256(p.scores.astype("<f4").tobytes()).digest()
    with open_store(path) as r:
        assert r.meta.checksum == hashlib.sha256(b"yt8m-predictions-v1\n3\n" + h_ids + h_idx + h_sc).hexdigest()
        r.verify()
    small = store.Checksum(3)
    raw = np.array([i.encode() for i in ids], dtype="S")
    for a in range(0, len(raw), 1000):  # blocks smaller than the ids' block: same stream
        small.update_ids(raw[a:a + 1000])
    assert small.ids.digest() == h_ids


def test_readers_of_the_same_ids_share_one_copy(tmp_path):
    """Members holding the same videos in the same order decode and check their ids once."""
    p = make_topk(n=40, seed=1)
    q = Predictions.from_dense(p.ids, np.random.default_rng(2).random((40, C), dtype=np.float32), k=5)
    other = make_topk(n=40, seed=3)  # other order of the ids
    paths = [write_store(tmp_path / f"{j}.h5", x, model=f"m{j}", split="s") for j, x in enumerate((p, q, other))]
    with open_store(paths[0]) as a, open_store(paths[1]) as b, open_store(paths[2]) as c:
        assert b.ids is a.ids and not a.ids.flags.writeable
        assert c.ids is not a.ids
        np.testing.assert_array_equal(c.ids, other.ids)
        np.testing.assert_array_equal(b.read().ids, p.ids)
        b.verify()
    with open_store(paths[1]) as b2:  # still right after the first readers closed
        np.testing.assert_array_equal(b2.ids, p.ids)


def test_read_rows_consecutive_is_one_read(tmp_path):
    p = make_topk(n=50, k=4, seed=5)
    path = write_store(tmp_path / "c.h5", p, model="m", split="s")
    with open_store(path) as r:
        for rows in (np.arange(10, 30), np.arange(0, 50), np.array([7, 8]), np.array([3])):
            q = r.read_rows(rows)
            np.testing.assert_array_equal(q.ids, p.ids[rows])
            np.testing.assert_array_equal(q.indices, p.indices[rows])
            np.testing.assert_array_equal(q.scores, p.scores[rows])


def _nudge_last_score(path):
    with h5py.File(path, "r+") as f:
        s = f["scores"]
        s[len(s) - 1, s.shape[1] - 1] = np.nextafter(s[len(s) - 1, s.shape[1] - 1], np.float32(-1))


def test_verify_on_the_rows_as_they_are_read(tmp_path):
    """begin_verify: rows read in order are hashed as they come; the last read completes the check."""
    p = make_topk(n=100, k=4, seed=6)
    good = write_store(tmp_path / "g.h5", p, model="m", split="s")
    bad = write_store(tmp_path / "b.h5", p, model="m", split="s")
    _nudge_last_score(bad)   # still sorted and in range: only the checksum can tell
    with open_store(good) as r:
        r.begin_verify()
        for a in range(0, 100, 30):
            r.read_rows(np.arange(a, min(a + 30, 100)))
        assert r._stream_state == "done"
        r.end_verify()       # nothing left to do
    with open_store(bad) as r:
        r.begin_verify()
        r.read(0, 60)
        expect_error(bad, r.read, 60, 100, match="checksum mismatch")
    # read out of order: the streamed check is abandoned, end_verify makes a pass of its own
    with open_store(bad) as r:
        r.begin_verify()
        r.read(50, 100)
        r.read(0, 50)
        assert r._stream_state == "abandoned"
        expect_error(bad, r.end_verify, match="checksum mismatch")
    with open_store(good) as r:
        r.begin_verify()
        r.read_rows(np.array([5, 3]))
        r.end_verify()       # a full pass, which passes
        r.end_verify()       # and only once
