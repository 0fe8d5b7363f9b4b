"""TFRecord framing without TensorFlow.

A TFRecord file is a sequence of records, each::

    uint64 little-endian  length
    uint32 little-endian  masked crc32c of the 8 length bytes
    bytes[length]         payload (here: a serialised tf.train.Example / SequenceExample)
    uint32 little-endian  masked crc32c of the payload

with ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8  (mod 2**32)``.

:func:`iter_payloads` streams a file (buffered reads, never the whole file) and
checks both checksums; any problem is an :class:`~predictions.errors.InputError`
naming the file and the 0-based record number.
"""
from __future__ import annotations

import os
import stat
import struct
from typing import Iterable, Iterator

import crc32c

from predictions.atomic import atomic_path, file_kind
from predictions.errors import InputError
from predictions.paths import as_path

_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
#: A record longer than this (1 GiB) is treated as corruption, not allocated.
MAX_RECORD_BYTES = 1 << 30
_BUFFER = 1 << 20


def masked_crc(data: bytes) -> int:
    """Masked crc32c of ``data`` as stored in TFRecord files (uint32)."""
    crc = crc32c.crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def iter_payloads(path: str | os.PathLike) -> Iterator[bytes]:
    """Yield the payload bytes of each record of the TFRecord file ``path``, in order.

    Both CRCs are checked. An empty file yields nothing (callers decide whether
    that is an error). Raises InputError ``"<path>: record <i>: <reason>"`` on a
    truncated record, a CRC mismatch or an absurd length, and
    ``"<path>: cannot read (...)"`` when the file cannot be opened.
    """
    path = as_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise InputError(f"cannot read (dangling symbolic link to {os.readlink(path)!r})", path) from None
    except OSError:
        pass  # open() below says why
    else:
        if not stat.S_ISREG(st.st_mode):  # a FIFO would block, a device never ends
            raise InputError(f"cannot read: is {file_kind(st.st_mode)}, expected a TFRecord shard "
                             f"(a regular file)", path)
    try:
        fh = open(path, "rb", buffering=_BUFFER)
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", path) from None
    with fh:
        size = os.fstat(fh.fileno()).st_size
        pos = 0
        i = 0
        while True:
            header = fh.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                raise InputError(f"record {i}: truncated header (expected {_HEADER.size} bytes, "
                                 f"got {len(header)})", path)
            length, length_crc = _HEADER.unpack(header)
            if masked_crc(header[:8]) != length_crc:
                raise InputError(f"record {i}: length CRC mismatch (corrupt shard)", path)
            if length > MAX_RECORD_BYTES:
                raise InputError(f"record {i}: absurd record length {length} bytes (corrupt shard)", path)
            pos += _HEADER.size
            need = length + 4
            if need > size - pos:
                raise InputError(f"record {i}: truncated (expected {need} bytes, got {size - pos})", path)
            body = fh.read(need)
            if len(body) < need:  # file shrank while reading
                raise InputError(f"record {i}: truncated (expected {need} bytes, got {len(body)})", path)
            pos += need
            payload = body[:length]
            if masked_crc(payload) != _U32.unpack_from(body, length)[0]:
                raise InputError(f"record {i}: data CRC mismatch (corrupt shard)", path)
            yield payload
            i += 1


def write_tfrecord(path: str | os.PathLike, payloads: Iterable[bytes]) -> int:
    """Write ``payloads`` as a TFRecord file at ``path`` atomically; return the record count.

    The file appears only once complete: an exception while iterating
    ``payloads`` leaves no file (and keeps any previous file at ``path``).
    """
    path = as_path(path)
    if isinstance(payloads, (str, bytes)) or not hasattr(payloads, "__iter__"):
        raise InputError(f"payloads must be an iterable of bytes, got {type(payloads).__name__}", path)
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb", buffering=_BUFFER) as fh:
            for payload in payloads:
                if not isinstance(payload, (bytes, bytearray, memoryview)):
                    raise InputError(f"record {count}: a payload must be bytes, got {type(payload).__name__}", path)
                payload = bytes(payload)
                length = struct.pack("<Q", len(payload))
                fh.write(length)
                fh.write(_U32.pack(masked_crc(length)))
                fh.write(payload)
                fh.write(_U32.pack(masked_crc(payload)))
                count += 1
    return count
