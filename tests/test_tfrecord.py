"""TFRecord framing, Example/SequenceExample codecs and shard readers (incl. the real YT8M shards)."""
from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tfrecord import example_pb2

from predictions.errors import InputError
from producers.data import (FrameExample, VideoExample, decode_frame, decode_video, dequantize,
                            encode_frame, encode_video, expand_shards, iter_frame, iter_payloads,
                            iter_video, load_video_level, masked_crc, quantize, scan_ids,
                            write_tfrecord)

REAL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "yt8m2018-video-validate"


def _real_shards():
    shards = sorted(REAL.glob("validate*.tfrecord"))
    if not shards:
        pytest.skip(f"real YouTube-8M shards not found in {REAL}")
    return shards


def _video(i: int, labels=(1, 5)) -> VideoExample:
    rgb = np.linspace(-1, 1, 1024, dtype=np.float32) + i
    audio = np.linspace(0, 1, 128, dtype=np.float32) * i
    return VideoExample(f"v{i:03d}", np.asarray(labels, np.int64), rgb, audio)


def _shard(tmp_path: Path, n: int = 4, name: str = "a.tfrecord") -> Path:
    path = tmp_path / name
    write_tfrecord(path, (encode_video(_video(i)) for i in range(n)))
    return path


# ----------------------------------------------------------------------------- framing


def test_masked_crc_known_value():
    # crc32c(b"") == 0 -> masked = 0xa282ead8; crc32c(b"123456789") == 0xe3069283 (standard check value)
    assert masked_crc(b"") == 0xA282EAD8
    crc = 0xE3069283
    assert masked_crc(b"123456789") == ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def test_write_then_read_payloads(tmp_path):
    payloads = [b"", b"x", b"hello" * 1000]
    assert write_tfrecord(tmp_path / "p.tfrecord", payloads) == 3
    raw = (tmp_path / "p.tfrecord").read_bytes()
    assert len(raw) == sum(16 + len(p) for p in payloads)
    assert struct.unpack_from("<Q", raw, 0)[0] == 0
    assert list(iter_payloads(tmp_path / "p.tfrecord")) == payloads


def test_write_is_atomic(tmp_path):
    def bad():
        yield b"ok"
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        write_tfrecord(tmp_path / "x.tfrecord", bad())
    assert list(tmp_path.iterdir()) == []


def test_flipped_payload_byte_names_file_and_record(tmp_path):
    path = _shard(tmp_path)
    raw = bytearray(path.read_bytes())
    rec_len = len(raw) // 4
    raw[2 * rec_len + 12 + 100] ^= 0x01  # inside the payload of record 2
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError) as err:
        list(iter_video(path))
    assert str(err.value) == f"{path}: record 2: data CRC mismatch (corrupt shard)"


def test_flipped_length_byte(tmp_path):
    path = _shard(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 4 + 1] ^= 0x40  # length field of record 1
    path.write_bytes(bytes(raw))
    with pytest.raises(InputError, match=r"record 1: length CRC mismatch"):
        list(iter_payloads(path))


def test_absurd_length(tmp_path):
    length = struct.pack("<Q", 1 << 40)
    path = tmp_path / "absurd.tfrecord"
    path.write_bytes(length + struct.pack("<I", masked_crc(length)) + b"\0" * 20)
    with pytest.raises(InputError, match=r"record 0: absurd record length 1099511627776 bytes"):
        list(iter_payloads(path))


def test_truncated_shard(tmp_path):
    path = _shard(tmp_path)
    raw = path.read_bytes()
    rec_len = len(raw) // 4
    path.write_bytes(raw[: 3 * rec_len + 12 + 100])  # record 3 cut after 100 payload bytes
    with pytest.raises(InputError) as err:
        list(iter_video(path))
    assert str(err.value) == f"{path}: record 3: truncated (expected {rec_len - 12} bytes, got 100)"
    path.write_bytes(raw[: rec_len + 5])
    with pytest.raises(InputError, match=r"record 1: truncated header \(expected 12 bytes, got 5\)"):
        list(iter_payloads(path))


def test_empty_shard(tmp_path):
    path = tmp_path / "empty.tfrecord"
    path.write_bytes(b"")
    assert list(iter_payloads(path)) == []
    with pytest.raises(InputError) as err:
        list(iter_video(path))
    assert str(err.value) == f"{path}: empty shard (no records)"


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(iter_video(tmp_path / "nope.tfrecord"))
    with pytest.raises(InputError, match="cannot read"):
        list(iter_payloads(tmp_path / "nope.tfrecord"))


