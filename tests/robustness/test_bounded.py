"""Every size is bounded before it is allocated (issue 25, item 2), and named inputs that are not
regular files are refused before they are opened (item 3).

Memory cases run the reader in a fresh subprocess started by a wrapper process, so that
``RUSAGE_CHILDREN.ru_maxrss`` of the wrapper is the reader's own peak RSS; each must end in a
one-line InputError (exit 1) under :data:`RSS_BOUND`. Before issue 25: a 2 MB id on a middle row
of a member CSV took 2.5 GB before the error, one in a truth CSV 3.5 GB, one 20,000-character id
among 20,000 short rows tried to allocate 3 GB, a 20 MB id 11 GB; a 30-byte vocabulary naming
class 10**9 (or vertical 10**9) 7.5 GB.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import C, REPO, special

#: Peak RSS allowed for a refused hostile file. The interpreter with numpy and h5py imported takes
#: about 60 MB here (measured in test_baseline_rss): the bound is that plus 120 MB for the valid part.
RSS_BOUND = 180 << 20

_RUN = """
import sys
from predictions.errors import InputError
try:
    exec(compile(sys.argv[1], "<case>", "exec"))
except InputError as err:
    print(f"api: error: {err}", file=sys.stderr)
    sys.exit(1)
"""


def _measured(code: str) -> dict:
    """Run ``code`` in a fresh process; its exit code, stderr, seconds and peak RSS (bytes)."""
    wrapper = ("import json, resource, subprocess, sys, time; t = time.perf_counter(); "
               "r = subprocess.run([sys.executable, '-c', sys.argv[1], sys.argv[2]], capture_output=True, text=True); "
               "print(json.dumps({'rc': r.returncode, 'err': r.stderr[-2000:], 'seconds': time.perf_counter() - t, "
               "'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", wrapper, _RUN, code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    return json.loads(out.stdout)


def _refused(code: str, *needles: str) -> dict:
    res = _measured(code)
    lines = res["err"].strip().splitlines()
    print(f"\npeak RSS {res['rss'] / 2**20:.0f} MiB, {res['seconds']:.2f} s: {lines[-1][:160] if lines else ''}")
    assert res["rc"] == 1 and len(lines) == 1 and lines[0].startswith("api: error: "), res
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert res["rss"] < RSS_BOUND, f"peak RSS {res['rss'] / 2**20:.0f} MiB"
    return res


def test_baseline_rss():
    """What the interpreter and the imports cost by themselves (the bound's floor)."""
    res = _measured("import numpy, h5py, predictions.csvio, predictions.vocabulary\n"
                    "raise InputError('baseline')")
    print(f"\nbaseline peak RSS {res['rss'] / 2**20:.0f} MiB")
    assert res["rc"] == 1 and res["rss"] < RSS_BOUND - (100 << 20)


def _member_csv(path: Path, rows: int, long_row: int, long_len: int, header="VideoId,LabelConfidencePairs",
                fields=lambda i: f"{i % C} 0.9 {(i + 1) % C} 0.5") -> Path:
    with open(path, "w") as fh:
        fh.write(header + "\n")
        for i in range(rows):
            vid = "x" * long_len if i == long_row else f"v{i:06d}"
            fh.write(f"{vid},{fields(i)}\n")
    return path


@pytest.mark.parametrize("rows, long_row, long_len", [
    (200_000, 100_000, 2_000_000),     # a 2 MB id on a middle row
    (20_000, 10_000, 20_000),          # one 20,000-character id among 20,000 short rows
    (20_000, 10_000, 4_000_000),       # a 4 MB id (the line bound is 4 MiB: refused as an id)
    (2_000, 1_000, 20_000_000),        # a 20 MB id: a line over MAX_LINE_BYTES, refused before it is scanned
    (20_000, 0, 257),                  # just over the bound, on the first row
])
def test_long_id_in_a_member_csv(tmp_path, rows, long_row, long_len):
    src = _member_csv(tmp_path / "team.heldout.csv", rows, long_row, long_len)
    line = str(long_row + 2)
    res = _refused(f"from predictions.csvio import read_predictions_csv\n"
                   f"read_predictions_csv({str(src)!r}, {C})", str(src), f"line {line}")
    assert ("video id of" in res["err"]) or ("longer than" in res["err"])


def test_long_id_in_a_member_csv_import_into_the_cache(tmp_path):
    src = _member_csv(tmp_path / "team.heldout.csv", 200_000, 100_000, 2_000_000)
    _refused(f"from predictions.csvimport import cached_store\n"
             f"cached_store({str(src)!r}, num_classes={C}, cache_dir={str(tmp_path / 'cache')!r})",
             "line 100002", "video id of 2000000 bytes")
    assert not list((tmp_path / "cache").rglob("*.h5"))


def test_long_id_in_a_rank_csv(tmp_path):
    src = _member_csv(tmp_path / "r.csv", 20_000, 10_000, 2_000_000, header="VideoId,Label",
                      fields=lambda i: f"{i % C} {(i + 1) % C}")
    _refused(f"from predictions.csvio import read_rank_csv\nread_rank_csv({str(src)!r}, {C})", "line 10002")


def test_long_id_in_a_truth_csv(tmp_path):
    src = _member_csv(tmp_path / "truth.csv", 200_000, 100_000, 2_000_000, header="VideoId,Labels",
                      fields=lambda i: f"{i % C}")
    _refused(f"from predictions.csvio import read_truth_csv\nread_truth_csv({str(src)!r}, {C})",
             "line 100002", "video id of 2000000 bytes")


def test_long_id_in_a_scored_csv(tmp_path):
    src = tmp_path / "scored.csv"
    with open(src, "w") as fh:
        fh.write(",VideoId,True labels,Pred labels,Confidence\n")
        for i in range(20_000):
            vid = "x" * 20_000 if i == 10_000 else f"v{i:06d}"
            fh.write(f'{i},{vid},[ 1 2],"[3, 4]","[0.9, 0.5]"\n')
    _refused(f"from predictions.csvio import read_scored_csv\nread_scored_csv({str(src)!r}, {C})",
             "line 10002", "video id of 20000 bytes")


def test_csv_without_line_ends(tmp_path):
    """64 MB of one line (no newline at all): refused after MAX_LINE_BYTES, never read whole."""
    src = tmp_path / "oneline.csv"
    with open(src, "wb") as fh:
        fh.write(b"VideoId,LabelConfidencePairs\nv1,")
        for _ in range(64):
            fh.write(b"1 0.5 " * ((1 << 20) // 6))
    _refused(f"from predictions.csvio import read_submission\nread_submission({str(src)!r}, {C})",
             "line 2", "longer than 4 MiB")


def test_header_without_line_end(tmp_path):
    src = tmp_path / "nohead.csv"
    src.write_bytes(b"V" * (40 << 20))
    _refused(f"from predictions.csvio import read_truth_csv\nread_truth_csv({str(src)!r}, {C})",
             "line 1", "longer than 4 MiB")


@pytest.mark.parametrize("text, needle", [
    ("Index,Name\n1000000000,x\n", "line 2: class index 1000000000 is not below 1000000"),
    ("label_id,label_name\n0,a\n999999999999,b\n", "line 3: class index 999999999999"),
    ("Index,Name,Vertical1\n0,a,1000000000\n", "vertical 1000000000 of class 0"),
    ("Index,Name,Vertical1\n0,a,3\n1,b," + "9" * 5000 + "\n", "vertical 99999999999999999999 of class 1"),
])
def test_vocabulary_with_a_huge_index(tmp_path, text, needle):
    src = tmp_path / "vocabulary.csv"
    src.write_text(text)
    _refused(f"from predictions.vocabulary import load_vocabulary\nload_vocabulary({str(src)!r})", needle)


def test_vocabulary_class_beyond_the_declared_count(tmp_path):
    """--param verticals=<vocabulary> for a 3-class model: class 5000 is refused on its line."""
    src = tmp_path / "vocabulary.csv"
    src.write_text("Index,Name,Vertical1\n0,a,x\n1,b,y\n2,c,x\n5000,d,y\n")
    _refused(f"from predictions.vocabulary import class_verticals\nclass_verticals({str(src)!r}, 3)",
             "line 5: class index 5000 is not below the 3 classes")


def test_verticals_tsv_with_a_huge_vertical(tmp_path):
    voc, tsv = tmp_path / "names.csv", tmp_path / "vertical.tsv"
    voc.write_text("label_id,label_name\n0,a\n1,b\n")
    tsv.write_text("0\t1\n1\t1000000000\n")
    _refused(f"from predictions.vocabulary import load_vocabulary\nload_vocabulary({str(voc)!r}, {str(tsv)!r})",
             "vertical 1000000000 of class 1", str(tsv))


def test_oversized_vocabulary_file(tmp_path):
    src = tmp_path / "vocabulary.csv"
    with open(src, "wb") as fh:
        fh.write(b"Index,Name\n")
        fh.truncate(100 << 20)  # sparse: 100 MiB that cost nothing on disk
    _refused(f"from predictions.vocabulary import load_vocabulary\nload_vocabulary({str(src)!r})",
             "more than any vocabulary CSV")


# --------------------------------------------------------------------------- special files

def _no_hang(code: str, seconds: float = 20) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", _RUN, code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=seconds)


FIFO_READERS = {
    "vocabulary": "from predictions.vocabulary import load_vocabulary\nload_vocabulary(P)",
    "verticals-tsv": "from predictions.vocabulary import load_vocabulary\nload_vocabulary(V, P)",
    "class-verticals": "from predictions.vocabulary import class_verticals\nclass_verticals(P, 3)",
    "truth-csv": f"from predictions.csvio import read_truth_csv\nread_truth_csv(P, {C})",
    "submission-csv": f"from predictions.csvio import read_submission\nread_submission(P, {C})",
    "predictions-csv": f"from predictions.csvio import read_predictions_csv\nread_predictions_csv(P, {C})",
    "scored-csv": f"from predictions.csvio import read_scored_csv\nread_scored_csv(P, {C})",
    "labels": "from predictions.labels import read_labels\nread_labels(P)",
    "store": "from predictions.store import open_store\nopen_store(P)",
    "csv-member": f"from predictions.csvimport import cached_store\ncached_store(P, num_classes={C}, cache_dir=D)",
    "content-digest": "from predictions.csvimport import content_digest\ncontent_digest(P)",
}


@pytest.mark.parametrize("kind", ["fifo", "chardev", "directory"])
@pytest.mark.parametrize("reader", sorted(FIFO_READERS))
def test_special_file_refused_before_opening(tmp_path, reader, kind):
    if kind == "chardev" and os.geteuid() != 0:
        pytest.skip("mknod needs root")
    p = special(kind, tmp_path / "input.csv")
    v = tmp_path / "names.csv"
    v.write_text("label_id,label_name\n0,a\n")
    code = f"P, V, D = {str(p)!r}, {str(v)!r}, {str(tmp_path / 'cache')!r}\n" + FIFO_READERS[reader]
    if reader == "verticals-tsv":
        code = f"P, V, D = {str(v)!r}, {str(p)!r}, None\n" + FIFO_READERS[reader].replace("(V, P)", "(P, V)")
    t0 = time.perf_counter()
    r = _no_hang(code)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert str(p) in lines[0] and ("FIFO" in lines[0] or "device" in lines[0] or "directory" in lines[0]), lines[0]
    assert time.perf_counter() - t0 < 20


# --------------------------------------------------------------------------- TFRecords

def test_training_record_without_a_labels_feature(tmp_path):
    """One record lacking ``labels`` altogether: an error naming the shard and the record (for training)."""
    pytest.importorskip("tfrecord")
    import numpy as np
    from tfrecord import example_pb2

    from predictions.errors import InputError
    from producers.data import readers
    from producers.data.examples import VideoExample, encode_video
    from producers.data.tfrecord_io import write_tfrecord

    rng = np.random.default_rng(0)
    payloads = [encode_video(VideoExample(f"v{i}", np.array([i % C]), rng.random(1024, dtype=np.float32),
                                          rng.random(128, dtype=np.float32))) for i in range(5)]
    msg = example_pb2.Example()
    msg.ParseFromString(payloads[3])
    del msg.features.feature["labels"]
    payloads[3] = msg.SerializeToString()
    shard = tmp_path / "train-0.tfrecord"
    write_tfrecord(shard, payloads)
    for read in (lambda: readers.load_video_level(shard, num_classes=C, require_labels=True),
                 lambda: readers.scan_ids(shard, require_labels=True)):
        with pytest.raises(InputError) as err:
            read()
        assert str(shard) in str(err.value) and "record 3" in str(err.value) and "'labels'" in str(err.value)
    ids, _, labels = readers.load_video_level(shard, num_classes=C)  # not training: a video without labels
    assert len(ids) == 5 and labels.indptr[4] == labels.indptr[3]


def test_fifo_opened_by_nobody_does_not_block_a_thread(tmp_path):
    """The refusal comes from stat, not from open: nothing blocks even with no writer on the FIFO."""
    from predictions.errors import InputError
    from predictions.vocabulary import load_vocabulary
    p = special("fifo", tmp_path / "v.csv")
    box = []

    def run():
        try:
            load_vocabulary(p)
        except InputError as err:
            box.append(str(err))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(5)
    assert box and "FIFO" in box[0]
