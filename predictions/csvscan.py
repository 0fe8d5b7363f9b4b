"""Vectorised scanning of CSV text: lines, tokens and numbers without a Python loop per row.

The engine behind :mod:`predictions.csvio` (which owns the formats, their checks
and their error messages). A file is read in blocks of whole lines, so memory
stays bounded by the block size plus what the caller keeps; each block is
scanned with numpy over its bytes:

* a **token** is a maximal run of bytes that are not separators. Separators
  are the ASCII whitespace of ``bytes.split`` (space, ``\\t \\n \\v \\f \\r``),
  the comma and, when asked, extra bytes (``[`` and ``]`` for list fields);
* per line: its number of tokens, its first token and its commas.

**Numbers** are parsed with SWAR arithmetic (several digits in one 64-bit
word): the 8 bytes at a token's start are gathered as one ``uint64`` and its
digits combined with three multiplications. Plain decimals of at most 16
characters (``123``, ``0.940202``, ``.5``, ``7.``; up to 15 significant digits
for floats) and the same with an exponent (``1.23457e-05``, as ``%g`` writes)
are parsed this way, exactly: a mantissa below 2**53 divided or multiplied by
an exact power of ten (up to 10**22) is one correctly rounded operation, the
value ``float()`` gives. Every other token (a sign, ``nan``, a longer one,
non-ASCII) is handed to Python's ``int``/``float`` on its bytes, so the
accepted syntax is exactly Python's, as it was before this module existed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .ids import MAX_ID_BYTES
from .paths import check_input_file

__all__ = ["Block", "Scan", "CsvText", "scan", "parse_numbers", "token_bytes", "ids_to_str"]

BLOCK_BYTES = 1 << 20   # text per block: the scan's arrays stay in the CPU caches (3x faster than whole files)
PAD = 16                # spare bytes after each block, so 8-byte words can be read at any token start
BOM = b"\xef\xbb\xbf"
#: Longest line read (a row of 3862 label-score pairs is about 60 KB): a longer one is refused before it is
#: scanned, so a file without line ends cannot make the reader hold and scan it whole.
MAX_LINE_BYTES = 4 << 20


# =========================================================================== reading
@dataclass(frozen=True)
class Block:
    """Whole lines of a file: ``buf[:size]`` ends with ``\\n``; ``PAD`` or more readable bytes follow.

    ``first_line``: file line number (1-based) of the block's first line.
    ``offset``: byte offset of ``buf[0]`` in the file, not counting a BOM.
    """

    buf: bytes | bytearray
    size: int
    first_line: int = 1
    offset: int = 0
    newlines: np.ndarray | None = None   # positions of "\n" (computed when not given)

    def __post_init__(self):
        if self.newlines is None:
            object.__setattr__(self, "newlines", np.flatnonzero(self.array == 10))

    @classmethod
    def of(cls, text: bytes, first_line: int = 1, offset: int = 0) -> "Block":
        if not text.endswith(b"\n"):
            text += b"\n"
        return cls(text + b" " * PAD, len(text), first_line, offset)

    @property
    def array(self) -> np.ndarray:
        return np.frombuffer(self.buf, np.uint8, count=self.size)


class CsvText:
    """A CSV file read as a header line and blocks of whole lines.

    ::

        with CsvText(path) as f:
            f.header          # first line, decoded, without its line end
            for block in f.blocks(): ...

    A leading UTF-8 BOM is dropped. Errors (:class:`InputError`, naming the
    file): unreadable file, ``empty file`` (nothing but whitespace),
    ``not UTF-8 text (byte N)`` with N counted from the start of the file
    after its BOM, not a regular file (a FIFO, a device, a directory: refused
    before it is opened), a line longer than :data:`MAX_LINE_BYTES`. Blocks hold about ``block_bytes`` of text each.
    """

    def __init__(self, path: str | os.PathLike, block_bytes: int | None = None):
        if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
            raise InputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
        self.path = path
        self.block_bytes = max(int(block_bytes or BLOCK_BYTES), 16)
        check_input_file(Path(os.fspath(path)), "a CSV file")  # never open a FIFO (it blocks) or a device
        try:
            self._fh = open(path, "rb")
        except OSError as err:
            raise InputError(f"cannot read file ({err.strerror or err})", path) from None
        try:
            self._start()
        except BaseException:
            self._fh.close()
            raise

    def __enter__(self) -> "CsvText":
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def _read(self) -> bytes:
        try:
            return self._fh.read(self.block_bytes)  # header and blank-first-line checks only
        except OSError as err:
            raise InputError(f"cannot read file ({err.strerror or err})", self.path) from None

    def _start(self) -> None:
        data = self._read()
        if data.startswith(BOM):
            data = data[len(BOM):]
        end = data.find(b"\n")
        while end < 0:
            if len(data) > MAX_LINE_BYTES:
                raise InputError(f"line 1: longer than {MAX_LINE_BYTES >> 20} MiB (no line end): not a CSV "
                                 f"this reader accepts", self.path)
            more = self._read()
            if not more:
                break
            data += more
            end = data.find(b"\n", len(data) - len(more))
        head = data[:end] if end >= 0 else data
        self._rest = data[end + 1:] if end >= 0 else b""
        self._offset = len(head) + (end >= 0)
        self._line = 2
        if not head.strip() and self._only_whitespace():
            raise InputError("empty file", self.path)
        self.header = _decode(head, self.path, 0)

    def _only_whitespace(self) -> bool:
        """Whether everything after the header is whitespace (reads on; used only for a blank first line)."""
        pos = self._fh.tell()
        chunk = self._rest
        while chunk:
            if chunk.strip():
                self._fh.seek(pos)
                return False
            chunk = self._read()
        self._fh.seek(pos)
        return True

    def blocks(self):
        """Yield :class:`Block` s of whole lines, in file order (each checked to be UTF-8).

        Each block's text is read straight into its own buffer (one copy from
        the OS); only the partial line at its end is copied to the next.
        """
        rest, self._rest = self._rest, b""
        while True:
            buf = bytearray(len(rest) + self.block_bytes + PAD)
            buf[:len(rest)] = rest
            try:
                got = self._fh.readinto(memoryview(buf)[len(rest):len(rest) + self.block_bytes])
            except OSError as err:
                raise InputError(f"cannot read file ({err.strerror or err})", self.path) from None
            have = len(rest) + got
            if got == 0:                             # end of file: the last line may lack its "\n"
                if have == 0:
                    return
                if buf[have - 1] != 10:
                    buf[have] = 10
                    have += 1
                size = have
            else:
                size = buf.rfind(b"\n", 0, have) + 1
                if size == 0:                        # a line longer than the block: read on
                    if have > MAX_LINE_BYTES:
                        comma = buf.find(b",", 0, have)
                        if comma < 0 or comma > MAX_ID_BYTES:   # the id is what is too long: say so
                            raise InputError(f"line {self._line}: the video id is longer than {MAX_ID_BYTES} bytes (ids are "
                                             f"at most {MAX_ID_BYTES} bytes)", self.path)
                        raise InputError(f"line {self._line}: longer than {MAX_LINE_BYTES >> 20} MiB", self.path)
                    rest = bytes(buf[:have])
                    continue
            rest = bytes(buf[size:have])
            block = Block(buf, size, self._line, self._offset)
            if block.array.max(initial=0) >= 128:
                _decode(bytes(buf[:size]), self.path, self._offset)
            self._line += len(block.newlines)
            self._offset += size
            yield block
            if got == 0:
                return


def _decode(data: bytes, path, offset: int) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {offset + err.start})", path) from None


# =========================================================================== tokens
@dataclass(frozen=True)
class Scan:
    """Tokens and lines of one block (all int64 arrays; positions are byte offsets in the block).

    ``starts``/``ends``: each token's first byte and one past its last.
    Per line (``len(newlines)`` lines, the block's line ``i`` is file line
    ``block.first_line + i``): ``line_first`` its first token's index,
    ``line_tokens`` its token count, ``line_commas`` its comma count and
    ``first_comma`` the index (into ``commas``) of its first comma.
    """

    starts: np.ndarray
    ends: np.ndarray
    newlines: np.ndarray
    line_first: np.ndarray
    line_tokens: np.ndarray
    commas: np.ndarray
    first_comma: np.ndarray
    line_commas: np.ndarray

    def line_of(self, pos: int) -> int:
        """Block line index (0-based) of byte ``pos``."""
        return int(np.searchsorted(self.newlines, pos))


def _before(sorted_pos: np.ndarray, newlines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of the first item on each line, items per line) for sorted byte positions."""
    end = np.searchsorted(sorted_pos, newlines)
    first = np.empty_like(end)
    if len(end):
        first[0] = 0
        first[1:] = end[:-1]
    return first, end - first


