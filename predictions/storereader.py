"""Reading predictions stores: :func:`open_store` returns a :class:`StoreReader`.

The file's structure is validated on open (:mod:`predictions.h5checks`), every
row chunk as it is read; nothing is loaded whole unless asked
(:func:`read_store`, ``StoreReader.read()``). The checksum is verified in a
pass of its own or while a build streams the rows (``begin_verify``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .errors import InputError
from .h5checks import attr_str, check_dataset, check_id_width, h5_error, json_object
from .ids import shared_ids
from .paths import as_path, check_input_file
from .storeformat import (FORMAT_VERSION, KIND, MAX_CLASSES, READ_ROWS, REQUIRED_ATTRS, Checksum, StoreMeta,
                          check_crop, check_name, check_rows)
from .types import Predictions

__all__ = ["StoreReader", "open_store", "read_store"]


class StoreReader:
    """An open store. Structure is validated on open; rows when read.

    Attributes
    ----------
    path : Path of the file.
    meta : StoreMeta.
    ids : (n,) unicode array of video ids, in row order.
    """

    def __init__(self, path):
        self.path = as_path(path, "store path")
        self._file = None
        self._stream: Checksum | None = None   # see begin_verify
        self._stream_pos = 0
        self._stream_state = "off"              # off, running, done, abandoned, verified
        check_input_file(self.path, "a predictions store (.h5)")
        try:
            # No HDF5 chunk cache: readers read whole row ranges, and with dozens of members held
            # open the cache kept every chunk ever read (measured: RSS grew by the data read).
            self._file = h5py.File(self.path, "r", rdcc_nbytes=0)
        except (OSError, RuntimeError, ValueError) as err:  # HDF5 errors surface as any of these
            raise InputError(f"not a readable HDF5 file ({h5_error(err)})", self.path) from None
        try:
            self._open()
        except InputError:
            self.close()
            raise
        except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
            # a corrupt object header or symbol table: h5py raises RuntimeError, KeyError, ...
            self.close()
            raise InputError(f"corrupt HDF5 file ({h5_error(err)})", self.path) from None

    def _open(self) -> None:
        f, p = self._file, self.path
        attrs = f.attrs
        kind = attrs.get("kind")
        if kind == "labels" or ("indptr" in f and "scores" not in f):
            raise InputError("this is a labels file, not a predictions store", p)
        for name in REQUIRED_ATTRS:
            if name not in attrs:
                raise InputError(f"missing attribute {name!r}", p)
        version = int(attrs["format_version"])
        if version != FORMAT_VERSION:
            raise InputError(f"unknown format version {version} (this package reads version "
                             f"{FORMAT_VERSION})", p)
        if attr_str(attrs["kind"]) != KIND:
            raise InputError(f"attribute kind is {attr_str(attrs['kind'])!r}, expected {KIND!r}", p)
        layout = attr_str(attrs["layout"])
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
        config, extra = json_object(f, "config", p), json_object(f, "extra", p)
        model = check_name("attribute model", attr_str(attrs["model"]), p)
        split = check_name("attribute split", attr_str(attrs["split"]), p)
        crop = check_crop(attr_str(attrs["crop"]), p)
        self.meta = StoreMeta(format_version=version, model=model, split=split, crop=crop, num_classes=C,
                              k=k if layout == "topk" else None, layout=layout, n=n, config=config,
                              created=attr_str(attrs["created"]), checksum=attr_str(attrs["checksum"]),
                              extra=extra)
        self._raw_ids, self.ids = shared_ids(ids_ds[:], p)

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
            raise InputError(f"corrupt data in rows {start}..{stop - 1} ({h5_error(err)})", self.path) from None
        return scores, indices

    def _block(self, start: int, stop: int):
        scores, indices = self._raw(start, stop)
        check_rows(scores, indices, self.meta.num_classes, start, self.path)  # before any cast: no wrap-around
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
        h = Checksum(self.meta.num_classes)
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
        self._stream = Checksum(self.meta.num_classes)
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
        h = Checksum(self.meta.num_classes)
        h.update_ids(self._raw_ids)
        h.update(pred.indices, pred.scores, self._scores.dtype.newbyteorder("<"))
        self._compare(h)
        return pred

    def _compare(self, h: "Checksum") -> None:
        got = h.hexdigest()
        if got != self.meta.checksum:
            raise InputError(f"checksum mismatch: stored {self.meta.checksum[:12] or 'nothing'}..., "
                             f"computed {got[:12]}... (file modified or corrupt; --no-verify skips "
                             f"this check)", self.path)


def open_store(path) -> StoreReader:
    """Open and validate a store (structure, attributes, unique ids); rows are validated when read."""
    return StoreReader(path)


def read_store(path, *, verify: bool = False) -> Predictions:
    """Whole store as validated Predictions; with ``verify``, its checksum checked too."""
    with open_store(path) as r:
        return r.read_verified() if verify else r.read()
