"""Kaggle-style CSV import/export of predictions.

Formats
-------
* **Submission** (``write_submission`` / ``read_submission``)::

      VideoId,LabelConfidencePairs
      abcd,3 0.912345 17 0.500000 ...

  Pairs ``label score`` best first, separated by single spaces.
* **Rank CSV** (``read_rank_csv``): ``VideoId,Label`` with space-separated label
  ids best first and no confidences. Scores are derived from the rank:
  ``score = 1 / (rank + 1)`` with rank 0 for the best (1, 1/2, 1/3, ...).
* **Scored CSV** (``read_scored_csv``): the pandas-written files of
  ``shared/data/yt8m2018-predictions-erikanfox``: header
  ``,VideoId,True labels,Pred labels,Confidence``; true labels printed as a
  numpy int array (``[ 89 201]``), predictions and confidences as Python lists.
  Parsed with strict regular expressions, never ``eval``.

Reading rules shared by all readers: UTF-8, an optional BOM, LF or CRLF line
ends, blank lines ignored. Rows become the top-k layout with
``k = max labels per row`` (or the ``k`` asked for: longer rows are cut, all
rows padded). Each row is re-sorted by descending score with a stable sort, so
equal scores keep the file's order (the producer's ranking). **Padding**: a
short row is filled with score 0 and the smallest label ids not already in the
row (placed after the row's own entries), so a row never repeats a label. Any problem raises
:class:`~predictions.errors.InputError` with one line
``"<path>: line N: <problem>"`` (line 1 is the header).
"""
from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import InputError
from .types import Labels, Predictions, as_ids

__all__ = ["write_submission", "read_submission", "read_rank_csv", "read_scored_csv"]

SUBMISSION_HEADER = "VideoId,LabelConfidencePairs"
RANK_HEADER = "VideoId,Label"
SCORED_HEADER = ["", "VideoId", "True labels", "Pred labels", "Confidence"]
_WRITE_CHUNK = 20000  # rows formatted at once