def scan(block: Block, extra_separators: bytes = b"") -> Scan:
    """Tokenise a block (see the module doc for what separates tokens)."""
    a = block.array
    n = block.size
    sep = (a == 32) | (a == 44) | (a - np.uint8(9) < 5)   # space, comma, \t \n \v \f \r
    for byte in extra_separators:
        sep |= a == byte
    start = np.empty(n, bool)
    start[0] = not sep[0]
    np.greater(sep[:-1], sep[1:], out=start[1:])          # separator then token byte
    starts = np.flatnonzero(start)
    if len(starts) and not (sep[1:] & sep[:-1]).any():
        ends = np.empty_like(starts)                        # exactly one separator between tokens:
        ends[:-1] = starts[1:] - 1                          # each ends on the byte before the next one
        ends[-1] = n - 1                                    # and the last on the block's final "\n"
    else:
        end = np.empty(n, bool)
        end[0] = False
        np.less(sep[:-1], sep[1:], out=end[1:])             # token byte then separator
        ends = np.flatnonzero(end)                          # a block ends with "\n": as many ends as starts
    newlines = block.newlines
    commas = np.flatnonzero(a == 44)
    line_first, line_tokens = _before(starts, newlines)
    first_comma, line_commas = _before(commas, newlines)
    return Scan(starts, ends, newlines, line_first, line_tokens, commas, first_comma, line_commas)


