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
* **Truth CSV** (``read_truth_csv``): ``VideoId,Labels`` with space-separated
  true label ids (possibly none), read as :class:`~predictions.types.Labels`.

``read_predictions_csv`` reads a submission or a rank CSV, told apart by the header.

Reading rules shared by all readers: UTF-8, an optional BOM, LF or CRLF line
ends, blank lines ignored. The ``VideoId,<numbers>`` files are read block by
block with the vectorised engine of :mod:`predictions.csvscan` (no Python loop
per row; bounded memory besides the result). Rows become the top-k layout with
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .csvscan import Block, CsvText, ids_to_str, parse_numbers, scan, token_bytes
from .errors import InputError
from .ids import MAX_ID_BYTES
from .params import Num, check_params
from .paths import check_input_file
from .storeformat import MAX_CLASSES
from .types import Labels, Predictions, as_ids

__all__ = ["write_submission", "read_submission", "read_rank_csv", "read_predictions_csv", "read_scored_csv",
           "read_truth_csv"]

SUBMISSION_HEADER = "VideoId,LabelConfidencePairs"
RANK_HEADER = "VideoId,Label"
TRUTH_HEADER = "VideoId,Labels"
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
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    if not isinstance(pred, Predictions):
        raise InputError(f"write_submission expects a Predictions object, got {type(pred).__name__}", path)
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}", path)
    if not isinstance(precision, int) or isinstance(precision, bool) or not 0 <= precision <= 12:
        raise InputError(f"precision must be an integer in 0..12, got {precision!r}", path)
    ids = as_ids(pred.ids)
    bad = np.char.find(ids, ",") >= 0
    for ch in (" ", "\n", "\r", "\t"):
        bad |= np.char.find(ids, ch) >= 0
    bad |= np.char.str_len(ids) == 0
    if bad.any():
        raise InputError(f"video id {str(ids[np.argmax(bad)])!r} is empty or holds a comma or whitespace", path)
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
def _check_header(path, got: str, expected: str) -> None:
    if got.strip() != expected:
        shown = got.strip()[:60]
        raise InputError(f"line 1: expected header {expected!r}, got {shown!r}", path)


_ARGS = {"num_classes": Num(1, MAX_CLASSES, integer=True), "k": Num(1, MAX_CLASSES, integer=True, none=True)}


