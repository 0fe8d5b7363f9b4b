"""Encode and decode YouTube-8M records (tf.train.Example / SequenceExample) without TensorFlow.

Video level (``tf.train.Example``), one per video::

    id          bytes      e.g. b"02aa"
    labels      int64 list label ids (empty in the official test set)
    mean_rgb    1024 floats, mean of the dequantised frame features
    mean_audio  128 floats

Frame level (``tf.train.SequenceExample``): context ``id`` and ``labels``;
feature lists ``rgb`` and ``audio`` with one bytes feature per frame holding the
quantised uint8 vector (1024 resp. 128 bytes). Decoding dequantises exactly as
the official starter code: ``x * (4 / 255) + (4 / 512 - 2)`` in float32.

Decoders raise ``ValueError`` with a short reason (a missing or malformed
feature, a NaN or inf feature value, an empty or over-long id); the readers in
:mod:`producers.data.readers` wrap it into an InputError naming file and record.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tfrecord import example_pb2

from predictions.store import MAX_ID_BYTES

#: Video-level feature sizes of YouTube-8M.
VIDEO_FEATURE_SIZES = {"mean_rgb": 1024, "mean_audio": 128}
#: Frame-level feature sizes of YouTube-8M.
FRAME_FEATURE_SIZES = {"rgb": 1024, "audio": 128}

#: Official dequantisation range [-2, 2] mapped on 0..255.
QUANT_SCALE = np.float32(4.0 / 255.0)
QUANT_BIAS = np.float32(4.0 / 512.0 - 2.0)
#: Smallest and largest dequantised values (bytes 0 and 255).
DEQUANT_MIN = float(np.float32(0) * QUANT_SCALE + QUANT_BIAS)
DEQUANT_MAX = float(np.float32(255) * QUANT_SCALE + QUANT_BIAS)


@dataclass
class VideoExample:
    """One video-level record.

    id : video id; labels : (L,) int64 label ids (may be empty);
    mean_rgb : (1024,) float32; mean_audio : (128,) float32.
    """

    id: str
    labels: np.ndarray
    mean_rgb: np.ndarray
    mean_audio: np.ndarray


@dataclass
class FrameExample:
    """One frame-level record, dequantised.

    id : video id; labels : (L,) int64; rgb : (T, 1024) float32; audio : (T, 128) float32.
    """

    id: str
    labels: np.ndarray
    rgb: np.ndarray
    audio: np.ndarray

    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return self.rgb.shape[0]


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 array -> float32 array ``q * 4/255 + (4/512 - 2)`` (official formula, float32 maths)."""
    return np.asarray(q, dtype=np.uint8).astype(np.float32) * QUANT_SCALE + QUANT_BIAS


def quantize(x: np.ndarray) -> np.ndarray:
    """float array -> uint8, the inverse of :func:`dequantize` (rounded, clipped to 0..255)."""
    q = np.rint((np.asarray(x, dtype=np.float32) - QUANT_BIAS) / QUANT_SCALE)
    return np.clip(q, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- helpers


def _parse(msg, payload: bytes, what: str):
    try:
        msg.ParseFromString(payload)
    except Exception as err:  # protobuf raises DecodeError, upb sometimes RuntimeError
        raise ValueError(f"not a {what} protobuf ({type(err).__name__})") from None
    return msg


def _names(feature_map) -> str:
    return ", ".join(sorted(feature_map.keys())) or "none"


def _get_id(features) -> str:
    if "id" not in features:
        raise ValueError(f"missing feature 'id' (has: {_names(features)})")
    f = features["id"]
    if f.WhichOneof("kind") != "bytes_list" or len(f.bytes_list.value) != 1:
        raise ValueError("feature 'id' is not a single bytes value")
    raw = f.bytes_list.value[0]
    if not raw:
        raise ValueError("feature 'id' is empty")
    if len(raw) > MAX_ID_BYTES:
        raise ValueError(f"feature 'id' is {len(raw)} bytes long (at most {MAX_ID_BYTES})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("feature 'id' is not valid UTF-8") from None


def _get_labels(features) -> np.ndarray:
    if "labels" not in features:
        return np.zeros(0, dtype=np.int64)
    f = features["labels"]
    kind = f.WhichOneof("kind")
    if kind is None:
        return np.zeros(0, dtype=np.int64)
    if kind != "int64_list":
        raise ValueError(f"feature 'labels' is a {kind}, expected an int64_list")
    labels = np.array(f.int64_list.value, dtype=np.int64)
    if labels.size and labels.min() < 0:
        raise ValueError(f"negative label id {labels.min()}")
    return labels


def _get_floats(features, name: str, size: int) -> np.ndarray:
    f = features[name]
    kind = f.WhichOneof("kind")
    if kind != "float_list":
        raise ValueError(f"feature '{name}' is a {kind}, expected a float_list")
    values = np.array(f.float_list.value, dtype=np.float32)
    if values.size != size:
        raise ValueError(f"feature '{name}' has {values.size} values, expected {size}")
    finite = np.isfinite(values)
    if not finite.all():
        j = int(np.argmin(finite))
        raise ValueError(f"feature '{name}' holds {'NaN' if np.isnan(values[j]) else 'inf'} "
                         f"(value {j} of {size}; {int((~finite).sum())} not finite)")
    return values


# Hand-written protobuf wire format (fast, and byte-identical to
# ``SerializeToString(deterministic=True)``, which sorts map keys; tested).


_SMALL_VARINTS = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if n < 0x80:
        return _SMALL_VARINTS[n]
    if n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, body: bytes) -> bytes:
    """A length-delimited field: tag, length, body."""
    return _varint((number << 3) | 2) + _varint(len(body)) + body


def _bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))


