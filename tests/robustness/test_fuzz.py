"""Property tests: random bytes and random mutations of valid files never raise anything but InputError.

Readers covered: the TFRecord framing + record decoders (video and frame level), the CSV
parsers (submission, rank, scored), the predictions store and the labels file.
"""
from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from predictions import csvscan
from predictions.csvio import read_rank_csv, read_scored_csv, read_submission, read_truth_csv
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import open_store
from producers.data.readers import iter_frame, iter_video
from producers.data.tfrecord_io import iter_payloads, write_tfrecord

from .conftest import C, ids_of, make_labels, make_store

# derandomize: the same 40 examples on every run. A random run once produced a store whose mutated
# variable-length 'kind' attribute sends libhdf5 into an endless loop while reading it (a C loop: no
# Python-level timeout can stop it); see test_known_hdf5_hang_on_a_corrupt_string_attribute.
FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])

_TMP = Path(tempfile.mkdtemp(prefix="robust-fuzz-"))


def _tmpfile(data: bytes, name: str) -> Path:
    fd, p = tempfile.mkstemp(dir=_TMP, suffix=name)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Path(p)


def _only_input_errors(fn, path: Path) -> None:
    try:
        fn(path)
    except InputError as err:
        assert "\n" not in str(err)
    finally:
        path.unlink(missing_ok=True)


mutation = st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "zero"]), st.floats(0, 1),
                              st.integers(1, 255)), min_size=1, max_size=4)


def _mutate(data: bytes, ops) -> bytes:
    b = bytearray(data)
    for op, where, val in ops:
        i = min(int(where * len(b)), max(len(b) - 1, 0))
        if not b:
            break
        if op == "flip":
            b[i] ^= val
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b[i:i] = bytes([val]) * (val % 7 + 1)
        else:
            b[i:i + val] = bytes(len(b[i:i + val]))
    return bytes(b)


# --------------------------------------------------------------------------- TFRecord


@pytest.fixture(scope="module")
def shards(small_data):
    v = sorted((small_data / "video").glob("train-*.tfrecord"))[0]
    f = sorted((small_data / "frame").glob("train-*.tfrecord"))[0]
    return {"video": v.read_bytes(), "frame": f.read_bytes(),
            "video_payloads": list(iter_payloads(v))[:4], "frame_payloads": list(iter_payloads(f))[:4]}


def _read_both(path: Path):
    for reader in (lambda p: list(iter_video(p)), lambda p: list(iter_frame(p, max_frames=5))):
        try:
            reader(path)
        except InputError as err:
            assert "\n" not in str(err) and path.name in str(err)


@FUZZ
@given(st.binary(max_size=300))
def test_tfrecord_random_bytes(data):
    p = _tmpfile(data, ".tfrecord")
    try:
        _read_both(p)
    finally:
        p.unlink()


@FUZZ
@given(level=st.sampled_from(["video", "frame"]), ops=mutation)
def test_tfrecord_mutated_file(shards, level, ops):
    p = _tmpfile(_mutate(shards[level], ops), ".tfrecord")
    try:
        _read_both(p)
    finally:
        p.unlink()


@FUZZ
@given(level=st.sampled_from(["video", "frame"]), ops=mutation, which=st.integers(0, 3))
def test_tfrecord_mutated_payload_valid_crc(shards, level, ops, which):
    """Mutate a record's payload and re-frame it with correct CRCs: the protobuf decoders must cope."""
    payloads = list(shards[f"{level}_payloads"])
    payloads[which] = _mutate(payloads[which], ops)
    p = _TMP / f"payload-{os.getpid()}.tfrecord"
    write_tfrecord(p, payloads)
    try:
        _read_both(p)
    finally:
        p.unlink()


# --------------------------------------------------------------------------- CSV

CSV_READERS = [lambda p: read_submission(p, C), lambda p: read_rank_csv(p, C),
               lambda p: read_scored_csv(p, C), lambda p: read_truth_csv(p, C)]
VALID_CSV = ["VideoId,LabelConfidencePairs\nv1,3 0.9 7 0.5\nv2,1 0.8\n",
             "VideoId,Label\nv1,3 7 2\nv2,1\n",
             ',VideoId,True labels,Pred labels,Confidence\n0,v1,[ 3 7],"[3, 7]","[0.9, 0.5]"\n',
             "VideoId,Labels\nv1,3 7\nv2,\n"]
TOKENISED = st.sampled_from([0, 1, 3])  # the readers of VideoId,<numbers> files
csv_text = st.text(alphabet=st.sampled_from(list("VideoId,LabelConfPairs0123456789 .-e\n\r\"[]\ufeffnai")),
                   max_size=200)


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), csv_text.map(str.encode)), reader=TOKENISED)
def test_csv_random_input(data, reader):
    _only_input_errors(CSV_READERS[reader], _tmpfile(data, ".csv"))