# ----------------------------------------------------------------------------- codecs


def test_dequantize_known_bytes():
    got = dequantize(np.array([0, 1, 128, 255], np.uint8))
    assert got.dtype == np.float32
    # x * 4/255 + 4/512 - 2
    np.testing.assert_allclose(got, [-1.9921875, -1.9921875 + 4 / 255, 128 * 4 / 255 - 1.9921875, 2.0078125],
                               rtol=0, atol=1e-6)
    q = np.arange(256, dtype=np.uint8)
    assert np.array_equal(quantize(dequantize(q)), q)
    assert np.array_equal(quantize(np.array([-5.0, 0.0, 5.0])), [0, 127, 255])


def test_video_round_trip_and_protobuf_equality():
    ex = _video(3, labels=(7, 1, 3861))
    payload = encode_video(ex)
    got = decode_video(payload)
    assert got.id == "v003" and got.labels.tolist() == [7, 1, 3861]
    assert np.array_equal(got.mean_rgb, ex.mean_rgb) and np.array_equal(got.mean_audio, ex.mean_audio)
    # the hand-written wire format equals protobuf's deterministic serialisation
    msg = example_pb2.Example()
    f = msg.features.feature
    f["id"].bytes_list.value.append(b"v003")
    f["labels"].int64_list.value.extend([7, 1, 3861])
    f["mean_rgb"].float_list.value.extend(ex.mean_rgb.tolist())
    f["mean_audio"].float_list.value.extend(ex.mean_audio.tolist())
    assert msg.SerializeToString(deterministic=True) == payload


def test_video_without_labels():
    msg = example_pb2.Example()
    f = msg.features.feature
    f["id"].bytes_list.value.append(b"t001")
    f["mean_rgb"].float_list.value.extend([0.0] * 1024)
    f["mean_audio"].float_list.value.extend([0.0] * 128)
    assert decode_video(msg.SerializeToString()).labels.size == 0
    assert decode_video(encode_video(_video(1, labels=()))).labels.size == 0


def test_video_wrong_sizes_and_names():
    ex = _video(1)
    bad = VideoExample(ex.id, ex.labels, ex.mean_rgb[:1000], ex.mean_audio)
    with pytest.raises(ValueError, match=r"'mean_rgb' has 1000 values, expected 1024"):
        decode_video(encode_video(bad))
    msg = example_pb2.Example()
    msg.features.feature["id"].bytes_list.value.append(b"x")
    msg.features.feature["rgb"].float_list.value.extend([1.0])
    with pytest.raises(ValueError, match=r"missing feature\(s\) mean_rgb, mean_audio \(has: id, rgb\)"):
        decode_video(msg.SerializeToString())
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        decode_video(b"\xff\xff\xff")


def test_frame_round_trip_and_protobuf_equality():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (7, 1024), dtype=np.uint8)
    audio = rng.integers(0, 256, (7, 128), dtype=np.uint8)
    payload = encode_frame("ab12", [4, 2], rgb, audio)
    ex = decode_frame(payload)
    assert isinstance(ex, FrameExample) and ex.id == "ab12" and ex.labels.tolist() == [4, 2]
    assert ex.num_frames == 7 and ex.rgb.dtype == np.float32
    assert np.array_equal(ex.rgb, dequantize(rgb)) and np.array_equal(ex.audio, dequantize(audio))
    assert decode_frame(payload, max_frames=3).rgb.shape == (3, 1024)
    msg = example_pb2.SequenceExample()
    msg.context.feature["id"].bytes_list.value.append(b"ab12")
    msg.context.feature["labels"].int64_list.value.extend([4, 2])
    for name, arr in (("rgb", rgb), ("audio", audio)):
        for row in arr:
            msg.feature_lists.feature_list[name].feature.add().bytes_list.value.append(row.tobytes())
    assert msg.SerializeToString(deterministic=True) == payload
    # the frame bytes are exactly the uint8 vectors; a known byte dequantises by the formula
    rgb0 = np.zeros((1, 1024), np.uint8)
    rgb0[0, 5] = 51
    got = decode_frame(encode_frame("z", [], rgb0, np.zeros((1, 128), np.uint8)))
    assert got.rgb[0, 5] == pytest.approx(51 * 4 / 255 + 4 / 512 - 2, abs=1e-6)
    assert got.labels.size == 0


