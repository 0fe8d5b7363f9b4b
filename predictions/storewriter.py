"""Writing predictions stores: :class:`StoreWriter` (streaming) and :func:`write_store` (one shot).

Both are atomic (temporary file, then rename) and validate every row before it
reaches disk. See FORMAT.md and :mod:`predictions.storeformat`.
"""
from __future__ import annotations

import contextlib
import json
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path, check_free, release_reserve, reserve_space, target_of_temp, why
from .errors import InputError
from .ids import check_unique, encode_ids
from .paths import as_path
from .storeformat import (FORMAT_VERSION, KIND, MAX_CLASSES, SCORE_DTYPES, Checksum, check_crop, check_name,
                          check_rows, show)
from .types import Predictions, as_ids

__all__ = ["StoreWriter", "write_store", "h5_output", "CHUNK_ROWS", "CHUNK_BYTES"]

CHUNK_ROWS = 4096          # rows per HDF5 chunk (top-k and ids)
CHUNK_BYTES = 4 << 20      # cap on one chunk's size (full layout: fewer rows per chunk)
_H5_ERRORS = (OSError, RuntimeError, ValueError)  # what h5py raises for a failed write, flush or close


def h5_bytes(raw: int) -> int:
    """Disk an HDF5 file of ``raw`` bytes of data may take: the data, 1/32 for chunk indexes and a
    compression that does not pay, 1 MiB for the metadata."""
    return int(raw) + int(raw) // 32 + (1 << 20)


@contextlib.contextmanager
def h5_output(tmp, nbytes: int, *, target=None, what: str = "output"):
    """A new HDF5 file at ``tmp`` (a temporary file) with ``nbytes`` of disk secured before HDF5 writes.

    Why: HDF5 that runs out of space mid-write leaves its objects half-closed and the process
    dies later inside h5py (SIGSEGV after "errno = 28"). So the free space is checked before the
    file is created, reserved right after (:func:`~predictions.atomic.reserve_space`), and every
    failure of a write, a flush or the close is an InputError naming ``target`` (default: the
    target of the temporary file); the reservation is released past the file's end once closed.
    The caller removes ``tmp`` on error (an atomic writer does).
    """
    target = Path(target) if target is not None else target_of_temp(tmp)
    check_free(tmp, nbytes, target=target, what=what)
    try:
        f = h5py.File(tmp, "w")
    except _H5_ERRORS as err:
        raise InputError(f"cannot write the {what} ({why(err)})", target) from None
    try:
        reserve_space(tmp, nbytes, target=target, what=what)
        yield f
    except BaseException:
        with contextlib.suppress(Exception):
            f.close()
        release_reserve(tmp)
        raise
    try:
        f.close()
    except _H5_ERRORS as err:
        raise InputError(f"cannot write the {what} ({why(err)})", target) from None
    finally:
        release_reserve(tmp)


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
        self.path = as_path(path, "store path")
        self.atomic = atomic
        self.ids = as_ids(ids)
        self._raw_ids = encode_ids(self.ids, self.path)
        check_unique(self.ids, self.path, self._raw_ids)
        if not isinstance(num_classes, (int, np.integer)) or not 1 <= num_classes <= MAX_CLASSES:
            raise InputError(f"num_classes must be an int in [1, {MAX_CLASSES}], got {show(num_classes)}",
                             self.path)
        self.num_classes = int(num_classes)
        if k is not None and (not isinstance(k, (int, np.integer)) or not 1 <= k <= num_classes):
            raise InputError(f"k must be in [1, {num_classes}] or None, got {show(k)}", self.path)
        self.k = None if k is None else int(k)
        if dtype not in SCORE_DTYPES:
            raise InputError(f"dtype must be 'float32' or 'float16', got {dtype!r}", self.path)
        if self.k is not None and dtype != "float32":
            raise InputError("top-k scores are stored as float32 only", self.path)
        self.dtype = SCORE_DTYPES[dtype]
        if compression not in ("auto", "gzip", "lzf", None):
            raise InputError(f"compression must be 'auto', 'gzip', 'lzf' or None, got {compression!r}",
                             self.path)
        self.compression = compression
        self._attrs = dict(
            format_version=FORMAT_VERSION, kind=KIND,
            model=check_name("model", model, self.path), split=check_name("split", split, self.path),
            crop=check_crop(crop, self.path), num_classes=self.num_classes,
            k=0 if self.k is None else self.k, layout="full" if self.k is None else "topk",
            n=len(self.ids), config=_json_attr("config", config, self.path),
            extra=_json_attr("extra", extra, self.path),
            created=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        )
        self._stack: contextlib.ExitStack | None = None
        self._file: h5py.File | None = None
        self._pos = 0
        self._sum = Checksum(self.num_classes)
        self.checksum: str | None = None  # set on a clean exit

    def _disk_bytes(self) -> int:
        """Disk the file may take (see :func:`h5_bytes`): ids, scores, indices and the attributes."""
        n, width = len(self.ids), self.num_classes if self.k is None else self.k
        id_width = max(1, self._raw_ids.dtype.itemsize)

        def allocated(itemsize: int, cols: int) -> int:  # HDF5 allocates the last, partial chunk whole
            rows = _chunk_rows(n, cols, itemsize) if n else 0
            return (-(-n // rows) * rows if rows else 0) * cols * itemsize

        raw = allocated(id_width, 1) + allocated(self.dtype.itemsize, width)
        if self.k is not None:
            raw += allocated(4, width)
        return h5_bytes(raw + sum(len(str(v)) for v in self._attrs.values()))

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
            self._target = self.path if self.atomic else target_of_temp(self.path)
            f = self._file = self._stack.enter_context(
                h5_output(tmp, self._disk_bytes(), target=self._target, what="store"))
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
            if isinstance(err, _H5_ERRORS) and not isinstance(err, InputError):
                raise InputError(f"cannot write the store ({why(err)})", self._target) from None
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
        check_rows(scores, indices, self.num_classes, a, self.path)
        if m:
            if indices is not None:
                indices = indices.astype("<i4")
            try:
                self._file["scores"][a:a + m] = scores
                if indices is not None:
                    self._file["indices"][a:a + m] = indices
            except _H5_ERRORS as err:
                raise InputError(f"cannot write the store ({why(err)})", self._target) from None
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
    if not isinstance(preds, Predictions):
        raise InputError(f"write_store expects a Predictions object, got {type(preds).__name__}",
                         as_path(path, "store path"))
    with StoreWriter(path, ids=preds.ids, num_classes=preds.num_classes, k=preds.k, model=model,
                     split=split, crop=crop, config=config, extra=extra, dtype=dtype,
                     compression=compression) as w:
        w.write(preds)
    return Path(path)
