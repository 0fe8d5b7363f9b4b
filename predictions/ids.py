"""Video ids: their UTF-8 codec, the length bound and the uniqueness check (stores and labels files).

Ids are stored fixed-width (``S``, the longest sets the width of every row), so
one absurd id would inflate every row in memory: :data:`MAX_ID_BYTES` is
enforced on write and on read. Every problem is a one-line
:class:`~predictions.errors.InputError` naming the file.
"""
from __future__ import annotations

import weakref

import numpy as np

from .errors import InputError

__all__ = ["MAX_ID_BYTES", "encode_ids", "decode_ids", "check_unique", "shared_ids"]

#: Longest video id, in UTF-8 bytes. Ids are stored fixed-width (the longest sets the width of
#: every row), so one absurd id would inflate every row in memory: refused on write and on read.
MAX_ID_BYTES = 256


def encode_ids(ids: np.ndarray, path) -> np.ndarray:
    """(n,) unicode ids -> (n,) ``S`` bytes (UTF-8); rejects empty ids, NUL and ids over MAX_ID_BYTES."""
    if len(ids) and ids.dtype.itemsize // 4 > MAX_ID_BYTES:
        lengths = np.strings.str_len(ids)
        if lengths.max() > MAX_ID_BYTES:
            _too_long(ids, lengths, path)
    if len(ids):
        lengths = np.strings.str_len(ids)
        codes = ids.view(np.uint32).reshape(len(ids), -1)
        if lengths.min() == 0 or ((codes == 0) & (np.arange(codes.shape[1]) < lengths[:, None])).any():
            raise InputError("empty video id or id containing a NUL character", path)
    try:
        raw = ids.astype("S")  # fast path: ASCII ids
    except UnicodeEncodeError:
        raw = np.strings.encode(ids, "utf-8")
    if len(raw) and raw.dtype.itemsize == 0:
        raw = raw.astype("S1")
    if raw.dtype.itemsize > MAX_ID_BYTES:  # short in characters, long in UTF-8 bytes
        _too_long(ids, np.strings.str_len(raw), path, "UTF-8 bytes")
    return raw


def _too_long(ids: np.ndarray, lengths: np.ndarray, path, unit: str = "characters"):
    at = int(np.argmax(lengths))
    raise InputError(f"video id of {int(lengths[at])} {unit} at row {at} (starts "
                     f"{str(ids[at])[:20]!r}); ids are at most {MAX_ID_BYTES} bytes", path)


def decode_ids(raw: np.ndarray, path) -> np.ndarray:
    """(n,) ``S`` bytes -> unicode array (UTF-8)."""
    try:
        return raw.astype("U")
    except UnicodeDecodeError:
        try:
            return np.strings.decode(raw, "utf-8")
        except UnicodeDecodeError:
            raise InputError("video ids are not valid UTF-8", path) from None


def check_unique(ids: np.ndarray, path, raw: np.ndarray | None = None) -> None:
    """InputError naming a duplicate id. With ``raw`` (the stored fixed-width bytes, no NUL inside
    an id) the check sorts 8-byte integer words instead of strings: about 5x faster."""
    if len(ids) < 2:
        return
    if raw is not None and raw.dtype.kind == "S" and raw.dtype.itemsize > 0:
        width = -(-raw.dtype.itemsize // 8) * 8
        words = np.zeros((len(raw), width), dtype=np.uint8)
        words[:, :raw.dtype.itemsize] = np.frombuffer(raw.tobytes(), np.uint8).reshape(len(raw), -1)
        words = words.view(">u8")  # big-endian: integer order = byte order
        if words.shape[1] == 1:  # ids of up to 8 bytes (YouTube-8M's are 4): one integer sort
            srt = np.sort(words[:, 0])
            dup = srt[1:] == srt[:-1]
            at = lambda: int(np.flatnonzero(words[:, 0] == srt[1:][dup][0])[0])  # noqa: E731
        else:
            order = np.lexsort(words.T[::-1])
            srt = words[order]
            dup = (srt[1:] == srt[:-1]).all(axis=1)
            at = lambda: int(order[1:][dup][0])  # noqa: E731
        if dup.any():
            raise InputError(f"duplicate video id {str(ids[at()])!r} ({int(dup.sum())} duplicates)", path)
        return
    s = np.sort(ids)
    dup = s[1:] == s[:-1]
    if dup.any():
        raise InputError(f"duplicate video id {str(s[1:][dup][0])!r} ({int(dup.sum())} duplicates)", path)


#: The id arrays of recently opened stores, each decoded and checked unique: ``(raw, ids)`` weak refs.
_SHARED_IDS: list = []
_SHARED_MAX = 8


def shared_ids(raw: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
    """``(raw, ids)`` of a store's ids dataset: decoded and checked unique, read-only.

    Members of one ensemble usually hold the same videos in the same order: when ``raw`` is
    byte for byte the ids of a store opened earlier (and still open somewhere), that store's
    arrays are returned instead, so 36 members of 700,000 videos hold one copy of the ids and
    decode and check them once (the check holds for equal bytes).
    """
    flat = raw.view(np.uint8) if raw.dtype.itemsize else raw
    for ref_raw, ref_ids in reversed(_SHARED_IDS):
        old, ids = ref_raw(), ref_ids()
        if (old is not None and ids is not None and old.dtype == raw.dtype and old.shape == raw.shape
                and np.array_equal(old.view(np.uint8) if old.dtype.itemsize else old, flat)):
            return old, ids
    ids = decode_ids(raw, path)
    check_unique(ids, path, raw)
    raw.flags.writeable = False
    ids.flags.writeable = False
    alive = [(a, b) for a, b in _SHARED_IDS if a() is not None and b() is not None]
    _SHARED_IDS[:] = alive[-(_SHARED_MAX - 1):] + [(weakref.ref(raw), weakref.ref(ids))]
    return raw, ids