def _check_args(path, num_classes, k=None) -> None:
    """The reader's arguments (before the file is opened): a path, and integers (never a bool) in range."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    try:
        check_params({"num_classes": num_classes, "k": k}, _ARGS)
    except InputError as err:
        raise InputError(err.problem, path) from None


def _row_of(j: int, counts: np.ndarray) -> int:
    """Row holding flat entry ``j`` given entries per row."""
    return int(np.searchsorted(np.cumsum(counts), j, side="right"))


@dataclass
class _Rows:
    """The data rows of a ``VideoId,<space-separated numbers>`` CSV, in file order.

    ``ids`` (n,) unicode; ``line_no`` (n,) file line of each row; ``counts``
    (n,) numbers per row (for pairs: pairs); ``labels`` (nnz,) int32 and
    ``scores`` (nnz,) float32 (pairs only, else None), row after row, already
    checked to lie in ``[0, num_classes)`` and [0, 1].
    """

    ids: np.ndarray
    line_no: np.ndarray
    counts: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None


def _numbers_of(path, block: Block, sc, starts, ends, integer: bool) -> np.ndarray:
    """Parse tokens; InputError naming the line of the first bad one."""
    values, bad = parse_numbers(block.buf, starts, ends, integer)
    if bad >= 0:
        pos = int(starts.ravel()[bad])
        shown = block.buf[pos:int(ends.ravel()[bad])].decode("utf-8", "replace")
        what, problem = ("label", "is not an integer") if integer else ("score", "is not a number")
        raise InputError(f"line {block.first_line + sc.line_of(pos)}: {what} {shown[:30]!r} {problem}", path)
    return values


def _check_entries(path, line_no, counts, labels, scores, num_classes: int) -> None:
    """Label ids in ``[0, num_classes)`` and scores in [0, 1] (not NaN); InputError naming the line."""
    if not len(labels):
        return
    ok = labels.min() >= 0 and labels.max() < num_classes
    if ok and (scores is None or (scores.min() >= 0 and scores.max() <= 1)):  # NaN fails: min/max give NaN
        return
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        j = int(np.argmax(bad))
        raise InputError(f"line {line_no[_row_of(j, counts)]}: label {int(labels[j])} out of range "
                         f"[0, {num_classes})", path)
    if scores is not None:
        bad = ~((scores >= 0) & (scores <= 1))  # NaN fails both
        if bad.any():
            j = int(np.argmax(bad))
            raise InputError(f"line {line_no[_row_of(j, counts)]}: score {float(scores[j])!r} outside [0, 1]",
                             path)


def _check_id_lengths(path, block: Block, starts: np.ndarray, ends: np.ndarray, line_no: np.ndarray) -> None:
    """InputError naming the line of the first id over MAX_ID_BYTES, before any id array is built (the
    ids of a block are gathered fixed-width: one long id would cost its length times the block's rows)."""
    long = (ends - starts) > MAX_ID_BYTES
    if long.any():
        j = int(np.argmax(long))
        head = bytes(block.buf[int(starts[j]):int(starts[j]) + 20]).decode("utf-8", "replace")
        raise InputError(f"line {line_no[j]}: video id of {int(ends[j] - starts[j])} bytes (starts {head!r}); "
                         f"ids are at most {MAX_ID_BYTES} bytes", path)


def _block_rows(path, block: Block, pairs: bool, num_classes: int):
    """One block's rows, checked: ``(ids S, line_no, counts, labels int32, scores float32 | None)``."""
    sc = scan(block)
    rows = np.flatnonzero((sc.line_tokens > 0) | (sc.line_commas > 0))   # blank lines are skipped
    line_no = block.first_line + rows
    ncomma = sc.line_commas[rows]
    bad = ncomma != 1
    if bad.any():
        j = int(np.argmax(bad))
        raise InputError(f"line {line_no[j]}: expected 2 comma-separated fields "
                         f"(VideoId and the rest), got {ncomma[j] + 1}", path)
    first, ntok = sc.line_first[rows], sc.line_tokens[rows]
    bad = ntok == 0
    if len(sc.starts):
        bad |= sc.starts[np.minimum(first, len(sc.starts) - 1)] > sc.commas[sc.first_comma[rows]]
    if bad.any():
        raise InputError(f"line {line_no[int(np.argmax(bad))]}: empty video id", path)
    _check_id_lengths(path, block, sc.starts[first], sc.ends[first], line_no)
    counts = ntok - 1
    if pairs:
        odd = counts % 2 == 1
        if odd.any():
            j = int(np.argmax(odd))
            raise InputError(f"line {line_no[j]}: odd number of tokens ({counts[j]}); "
                             f"expected 'label score' pairs", path)
    n = len(rows)
    if n and (ntok == ntok[0]).all():            # the usual file: as many numbers in every row
        vs, ve = sc.starts.reshape(n, -1)[:, 1:], sc.ends.reshape(n, -1)[:, 1:]
    else:                                        # every token is on a row: drop each row's first (its id)
        keep = np.ones(len(sc.starts), bool)
        keep[first] = False
        vs, ve = sc.starts[keep], sc.ends[keep]
    ids = token_bytes(block, sc.starts[first], sc.ends[first])
    scores = None
    if pairs:  # rows hold an even count, so label and score alternate in the flat order too
        counts //= 2
        labels = _numbers_of(path, block, sc, vs[..., 0::2], ve[..., 0::2], True)
        scores = _numbers_of(path, block, sc, vs[..., 1::2], ve[..., 1::2], False)
    else:
        labels = _numbers_of(path, block, sc, vs, ve, True)
    _check_entries(path, line_no, counts, labels, scores, num_classes)
    return (ids, line_no, counts, labels.astype(np.int32, copy=False),
            None if scores is None else scores.astype(np.float32))


def _read_rows(path, header: str, pairs: bool, num_classes: int) -> _Rows:
    """Read a ``VideoId,<numbers>`` CSV block by block (bounded memory, no loop per row)."""
    parts = []
    with CsvText(path) as text:
        _check_header(path, text.header, header)
        for block in text.blocks():
            parts.append(_block_rows(path, block, pairs, num_classes))
    if not parts:
        return _Rows(np.zeros(0, "<U1"), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int32),
                     np.zeros(0, np.float32) if pairs else None)
    ids, line_no, counts, labels, scores = zip(*parts)
    return _Rows(ids_to_str(list(ids)), np.concatenate(line_no), np.concatenate(counts), np.concatenate(labels),
                 np.concatenate(scores) if pairs else None)


