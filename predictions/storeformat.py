"""The predictions store's format: constants, metadata, names, the checksum and the row checks.

Shared by the writer (:mod:`predictions.storewriter`) and the reader
(:mod:`predictions.storereader`); see FORMAT.md. Every problem is a one-line
:class:`~predictions.errors.InputError` ``"<path>: <problem>"``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError

__all__ = ["FORMAT_VERSION", "KIND", "READ_ROWS", "MAX_CLASSES", "SCORE_DTYPES", "REQUIRED_ATTRS", "StoreMeta",
           "store_name", "Checksum", "check_crop", "check_name", "check_rows", "show"]

FORMAT_VERSION = 1
KIND = "predictions"
READ_ROWS = 65536          # default rows per read chunk
_HASH_ROWS = 65536         # ids per block of the checksum's id stream
SCORE_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}
#: Largest label vocabulary (candidate tables are O(num_classes) per video block).
MAX_CLASSES = 1 << 24
REQUIRED_ATTRS = ("format_version", "kind", "model", "split", "crop", "num_classes", "k",
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
    crop = check_crop(crop)
    return f"{model}.{split}.{'crop' + crop if crop.isdigit() else crop}{suffix}"


# ---------------------------------------------------------------- checksum

class Checksum:
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

def check_crop(crop, path=None) -> str:
    crop = crop.item() if isinstance(crop, np.generic) else crop
    crop = str(crop) if isinstance(crop, (int, str)) and not isinstance(crop, bool) else crop
    if isinstance(crop, str) and (crop in ("full", "mean") or (crop.isdigit() and crop.isascii())):
        return crop
    raise InputError(f"crop must be 'full', 'mean' or a crop index like '0', got {show(crop)}", path)


def check_name(what: str, value, path=None) -> str:
    """A model or split name: non-empty, without '/', '\\', newline or NUL (FORMAT.md); else InputError."""
    if not isinstance(value, str) or not value or any(c in value for c in "/\\\n\x00"):
        raise InputError(f"{what} must be a non-empty name without '/', got {show(value)}", path)
    return value


def show(value) -> str:
    """repr of a value for a message: numpy scalars shown as plain Python values, long ones cut."""
    if isinstance(value, np.generic):
        value = value.item()
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_rows(scores: np.ndarray, indices: np.ndarray | None, num_classes: int,
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