def token_bytes(block: Block, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Tokens as a fixed-width ``S`` array (gathered with one fancy index; no per-token loop).

    Like every numpy string array, it drops trailing NUL bytes of a token.
    """
    lengths = ends - starts
    if not len(starts):
        return np.zeros(0, "S1")
    width = max(int(lengths.max()), 1)
    a = np.frombuffer(block.buf, np.uint8)
    idx = np.minimum(starts[:, None] + np.arange(width), len(a) - 1)
    out = a[idx]
    out[np.arange(width)[None, :] >= lengths[:, None]] = 0
    return out.view(f"S{width}").ravel()


def ids_to_str(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate token arrays of :func:`token_bytes` into one unicode array (UTF-8 decoded)."""
    out = []
    for p in parts:
        if len(p) and np.frombuffer(p.tobytes(), np.uint8).max() < 128:  # ASCII: widen each byte
            out.append(np.frombuffer(p.tobytes(), np.uint8).astype(np.uint32).view(f"<U{p.itemsize}"))
        else:
            out.append(np.char.decode(p, "utf-8") if len(p) else np.zeros(0, "<U1"))
    return np.concatenate(out) if out else np.zeros(0, "<U1")


# =========================================================================== numbers
_U = np.uint64
_ONES = _U(0x0101010101010101)
_HIGH = _U(0x8080808080808080)
_ZEROS = _U(0x3030303030303030)   # "00000000"
_DOTS = _U(0x2E2E2E2E2E2E2E2E)    # "........"
_NIBBLE = _U(0xF0F0F0F0F0F0F0F0)
_SIXES = _U(0x0606060606060606)
_P10 = 10 ** np.arange(17, dtype=np.uint64)
_P10F = 10.0 ** np.arange(23)         # exact in float64 up to 10**22
_EXACT = _U(1 << 53)               # mantissas below this are exact in float64


def _words(buf: bytes) -> np.ndarray:
    """Read-only uint64 view of every 8-byte window of ``buf`` (little-endian, stride 1 byte)."""
    return np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=buf, strides=(1,))


def _eight_digits(d: np.ndarray) -> np.ndarray:
    """Value of 8 decimal digits, one per byte (0..9), the first (lowest) byte most significant."""
    d = d * _U(10) + (d >> _U(8))
    return (((d & _U(0x000000FF000000FF)) * _U(100 + (1000000 << 32))) +
            (((d >> _U(16)) & _U(0x000000FF000000FF)) * _U(1 + (10000 << 32)))) >> _U(32)


def _first_byte(x: np.ndarray) -> np.ndarray:
    """Index (0..7) of the lowest zero byte of each word; 8 when none (exact for the lowest)."""
    z = (x - _ONES) & ~x & _HIGH
    return (np.bitwise_count((z & (_U(0) - z)) - _U(1)) >> 3).astype(_U)