def _duplicate_id(path, ids: np.ndarray, line_no: np.ndarray) -> None:
    """InputError on the earliest line whose video id was already seen (naming the first line)."""
    n = len(ids)
    if n and ids.dtype.itemsize // 4 > MAX_ID_BYTES:  # (also bounds the loop below, over the id width)
        lengths = np.strings.str_len(ids)
        j = int(np.argmax(lengths))
        if lengths[j] > MAX_ID_BYTES:
            raise InputError(f"line {line_no[j]}: video id of {int(lengths[j])} characters (starts "
                             f"{str(ids[j])[:20]!r}); ids are at most {MAX_ID_BYTES} bytes", path)
    if n < 2:
        return
    # Distinct hashes prove distinct ids (equal ids hash equal): one uint64 sort instead of a string sort.
    chars = np.ascontiguousarray(ids).view(np.uint32).reshape(n, -1)
    h = np.zeros(n, np.uint64)
    for c in range(chars.shape[1]):           # over the id width, not the rows
        h = h * np.uint64(0x100000001B3) + chars[:, c]
    h.sort()
    if not (h[1:] == h[:-1]).any():
        return
    order = np.argsort(ids, kind="stable")
    dup = np.flatnonzero(ids[order][1:] == ids[order][:-1])
    if len(dup):
        second = order[dup + 1]
        j = int(second[np.argmin(line_no[second])])
        first = int(np.flatnonzero(ids == ids[j])[0])
        raise InputError(f"line {line_no[j]}: duplicate video id {str(ids[j])!r} "
                         f"(first on line {line_no[first]})", path)


def _assemble(path, ids: np.ndarray, line_no, counts, labels, scores, num_classes: int,
              k: int | None) -> Predictions:
    """Build a padded, sorted top-k Predictions from checked row entries (see :func:`_check_entries`).

    Checks the ids (no duplicate) and the rows (no label twice).
    """
    n = len(ids)
    _duplicate_id(path, ids, line_no)
    labels = labels.astype(np.int32, copy=False)
    width = int(counts.max()) if n else 0
    uniform = n > 0 and bool((counts == width).all())
    if uniform:                                  # the usual file: rows of equal length, no scatter
        lab_m = labels.reshape(n, width)
        sc_m = scores.astype(np.float32, copy=False).reshape(n, width)
        srt = np.sort(lab_m, axis=1)
        rep = (srt[:, 1:] == srt[:, :-1]).any(axis=1)
        if rep.any():
            r = int(np.argmax(rep))
            row = lab_m[r].tolist()
            j = next(i for i, x in enumerate(row) if x in row[:i])
            raise InputError(f"line {line_no[r]}: label {row[j]} appears twice", path)
    else:
        rows = np.repeat(np.arange(n), counts)
        key = rows * num_classes + labels
        korder = np.argsort(key, kind="stable")
        dup = np.flatnonzero(key[korder][1:] == key[korder][:-1])
        if len(dup):
            j = int(korder[dup + 1].min())
            raise InputError(f"line {line_no[rows[j]]}: label {int(labels[j])} appears twice", path)
    if k is not None:
        width = max(width, k)
    width = min(width, num_classes)
    if not uniform or lab_m.shape[1] != width:
        rows = np.repeat(np.arange(n), counts)
        starts = np.cumsum(counts) - counts
        col = np.arange(len(labels)) - starts[rows]
        lab_m = np.zeros((n, width), np.int32)
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
    if width > 1 and not (sc_m[:, 1:] <= sc_m[:, :-1]).all():
        srt = np.argsort(-sc_m, axis=1, kind="stable")  # ties keep file order, pads last
        lab_m = np.take_along_axis(lab_m, srt, axis=1)
        sc_m = np.take_along_axis(sc_m, srt, axis=1)
    if k is not None:
        lab_m, sc_m = lab_m[:, :k], sc_m[:, :k]
    return Predictions(ids, np.ascontiguousarray(sc_m), np.ascontiguousarray(lab_m, dtype=np.int32), num_classes)


