"""HDF5 predictions store: one file per (model, split, crop). See FORMAT.md.

Writing: :func:`write_store` (one shot) or :class:`StoreWriter` (streaming, row
chunks in id order). Both are atomic and validate every row before it reaches
disk. Reading: :func:`open_store` returns a :class:`StoreReader` that validates
the file's structure on open and every row chunk as it is read; nothing is
loaded whole unless asked (:func:`read_store`, ``StoreReader.read()``).

Every problem with a file is an :class:`~predictions.errors.InputError` whose
message is one line ``"<path>: <problem>"``.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import stat
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .atomic import atomic_path, file_kind
from .errors import InputError
from .types import Predictions, as_ids

FORMAT_VERSION = 1
KIND = "predictions"
CHUNK_ROWS = 4096          # rows per HDF5 chunk (top-k and ids)
CHUNK_BYTES = 4 << 20      # cap on one chunk's size (full layout: fewer rows per chunk)
READ_ROWS = 65536          # default rows per read chunk
_HASH_ROWS = 65536         # ids per block of the checksum's id stream
_SCORE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
#: Longest video id, in UTF-8 bytes. Ids are stored fixed-width (the longest sets the width of
#: every row), so one absurd id would inflate every row in memory: refused on write and on read.
MAX_ID_BYTES = 256
#: Largest label vocabulary (candidate tables are O(num_classes) per video block).
MAX_CLASSES = 1 << 24
#: Largest HDF5 chunk a reader accepts (writers use at most CHUNK_BYTES): reading one row
#: decompresses a whole chunk, so a huge chunk is a memory and time bomb.
MAX_CHUNK_BYTES = 64 << 20
#: Largest JSON attribute (config, extra) a reader decodes.
MAX_ATTR_BYTES = 16 << 20
_REQUIRED_ATTRS = ("format_version", "kind", "model", "split", "crop", "num_classes", "k",
                   "layout", "n", "config", "created", "checksum", "extra")


@dataclass(frozen=True)
class StoreMeta:
    """Metadata of one store (the root attributes, decoded).

    ``k`` is ``None`` for the full layout; ``config`` and ``extra`` are stored
    as JSON strings and decoded here.
    """

    format_version: int
    model: str
    split: str
    crop: str
    num_classes: int
    k: int | None
    layout: str
    n: int
    config: dict
    created: str
    checksum: str
    extra: dict = field(default_factory=dict)


def store_name(model: str, split: str, crop: str = "full", suffix: str = ".h5") -> str:
    """Conventional file name ``<model>.<split>.<crop>.h5``; crop index ``3`` -> ``crop3``."""
    crop = _check_crop(crop)
    return f"{model}.{split}.{'crop' + crop if crop.isdigit() else crop}{suffix}"


# ---------------------------------------------------------------- checksum

class _Checksum:
    """Running checksum: three sha256 streams (ids, indices, scores) combined at the end.

    Because each stream is hashed in row order, writing in chunks and writing
    at once give the same digest. See FORMAT.md for the exact definition.
    """

    def __init__(self, num_classes: int):
        self.num_classes = int(num_classes)
        self.ids = hashlib.sha256()
        self.indices = hashlib.sha256()
        self.scores = hashlib.sha256()

    def update_ids(self, raw: np.ndarray) -> None:
        """``raw``: (m,) fixed-width bytes array (``S``): each id's bytes (trailing NULs are padding,
        as numpy reads them) then ``\n``, without a Python object per id."""
        w = raw.dtype.itemsize
        for a in range(0, len(raw), _HASH_ROWS):
            block = np.ascontiguousarray(raw[a:a + _HASH_ROWS])
            m = len(block)
            buf = np.empty((m, w + 1), np.uint8)
            buf[:, :w] = block.view(np.uint8).reshape(m, w)
            buf[:, w] = ord("\n")
            if w and not buf[:, w - 1].all():  # some id is shorter than the width: drop its padding
                used = buf[:, :w] != 0
                length = np.where(used.any(axis=1), w - np.argmax(used[:, ::-1], axis=1), 0)
                keep = np.arange(w + 1) < length[:, None]
                keep[:, w] = True
                self.ids.update(buf[keep].tobytes())
            else:
                self.ids.update(buf.tobytes())

    def update(self, indices: np.ndarray | None, scores: np.ndarray, score_dtype: np.dtype) -> None:
        if indices is not None:
            self.indices.update(np.ascontiguousarray(indices, dtype="<i4").tobytes())
        self.scores.update(np.ascontiguousarray(scores, dtype=score_dtype).tobytes())

    def hexdigest(self) -> str:
        head = b"yt8m-predictions-v1\n" + b"%d\n" % self.num_classes
        return hashlib.sha256(head + self.ids.digest()
                              + self.indices.digest() + self.scores.digest()).hexdigest()


# ---------------------------------------------------------------- validation

def _check_crop(crop, path=None) -> str:
    crop = crop.item() if isinstance(crop, np.generic) else crop
    crop = str(crop) if isinstance(crop, (int, str)) and not isinstance(crop, bool) else crop
    if isinstance(crop, str) and (crop in ("full", "mean") or (crop.isdigit() and crop.isascii())):
        return crop
    raise InputError(f"crop must be 'full', 'mean' or a crop index like '0', got {_show(crop)}", path)


def _check_name(what: str, value, path=None) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "/\\\n\x00"):
        raise InputError(f"{what} must be a non-empty name without '/', got {_show(value)}", path)
    return value


def check_name(what: str, value, path=None) -> str:
    """A model or split name: non-empty, without '/', '\\', newline or NUL (FORMAT.md); else InputError."""
    return _check_name(what, value, path)


def _show(value) -> str:
    """repr of a value for a message: numpy scalars shown as plain Python values, long ones cut."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _encode_ids(ids: np.ndarray, path) -> np.ndarray:
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