def _digits(w: np.ndarray, n: np.ndarray, dot: bool):
    """Parse the first ``n`` (0..8) bytes of each word as digits with, if ``dot``, at most one '.'.

    Returns ``(m, nd, f, has_dot, ok)``: the value of the digits (the dot
    removed), their count, the digits after the dot (0 without one), whether
    there is a dot, and whether every byte is a digit (or that one dot).
    """
    if dot:
        p = _first_byte(w ^ _DOTS)                        # index of the first '.'; 8 when none
        has_dot = p < n
        low = (_U(1) << (p << _U(3))) - _U(1)             # bytes before the dot (all when none)
        w = (w & low) | ((w >> _U(8)) & ~low)             # drop the dot byte
        nd = n - has_dot
        f = (n - _U(1) - p) * has_dot                     # wraps when no dot, then times 0
    else:
        nd, f, has_dot = n, _U(0), np.zeros(len(w), bool)
    d = (w - _ZEROS) << ((_U(8) - nd) << _U(3))           # right-aligned: leading zero digits, tail dropped
    ok = ((d & _NIBBLE) | ((d + _SIXES) & _NIBBLE)) == 0  # every byte 0..9 (a non-digit wraps or carries)
    return _eight_digits(d), nd, f, has_dot, ok


def _short_ints(buf: bytes, starts: np.ndarray, length: np.ndarray):
    """Integers of 1..4 bytes (label ids): the same arithmetic on 32-bit words, twice as fast."""
    words = np.ndarray(shape=(len(buf) - 3,), dtype="<u4", buffer=buf, strides=(1,))
    d = (words[starts] - np.uint32(0x30303030)) << ((np.uint32(4) - length.astype(np.uint32)) << np.uint32(3))
    ok = ((d & np.uint32(0xF0F0F0F0)) | ((d + np.uint32(0x06060606)) & np.uint32(0xF0F0F0F0))) == 0
    d = d * np.uint32(10) + (d >> np.uint32(8))
    return ((d & np.uint32(0xFF)) * np.uint32(100) + ((d >> np.uint32(16)) & np.uint32(0xFF))).view(np.int32), ok


def _fixed_decimals(buf: bytes, starts: np.ndarray, length: np.ndarray):
    """Decimals that all share one length (<= 8) and dot position, as ``%.6f`` writes them; None otherwise."""
    first = int(starts.flat[0])
    size = int(length.flat[0])
    dot = buf.find(b".", first, first + size) - first
    if not 0 <= dot or size < 2 or size > 8 or not (length == size).all():
        return None
    w = _words(buf)[starts]
    if not (((w >> _U(8 * dot)) & _U(0xFF)) == _U(0x2E)).all():
        return None
    low = _U((1 << (8 * dot)) - 1)
    w = (w & low) | ((w >> _U(8)) & ~low)                 # drop the dot byte
    d = (w - _ZEROS) << _U(8 * (9 - size))               # size - 1 digits, right-aligned
    ok = ((d & _NIBBLE) | ((d + _SIXES) & _NIBBLE)) == 0
    return _eight_digits(d).astype(np.float64) / _P10F[size - 1 - dot], ok


def _mantissas(buf: bytes, starts: np.ndarray, length: np.ndarray, dot: bool):
    """Digits of tokens of up to 16 bytes. Returns ``(m, f, nd, ok)`` as :func:`_digits` (``ok`` False beyond 16).

    A token is read as its last ``min(length, 8)`` bytes (one word) and, when longer, the bytes before
    them (a second word): no per-subset indexing, which costs more than the second word.
    """
    words = _words(buf)
    length = length.astype(_U)
    if not len(length) or length.max() <= 8:
        m, nd, f, _, ok = _digits(words[starts], length, dot)
        return m, f, nd, ok
    tail_n = np.minimum(length, _U(8))
    head_n = length - tail_n
    mt, ndt, ft, dott, okt = _digits(words[starts + head_n.astype(np.int64)], tail_n, dot)
    mh, ndh, fh, doth, okh = _digits(words[starts], np.minimum(head_n, _U(8)), dot)
    ok = okt & okh & ~(doth & dott) & (length <= 16)
    f = np.where(dott, ft, fh + ndt * doth) if dot else ft
    return mh * _P10[np.minimum(ndt, _U(16))] + mt, f, ndh + ndt, ok


