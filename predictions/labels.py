"""Ground-truth labels file (HDF5, CSR layout). See FORMAT.md.

Datasets ``ids`` (n,) fixed-length UTF-8 bytes, ``indptr`` (n + 1,) int64,
``indices`` (nnz,) int32; root attributes ``format_version``, ``kind="labels"``,
``num_classes``, ``split``, ``source``.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .h5checks import attr_str, check_dataset, check_id_width, h5_error
from .ids import check_unique, decode_ids, encode_ids
from .paths import as_path, check_input_file
from .storeformat import FORMAT_VERSION, MAX_CLASSES, check_name
from .storewriter import h5_bytes, h5_output
from .types import Labels

KIND = "labels"


def write_labels(path, labels: Labels, *, split: str, source: str = "") -> Path:
    """Write ``labels`` to ``path`` atomically (validated first); return the path."""
    path = as_path(path, "labels path")
    if not isinstance(labels, Labels):
        raise InputError(f"write_labels expects a Labels object, got {type(labels).__name__}", path)
    check_name("split", split, path)
    if not 1 <= labels.num_classes <= MAX_CLASSES:
        raise InputError(f"num_classes must be in [1, {MAX_CLASSES}], got {labels.num_classes}", path)
    check_unique(labels.ids, path)
    _check_csr(labels.indptr, labels.indices, labels.num_classes, path)
    raw = encode_ids(labels.ids, path)
    nbytes = h5_bytes(raw.nbytes + 8 * len(labels.indptr) + 4 * len(labels.indices) + len(str(source)))
    with atomic_path(path, what="labels file") as tmp, \
            h5_output(tmp, nbytes, target=path, what="labels file") as f:
        f.attrs.update(format_version=FORMAT_VERSION, kind=KIND, num_classes=int(labels.num_classes),
                       split=split, source=str(source))
        f.create_dataset("ids", data=raw if len(raw) else raw.astype("S1"))
        f.create_dataset("indptr", data=np.asarray(labels.indptr, dtype="<i8"))
        f.create_dataset("indices", data=np.asarray(labels.indices, dtype="<i4"))
    return path


def _check_csr(indptr: np.ndarray, indices: np.ndarray, num_classes: int, path) -> None:
    n = len(indptr) - 1
    if n < 0 or indptr[0] != 0 or indptr[-1] != len(indices) or (np.diff(indptr) < 0).any():
        raise InputError(f"bad indptr: must start at 0, never decrease and end at len(indices)="
                         f"{len(indices)}", path)
    if len(indices) and (indices.min() < 0 or indices.max() >= num_classes):
        bad = np.flatnonzero((indices < 0) | (indices >= num_classes))[0]
        row = int(np.searchsorted(indptr, bad, side="right") - 1)
        raise InputError(f"label id {int(indices[bad])} out of range [0, {num_classes}) "
                         f"(video row {row})", path)
    if len(indices):
        keys = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr)) * num_classes + indices
        keys.sort()
        dup = keys[1:] == keys[:-1]
        if dup.any():
            k = int(keys[1:][dup][0])
            raise InputError(f"label {k % num_classes} repeated for video row {k // num_classes}", path)


def read_labels(path) -> Labels:
    """Read and validate a labels file; every problem is a one-line InputError naming the file."""
    path = as_path(path, "labels path")
    check_input_file(path, "a labels file (.h5)")
    try:
        with h5py.File(path, "r") as f:
            return _read(f, path)
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise InputError(f"not a readable HDF5 labels file ({h5_error(err)})", path) from None


def _read(f: h5py.File, path: Path) -> Labels:
    attrs = f.attrs
    kind = attr_str(attrs.get("kind", ""))
    if kind == "predictions" or ("scores" in f and "indptr" not in f):
        raise InputError("this is a predictions store, not a labels file", path)
    for name in ("format_version", "kind", "num_classes", "split"):
        if name not in attrs:
            raise InputError(f"missing attribute {name!r}", path)
    version = int(attrs["format_version"])
    if version != FORMAT_VERSION:
        raise InputError(f"unknown format version {version} (this package reads version {FORMAT_VERSION})",
                         path)
    if kind != KIND:
        raise InputError(f"attribute kind is {kind!r}, expected {KIND!r}", path)
    for name in ("ids", "indptr", "indices"):
        check_dataset(f, name, path, whole=True)
    C = int(attrs["num_classes"])
    if not 1 <= C <= MAX_CLASSES:
        raise InputError(f"num_classes attribute is {C}, expected 1 to {MAX_CLASSES}", path)
    check_name("attribute split", attr_str(attrs["split"]), path)
    ids_ds, indptr_ds, indices_ds = f["ids"], f["indptr"], f["indices"]
    if ids_ds.ndim != 1 or ids_ds.dtype.kind != "S":
        raise InputError(f"dataset 'ids' has shape {ids_ds.shape} dtype {ids_ds.dtype}, "
                         f"expected 1-D fixed-length bytes", path)
    check_id_width(ids_ds, path)
    if indptr_ds.shape != (ids_ds.shape[0] + 1,) or indptr_ds.dtype.kind not in "iu":
        raise InputError(f"bad indptr: shape {indptr_ds.shape} dtype {indptr_ds.dtype}, expected "
                         f"({ids_ds.shape[0] + 1},) int64", path)
    if indices_ds.ndim != 1 or indices_ds.dtype.kind not in "iu":
        raise InputError(f"dataset 'indices' has shape {indices_ds.shape} dtype {indices_ds.dtype}, "
                         f"expected 1-D int32", path)
    ids = decode_ids(ids_ds[:], path)
    check_unique(ids, path)
    indptr = indptr_ds[:].astype(np.int64)
    indices = indices_ds[:].astype(np.int64)
    _check_csr(indptr, indices, C, path)
    return Labels(ids, indptr, indices.astype(np.int32), C)

