"""Aligning stores on video id: checks, intersection warning, chunked aligned reading."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

from predictions.align import align_labels, align_stores, iter_aligned
from predictions.errors import InputError
from predictions.store import open_store, write_store
from predictions.types import Labels, Predictions

C = 20


def store(path, ids, k=3, num_classes=C, seed=0, full=False):
    """Write a store whose scores are a deterministic function of (id, seed)."""
    ids = np.asarray(ids)
    dense = np.stack([np.random.default_rng([int(i[1:]), seed]).random(num_classes, dtype=np.float32)
                      for i in ids]) if len(ids) else np.zeros((0, num_classes), np.float32)
    p = Predictions.from_dense(ids, dense, k=None if full else k)
    return write_store(path, p, model=path.stem.split(".")[0], split="s")


def expected(ids, seed, k=3, num_classes=C):
    dense = np.stack([np.random.default_rng([int(i[1:]), seed]).random(num_classes, dtype=np.float32)
                      for i in ids])
    return Predictions.from_dense(ids, dense, k=k)


def vids(numbers):
    return [f"v{i}" for i in numbers]


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(InputError) as info:
        fn(*args, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def readers():
    opened = []

    def _open(*paths):
        rs = [open_store(p) for p in paths]
        opened.extend(rs)
        return rs
    yield _open
    for r in opened:
        r.close()


def test_same_ids_same_order_no_warning(tmp_path, readers):
    a = store(tmp_path / "a.h5", vids(range(10)), seed=1)
    b = store(tmp_path / "b.h5", vids(range(10)), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        al = align_stores(readers(a, b), require_same_ids=True)
    np.testing.assert_array_equal(al.ids, vids(range(10)))
    for rows in al.rows:
        np.testing.assert_array_equal(rows, np.arange(10))
        assert rows.dtype == np.int64


def test_intersection_warning_and_rows(tmp_path, readers):
    a = store(tmp_path / "a.h5", vids([5, 1, 2, 3, 9]), seed=1)
    b = store(tmp_path / "b.h5", vids([3, 2, 7, 5]), seed=2)
    c = store(tmp_path / "c.h5", vids([2, 3, 5, 1, 8, 6]), seed=3)
    with pytest.warns(UserWarning) as rec:
        al = align_stores(readers(a, b, c))
    msg = str(rec[0].message)
    assert msg.startswith("aligning 3 members: 3 videos common to all; dropped ")
    assert "2 of 5 from a.h5" in msg and "1 of 4 from b.h5" in msg and "3 of 6 from c.h5" in msg
    np.testing.assert_array_equal(al.ids, ["v5", "v2", "v3"])       # first member's order
    np.testing.assert_array_equal(al.rows[0], [0, 2, 3])
    np.testing.assert_array_equal(al.rows[1], [3, 1, 0])
    np.testing.assert_array_equal(al.rows[2], [2, 0, 1])


def test_require_same_ids(tmp_path, readers):
    a = store(tmp_path / "a.h5", vids(range(6)))
    b = store(tmp_path / "b.h5", vids([0, 1, 2, 3, 10, 11, 12]), seed=1)
    msg = error_of(align_stores, readers(a, b), require_same_ids=True)
    assert msg.startswith(str(b)) and "2 missing, 3 extra" in msg and "a.h5" in msg


def test_same_member_twice(tmp_path, readers):
    a = store(tmp_path / "a.h5", vids(range(5)))
    msg = error_of(align_stores, readers(a, a))
    assert msg.startswith(str(a)) and "same predictions as" in msg
    copy = tmp_path / "copy.h5"
    copy.write_bytes(a.read_bytes())
    msg = error_of(align_stores, readers(a, copy))
    assert msg == f"{copy}: same predictions as {a} (identical checksum)"
    alias = tmp_path / "sub" / ".." / "a.h5"
    (tmp_path / "sub").mkdir()
    assert "same predictions as" in error_of(align_stores, readers(a, alias))


def test_class_and_k_mismatch(tmp_path, readers):
    a = store(tmp_path / "a.h5", vids(range(5)), k=3)
    b = store(tmp_path / "b.h5", vids(range(5)), k=3, num_classes=C + 1)
    msg = error_of(align_stores, readers(a, b))
    assert msg == f"{b}: {C + 1} classes, expected {C} as in {a}"
    c = store(tmp_path / "c.h5", vids(range(5)), k=4, seed=5)
    msg = error_of(align_stores, readers(a, c))
    assert msg.startswith(f"{c}: top-4, expected top-3 as in {a}")
    d = store(tmp_path / "d.h5", vids(range(5)), full=True, seed=6)
    assert "full scores, expected top-3" in error_of(align_stores, readers(a, d))
    al = align_stores(readers(a, c, d), allow_mixed_k=True)
    assert len(al) == 5


def test_empty_and_disjoint(tmp_path, readers):
    assert error_of(align_stores, []) == "no prediction stores to align"
    a = store(tmp_path / "a.h5", vids(range(5)))
    b = store(tmp_path / "b.h5", vids(range(3, 8)), seed=1)
    c = store(tmp_path / "c.h5", vids(range(10, 15)), seed=2)
    msg = error_of(align_stores, readers(a, c))
    assert msg == f"{c}: no video id in common with {a}"
    msg = error_of(align_stores, readers(a, b, c))
    assert msg.startswith(str(c)) and "no video id in common with the 2 members before it" in msg


@pytest.mark.parametrize("chunk_rows", [2, 7, 1000])
def test_iter_aligned_matches_reference(tmp_path, readers, chunk_rows):
    rng = np.random.default_rng(0)
    universe = np.arange(200)
    members = [rng.permutation(universe)[:170], rng.permutation(universe)[:180], rng.permutation(universe)]
    paths = [store(tmp_path / f"m{j}.h5", vids(m), seed=j) for j, m in enumerate(members)]
    rs = readers(*paths)
    with pytest.warns(UserWarning, match="videos common to all"):
        al = align_stores(rs)
    common = set(members[0]) & set(members[1])
    assert sorted(int(i[1:]) for i in al.ids) == sorted(common)
    np.testing.assert_array_equal(al.ids, [f"v{i}" for i in members[0] if i in common])
    seen = []
    for ids_chunk, preds in iter_aligned(rs, al, chunk_rows=chunk_rows):
        assert len(ids_chunk) <= chunk_rows and len(preds) == 3
        for j, p in enumerate(preds):
            ref = expected(ids_chunk, seed=j)
            np.testing.assert_array_equal(p.ids, ids_chunk)
            np.testing.assert_array_equal(p.indices, ref.indices)
            np.testing.assert_array_equal(p.scores, ref.scores)
        seen.extend(ids_chunk.tolist())
    assert seen == al.ids.tolist()


def test_iter_aligned_small_storage_blocks(tmp_path, readers, monkeypatch):
    """Members listing ids in different orders, read through many small storage chunks."""
    import predictions.storewriter as st
    monkeypatch.setattr(st, "CHUNK_ROWS", 8)
    rng = np.random.default_rng(1)
    a = store(tmp_path / "a.h5", vids(rng.permutation(100)), seed=0)
    b = store(tmp_path / "b.h5", vids(rng.permutation(100)), seed=1)
    rs = readers(a, b)
    assert rs[1]._scores.chunks[0] == 8
    al = align_stores(rs, require_same_ids=True)
    for ids_chunk, (pa, pb) in iter_aligned(rs, al, chunk_rows=33):
        np.testing.assert_array_equal(pb.scores, expected(ids_chunk, seed=1).scores)
        np.testing.assert_array_equal(pa.ids, pb.ids)


def test_align_labels(tmp_path):
    lab = Labels.from_lists(["a", "b", "c"], [[1], [2, 3], []], C)
    got = align_labels(lab, ["c", "a"])
    np.testing.assert_array_equal(got.ids, ["c", "a"])
    np.testing.assert_array_equal(got.indptr, [0, 0, 1])
    np.testing.assert_array_equal(got.indices, [1])
    msg = error_of(align_labels, lab, ["a", "x", "y"], path=tmp_path / "labels.s.h5")
    assert msg == f"{tmp_path / 'labels.s.h5'}: 2 of 3 videos have no entry in the labels file (first: 'x')"
    assert os.path.basename("labels.s.h5") in msg