def read_submission(path: str | os.PathLike, num_classes: int, *, k: int | None = None) -> Predictions:
    """Read a Kaggle submission CSV (``VideoId,LabelConfidencePairs``).

    Returns top-k Predictions in file row order, ``k`` = most pairs in a row
    unless given (longer rows are cut to their best ``k``). Rows are re-sorted
    by descending score (stable: ties keep the file's order) and short rows
    padded with score 0 and the smallest unused label ids. Scores are float32 of the printed
    decimals. A header-only file gives 0 rows. Parsed without a Python loop
    per row (see :mod:`predictions.csvscan`), block by block.

    Errors (InputError ``"path: line N: problem"``): empty file, missing or
    wrong header, odd token count, non-numeric score, label not an integer or
    outside ``[0, num_classes)``, score outside [0, 1] or NaN, duplicate video
    id, a label repeated within a row, a row without a comma or with an empty id.
    """
    _check_args(path, num_classes, k)
    r = _read_rows(path, SUBMISSION_HEADER, True, num_classes)
    return _assemble(path, r.ids, r.line_no, r.counts, r.labels, r.scores, num_classes, k)


def read_rank_csv(path: str | os.PathLike, num_classes: int, *, k: int | None = None) -> Predictions:
    """Read a ``VideoId,Label`` CSV of space-separated label ids, best first.

    Scores come from the rank: ``score = 1 / (rank + 1)`` with rank 0 for the
    best label, so 1, 1/2, 1/3, ... Short rows are padded with score 0 (see the
    module doc); the other rules and errors are those of :func:`read_submission`.
    """
    _check_args(path, num_classes, k)
    r = _read_rows(path, RANK_HEADER, False, num_classes)
    rank = np.arange(len(r.labels)) - np.repeat(np.cumsum(r.counts) - r.counts, r.counts)
    return _assemble(path, r.ids, r.line_no, r.counts, r.labels, 1.0 / (rank + 1.0), num_classes, k)


def read_predictions_csv(path: str | os.PathLike, num_classes: int, *, k: int | None = None) -> Predictions:
    """Read a submission or a rank CSV, told apart by the header (``ensemble import`` uses this).

    ``VideoId,Label`` is a rank CSV (:func:`read_rank_csv`), ``VideoId,LabelConfidencePairs`` a
    submission (:func:`read_submission`); any other header (``VideoId, Label`` with a space
    included) is an InputError naming both.
    """
    _check_args(path, num_classes, k)
    with CsvText(path) as text:
        header = text.header.strip()
    if header not in (RANK_HEADER, SUBMISSION_HEADER):
        raise InputError(f"line 1: expected header {SUBMISSION_HEADER!r} (or {RANK_HEADER!r} for label ids "
                         f"without scores), got {header[:60]!r}", path)
    return (read_rank_csv if header == RANK_HEADER else read_submission)(path, num_classes, k=k)


def read_truth_csv(path: str | os.PathLike, num_classes: int) -> Labels:
    """Read a ``VideoId,Labels`` CSV of space-separated true label ids (an empty list is allowed).

    Returns Labels in file row order; a label repeated within a row counts
    once. Same reading rules as :func:`read_submission` (BOM, CRLF, blank
    lines, vectorised). Errors (InputError naming file and line): the
    reader's usual ones, a label that is not an integer or outside
    ``[0, num_classes)``, a duplicate video id.
    """
    _check_args(path, num_classes)
    r = _read_rows(path, TRUTH_HEADER, False, num_classes)
    _duplicate_id(path, r.ids, r.line_no)
    return _labels_csr(r.ids, r.counts, r.labels, num_classes)


def _labels_csr(ids: np.ndarray, counts: np.ndarray, labels: np.ndarray, num_classes: int) -> Labels:
    """Labels from per-row counts and flat label ids: each row sorted, repeats dropped (as ``from_lists``)."""
    n = len(ids)
    rows = np.repeat(np.arange(n, dtype=np.int64), counts)
    key = rows * num_classes + labels.astype(np.int64)
    if len(key) > 1 and not (key[1:] > key[:-1]).all():
        key = np.unique(key)                  # sorts each row and drops repeats
    rows, lab = np.divmod(key, num_classes)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    return Labels(ids, indptr, lab.astype(np.int32), num_classes)