def _any_decimals(buf: bytes, starts: np.ndarray, length: np.ndarray, integer: bool):
    """Plain decimals (or integers) of up to 16 bytes, any shape."""
    m, f, nd, ok = _mantissas(buf, starts, length, not integer)
    if integer:
        return m.view(np.int64), ok
    ok &= (nd >= 1) & (m < _EXACT)
    return m.astype(np.float64) / _P10F[f.astype(np.intp)], ok


_LOWER = _U(0x2020202020202020)
_ES = _U(0x6565656565656565)       # "eeeeeeee"


def _exponent_decimals(buf: bytes, starts: np.ndarray, ends: np.ndarray):
    """Floats with an exponent (``%g`` writes ``1.23457e-05``): a decimal of <= 16 bytes, ``e``/``E``, an
    optional sign and 1..4 digits.

    Exact like the rest (Clinger's fast path): a mantissa below 2**53 times or divided by a power of ten
    up to 10**22 is one correctly rounded operation. Returns ``(values, ok)``.
    """
    words = _words(buf)
    length = (ends - starts).astype(_U)
    pe = _first_byte((words[starts] | _LOWER) ^ _ES)       # 'E' | 0x20 == 'e'; digits, '.', '+', '-' keep
    second = pe == 8
    pe[second] += _first_byte((words[starts[second] + 8] | _LOWER) ^ _ES)
    ok = (pe < length) & (pe < 16)                          # 16: no 'e' in the first 16 bytes
    pe = np.minimum(pe, length)
    m, f, nd, okm = _mantissas(buf, starts, pe, True)
    ok &= okm & (nd >= 1) & (m < _EXACT)
    es = starts + pe.astype(np.int64) + 1                   # after the 'e'
    sign = np.frombuffer(buf, np.uint8)[np.minimum(es, len(buf) - 1)]
    neg = sign == 0x2D
    es += neg | (sign == 0x2B)
    el = ends - es
    ok &= (el >= 1) & (el <= 4)
    e, oke = _short_ints(buf, es, np.clip(el, 1, 4))
    power = np.where(neg, -e.astype(np.int64), e.astype(np.int64)) - f.astype(np.int64)
    ok &= oke & (np.abs(power) <= 22)
    p10 = _P10F[np.minimum(np.abs(power), 22)]
    mf = m.astype(np.float64)
    return np.where(power >= 0, mf * p10, mf / p10), ok


def parse_numbers(buf: bytes, starts: np.ndarray, ends: np.ndarray, integer: bool):
    """Parse tokens ``buf[starts[i]:ends[i]]`` as ``int`` (int64, or int32 when all have <= 4 bytes) or ``float``
    (float64).

    ``starts``/``ends`` may be 2-D (e.g. strided views of every other token);
    tokens are taken in row-major order. ``buf`` must have at least 8 readable
    bytes after the last token (see :class:`Block`). Returns ``(values, bad)``,
    values 1-D: ``bad`` is the index of the first token that Python's
    ``int``/``float`` rejects (for ``int``: also one outside int64), or -1;
    values of bad tokens are undefined. Paths, in order: 4-byte integers,
    decimals of one shape, any decimal, then (floats) exponents for the tokens
    left, then Python for the rest.
    """
    if starts.size == 0:
        return np.zeros(0, np.int64 if integer else np.float64), -1
    length = ends - starts
    if integer and length.max() <= 4:
        values, ok = _short_ints(buf, starts, length)
    elif not integer and (fixed := _fixed_decimals(buf, starts, length)) is not None:
        values, ok = fixed
    else:
        values, ok = _any_decimals(buf, starts.ravel(), length.ravel(), integer)
    values, ok = values.ravel(), ok.ravel()
    if ok.all():
        return values, -1
    starts, ends = starts.ravel(), ends.ravel()
    if not integer:                          # exponents, still vectorised, for the tokens left
        rest = np.flatnonzero(~ok)
        v, good = _exponent_decimals(buf, starts[rest], ends[rest])
        values[rest[good]] = v[good]
        ok[rest[good]] = True
        if ok.all():
            return values, -1
    kind = int if integer else float
    for i in np.flatnonzero(~ok).tolist():   # only tokens the fast paths do not cover
        token = buf[starts[i]:ends[i]]
        try:
            v = kind(token)
            if integer and not -2 ** 63 <= v < 2 ** 63:
                return values, i
        except (ValueError, OverflowError):
            return values, i
        values[i] = v
    return values, -1