# =========================================================================== writing
def _digit_block(values: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """ASCII digits of non-negative ints, right-aligned in ``width`` columns.

    Returns ``(bytes, keep)``, both ``values.shape + (width,)``; ``keep`` masks
    off leading zeros (a value of 0 keeps its last digit).
    """
    pw = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    v = values[..., None]
    digits = (v // pw) % 10 + ord("0")
    keep = (v >= pw) | (pw == 1)
    return digits.astype(np.uint8), keep


def _format_rows(ids: np.ndarray, labels: np.ndarray, scores: np.ndarray, precision: int) -> bytes:
    """Bytes of CSV rows ``id,l s l s ...\\n`` (vectorised, no per-row loop).

    ``scores`` must lie in [0, 1]. For float32/float16 scores and
    ``precision <= 12``, ``score * 10**precision`` is exact in float64, so
    ``np.rint`` rounds exactly like ``"%.{p}f" % score`` (round half to even).
    """
    b, k = labels.shape
    id_bytes = np.char.encode(ids, "utf-8") if len(ids) else np.zeros(0, "S1")
    idw = max(id_bytes.dtype.itemsize, 1)
    id_buf = np.frombuffer(id_bytes.astype(f"S{idw}").tobytes(), np.uint8).reshape(b, idw)
    blocks, masks = [id_buf, np.full((b, 1), ord(","), np.uint8)], [id_buf != 0, np.ones((b, 1), bool)]
    if k:
        lab = labels.astype(np.int64)
        lw = len(str(max(int(lab.max()), 0)))
        ldig, lkeep = _digit_block(lab, lw)
        fixed = np.rint(scores.astype(np.float64) * 10.0 ** precision).astype(np.int64)
        one = 10 ** precision
        sdig, _ = _digit_block(fixed % one, precision) if precision else (np.zeros((b, k, 0), np.uint8), None)
        sint = (fixed // one).astype(np.uint8)[..., None] + ord("0")  # 0 or 1
        sep = np.full((b, k, 1), ord(" "), np.uint8)
        lead_keep = np.ones((b, k, 1), bool)
        lead_keep[:, 0] = False  # no space before the first pair
        parts = [sep, ldig, sep, sint]
        keeps = [lead_keep, lkeep, np.ones((b, k, 1), bool), np.ones((b, k, 1), bool)]
        if precision:
            parts += [np.full((b, k, 1), ord("."), np.uint8), sdig]
            keeps += [np.ones((b, k, 1), bool), np.ones((b, k, precision), bool)]
        blocks.append(np.concatenate(parts, axis=2).reshape(b, -1))
        masks.append(np.concatenate(keeps, axis=2).reshape(b, -1))
    blocks.append(np.full((b, 1), ord("\n"), np.uint8))
    masks.append(np.ones((b, 1), bool))
    buf, keep = np.hstack(blocks), np.hstack(masks)
    return buf[keep].tobytes()


def _sorted_top(pred: Predictions, top: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of each row's ``top`` best entries, best first.

    Ties keep the stored order (lower label first for a full matrix)."""
    if pred.indices is None:
        p = pred.topk(top)
        return p.indices, p.scores
    s = np.asarray(pred.scores, np.float32)
    lab = np.asarray(pred.indices)
    order = np.argsort(-s, axis=1, kind="stable")  # ties keep the stored order
    return (np.take_along_axis(lab, order, axis=1)[:, :top],
            np.take_along_axis(s, order, axis=1)[:, :top])


def write_submission(path: str | os.PathLike, pred: Predictions, top: int = 20,
                     precision: int = 6) -> Path:
    """Write a Kaggle submission CSV atomically and return its path.

    Parameters
    ----------
    path : output file (written via a temporary file, then renamed).
    pred : predictions, top-k or full; ``min(top, width)`` pairs per row, best
        first (ties keep the stored order: lower label first for a full matrix). Entries are written even when their
        score is 0.
    top : pairs per row.
    precision : decimals of each score, 0..12, formatted as ``"%.{p}f"``.
    """
    if not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}", path)
    if not isinstance(precision, int) or not 0 <= precision <= 12:
        raise InputError(f"precision must be an integer in 0..12, got {precision!r}", path)
    ids = as_ids(pred.ids)
    bad = np.char.find(ids, ",") >= 0
    for ch in (" ", "\n", "\r", "\t"):
        bad |= np.char.find(ids, ch) >= 0
    bad |= np.char.str_len(ids) == 0
    if bad.any():
        raise InputError(f"video id {ids[np.argmax(bad)]!r} is empty or holds a comma or whitespace", path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write((SUBMISSION_HEADER + "\n").encode())
            for start in range(0, len(ids), _WRITE_CHUNK):
                rows = slice(start, start + _WRITE_CHUNK)
                labels, scores = _sorted_top(pred.take(rows), top)
                if scores.size:
                    if np.isnan(scores).any() or scores.min() < 0 or scores.max() > 1:
                        raise InputError("scores must lie in [0, 1] (found NaN or a value outside)", path)
                    if labels.min() < 0 or labels.max() >= pred.num_classes:
                        raise InputError(f"label id out of range [0, {pred.num_classes})", path)
                fh.write(_format_rows(ids[rows], labels, scores, precision))
    return Path(path)


# =========================================================================== reading
def _lines(path) -> list[str]:
    """Decoded lines (BOM and CR stripped); InputError when missing/empty/not UTF-8."""
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", path) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start})", path) from None
    if not text.strip():
        raise InputError("empty file", path)
    lines = text.split("\n")
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _check_header(path, got: str, expected: str) -> None:
    if got.strip() != expected:
        shown = got.strip()[:60]
        raise InputError(f"line 1: expected header {expected!r}, got {shown!r}", path)


_SEP = np.zeros(256, bool)
_SEP[[9, 10, 11, 12, 13, 32, 44]] = True  # ASCII whitespace (as bytes.split) and the comma


def _read_table(path, header: str):
    """Tokenise a ``VideoId,<space-separated tokens>`` CSV, vectorised.

    Returns ``(ids, line_no, counts, flat)``: the video id (str) and line
    number of each non-blank data row, the number of tokens after its id and
    all those tokens (bytes) in row order.
    """
    try:
        raw = Path(path).read_bytes()
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", path) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputError(f"not UTF-8 text (byte {err.start})", path) from None
    if not raw.strip():
        raise InputError("empty file", path)
    end = raw.find(b"\n")
    _check_header(path, raw[:end if end >= 0 else len(raw)].decode("utf-8"), header)
    body = raw[end + 1:] if end >= 0 else b""
    arr = np.frombuffer(body, np.uint8)
    sep = _SEP[arr]
    start = ~sep
    start[1:] &= sep[:-1]
    nl = np.flatnonzero(arr == 10)
    tok_pos = np.flatnonzero(start)
    tok_line = np.searchsorted(nl, tok_pos)  # 0-based line within the body
    comma_pos = np.flatnonzero(arr == 44)
    comma_line = np.searchsorted(nl, comma_pos)
    n_lines = len(nl) + 1
    ntok = np.bincount(tok_line, minlength=n_lines)
    ncomma = np.bincount(comma_line, minlength=n_lines)
    rows = np.flatnonzero((ntok > 0) | (ncomma > 0))
    line_no = rows + 2
    bad = ncomma[rows] != 1
    if bad.any():
        j = int(np.argmax(bad))
        raise InputError(f"line {line_no[j]}: expected 2 comma-separated fields "
                         f"(VideoId and the rest), got {ncomma[rows[j]] + 1}", path)
    first = np.searchsorted(tok_line, rows)  # index of each row's first token
    comma = comma_pos[np.searchsorted(comma_line, rows)]
    bad = (ntok[rows] == 0) | (tok_pos[np.minimum(first, max(len(tok_pos) - 1, 0))] > comma)
    if bad.any():
        raise InputError(f"line {line_no[int(np.argmax(bad))]}: empty video id", path)
    tokens = np.array(body.replace(b",", b" ").split() or [b""], dtype=object)[:len(tok_pos)]
    is_id = np.zeros(len(tokens), bool)
    is_id[first] = True
    ids = [t.decode("utf-8") for t in tokens[first].tolist()]
    return ids, line_no, ntok[rows] - 1, tokens[~is_id].tolist()


def _line_of(pos: int, counts: np.ndarray, line_no: np.ndarray) -> int:
    """Line number of flat entry ``pos`` given entries per row."""
    return int(line_no[np.searchsorted(np.cumsum(counts), pos, side="right")])


def _parse(path, tokens: list[str], counts, line_no, kind, what: str, problem: str) -> np.ndarray:
    """Tokens to int64 (``kind=int``) or float64 (``kind=float``); the first bad one named."""
    dtype = np.int64 if kind is int else np.float64
    try:
        return np.fromiter(map(kind, tokens), dtype=dtype, count=len(tokens))
    except (ValueError, OverflowError):
        for pos, t in enumerate(tokens):  # slow path, only to name the bad token
            try:
                np.array(kind(t), dtype=dtype)
            except (ValueError, OverflowError):
                shown = t.decode("utf-8", "replace") if isinstance(t, bytes) else t
                raise InputError(f"line {_line_of(pos, counts, line_no)}: {what} {shown[:30]!r} "
                                 f"{problem}", path) from None
        raise


def _parse_ints(path, tokens, counts, line_no) -> np.ndarray:
    return _parse(path, tokens, counts, line_no, int, "label", "is not an integer")


def _parse_floats(path, tokens, counts, line_no) -> np.ndarray:
    return _parse(path, tokens, counts, line_no, float, "score", "is not a number")


def _assemble(path, ids: list[str], line_no, counts, labels, scores, num_classes: int,
              k: int | None) -> Predictions:
    """Validate pooled row entries and build a padded, sorted top-k Predictions."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}", path)
    if k is not None and (not isinstance(k, int) or k < 1):
        raise InputError(f"k must be a positive integer or None, got {k!r}", path)
    n = len(ids)
    rows = np.repeat(np.arange(n), counts)
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        j = int(np.argmax(bad))
        raise InputError(f"line {line_no[rows[j]]}: label {int(labels[j])} out of range [0, {num_classes})", path)
    bad = ~((scores >= 0) & (scores <= 1))  # NaN fails both
    if bad.any():
        j = int(np.argmax(bad))
        raise InputError(f"line {line_no[rows[j]]}: score {float(scores[j])!r} outside [0, 1]", path)
    empty = [i for i in np.flatnonzero(np.fromiter(map(len, ids), np.int64, n) == 0)[:1]]
    if empty:
        raise InputError(f"line {line_no[empty[0]]}: empty video id", path)
    id_arr = np.array(ids, dtype=str) if n else np.zeros(0, "<U1")
    order = np.argsort(id_arr, kind="stable")
    dup = np.flatnonzero(id_arr[order][1:] == id_arr[order][:-1])
    if len(dup):
        second = order[dup + 1]
        j = int(second[np.argmin(line_no[second])])
        first = int(np.flatnonzero(id_arr == id_arr[j])[0])
        raise InputError(f"line {line_no[j]}: duplicate video id {str(id_arr[j])!r} "
                         f"(first on line {line_no[first]})", path)
    key = rows * num_classes + labels
    korder = np.argsort(key, kind="stable")
    dup = np.flatnonzero(key[korder][1:] == key[korder][:-1])
    if len(dup):
        j = int(korder[dup + 1].min())
        raise InputError(f"line {line_no[rows[j]]}: label {int(labels[j])} appears twice", path)

    width = int(counts.max()) if n else 0
    if k is not None:
        width = max(width, k)
    width = min(width, num_classes)
    starts = np.cumsum(counts) - counts
    col = np.arange(len(labels)) - starts[rows]
    lab_m = np.zeros((n, width), np.int64)
    sc_m = np.zeros((n, width), np.float32)
    inside = col < width  # a row longer than num_classes cannot exist (no repeats)
    lab_m[rows[inside], col[inside]] = labels[inside]
    sc_m[rows[inside], col[inside]] = scores[inside]
    # padding: the smallest label ids not already in the row, score 0
    need = width - np.minimum(counts, width)
    if need.any():
        small = labels < width
        free = np.ones((n, width), bool)
        free[rows[small], labels[small]] = False
        pick = free & (np.cumsum(free, axis=1) <= need[:, None])
        pr, plab = np.nonzero(pick)
        pstart = np.cumsum(need) - need
        pcol = np.minimum(counts, width)[pr] + np.arange(len(pr)) - pstart[pr]
        lab_m[pr, pcol] = plab
    srt = np.argsort(-sc_m, axis=1, kind="stable")  # ties keep file order, pads last
    lab_m = np.take_along_axis(lab_m, srt, axis=1)
    sc_m = np.take_along_axis(sc_m, srt, axis=1)
    if k is not None:
        lab_m, sc_m = lab_m[:, :k], sc_m[:, :k]
    return Predictions(id_arr, np.ascontiguousarray(sc_m), np.ascontiguousarray(lab_m, dtype=np.int32),
                       num_classes)


def read_submission(path: str | os.PathLike, num_classes: int, *, k: int | None = None) -> Predictions:
    """Read a Kaggle submission CSV (``VideoId,LabelConfidencePairs``).

    Returns top-k Predictions in file row order, ``k`` = most pairs in a row
    unless given (longer rows are cut to their best ``k``). Rows are re-sorted
    by descending score (stable: ties keep the file's order) and short rows
    padded with score 0 and the smallest unused label ids. Scores are float32 of the printed
    decimals. A header-only file gives 0 rows.

    Errors (InputError ``"path: line N: problem"``): empty file, missing or
    wrong header, odd token count, non-numeric score, label not an integer or
    outside ``[0, num_classes)``, score outside [0, 1] or NaN, duplicate video
    id, a label repeated within a row, a row without a comma or with an empty id.
    """
    ids, line_no, counts, flat = _read_table(path, SUBMISSION_HEADER)
    odd = counts % 2 == 1
    if odd.any():
        j = int(np.argmax(odd))
        raise InputError(f"line {line_no[j]}: odd number of tokens ({counts[j]}); "
                         f"expected 'label score' pairs", path)
    pairs = counts // 2
    labels = _parse_ints(path, flat[0::2], pairs, line_no)
    scores = _parse_floats(path, flat[1::2], pairs, line_no)
    return _assemble(path, ids, line_no, pairs, labels, scores, num_classes, k)


def read_rank_csv(path: str | os.PathLike, num_classes: int, *, k: int | None = None) -> Predictions:
    """Read a ``VideoId,Label`` CSV of space-separated label ids, best first.

    Scores come from the rank: ``score = 1 / (rank + 1)`` with rank 0 for the
    best label, so 1, 1/2, 1/3, ... Short rows are padded with score 0 (see the
    module doc); the other rules and errors are those of :func:`read_submission`.
    """
    ids, line_no, counts, flat = _read_table(path, RANK_HEADER)
    labels = _parse_ints(path, flat, counts, line_no)
    rank = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    return _assemble(path, ids, line_no, counts, labels, 1.0 / (rank + 1.0), num_classes, k)


_INT_ARRAY = re.compile(r"\[\s*((?:\d+\s+)*\d+)?\s*\]")  # numpy print: [ 89 201]
_INT_LIST = re.compile(r"\[\s*((?:\d+\s*,\s*)*\d+)?\s*\]")  # python list: [38, 33]
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FLOAT_LIST = re.compile(rf"\[\s*((?:{_NUM}\s*,\s*)*{_NUM})?\s*\]")


def _numbers(path, line: int, text: str, pattern: re.Pattern, what: str, kind=int) -> list:
    m = pattern.fullmatch(text.strip())
    if not m:
        raise InputError(f"line {line}: cannot parse {what} {text.strip()[:40]!r}", path)
    body = m.group(1)
    return [kind(t) for t in re.split(r"[\s,]+", body.strip())] if body else []


def read_scored_csv(path: str | os.PathLike, num_classes: int) -> tuple[Predictions, Labels]:
    """Read a pandas-written ``,VideoId,True labels,Pred labels,Confidence`` CSV.

    Returns ``(predictions, truth)`` keyed by the file's video ids in row order:
    top-k predictions (k = most predicted labels in a row, 10 in the shared
    files; rows stably re-sorted by descending confidence, so the many ties of
    saturated scores keep the file's order; short rows padded as in the
    module doc) and the true label sets. Fields are parsed with strict
    regular expressions (no eval). Errors name the file and line.
    """
    lines = _lines(path)
    reader = csv.reader(io.StringIO("\n".join(lines)))
    try:
        header = next(reader, [])
    except csv.Error as err:
        raise InputError(f"line 1: {err}", path) from None
    if header != SCORED_HEADER:
        raise InputError(f"line 1: expected header {','.join(SCORED_HEADER)!r}, "
                         f"got {','.join(header)[:60]!r}", path)
    ids, line_no, truth, counts, labels, scores = [], [], [], [], [], []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise InputError(f"line {start}: {err}", path) from None
        if not row or not "".join(row).strip():
            continue
        if len(row) != 5:
            raise InputError(f"line {start}: expected 5 fields, got {len(row)}", path)
        t = _numbers(path, start, row[2], _INT_ARRAY, "true labels")
        p = _numbers(path, start, row[3], _INT_LIST, "predicted labels")
        c = _numbers(path, start, row[4], _FLOAT_LIST, "confidences", float)
        if len(p) != len(c):
            raise InputError(f"line {start}: {len(p)} predicted labels but {len(c)} confidences", path)
        bad = [x for x in t if x >= num_classes]
        if bad:
            raise InputError(f"line {start}: true label {bad[0]} out of range [0, {num_classes})", path)
        ids.append(row[1].strip())
        line_no.append(start)
        truth.append(t)
        counts.append(len(p))
        labels.extend(p)
        scores.extend(c)
    pred = _assemble(path, ids, np.array(line_no, dtype=np.int64), np.array(counts, dtype=np.int64),
                     np.array(labels, dtype=np.int64), np.array(scores, dtype=np.float64), num_classes, None)
    return pred, Labels.from_lists(pred.ids, truth, num_classes)
