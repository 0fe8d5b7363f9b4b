"""Hardening checks of HDF5 files read by the predictions layer (stores, labels files).

An HDF5 file can point outside itself (soft/external links, external raw
files, virtual datasets), declare rows it never wrote, or hold compression
and chunk bombs; these checks refuse all of them before anything is read.
"""
from __future__ import annotations

import json

import h5py
import numpy as np

from .errors import InputError
from .ids import MAX_ID_BYTES

__all__ = ["MAX_CHUNK_BYTES", "MAX_ATTR_BYTES", "MAX_INFLATION", "INFLATION_FLOOR", "check_dataset",
           "check_written", "check_id_width", "json_object", "attr_str", "h5_error"]

#: Largest HDF5 chunk a reader accepts (writers use at most 4 MiB): reading one row
#: decompresses a whole chunk, so a huge chunk is a memory and time bomb.
MAX_CHUNK_BYTES = 64 << 20
#: Largest JSON attribute (config, extra) a reader decodes.
MAX_ATTR_BYTES = 16 << 20


def attr_str(value) -> str:
    """An HDF5 string attribute as str (h5py gives bytes or str)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


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
    check_written(ds, name, path, whole)
    return ds


#: A dataset read whole (ids, a labels file) may not inflate more than this from its stored size...
MAX_INFLATION = 100
#: ... once it is this large in memory.
INFLATION_FLOOR = 64 << 20


def check_written(ds: h5py.Dataset, name: str, path, whole: bool = False) -> None:
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


def json_object(f: h5py.File, name: str, path) -> dict:
    """The JSON-object attribute ``name`` (config, extra), decoded."""
    text = attr_str(f.attrs[name])  # costs what the file holds (an attribute is never compressed)
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


def h5_error(err: BaseException) -> str:
    """One line describing an error raised by h5py."""
    return " ".join(str(err).split()) or type(err).__name__