def test_frame_vs_video_mismatch_messages(tmp_path):
    video = encode_video(_video(0))
    frame = encode_frame("f", [1], np.zeros((2, 1024), np.uint8), np.zeros((2, 128), np.uint8))
    with pytest.raises(ValueError, match="looks like a frame-level SequenceExample"):
        decode_video(frame)
    with pytest.raises(ValueError, match="looks like a video-level Example"):
        decode_frame(video)
    write_tfrecord(tmp_path / "f.tfrecord", [frame])
    write_tfrecord(tmp_path / "v.tfrecord", [video, video])
    with pytest.raises(InputError, match=r"f.tfrecord: record 0: looks like a frame-level"):
        list(iter_video(tmp_path / "f.tfrecord"))
    with pytest.raises(InputError, match=r"v.tfrecord: record 0: looks like a video-level"):
        list(iter_frame(tmp_path / "v.tfrecord"))


def test_frame_bad_frames():
    with pytest.raises(ValueError, match="'rgb' has 2 frames but 'audio' has 1"):
        decode_frame(_frame_msg(rgb=[b"\0" * 1024] * 2, audio=[b"\0" * 128]))
    with pytest.raises(ValueError, match="frame 1 of 'rgb' has 10 bytes, expected 1024"):
        decode_frame(_frame_msg(rgb=[b"\0" * 1024, b"\0" * 10], audio=[b"\0" * 128] * 2))
    with pytest.raises(ValueError, match="no frames"):
        decode_frame(_frame_msg(rgb=[], audio=[]))


def _frame_msg(rgb, audio) -> bytes:
    msg = example_pb2.SequenceExample()
    msg.context.feature["id"].bytes_list.value.append(b"x")
    for name, frames in (("rgb", rgb), ("audio", audio)):
        fl = msg.feature_lists.feature_list[name]
        for f in frames:
            fl.feature.add().bytes_list.value.append(f)
    return msg.SerializeToString()


# ----------------------------------------------------------------------------- readers


def test_expand_shards(tmp_path):
    a, b = _shard(tmp_path, 1, "b.tfrecord"), _shard(tmp_path, 1, "a.tfrecord")
    (tmp_path / "notes.txt").write_text("x")
    assert expand_shards(tmp_path) == [b, a]
    assert expand_shards(str(tmp_path / "*.tfrecord")) == [b, a]
    assert expand_shards([a, str(b), tmp_path]) == [b, a]
    with pytest.raises(InputError, match="pattern matches no files"):
        expand_shards(str(tmp_path / "z*.tfrecord"))
    (tmp_path / "sub").mkdir()
    with pytest.raises(InputError, match="no \\*.tfrecord"):
        expand_shards(tmp_path / "sub")
    with pytest.raises(InputError, match="no TFRecord shards"):
        expand_shards([])


def test_load_video_level(tmp_path):
    write_tfrecord(tmp_path / "a.tfrecord", [encode_video(_video(i, labels=(2, 1, 2))) for i in range(3)])
    write_tfrecord(tmp_path / "b.tfrecord", [encode_video(_video(i, labels=())) for i in range(3, 5)])
    ids, X, labels = load_video_level(tmp_path)
    assert ids.tolist() == ["v000", "v001", "v002", "v003", "v004"]
    assert X.shape == (5, 1152) and X.dtype == np.float32
    assert np.array_equal(X[1, :1024], _video(1).mean_rgb) and np.array_equal(X[1, 1024:], _video(1).mean_audio)
    assert labels.indptr.tolist() == [0, 2, 4, 6, 6, 6] and labels.lists()[0].tolist() == [1, 2]
    assert labels.num_classes == 3862
    ids2, X2, labels2 = load_video_level(tmp_path, ids={"v004", "v001", "zzzz"}, num_classes=10)
    assert ids2.tolist() == ["v001", "v004"] and np.array_equal(X2, X[[1, 4]])
    assert labels2.counts().tolist() == [2, 0] and labels2.num_classes == 10
    assert scan_ids(tmp_path).tolist() == ids.tolist()
    with pytest.raises(InputError, match=r"b.tfrecord: record 0: label id 3 out of range \[0, 3\)") as err:
        write_tfrecord(tmp_path / "b.tfrecord", [encode_video(_video(9, labels=(3,)))])
        load_video_level(tmp_path, num_classes=3)
    assert "a.tfrecord" not in str(err.value)