def check_ids(ids, path=None) -> np.ndarray:
    """Validate video ids as a store would (unique, non-empty, no NUL, at most MAX_ID_BYTES bytes).

    Returns them as a unicode array; InputError naming ``path`` otherwise. Lets a
    converter blame its input file rather than the store it was about to write.
    """
    ids = as_ids(ids)
    _check_unique(ids, path, _encode_ids(ids, path))
    return ids


def _decode_ids(raw: np.ndarray, path) -> np.ndarray:
    """(n,) ``S`` bytes -> unicode array (UTF-8)."""
    try:
        return raw.astype("U")
    except UnicodeDecodeError:
        try:
            return np.strings.decode(raw, "utf-8")
        except UnicodeDecodeError:
            raise InputError("video ids are not valid UTF-8", path) from None


def _check_unique(ids: np.ndarray, path, raw: np.ndarray | None = None) -> None:
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


def _checked_ids(raw: np.ndarray, path) -> tuple[np.ndarray, np.ndarray]:
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
    ids = _decode_ids(raw, path)
    _check_unique(ids, path, raw)
    raw.flags.writeable = False
    ids.flags.writeable = False
    alive = [(a, b) for a, b in _SHARED_IDS if a() is not None and b() is not None]
    _SHARED_IDS[:] = alive[-(_SHARED_MAX - 1):] + [(weakref.ref(raw), weakref.ref(ids))]
    return raw, ids


def _check_rows(scores: np.ndarray, indices: np.ndarray | None, num_classes: int,
                start: int, path) -> None:
    """Validate a block of rows ``start ..``: finite, in [0, 1], label ids, sorted top-k rows.

    The common case (nothing wrong) costs a min and a max per array, one comparison of neighbours
    and one row-wise sort of the labels; only a failing block is searched for its first bad row.
    """
    if not len(scores):
        return
    stop = start + len(scores) - 1
    where = f"rows {start}..{stop}"

    def first(mask):
        return start + int(np.flatnonzero(mask.reshape(len(mask), -1).any(axis=1))[0])

    if not (scores.min() >= 0 and scores.max() <= 1):  # NaN fails too: min and max propagate it
        bad = ~np.isfinite(scores)
        if bad.any():
            raise InputError(f"NaN or inf scores in {where} (first at row {first(bad)})", path)
        bad = (scores < 0) | (scores > 1)
        r = first(bad)
        raise InputError(f"scores outside [0, 1] in {where} (row {r}: "
                         f"{float(scores[r - start][bad[r - start]][0])!r})", path)
    if indices is None:
        return
    if not (indices.min() >= 0 and indices.max() < num_classes):
        bad = (indices < 0) | (indices >= num_classes)
        r = first(bad)
        raise InputError(f"label index out of range [0, {num_classes}) in {where} "
                         f"(row {r}: {int(indices[r - start][bad[r - start]][0])})", path)
    if scores.shape[1] > 1:
        bad = scores[:, 1:] > scores[:, :-1]
        if bad.any():
            raise InputError(f"top-k row not sorted by descending score in {where} "
                             f"(first at row {first(bad)})", path)
        srt = np.sort(indices, axis=1)
        bad = srt[:, 1:] == srt[:, :-1]
        if bad.any():
            raise InputError(f"repeated label id within a top-k row in {where} "
                             f"(first at row {first(bad)})", path)