@FUZZ
@given(which=TOKENISED, ops=mutation)
def test_csv_mutated_valid_file(which, ops):
    data = _mutate(VALID_CSV[which].encode(), ops)
    _only_input_errors(CSV_READERS[which], _tmpfile(data, ".csv"))


_score_text = st.one_of(st.floats(0, 1).map(lambda x: "%.6f" % x), st.floats(0, 1).map(lambda x: "%g" % x),
                        st.floats(0, 1).map(repr), st.sampled_from(["0", "1", ".5", "1.", "0.25e0", "5E-1"]))
_rows = st.lists(st.lists(st.tuples(st.integers(0, C - 1), _score_text), max_size=5,
                          unique_by=lambda p: p[0]), max_size=12)


@FUZZ
@given(rows=_rows, block=st.integers(16, 200), eol=st.sampled_from(["\n", "\r\n"]),
       gap=st.sampled_from([" ", "  ", "\t"]))
def test_submission_equals_plain_reading(rows, block, eol, gap):
    """The vectorised reader, at any block size, gives what int()/float() give token by token."""
    lines = ["VideoId,LabelConfidencePairs"] + [
        f"v{i}," + gap.join(f"{l}{gap}{s}" for l, s in r) for i, r in enumerate(rows)]
    path = _tmpfile((eol.join(lines) + eol).encode(), ".csv")
    old = csvscan.BLOCK_BYTES
    csvscan.BLOCK_BYTES = block
    try:
        pred = read_submission(path, C)
    finally:
        csvscan.BLOCK_BYTES = old
        path.unlink()
    assert pred.ids.tolist() == [f"v{i}" for i in range(len(rows))]
    for i, r in enumerate(rows):
        want = sorted(((np.float32(float(s)), l) for l, s in r), key=lambda p: -p[0])
        assert pred.scores[i, :len(r)].tolist() == [float(w[0]) for w in want]
        assert sorted(pred.indices[i, :len(r)].tolist()) == sorted(l for l, _ in r)


def test_scored_csv_stray_carriage_return():
    _only_input_errors(CSV_READERS[2], _tmpfile(b"\r\x00", ".csv"))


def _scored_tolerating_known_bug(path: Path) -> None:
    try:
        _only_input_errors(CSV_READERS[2], path)
    except csv.Error:
        pass  # the known bug of test_scored_csv_stray_carriage_return; anything else still fails


@FUZZ
@given(data=st.one_of(st.binary(max_size=200), csv_text.map(str.encode)), ops=mutation)
def test_scored_csv_random_and_mutated(data, ops):
    _scored_tolerating_known_bug(_tmpfile(data, ".csv"))
    _scored_tolerating_known_bug(_tmpfile(_mutate(VALID_CSV[2].encode(), ops), ".csv"))


# --------------------------------------------------------------------------- stores


@pytest.fixture(scope="module")
def store_bytes():
    d = Path(tempfile.mkdtemp(dir=_TMP))
    return {"store": make_store(d / "m.heldout.full.h5", n=40).read_bytes(),
            "labels": make_labels(d / "labels.heldout.h5", ids_of(40)).read_bytes()}


def _read_store_fully(p: Path):
    with open_store(p) as s:
        s.read()
        s.read_rows(np.arange(len(s))[::-1])
        s.verify()


@FUZZ
@given(st.binary(max_size=3000))
def test_store_random_bytes(data):
    _only_input_errors(_read_store_fully, _tmpfile(data, ".h5"))
    _only_input_errors(read_labels, _tmpfile(data, ".h5"))


@FUZZ
@given(ops=mutation)
def test_store_mutated_file(store_bytes, ops):
    _only_input_errors(_read_store_fully, _tmpfile(_mutate(store_bytes["store"], ops), ".h5"))


@FUZZ
@given(ops=mutation)
def test_labels_mutated_file(store_bytes, ops):
    _only_input_errors(read_labels, _tmpfile(_mutate(store_bytes["labels"], ops), ".h5"))


@pytest.mark.slow
@pytest.mark.xfail(reason="known limitation: libhdf5 loops forever reading this corrupt variable-length string "
                          "attribute (found by fuzzing); the reader cannot interrupt the C library", strict=True)
def test_known_hdf5_hang_on_a_corrupt_string_attribute(tmp_path):
    """The fuzzed store (tests/fixtures: this suite's 40-video store, bytes mutated), opened in a subprocess with a timeout."""
    import subprocess
    import sys

    hang = Path(__file__).parents[1] / "fixtures" / "corrupt-vlen-attribute.h5"
    code = f"from predictions.store import open_store\ntry:\n    open_store({str(hang)!r})\nexcept Exception:\n    pass\n"
    try:
        subprocess.run([sys.executable, "-c", code], timeout=10, cwd=Path(__file__).parents[2], check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("open_store did not return within 10 s")