# --------------------------------------------------------------------------- scored CSV
_INT_ARRAY = re.compile(r"\[\s*((?:\d+\s+)*\d+)?\s*\]")  # numpy print: [ 89 201]
_INT_LIST = re.compile(r"\[\s*((?:\d+\s*,\s*)*\d+)?\s*\]")  # python list: [38, 33]
_NUM = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_FLOAT_LIST = re.compile(rf"\[\s*((?:{_NUM}\s*,\s*)*{_NUM})?\s*\]")
# The usual scored row (pandas output), a strict subset of what the csv module + the
# patterns above accept: ASCII digits, spaces only, no quotes inside fields, the id
# without whitespace. Rows that differ take the csv-module path.
_A_NUM = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_SCORED_ROW = re.compile(
    r'^[^,"\r\n]*,([^,"\s]*),\[( *(?:[0-9]+(?: +[0-9]+)*)? *)\],'
    r'"\[( *(?:[0-9]+(?: *, *[0-9]+)*)? *)\]",'
    rf'"\[( *(?:{_A_NUM}(?: *, *{_A_NUM})*)? *)\]"\r?$', re.M)


def _numbers(path, line: int, text: str, pattern: re.Pattern, what: str, kind=int) -> list:
    m = pattern.fullmatch(text.strip())
    if not m:
        raise InputError(f"line {line}: cannot parse {what} {text.strip()[:40]!r}", path)
    body = m.group(1)
    return [kind(t) for t in re.split(r"[\s,]+", body.strip())] if body else []


def _column_numbers(path, fields: list[str], integer: bool):
    """Numbers of one captured field per row: ``(counts per row, flat values, bad)`` (vectorised)."""
    block = Block.of("\n".join(fields).encode() + b"\n")
    sc = scan(block)
    values, bad = parse_numbers(block.buf, sc.starts, sc.ends, integer)
    return sc.line_tokens[:len(fields)], values, bad


def _check_scored_ids(path, ids: list[str], line_no) -> None:
    """Each id of a scored CSV non-empty and at most MAX_ID_BYTES (UTF-8), before an id array is built."""
    for j, vid in enumerate(ids):
        if not vid or len(vid) > MAX_ID_BYTES // 4 and len(vid.encode("utf-8")) > MAX_ID_BYTES:
            problem = (f"video id of {len(vid.encode('utf-8'))} bytes (starts {vid[:20]!r}); ids are at most "
                       f"{MAX_ID_BYTES} bytes") if vid else "empty video id"
            raise InputError(f"line {line_no[j]}: {problem}", path)


def _scored(path, ids: list[str], line_no, truth, pred, conf, num_classes: int) -> tuple[Predictions, Labels]:
    """The rows of a scored CSV, read by either path, checked once: ``truth``, ``pred``, ``conf`` are each
    ``(numbers per row, flat numbers)``; ids were checked as they were read (:func:`_check_scored_ids`).

    Per row: as many confidences as predicted labels and true labels in range (InputError naming the
    first bad line), then the entries (:func:`_check_entries`) and the assembly (:func:`_assemble`).
    """
    (t_cnt, t_val), (p_cnt, p_val), (c_cnt, c_val) = truth, pred, conf
    line_no = np.asarray(line_no, dtype=np.int64)
    mismatch = p_cnt != c_cnt
    t_rows = np.repeat(np.arange(len(line_no)), t_cnt)
    out = np.zeros(len(line_no), bool)
    out[t_rows[t_val >= num_classes]] = True
    bad = mismatch | out
    if bad.any():
        j = int(np.argmax(bad))
        if mismatch[j]:
            raise InputError(f"line {line_no[j]}: {p_cnt[j]} predicted labels but {c_cnt[j]} confidences", path)
        first = int(t_val[t_rows == j][t_val[t_rows == j] >= num_classes][0])
        raise InputError(f"line {line_no[j]}: true label {first} out of range [0, {num_classes})", path)
    id_arr = np.array(ids, dtype=str) if ids else np.zeros(0, "<U1")
    _check_entries(path, line_no, p_cnt, p_val, c_val, num_classes)
    predictions = _assemble(path, id_arr, line_no, p_cnt, p_val, c_val, num_classes, None)
    return predictions, _labels_csr(predictions.ids, t_cnt, t_val, num_classes)