def _int64_feature(values: np.ndarray) -> bytes:
    packed = b"".join(_varint(int(v) & 0xFFFFFFFFFFFFFFFF) for v in values.tolist())
    return _field(3, _field(1, packed) if packed else b"")


def _float_feature(values: np.ndarray) -> bytes:
    raw = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, raw) if raw else b"")


def _features(entries: dict[str, bytes]) -> bytes:
    """A Features message from serialised Feature messages, keys sorted."""
    return b"".join(_field(1, _field(1, key.encode("utf-8")) + _field(2, entries[key]))
                    for key in sorted(entries))


def _context(video_id: str, labels) -> dict[str, bytes]:
    labels = np.asarray(labels, dtype=np.int64).ravel()
    return {"id": _bytes_feature(str(video_id).encode("utf-8")), "labels": _int64_feature(labels)}


def _frame_list(arr: np.ndarray) -> bytes:
    """FeatureList with one bytes feature per row of the (T, D) uint8 ``arr`` (vectorised)."""
    t, d = arr.shape
    prefix = np.frombuffer(_varint(0x0A) + _varint(len(_bytes_feature(b"\0" * d)))
                           + _bytes_feature(b"\0" * d)[:-d], dtype=np.uint8)
    rows = np.empty((t, len(prefix) + d), dtype=np.uint8)
    rows[:, :len(prefix)] = prefix
    rows[:, len(prefix):] = arr
    return rows.tobytes()


# ----------------------------------------------------------------------------- video level


def encode_video(ex: VideoExample) -> bytes:
    """Serialise a :class:`VideoExample` as a tf.train.Example (deterministic bytes)."""
    entries = _context(ex.id, ex.labels)
    entries["mean_rgb"] = _float_feature(np.asarray(ex.mean_rgb, np.float32).ravel())
    entries["mean_audio"] = _float_feature(np.asarray(ex.mean_audio, np.float32).ravel())
    return _field(1, _features(entries))


def decode_video(payload: bytes, feature_sizes: dict[str, int] | None = None) -> VideoExample:
    """Parse a video-level tf.train.Example into a :class:`VideoExample`.

    ``feature_sizes`` gives the expected lengths of ``mean_rgb`` and
    ``mean_audio`` (default 1024 and 128). A missing ``labels`` feature means
    no labels. Raises ValueError with a short reason on any mismatch.
    """
    sizes = dict(VIDEO_FEATURE_SIZES if feature_sizes is None else feature_sizes)
    if set(sizes) != set(VIDEO_FEATURE_SIZES):
        raise ValueError(f"feature_sizes must have the keys mean_rgb and mean_audio, got {sorted(sizes)}")
    msg = _parse(example_pb2.Example(), payload, "tf.train.Example")
    features = msg.features.feature
    missing = [name for name in ("mean_rgb", "mean_audio") if name not in features]
    if missing:
        seq = example_pb2.SequenceExample()
        try:
            seq.ParseFromString(payload)
            lists = sorted(seq.feature_lists.feature_list.keys())
        except Exception:
            lists = []
        if lists:
            raise ValueError(f"looks like a frame-level SequenceExample (feature lists: {', '.join(lists)}), "
                             "not a video-level Example")
        raise ValueError(f"missing feature(s) {', '.join(missing)} (has: {_names(features)})")
    video_id = _get_id(features)
    return VideoExample(video_id, _get_labels(features),
                        _get_floats(features, "mean_rgb", sizes["mean_rgb"]),
                        _get_floats(features, "mean_audio", sizes["mean_audio"]))