def test_duplicate_ids_across_shards(tmp_path):
    write_tfrecord(tmp_path / "a.tfrecord", [encode_video(_video(i)) for i in range(3)])
    write_tfrecord(tmp_path / "b.tfrecord", [encode_video(_video(7)), encode_video(_video(1))])
    with pytest.raises(InputError) as err:
        load_video_level(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'b.tfrecord'}: record 1: duplicate video id 'v001'")
    assert "a.tfrecord" in str(err.value)


def test_progress_bar(tmp_path, capsys):
    path = _shard(tmp_path, 3)
    assert len(list(iter_video(path, progress=True))) == 3
    assert "video" in capsys.readouterr().err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_mutations_only_raise_input_error(tmp_path_factory, data):
    """Any byte-level damage to a valid shard gives InputError (or, if harmless, records)."""
    good = _shard(tmp_path_factory.mktemp("m"), 3)
    raw = bytearray(good.read_bytes())
    ops = data.draw(st.lists(st.tuples(st.sampled_from(["flip", "cut", "insert", "delete"]),
                                       st.integers(0, len(raw) - 1), st.integers(1, 255)),
                             min_size=1, max_size=4))
    for op, pos, val in ops:
        pos %= max(len(raw), 1)
        if op == "flip" and raw:
            raw[pos] ^= val
        elif op == "cut":
            del raw[pos:]
        elif op == "insert":
            raw[pos:pos] = bytes([val]) * (val % 7 + 1)
        elif op == "delete":
            del raw[pos:pos + val]
    good.write_bytes(bytes(raw))
    try:
        out = list(iter_video(good))
    except InputError as err:
        assert "\n" not in str(err) and str(good) in str(err)
    else:
        assert all(len(ex.mean_rgb) == 1024 for ex in out)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_payload_mutations_with_valid_crc(tmp_path_factory, data):
    """Damage behind a valid CRC still reaches the decoders: InputError only, never a traceback."""
    payload = bytearray(data.draw(st.sampled_from([
        encode_video(_video(1)),
        encode_frame("f", [1, 2], np.full((2, 1024), 9, np.uint8), np.full((2, 128), 9, np.uint8))])))
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(payload) - 1))
        payload[pos] = data.draw(st.integers(0, 255))
    path = tmp_path_factory.mktemp("p") / "x.tfrecord"
    write_tfrecord(path, [bytes(payload)])
    for reader in (iter_video, iter_frame, scan_ids):
        try:
            list(reader(path))
        except InputError as err:
            assert str(err).startswith(f"{path}: record 0: ")


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_two_shards():
    shards = _real_shards()[:2]
    out = list(iter_video(shards))
    assert 250 <= len(out) <= 700
    counts = [sum(1 for _ in iter_payloads(s)) for s in shards]
    assert all(250 <= c <= 350 for c in counts) and sum(counts) == len(out)
    for ex in out:
        assert len(ex.id) == 4 and ex.mean_rgb.shape == (1024,) and ex.mean_audio.shape == (128,)
        assert ex.labels.size >= 1 and ex.labels.max() < 3862
        assert ex.mean_rgb.dtype == np.float32
    ids, X, labels = load_video_level(shards)
    assert len(set(ids.tolist())) == len(ids) == len(out)
    assert -2.0 < X.min() and X.max() < 2.01 and 2.5 < labels.counts().mean() < 3.5


@pytest.mark.realdata
def test_real_scan_ids_all_shards():
    shards = _real_shards()
    if len(shards) != 50:
        pytest.skip(f"expected the 50 copied validate shards, found {len(shards)}")
    start = time.perf_counter()
    ids = scan_ids(shards)
    assert len(ids) == 14547 and len(np.unique(ids)) == 14547
    assert time.perf_counter() - start < 10


@pytest.mark.realdata
def test_real_load_all_shards():
    """All 50 shards: 14,547 unique ids, labels < 3862 (about 1.4 s, ~10,000 records/s)."""
    shards = _real_shards()
    if len(shards) != 50:
        pytest.skip(f"expected the 50 copied validate shards, found {len(shards)}")
    start = time.perf_counter()
    ids, X, labels = load_video_level(shards)
    elapsed = time.perf_counter() - start
    assert len(ids) == 14547 and len(np.unique(ids)) == 14547 and X.shape == (14547, 1152)
    assert labels.indices.max() < 3862 and abs(labels.counts().mean() - 3.02) < 0.01
    print(f"read {len(ids)} records in {elapsed:.2f} s ({len(ids) / elapsed:.0f} records/s)")
