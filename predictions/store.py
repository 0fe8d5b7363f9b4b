"""HDF5 predictions store: one file per (model, split, crop). See FORMAT.md.

This module is the store's public face; the work is done by one module per job:

* :mod:`predictions.storeformat`: constants, :class:`StoreMeta`, names, the checksum, the row checks;
* :mod:`predictions.storewriter`: :class:`StoreWriter` (streaming) and :func:`write_store`;
* :mod:`predictions.storereader`: :class:`StoreReader`, :func:`open_store`, :func:`read_store`;
* :mod:`predictions.ids`: the video-id codec, its bound and the uniqueness check;
* :mod:`predictions.h5checks`: hardening checks of any HDF5 file read (links, bombs, unwritten rows);
* :mod:`predictions.paths`: :func:`check_input_file` and :func:`expand_paths`.

Every name importable from here before the split still is (``from predictions.store import ...``).
Every problem with a file is an :class:`~predictions.errors.InputError` whose
message is one line ``"<path>: <problem>"``.
"""
from __future__ import annotations

from .h5checks import (INFLATION_FLOOR, MAX_ATTR_BYTES, MAX_CHUNK_BYTES, MAX_INFLATION, check_dataset,
                       check_id_width)
from .ids import MAX_ID_BYTES
from .paths import check_input_file, expand_paths
from .storeformat import (FORMAT_VERSION, KIND, MAX_CLASSES, READ_ROWS, Checksum, StoreMeta, check_name,
                          store_name)
from .storereader import StoreReader, open_store, read_store
from .storewriter import CHUNK_BYTES, CHUNK_ROWS, StoreWriter, write_store

__all__ = ["FORMAT_VERSION", "KIND", "MAX_CLASSES", "MAX_ID_BYTES", "READ_ROWS", "CHUNK_ROWS", "CHUNK_BYTES",
           "MAX_CHUNK_BYTES", "MAX_ATTR_BYTES", "MAX_INFLATION", "INFLATION_FLOOR", "StoreMeta", "Checksum",
           "store_name", "check_name", "check_input_file", "check_dataset", "check_id_width", "expand_paths",
           "StoreReader", "open_store", "read_store", "StoreWriter", "write_store"]