def decode_video_id(payload: bytes) -> str:
    """Only the ``id`` of a video- or frame-level record (fast: the frames are not decoded).

    A SequenceExample's context has the same field number as an Example's
    features, so both parse as an Example here.
    """
    msg = _parse(example_pb2.Example(), payload, "tf.train.Example")
    return _get_id(msg.features.feature)


def decode_video_id_labels(payload: bytes) -> tuple[str, np.ndarray]:
    """The ``id`` and ``labels`` of a video- or frame-level record (the frames are not decoded)."""
    msg = _parse(example_pb2.Example(), payload, "tf.train.Example")
    features = msg.features.feature
    return _get_id(features), _get_labels(features)


# ----------------------------------------------------------------------------- frame level


def encode_frame(video_id: str, labels, rgb: np.ndarray, audio: np.ndarray) -> bytes:
    """Serialise quantised frames as a tf.train.SequenceExample (deterministic bytes).

    rgb : (T, 1024) uint8; audio : (T, 128) uint8 (same T); labels : int ids.
    """
    rgb, audio = np.asarray(rgb), np.asarray(audio)
    for name, arr in (("rgb", rgb), ("audio", audio)):
        if arr.dtype != np.uint8 or arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D uint8 array (quantize() first), got {arr.dtype} {arr.shape}")
    if rgb.shape[0] != audio.shape[0]:
        raise ValueError(f"rgb has {rgb.shape[0]} frames but audio has {audio.shape[0]}")
    lists = {"audio": _frame_list(audio), "rgb": _frame_list(rgb)}
    return _field(1, _features(_context(video_id, labels))) + _field(2, _features(lists))


def _frames(feature_list, name: str, size: int, limit: int) -> np.ndarray:
    feats = feature_list.feature
    n = min(len(feats), limit)
    try:
        raw = b"".join([feats[t].bytes_list.value[0] for t in range(n)])
    except IndexError:
        bad = next(t for t in range(n) if len(feats[t].bytes_list.value) == 0)
        raise ValueError(f"frame {bad} of '{name}' holds no bytes") from None
    if len(raw) != n * size:
        bad = next(t for t in range(n) if len(feats[t].bytes_list.value[0]) != size)
        raise ValueError(f"frame {bad} of '{name}' has {len(feats[bad].bytes_list.value[0])} bytes, "
                         f"expected {size}")
    return dequantize(np.frombuffer(raw, dtype=np.uint8).reshape(n, size))


def decode_frame(payload: bytes, max_frames: int | None = None,
                 feature_sizes: dict[str, int] | None = None) -> FrameExample:
    """Parse a frame-level tf.train.SequenceExample into a dequantised :class:`FrameExample`.

    Keeps the first ``max_frames`` frames when given (like the official
    reader). ``feature_sizes`` gives the bytes per frame of ``rgb`` and
    ``audio`` (default 1024 and 128). Raises ValueError with a short reason.
    """
    sizes = dict(FRAME_FEATURE_SIZES if feature_sizes is None else feature_sizes)
    if set(sizes) != set(FRAME_FEATURE_SIZES):
        raise ValueError(f"feature_sizes must have the keys rgb and audio, got {sorted(sizes)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    msg = _parse(example_pb2.SequenceExample(), payload, "tf.train.SequenceExample")
    context = msg.context.feature
    lists = msg.feature_lists.feature_list
    missing = [name for name in ("rgb", "audio") if name not in lists]
    if missing:
        if not lists and ("mean_rgb" in context or "mean_audio" in context):
            raise ValueError(f"looks like a video-level Example (features: {_names(context)}), "
                             "not a frame-level SequenceExample")
        raise ValueError(f"missing feature list(s) {', '.join(missing)} (has: {_names(lists)})")
    video_id = _get_id(context)
    labels = _get_labels(context)
    n_rgb, n_audio = len(lists["rgb"].feature), len(lists["audio"].feature)
    if n_rgb != n_audio:
        raise ValueError(f"'rgb' has {n_rgb} frames but 'audio' has {n_audio}")
    if n_rgb == 0:
        raise ValueError("no frames")
    limit = n_rgb if max_frames is None else max_frames
    return FrameExample(video_id, labels,
                        _frames(lists["rgb"], "rgb", sizes["rgb"], limit),
                        _frames(lists["audio"], "audio", sizes["audio"], limit))