def _read_scored_fast(path, num_classes: int):
    """The vectorised path of :func:`read_scored_csv`; None when a row is not of the usual shape."""
    try:
        raw = Path(path).read_bytes()
        text = raw.decode("utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return None
    head, _, body = text.partition("\n")
    if head.rstrip("\r") != ",".join(SCORED_HEADER):
        return None
    rows = _SCORED_ROW.findall(body)
    blk = Block.of(body.encode())
    sc = scan(blk)
    data_lines = np.flatnonzero((sc.line_tokens > 0) | (sc.line_commas > 0))
    if len(rows) != len(data_lines) or not rows:
        return None
    # a line of commas and spaces only is blank to the csv path: such files take that path
    ids, truth, pred, conf = (list(c) for c in zip(*rows))
    _check_scored_ids(path, ids, data_lines + 2)
    t_cnt, t_val, t_bad = _column_numbers(path, truth, True)
    p_cnt, p_val, p_bad = _column_numbers(path, pred, True)
    c_cnt, c_val, c_bad = _column_numbers(path, conf, False)
    if max(t_bad, p_bad, c_bad) >= 0:
        return None
    return _scored(path, ids, data_lines + 2, (t_cnt, t_val), (p_cnt, p_val), (c_cnt, c_val), num_classes)


def _read_scored_slow(path, num_classes: int):
    """Row by row with the csv module: any quoting, multi-line fields, Unicode digits."""
    lines = _lines(path)
    reader = csv.reader(io.StringIO("\n".join(lines)))
    try:
        header = next(reader, [])
    except csv.Error as err:
        raise InputError(f"line 1: {err}", path) from None
    if header != SCORED_HEADER:
        raise InputError(f"line 1: expected header {','.join(SCORED_HEADER)!r}, "
                         f"got {','.join(header)[:60]!r}", path)
    ids, line_no, t_cnt, t_val, p_cnt, p_val, c_cnt, c_val = [], [], [], [], [], [], [], []
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
        big = [x for x in t + p if x >= 2 ** 63]  # (before they become int64 arrays)
        if big:
            raise InputError(f"line {start}: label {big[0]} out of range [0, {num_classes})", path)
        _check_scored_ids(path, [row[1].strip()], [start])
        ids.append(row[1].strip())
        line_no.append(start)
        t_cnt.append(len(t))
        t_val.extend(t)
        p_cnt.append(len(p))
        p_val.extend(p)
        c_cnt.append(len(c))
        c_val.extend(c)
    counts = [np.array(x, dtype=np.int64) for x in (t_cnt, p_cnt, c_cnt)]
    return _scored(path, ids, line_no, (counts[0], np.array(t_val, dtype=np.int64)),
                   (counts[1], np.array(p_val, dtype=np.int64)), (counts[2], np.array(c_val, dtype=np.float64)),
                   num_classes)


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


def read_scored_csv(path: str | os.PathLike, num_classes: int) -> tuple[Predictions, Labels]:
    """Read a pandas-written ``,VideoId,True labels,Pred labels,Confidence`` CSV.

    Returns ``(predictions, truth)`` keyed by the file's video ids in row order:
    top-k predictions (k = most predicted labels in a row, 10 in the shared
    files; rows stably re-sorted by descending confidence, so the many ties of
    saturated scores keep the file's order; short rows padded as in the
    module doc) and the true label sets. Fields are parsed with strict
    regular expressions (no eval). Errors name the file and line.

    Rows of the usual shape are matched by one regular expression over the
    whole file and their numbers parsed at once (vectorised); a file with any
    other row (quoted differently, a field over several lines, Unicode digits)
    or an error is read row by row with the csv module, which names the line.
    """
    _check_args(path, num_classes)
    check_input_file(Path(os.fspath(path)), "a CSV file")  # never open a FIFO (it blocks) or a device
    fast = _read_scored_fast(path, num_classes)
    return fast if fast is not None else _read_scored_slow(path, num_classes)
