"""Bad data is refused, never silently used.

Kind "bad data" of the robustness table:

* a store whose data no longer matches its checksum (a flipped bit on disk, an edited label, score
  or id that still passes every row check) fails ``ensemble build``, ``evaluate`` and ``submit``:
  ``--verify`` is the default (streaming); ``--no-verify`` is the documented way round it;
* stores that break FORMAT.md: a ``model``/``split`` attribute with ``/``, ``config``/``extra`` that
  are not JSON objects, datasets that live elsewhere (HDF5 external or soft links, external raw
  files, virtual datasets); the same for labels files;
* TFRecord shards with NaN or inf features (named by shard and record, before any training), an
  empty or over-long video id, training shards in which no video has a label;
* a CSV with a header and no rows (the error names the CSV, not the store it would have written).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from ensembler.cli import main as ensemble
from predictions.errors import InputError
from predictions.store import open_store, read_store
from producers.cli import main as produce
from producers.data.examples import VideoExample, encode_video
from producers.data.tfrecord_io import iter_payloads, write_tfrecord

from .conftest import C, assert_clear_error, cli, ids_of, job_toml, make_labels, make_store, snapshot

# =========================================================================== checksum (--verify)


def _edit(name, fn):
    def mutate(p: Path):
        with h5py.File(p, "r+") as f:
            a = f[name][:]
            fn(a)
            f[name][:] = a
    return mutate


def _other_label(a):
    row = a[3]
    a[3, 1] = next(x for x in range(C) if x not in row)   # still distinct, still in range


def _nudge_top_score(a):
    a[5, 0] = np.nextafter(a[5, 0], np.float32(2))           # the row stays sorted and in [0, 1]


def _rename_id(p: Path):
    with h5py.File(p, "r+") as f:
        ids = f["ids"][:]
        ids[2] = b"z" + ids[2][1:]                           # still unique, same width
        f["ids"][:] = ids


def _flip_bit_on_disk(p: Path):
    """Flip the lowest bit of a stored score byte in the file itself (as a bad disk would)."""
    with h5py.File(p, "r") as f:
        ds = f["scores"]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
        at = offset + (6 * ds.shape[1] + 0) * 4                # row 6, column 0, lowest byte (little-endian)
    with open(p, "r+b") as fh:
        fh.seek(at)
        b = fh.read(1)
        fh.seek(at)
        fh.write(bytes([b[0] ^ 0x01]))


def _set_checksum(value):
    def mutate(p: Path):
        with h5py.File(p, "r+") as f:
            f.attrs["checksum"] = value
    return mutate


CHECKSUM_CASES = {
    "label-replaced-by-another-valid-one": _edit("indices", _other_label),
    "score-changed-by-one-ulp": _edit("scores", _nudge_top_score),
    "video-id-renamed": _rename_id,
    "bit-flipped-on-disk": _flip_bit_on_disk,
    "checksum-attribute-edited": _set_checksum("0" * 64),
    "checksum-attribute-empty": _set_checksum(""),
}


def _members(tmp_path: Path):
    d = tmp_path / "preds"
    make_store(d / "m0.heldout.full.h5", model="m0", seed=1)
    m1 = make_store(d / "m1.heldout.full.h5", model="m1", seed=2)
    make_labels(tmp_path / "labels" / "labels.heldout.h5", ids_of(30))
    return d, m1, tmp_path / "labels"


def _argv(command, d, m1, labels, out, *extra):
    if command == "build":
        return ["build", "--members", d, "--labels", labels, "--out", out, "--folds", 2, "--quiet", *extra]
    if command == "evaluate":
        return ["evaluate", "--members", d, "--labels", labels, "--quiet", *extra]
    return ["submit", m1, "--out", out / "sub.csv", "--quiet", "--any-split", *extra]


@pytest.mark.parametrize("command", ["build", "evaluate", "submit"])
@pytest.mark.parametrize("case", sorted(CHECKSUM_CASES))
def test_data_not_matching_its_checksum_is_refused(case, command, tmp_path, capsys):
    d, m1, labels = _members(tmp_path)
    CHECKSUM_CASES[case](m1)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, _argv(command, d, m1, labels, out), capsys)
    assert_clear_error(rc, err, "ensemble", "m1.heldout.full.h5", "checksum mismatch", "--no-verify")
    assert snapshot(tmp_path) == before
    # the escape hatch is explicit: --no-verify uses the data as it is
    rc, err = cli(ensemble, _argv(command, d, m1, labels, out, "--no-verify"), capsys)
    if case == "video-id-renamed" and command != "submit":
        assert_clear_error(rc, err, "ensemble", "labels.heldout.h5", "no entry", "z0000")  # the next check
    else:
        assert rc == 0, err


def test_verify_is_streaming_and_checks_every_chunk(tmp_path):
    """A change in the last chunk is caught with any chunk size (the digest is fed row by row)."""
    p = make_store(tmp_path / "m.heldout.full.h5", n=1000)
    _edit("scores", lambda a: a.__setitem__((999, 0), np.nextafter(a[999, 0], np.float32(2))))(p)
    for rows in (1, 7, 999, 1000, 65536):
        with open_store(p) as s, pytest.raises(InputError, match="checksum mismatch"):
            s.verify(chunk_rows=rows)
    with pytest.raises(InputError, match="checksum mismatch"):
        read_store(p, verify=True)
    assert len(read_store(p)) == 1000  # unverified reading still works


# =========================================================================== FORMAT.md violations


def _attr(name, value):
    def mutate(p: Path):
        with h5py.File(p, "r+") as f:
            f.attrs[name] = value
    return mutate


def _external_link(name):
    def mutate(p: Path):
        other = p.with_name("elsewhere.bin")
        with h5py.File(p, "r") as f, h5py.File(other, "w") as g:
            g.create_dataset(name, data=f[name][:])
        with h5py.File(p, "r+") as f:
            del f[name]
            f[name] = h5py.ExternalLink(str(other), name)
    return mutate


def _soft_link(name):
    def mutate(p: Path):
        with h5py.File(p, "r+") as f:
            f.move(name, "hidden_" + name)
            f[name] = h5py.SoftLink("/hidden_" + name)
    return mutate


def _external_raw(name):
    def mutate(p: Path):
        raw = p.with_name("raw.bin")
        with h5py.File(p, "r+") as f:
            data = f[name][:]
            raw.write_bytes(np.ascontiguousarray(data).tobytes())
            del f[name]
            f.create_dataset(name, shape=data.shape, dtype=data.dtype, external=[(str(raw), 0, data.nbytes)])
    return mutate


def _virtual(name):
    def mutate(p: Path):
        other = p.with_name("source.h5")
        with h5py.File(p, "r") as f, h5py.File(other, "w") as g:
            g.create_dataset(name, data=f[name][:])
            shape, dtype = f[name].shape, f[name].dtype
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(str(other), name, shape=shape)
        with h5py.File(p, "r+") as f:
            del f[name]
            f.create_virtual_dataset(name, layout)
    return mutate


def _indices_uint64(p: Path):
    """indices stored as uint64 holding 2^32 + 3: a cast to int32 would read label 3."""
    with h5py.File(p, "r+") as f:
        a = f["indices"][:].astype(np.uint64)
        a[4, 0] = 2**32 + 3
        del f["indices"]
        f.create_dataset("indices", data=a)


FORMAT_CASES = {
    "indices-uint64-beyond-int32": (_indices_uint64, "out of range"),
    "model-with-slash": (_attr("model", "a/b"), "model"),
    "model-empty": (_attr("model", ""), "model"),
    "split-with-slash": (_attr("split", "../x"), "split"),
    "extra-json-array": (_attr("extra", "[1, 2]"), "JSON array, expected an object"),
    "extra-json-number": (_attr("extra", "5"), "JSON number"),
    "extra-json-null": (_attr("extra", "null"), "JSON null"),
    "config-json-string": (_attr("config", '"x"'), "JSON string"),
    "config-not-json": (_attr("config", "{oops"), "not valid JSON"),
    "ids-external-link": (_external_link("ids"), "ExternalLink"),
    "scores-external-link": (_external_link("scores"), "ExternalLink"),
    "indices-external-link": (_external_link("indices"), "ExternalLink"),
    "scores-soft-link": (_soft_link("scores"), "SoftLink"),
    "scores-external-raw-file": (_external_raw("scores"), "external raw files"),
    "indices-virtual-dataset": (_virtual("indices"), "virtual dataset"),
}


@pytest.mark.parametrize("command", ["build", "evaluate", "submit"])
@pytest.mark.parametrize("case", sorted(FORMAT_CASES))
def test_store_breaking_the_format_is_refused(case, command, tmp_path, capsys):
    mutate, needle = FORMAT_CASES[case]
    d, m1, labels = _members(tmp_path)
    mutate(m1)
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, _argv(command, d, m1, labels, out, "--no-verify"), capsys)
    assert_clear_error(rc, err, "ensemble", "m1.heldout.full.h5", needle)
    assert snapshot(tmp_path) == before


LABELS_FORMAT_CASES = {
    "ids-external-link": (_external_link("ids"), "ExternalLink"),
    "indices-external-link": (_external_link("indices"), "ExternalLink"),
    "indptr-soft-link": (_soft_link("indptr"), "SoftLink"),
    "indices-external-raw-file": (_external_raw("indices"), "external raw files"),
    "split-with-slash": (_attr("split", "a/b"), "split"),
}


@pytest.mark.parametrize("command", ["build", "evaluate"])
@pytest.mark.parametrize("case", sorted(LABELS_FORMAT_CASES))
def test_labels_file_breaking_the_format_is_refused(case, command, tmp_path, capsys):
    mutate, needle = LABELS_FORMAT_CASES[case]
    d, m1, labels = _members(tmp_path)
    mutate(labels / "labels.heldout.h5")
    before = snapshot(tmp_path)
    rc, err = cli(ensemble, _argv(command, d, m1, labels, tmp_path / "out"), capsys)
    assert_clear_error(rc, err, "ensemble", "labels.heldout.h5", needle)
    assert snapshot(tmp_path) == before


# =========================================================================== TFRecord features and labels


def _record(vid="bad1", labels=(1,), rgb=None, audio=None) -> bytes:
    rgb = np.zeros(1024, np.float32) if rgb is None else rgb
    audio = np.zeros(128, np.float32) if audio is None else audio
    return encode_video(VideoExample(vid, np.array(labels, np.int64), rgb, audio))


def _with_value(where: str, j: int, value: float) -> bytes:
    arr = np.zeros(1024 if where == "rgb" else 128, np.float32)
    arr[j] = value
    return _record(rgb=arr) if where == "rgb" else _record(audio=arr)


FEATURE_CASES = {
    "nan-in-mean_rgb": (_with_value("rgb", 17, np.nan), "mean_rgb", "NaN"),
    "inf-in-mean_rgb": (_with_value("rgb", 1023, np.inf), "mean_rgb", "inf"),
    "minus-inf-in-mean_audio": (_with_value("audio", 0, -np.inf), "mean_audio", "inf"),
    "nan-in-mean_audio": (_with_value("audio", 127, np.nan), "mean_audio", "NaN"),
    "empty-video-id": (_record(vid=""), "id", "empty"),
    "video-id-of-300-bytes": (_record(vid="v" * 300), "id", "300 bytes"),
}


def _shards_with(small_data: Path, dst: Path, payload: bytes, kind: str = "train") -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for p in sorted((small_data / "video").glob(f"{kind}-*.tfrecord")):
        shutil.copy(p, dst / p.name)
    first = sorted(dst.glob(f"{kind}-*.tfrecord"))[0]
    write_tfrecord(first, list(iter_payloads(first))[:3] + [payload] + list(iter_payloads(first))[3:])
    return first


@pytest.mark.parametrize("kind", ["train", "test"])
@pytest.mark.parametrize("case", sorted(FEATURE_CASES))
def test_bad_feature_values_name_shard_and_record(case, kind, small_data, tmp_path):
    from producers.data.readers import load_video_level

    payload, feature, needle = FEATURE_CASES[case]
    shard = _shards_with(small_data, tmp_path / "shards", payload, kind)
    with pytest.raises(InputError) as err:
        load_video_level(tmp_path / "shards" / f"{kind}-*.tfrecord", num_classes=C)
    msg = str(err.value)
    assert shard.name in msg and "record 3" in msg and feature in msg and needle in msg, msg


@pytest.mark.parametrize("case", ["nan-in-mean_rgb", "inf-in-mean_rgb"])
def test_produce_train_names_the_nan_record_before_training(case, small_data, tmp_path, capsys):
    payload, feature, needle = FEATURE_CASES[case]
    shard = _shards_with(small_data, tmp_path / "shards", payload)
    cfg = job_toml(tmp_path / "job.toml", "shards/train-*.tfrecord")
    rc, err = cli(produce, ["train", cfg, "--quiet"], capsys)
    assert_clear_error(rc, err, "produce", shard.name, "record 3", feature, needle)
    assert "loss" not in err
    assert not list(tmp_path.rglob("*.pt"))


def _unlabelled_copy(src: Path, dst: Path):
    payloads = []
    from producers.data.examples import decode_video

    for pl in iter_payloads(src):
        ex = decode_video(pl)
        payloads.append(encode_video(VideoExample(ex.id, np.zeros(0, np.int64), ex.mean_rgb, ex.mean_audio)))
    write_tfrecord(dst, payloads)


UNLABELLED_CASES = ["all-shards-unlabelled", "one-shard-unlabelled", "test-shards-in-the-train-glob"]


@pytest.mark.parametrize("reader", ["load_video_level", "scan_ids"])
@pytest.mark.parametrize("case", UNLABELLED_CASES)
def test_training_shards_without_labels_are_refused(case, reader, small_data, tmp_path):
    from producers.data import readers

    d = tmp_path / "shards"
    d.mkdir()
    train = sorted((small_data / "video").glob("train-*.tfrecord"))
    if case == "test-shards-in-the-train-glob":
        for p in train + sorted((small_data / "video").glob("test-*.tfrecord")):
            shutil.copy(p, d / p.name)
        bad = sorted(d.glob("test-*.tfrecord"))[0]
    else:
        for i, p in enumerate(train):
            if case == "all-shards-unlabelled" or i == 1:
                _unlabelled_copy(p, d / p.name)
            else:
                shutil.copy(p, d / p.name)
        bad = sorted(d.glob("train-*.tfrecord"))[0 if case == "all-shards-unlabelled" else 1]
    read = (lambda **kw: readers.load_video_level(d, num_classes=C, **kw)) if reader == "load_video_level" \
        else (lambda **kw: readers.scan_ids(d, **kw))
    with pytest.raises(InputError) as err:
        read(require_labels=True)
    assert bad.name in str(err.value) and "has a label" in str(err.value)
    read()  # test shards legitimately have no labels: without require_labels they are read


# =========================================================================== CSV


@pytest.mark.parametrize("variant", ["lf", "crlf", "bom", "bom+crlf", "no-newline", "blank-lines-after"])
@pytest.mark.parametrize("header", ["VideoId,LabelConfidencePairs", "VideoId,Label"])
def test_header_only_csv_import_names_the_csv(header, variant, tmp_path, capsys):
    text = header + {"lf": "\n", "crlf": "\r\n", "bom": "\n", "bom+crlf": "\r\n", "no-newline": "",
                     "blank-lines-after": "\n\n\n"}[variant]
    data = (b"\xef\xbb\xbf" if "bom" in variant else b"") + text.encode()
    src = tmp_path / "team.csv"
    src.write_bytes(data)
    out = tmp_path / "out"
    rc, err = cli(ensemble, ["import", src, "--model", "team", "--split", "test", "--classes", C, "--out", out,
                             "--quiet"], capsys)
    line = assert_clear_error(rc, err, "ensemble", "team.csv", "no video rows")
    assert "team.test.full.h5" not in line
    assert not out.exists()