def _json_attr(what: str, value, path) -> str:
    try:
        return json.dumps({} if value is None else value, sort_keys=True, default=str)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} is not JSON-serialisable: {err}", path) from None


def _chunk_rows(n: int, width: int, itemsize: int) -> int:
    return int(max(1, min(n, CHUNK_ROWS, CHUNK_BYTES // max(1, width * itemsize))))


# ---------------------------------------------------------------- writing

class StoreWriter:
    """Stream rows into a new store, in the order of ``ids``; atomic.

    Parameters
    ----------
    path : target file.
    ids : (n,) all video ids, in the row order the chunks will follow.
    num_classes : C.
    k : labels per row for top-k, ``None`` for the full layout.
    model, split, crop : names (crop ``"full"``, ``"mean"`` or an index ``"0"``...).
    config, extra : JSON-serialisable dicts (producer config, free info).
    dtype : ``"float32"`` or ``"float16"`` (full layout only) for stored scores.
    compression : ``None`` (default: fastest to read), ``"gzip"`` (level 1 +
        shuffle, portable, ~40% smaller top-k files, ~2x slower to read) or
        ``"lzf"`` (h5py only), applied to every dataset. ``"auto"``: gzip for
        ids and top-k, none for full scores.
    atomic : ``True`` (default): write a temporary file renamed onto ``path`` on
        success. ``False``: write ``path`` in place, for a caller that already
        writes to a temporary file of its own (:class:`~predictions.atomic.AtomicSet`).
        Nothing touches the disk before the ``with`` block, so such a caller may
        construct the writer first (every check of the ids and options) and set
        ``path`` to its temporary file only once they passed.

    Use as a context manager; ``write(chunk)`` appends the next ``len(chunk)``
    rows and checks that ``chunk.ids`` equal the next expected ids. On a clean
    exit the row count is checked, the checksum stored and the file renamed
    into place; on an exception nothing is left at ``path`` (a previous file
    there stays intact).
    """

    def __init__(self, path, *, ids, num_classes: int, k: int | None, model: str, split: str,
                 crop: str = "full", config: dict | None = None, extra: dict | None = None,
                 dtype: str = "float32", compression: str | None = None, atomic: bool = True):
        self.path = Path(path)
        self.atomic = atomic
        self.ids = as_ids(ids)
        self._raw_ids = _encode_ids(self.ids, self.path)
        _check_unique(self.ids, self.path, self._raw_ids)
        if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= MAX_CLASSES:
            raise InputError(f"num_classes must be an int in [1, {MAX_CLASSES}], got {_show(num_classes)}",
                             self.path)
        self.num_classes = int(num_classes)
        if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= num_classes):
            raise InputError(f"k must be in [1, {num_classes}] or None, got {_show(k)}", self.path)
        self.k = None if k is None else int(k)
        if dtype not in _SCORE_DTYPES:
            raise InputError(f"dtype must be 'float32' or 'float16', got {dtype!r}", self.path)
        if self.k is not None and dtype != "float32":
            raise InputError("top-k scores are stored as float32 only", self.path)
        self.dtype = _SCORE_DTYPES[dtype]
        if compression not in ("auto", "gzip", "lzf", None):
            raise InputError(f"compression must be 'auto', 'gzip', 'lzf' or None, got {compression!r}",
                             self.path)
        self.compression = compression
        self._attrs = dict(
            format_version=FORMAT_VERSION, kind=KIND,
            model=_check_name("model", model, self.path), split=_check_name("split", split, self.path),
            crop=_check_crop(crop, self.path), num_classes=self.num_classes,
            k=0 if self.k is None else self.k, layout="full" if self.k is None else "topk",
            n=len(self.ids), config=_json_attr("config", config, self.path),
            extra=_json_attr("extra", extra, self.path),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        self._stack: contextlib.ExitStack | None = None
        self._file: h5py.File | None = None
        self._pos = 0
        self._sum = _Checksum(self.num_classes)
        self.checksum: str | None = None  # set on a clean exit

    def _filters(self, full_scores: bool) -> dict:
        comp = self.compression
        if comp == "auto":
            comp = None if full_scores else "gzip"
        if comp == "gzip":
            return dict(compression="gzip", compression_opts=1, shuffle=True)
        if comp == "lzf":
            return dict(compression="lzf", shuffle=True)
        return {}

    def __enter__(self) -> "StoreWriter":
        n = len(self.ids)
        self._stack = contextlib.ExitStack()
        try:
            if self.atomic:
                tmp = self._stack.enter_context(atomic_path(self.path))
            else:  # the caller's own temporary file (an AtomicSet member): written in place
                tmp = self.path
            f = self._file = h5py.File(tmp, "w")
            self._stack.callback(f.close)
            f.attrs.update(self._attrs)
            f.attrs["checksum"] = ""
            ids_dt = self._raw_ids.dtype if n else np.dtype("S1")
            chunk = dict(chunks=(_chunk_rows(n, 1, ids_dt.itemsize),), **self._filters(False)) if n else {}
            f.create_dataset("ids", data=self._raw_ids.astype(ids_dt), **chunk)
            width = self.num_classes if self.k is None else self.k
            chunk = {}
            if n:
                chunk = dict(chunks=(_chunk_rows(n, width, self.dtype.itemsize), width),
                             **self._filters(self.k is None))
            f.create_dataset("scores", shape=(n, width), dtype=self.dtype, **chunk)
            if self.k is not None:
                f.create_dataset("indices", shape=(n, width), dtype="<i4", **chunk)
            self._sum.update_ids(self._raw_ids)
        except BaseException as err:
            self._stack.__exit__(type(err), err, err.__traceback__)
            raise
        return self

    def write(self, chunk: Predictions) -> None:
        """Append the next ``len(chunk)`` rows; ``chunk.ids`` must be the next expected ids."""
        if self._file is None:
            raise RuntimeError("StoreWriter.write() outside its 'with' block")
        m, a = len(chunk), self._pos
        if chunk.num_classes != self.num_classes:
            raise InputError(f"chunk has {chunk.num_classes} classes, expected {self.num_classes}", self.path)
        if chunk.k != self.k:
            raise InputError(f"chunk layout {chunk.layout} k={chunk.k}, expected "
                             f"{'full' if self.k is None else 'topk'} k={self.k}", self.path)
        expected = self.ids[a:a + m]
        if len(expected) != m or not np.array_equal(chunk.ids, expected):
            if len(expected) < m:
                raise InputError(f"chunk of {m} rows at row {a} goes past the {len(self.ids)} declared ids",
                                 self.path)
            bad = int(np.flatnonzero(chunk.ids != expected)[0])
            raise InputError(f"chunk ids are not the next expected ids: row {a + bad} is "
                             f"{str(chunk.ids[bad])!r}, expected {str(expected[bad])!r}", self.path)
        scores = np.asarray(chunk.scores)
        if scores.dtype != self.dtype:
            scores = scores.astype(self.dtype)
        indices = None if chunk.indices is None else np.asarray(chunk.indices)
        if indices is not None and not np.issubdtype(indices.dtype, np.integer):
            raise InputError(f"label indices must be integers, got {indices.dtype}", self.path)
        _check_rows(scores, indices, self.num_classes, a, self.path)
        if m:
            self._file["scores"][a:a + m] = scores
            if indices is not None:
                indices = indices.astype("<i4")
                self._file["indices"][a:a + m] = indices
        self._sum.update(indices, scores, self.dtype)
        self._pos += m

    @property
    def rows_written(self) -> int:
        return self._pos

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        try:
            if exc_type is None:
                if self._pos != len(self.ids):
                    raise InputError(f"only {self._pos} of {len(self.ids)} rows were written", self.path)
                self._file.attrs["checksum"] = self._sum.hexdigest()
                self.checksum = self._file.attrs["checksum"]
        except BaseException as err:
            stack.__exit__(type(err), err, err.__traceback__)
            self._file = None
            raise
        self._file = None
        return bool(stack.__exit__(exc_type, exc, tb))


def write_store(path, preds: Predictions, *, model: str, split: str, crop: str = "full",
                config: dict | None = None, extra: dict | None = None, dtype: str = "float32",
                compression: str | None = None) -> Path:
    """Write ``preds`` (top-k or full) to a new store at ``path``, atomically; return the path.

    Rows are validated first (unique ids, finite scores in [0, 1], label ids in
    range, top-k rows sorted by descending score); any problem is an InputError
    and nothing is written. See :class:`StoreWriter` for the parameters.
    """
    with StoreWriter(path, ids=preds.ids, num_classes=preds.num_classes, k=preds.k, model=model,
                     split=split, crop=crop, config=config, extra=extra, dtype=dtype,
                     compression=compression) as w:
        w.write(preds)
    return Path(path)


# ---------------------------------------------------------------- reading

class StoreReader:
    """An open store. Structure is validated on open; rows when read.

    Attributes
    ----------
    path : Path of the file.
    meta : StoreMeta.
    ids : (n,) unicode array of video ids, in row order.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._file = None
        self._stream: _Checksum | None = None   # see begin_verify
        self._stream_pos = 0
        self._stream_state = "off"              # off, running, done, abandoned, verified
        check_input_file(self.path, "a predictions store (.h5)")
        try:
            # No HDF5 chunk cache: readers read whole row ranges, and with dozens of members held
            # open the cache kept every chunk ever read (measured: RSS grew by the data read).
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
        except (OSError, RuntimeError, ValueError) as err:  # HDF5 errors surface as any of these
            raise InputError(f"not a readable HDF5 file ({_oserror(err)})", self.path) from None
        try:
            self._open()
        except InputError:
            self.close()
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            # a corrupt object header or symbol table: h5py raises RuntimeError, KeyError, ...
            self.close()
            raise InputError(f"corrupt HDF5 file ({_oserror(err)})", self.path) from None

    def _open(self) -> None:
        f, p = self._file, self.path
        attrs = f.attrs
        kind = attrs.get("kind")
        if kind == "labels" or ("indptr" in f and "scores" not in f):
            raise InputError("this is a labels file, not a predictions store", p)
        for name in _REQUIRED_ATTRS:
            if name not in attrs:
                raise InputError(f"missing attribute {name!r}", p)
        version = int(attrs["format_version"])
        if version != FORMAT_VERSION:
            raise InputError(f"unknown format version {version} (this package reads version "
                             f"{FORMAT_VERSION})", p)
        if _str(attrs["kind"]) != KIND:
            raise InputError(f"attribute kind is {_str(attrs['kind'])!r}, expected {KIND!r}", p)
        layout = _str(attrs["layout"])
        if layout not in ("topk", "full"):
            raise InputError(f"unknown layout {layout!r}", p)
        for name in ("ids", "scores") + (("indices",) if layout == "topk" else ()):
            check_dataset(f, name, p, whole=name == "ids")
        n, C, k = int(attrs["n"]), int(attrs["num_classes"]), int(attrs["k"])
        ids_ds, scores_ds = f["ids"], f["scores"]
        if not 1 <= C <= MAX_CLASSES:
            raise InputError(f"num_classes attribute is {C}, expected 1 to {MAX_CLASSES}", p)
        if ids_ds.shape != (n,) or ids_ds.dtype.kind != "S":
            raise InputError(f"dataset 'ids' has shape {ids_ds.shape} dtype {ids_ds.dtype}, expected "
                             f"({n},) fixed-length bytes", p)
        check_id_width(ids_ds, p)
        if scores_ds.dtype not in (np.dtype("<f4"), np.dtype("<f2")) or scores_ds.ndim != 2:
            raise InputError(f"dataset 'scores' has dtype {scores_ds.dtype} and {scores_ds.ndim} dims, "
                             f"expected 2-D float32 or float16", p)
        if layout == "topk":
            idx_ds = f["indices"]
            if not 1 <= k <= C:
                raise InputError(f"top-k layout with k={k} and num_classes={C}", p)
            if scores_ds.shape != (n, k) or idx_ds.shape != (n, k):
                raise InputError(f"top-k datasets scores {scores_ds.shape} and indices {idx_ds.shape} "
                                 f"do not match attributes n={n}, k={k}", p)
            if idx_ds.dtype.kind not in "iu":
                raise InputError(f"dataset 'indices' has dtype {idx_ds.dtype}, expected int32", p)
            self._indices = idx_ds
        else:
            if k != 0:
                raise InputError(f"full layout with attribute k={k}, expected 0", p)
            if scores_ds.shape != (n, C):
                raise InputError(f"dataset 'scores' has shape {scores_ds.shape}, expected (n={n}, "
                                 f"num_classes={C})", p)
            self._indices = None
        self._scores = scores_ds
        config, extra = _json_object(f, "config", p), _json_object(f, "extra", p)
        model = _check_name("attribute model", _str(attrs["model"]), p)
        split = _check_name("attribute split", _str(attrs["split"]), p)
        crop = _check_crop(_str(attrs["crop"]), p)
        self.meta = StoreMeta(format_version=version, model=model, split=split, crop=crop, num_classes=C,
                              k=k if layout == "topk" else None, layout=layout, n=n, config=config,
                              created=_str(attrs["created"]), checksum=_str(attrs["checksum"]),
                              extra=extra)
        self._raw_ids, self.ids = _checked_ids(ids_ds[:], p)

    # -- basics
    def __len__(self) -> int:
        return self.meta.n

    @property
    def num_classes(self) -> int:
        return self.meta.num_classes

    @property
    def k(self) -> int | None:
        return self.meta.k

    @property
    def layout(self) -> str:
        return self.meta.layout

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "StoreReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        m = self.meta
        return f"StoreReader({str(self.path)!r}, n={m.n}, layout={m.layout}, k={m.k}, C={m.num_classes})"

    # -- reading rows
    def _raw(self, start: int, stop: int):
        if self._file is None:
            raise InputError("store is closed", self.path)
        try:
            scores = self._scores[start:stop]
            indices = None if self._indices is None else self._indices[start:stop]
        except (OSError, RuntimeError, ValueError, KeyError, TypeError) as err:
            raise InputError(f"corrupt data in rows {start}..{stop - 1} ({_oserror(err)})", self.path) from None
        return scores, indices

    def _block(self, start: int, stop: int):
        scores, indices = self._raw(start, stop)
        _check_rows(scores, indices, self.meta.num_classes, start, self.path)  # before any cast: no wrap-around
        if self._stream_state == "running":
            self._hash_rows(start, scores, indices)
        if indices is not None and indices.dtype != np.int32:
            indices = indices.astype(np.int32)
        return scores, indices

    def read(self, start: int = 0, stop: int | None = None) -> Predictions:
        """Rows ``start:stop`` (validated) as Predictions."""
        n = self.meta.n
        stop = n if stop is None else stop
        if not (0 <= start <= stop <= n):
            raise InputError(f"row range {start}:{stop} outside [0, {n}]", self.path)
        scores, indices = self._block(start, stop)
        return Predictions(self.ids[start:stop], scores, indices, self.meta.num_classes)

    def iter_chunks(self, chunk_rows: int = READ_ROWS) -> Iterator[Predictions]:
        """Consecutive validated chunks of at most ``chunk_rows`` rows."""
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be >= 1")
        for a in range(0, self.meta.n, chunk_rows):
            yield self.read(a, min(a + chunk_rows, self.meta.n))

    def read_rows(self, rows, block_rows: int | None = None) -> Predictions:
        """Rows at positions ``rows`` (any order, repeats allowed), in that order.

        Reads, for each storage block of ``block_rows`` rows (default: the HDF5
        chunk height) that holds a wanted row, the contiguous range covering the
        wanted rows in it; memory is bounded by the result plus one block.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        n = self.meta.n
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise InputError(f"row index out of range [0, {n})", self.path)
        if len(rows) > 1 and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
            return self.read(int(rows[0]), int(rows[-1]) + 1)  # consecutive rows (aligned members): one read
        if block_rows is None:
            block_rows = self._scores.chunks[0] if self._scores.chunks else READ_ROWS
        uniq, inverse = np.unique(rows, return_inverse=True)
        width = self._scores.shape[1]
        scores = np.empty((len(uniq), width), dtype=self._scores.dtype)
        indices = None if self._indices is None else np.empty((len(uniq), width), dtype=np.int32)
        if len(uniq):
            blocks = uniq // block_rows
            cuts = np.flatnonzero(np.diff(blocks)) + 1
            starts = np.concatenate(([0], cuts))
            stops = np.concatenate((cuts, [len(uniq)]))
            for i, j in zip(starts.tolist(), stops.tolist()):
                a, b = int(uniq[i]), int(uniq[j - 1]) + 1
                s, x = self._block(a, b)
                sel = uniq[i:j] - a
                scores[i:j] = s[sel]
                if indices is not None:
                    indices[i:j] = x[sel]
        return Predictions(self.ids[rows], scores[inverse],
                           None if indices is None else indices[inverse], self.meta.num_classes)

    def verify(self, chunk_rows: int = READ_ROWS) -> None:
        """Recompute the checksum over all rows, streaming; InputError if it differs from the stored one.

        Memory: one chunk of ``chunk_rows`` rows. On a mismatch the rows are
        checked too, so that the error names a bad row (NaN, label out of
        range, ...) when there is one, and the mismatch otherwise.
        """
        h = _Checksum(self.meta.num_classes)
        h.update_ids(self._raw_ids)
        for a in range(0, self.meta.n, chunk_rows):
            scores, indices = self._raw(a, min(a + chunk_rows, self.meta.n))
            h.update(indices, scores, self._scores.dtype.newbyteorder("<"))
        if h.hexdigest() != self.meta.checksum:
            for a in range(0, self.meta.n, chunk_rows):  # say what is wrong when a row check can tell
                self._block(a, min(a + chunk_rows, self.meta.n))
        self._compare(h)

    def begin_verify(self) -> None:
        """Verify the checksum on the rows as they are read next, instead of in a pass of its own.

        While the reads go from row 0 to the end in order (a streamed build's chunks), each block is
        hashed as it is read, and the last one completes the check: an InputError if the digest
        differs from the stored one. A read out of that order abandons the streamed check;
        :meth:`end_verify` then verifies in a pass of its own.
        """
        self._stream = _Checksum(self.meta.num_classes)
        self._stream.update_ids(self._raw_ids)
        self._stream_pos = 0
        self._stream_state = "running"
        if self.meta.n == 0:
            self._finish_stream()

    def end_verify(self) -> None:
        """Complete a verification begun by :meth:`begin_verify`: nothing more when the rows were all
        read in order (already compared), else a full :meth:`verify` pass. InputError on a mismatch."""
        state, self._stream = self._stream_state, None
        if state not in ("done", "verified"):
            self._stream_state = "off"
            self.verify()
        self._stream_state = "verified"  # a second end_verify costs nothing

    def _hash_rows(self, start: int, scores, indices) -> None:
        if start != self._stream_pos or not len(scores):
            if len(scores):
                self._stream, self._stream_state = None, "abandoned"  # out of order: end_verify does a pass
            return
        self._stream.update(indices, scores, self._scores.dtype.newbyteorder("<"))
        self._stream_pos += len(scores)
        if self._stream_pos == self.meta.n:
            self._finish_stream()

    def _finish_stream(self) -> None:
        h, self._stream = self._stream, None
        self._stream_state = "done"
        self._compare(h)

    def read_verified(self) -> Predictions:
        """All rows (validated), their checksum checked against the stored one on the same data."""
        pred = self.read()
        h = _Checksum(self.meta.num_classes)
        h.update_ids(self._raw_ids)
        h.update(pred.indices, pred.scores, self._scores.dtype.newbyteorder("<"))
        self._compare(h)
        return pred

    def _compare(self, h: "_Checksum") -> None:
        got = h.hexdigest()
        if got != self.meta.checksum:
            raise InputError(f"checksum mismatch: stored {self.meta.checksum[:12] or 'nothing'}..., "
                             f"computed {got[:12]}... (file modified or corrupt; --no-verify skips "
                             f"this check)", self.path)


def _str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def check_input_file(path: Path, expected: str) -> None:
    """InputError unless ``path`` is a regular file (after symbolic links): never open a FIFO
    (it would block), a device or a directory as a store or labels file."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise InputError(f"dangling symbolic link (to {os.readlink(path)!r})", path) from None
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a directory, expected {expected}", path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {file_kind(st.st_mode)}, expected {expected} (a regular file)", path)


def check_dataset(f: h5py.File, name: str, path, whole: bool = False) -> h5py.Dataset:
    """The dataset ``name`` of ``f``, stored in this file: no soft or external link, no external
    raw-data file, no virtual dataset, chunks of at most MAX_CHUNK_BYTES, every chunk written; with
    ``whole`` (read at once), no compression bomb."""
    link = f.get(name, getlink=True)
    if link is None:
        raise InputError(f"missing dataset {name!r}", path)
    if not isinstance(link, h5py.HardLink):
        raise InputError(f"{name!r} is an HDF5 {type(link).__name__} (to another object or file); "
                         f"a store's datasets must be stored in the file itself", path)
    ds = f[name]
    if not isinstance(ds, h5py.Dataset):
        raise InputError(f"missing dataset {name!r} (found a {type(ds).__name__})", path)
    if ds.is_virtual:
        raise InputError(f"dataset {name!r} is an HDF5 virtual dataset (data in other files); refused",
                         path)
    if ds.id.get_create_plist().get_external_count():
        raise InputError(f"dataset {name!r} keeps its data in external raw files; refused", path)
    if ds.chunks is not None:
        nbytes = int(np.prod(ds.chunks, dtype=np.int64)) * ds.dtype.itemsize
        if nbytes > MAX_CHUNK_BYTES:
            raise InputError(f"dataset {name!r} has chunks of {nbytes / 2**20:.0f} MiB "
                             f"(at most {MAX_CHUNK_BYTES >> 20} MiB)", path)
    if name == "ids":
        check_id_width(ds, path)
    _check_written(ds, name, path, whole)
    return ds


#: A dataset read whole (ids, a labels file) may not inflate more than this from its stored size...
MAX_INFLATION = 100
#: ... once it is this large in memory.
INFLATION_FLOOR = 64 << 20


def _check_written(ds: h5py.Dataset, name: str, path, whole: bool = False) -> None:
    """Every row of ``ds`` is stored: an HDF5 file can declare a billion rows and write none (a few
    KB on disk, gigabytes once read); with ``whole`` (a dataset read at once), refuse also a
    compression ratio over MAX_INFLATION for more than INFLATION_FLOOR bytes."""
    logical = int(ds.size) * ds.dtype.itemsize
    if logical == 0:
        return
    if ds.chunks is None:
        written = ds.id.get_storage_size() >= logical
    else:
        expected = int(np.prod([-(-s // c) for s, c in zip(ds.shape, ds.chunks)], dtype=np.int64))
        got = ds.id.get_num_chunks()
        written = got >= expected
    if not written:
        raise InputError(f"dataset {name!r} is not fully written ({ds.shape} declared): truncated or forged",
                         path)
    if whole and logical > INFLATION_FLOOR and logical > MAX_INFLATION * max(1, ds.id.get_storage_size()):
        raise InputError(f"dataset {name!r} inflates from {ds.id.get_storage_size()} bytes on disk to "
                         f"{logical} in memory (more than {MAX_INFLATION}x): refused", path)


def check_id_width(ids_ds: h5py.Dataset, path) -> None:
    """Refuse an ``ids`` dataset wider than MAX_ID_BYTES before reading it."""
    width = ids_ds.dtype.itemsize
    if width > MAX_ID_BYTES:
        raise InputError(f"dataset 'ids' is {width} bytes wide: video ids are at most {MAX_ID_BYTES} "
                         f"bytes (FORMAT.md)", path)


def _json_object(f: h5py.File, name: str, path) -> dict:
    """The JSON-object attribute ``name`` (config, extra), decoded."""
    text = _str(f.attrs[name])  # costs what the file holds (an attribute is never compressed)
    if len(text) > MAX_ATTR_BYTES:  # but parsing it would cost many times that
        raise InputError(f"attribute {name} is {len(text)} characters long (at most {MAX_ATTR_BYTES})", path)
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        raise InputError(f"attribute {name} is not valid JSON", path) from None
    if not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}.get(
            type(value), "null")
        raise InputError(f"attribute {name} is a JSON {kind}, expected an object", path)
    return value


def _oserror(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def open_store(path) -> StoreReader:
    """Open and validate a store (structure, attributes, unique ids); rows are validated when read."""
    return StoreReader(path)


def read_store(path, *, verify: bool = False) -> Predictions:
    """Whole store as validated Predictions; with ``verify``, its checksum checked too."""
    with open_store(path) as r:
        return r.read_verified() if verify else r.read()


def expand_paths(patterns, suffix: str = ".h5") -> list[Path]:
    """Expand files, directories (every ``*suffix`` inside, sorted) and globs into paths.

    Names starting with ``"."`` (temporary files of atomic writes) are skipped
    in directories and globs. An item matching nothing is an InputError.
    Order is kept: items in the given order, each expanded sorted.

    Nothing that matches is dropped for being unreadable: a dangling symbolic
    link, a FIFO, a device or a directory named ``*suffix`` is returned, and
    the opener (:func:`open_store`, ``read_labels``) refuses it with a reason.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    out: list[Path] = []
    for pat in patterns:
        text = os.fspath(pat)
        p = Path(text)
        if p.is_dir():
            found = _listing(p, suffix)
        elif os.path.lexists(p):
            found = [p]
        elif glob.has_magic(text):
            found = []
            for m in sorted(glob.glob(text)):
                q = Path(m)
                if q.name.startswith("."):
                    continue
                # a directory matched by the glob is expanded, unless it is named like a store
                found += _listing(q, suffix) if q.is_dir() and not q.name.endswith(suffix) else [q]
        else:
            found = []
        if not found:
            raise InputError(f"no {suffix} file matches" if p.is_dir() or glob.has_magic(text)
                             else "file not found", pat)
        out += found
    return out


def _listing(d: Path, suffix: str) -> list[Path]:
    """The non-hidden entries of ``d`` named ``*suffix``, whatever their type, sorted."""
    try:
        names = os.listdir(d)
    except OSError as err:
        raise InputError(f"cannot list the directory ({err.strerror or err})", d) from None
    return sorted(d / n for n in names if n.endswith(suffix) and not n.startswith("."))
