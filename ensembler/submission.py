"""The Kaggle submission, checked: the test split, every expected video, nothing else.

A submission that lacks videos is rejected by the competition after the
upload; one made from the held-out split scores nothing. So
:func:`write_checked_submission` refuses a store of a split other than
``test`` unless told (``split_ok``), and with ``expect`` (a sample submission
or a truth CSV: only its ``VideoId`` column is read) refuses a submission that
lacks an expected video or adds one, naming a few of each.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from predictions.atomic import check_target
from predictions.csvio import write_submission
from predictions.errors import InputError
from predictions.params import Num
from predictions.store import check_input_file, open_store, read_store

__all__ = ["write_checked_submission", "check_submission_target", "read_expected_ids", "MAX_ID_BYTES"]

#: Longest video id accepted in an ``--expect`` file (the stores' bound).
MAX_ID_BYTES = 256
#: Bytes read at a time from one line (only its first field is kept: memory stays bounded).
_LINE_BYTES = 1 << 16


def check_submission_target(out, top: int, precision: int) -> None:
    """The options of a submission, checked before any work: a CSV path, ``top`` and ``precision`` in range."""
    if not str(out).strip():
        raise InputError("the submission path is empty: give a file name")
    if not os.fspath(out).lower().endswith(".csv"):
        raise InputError("a submission is a .csv file", out)
    Num(lo=1, hi=100_000, integer=True).check("--top", top)
    Num(lo=0, hi=12, integer=True).check("--precision", precision)
    check_target(out, what="submission")


def read_expected_ids(path) -> np.ndarray:
    """The ``VideoId`` column of a sample submission or truth CSV, as unicode ids (bounded per line)."""
    path = Path(path)
    check_input_file(path, "a CSV of expected video ids (a sample submission or a truth CSV)")
    ids = []
    try:
        with open(path, "rb") as fh:
            header = fh.readline(4096).decode("utf-8-sig", "replace").strip()
            if not header.lower().startswith("videoid,"):
                raise InputError(f"line 1: expected a header starting 'VideoId,', got {header[:60]!r}", path)
            for line_no, raw in enumerate(iter(lambda: fh.readline(_LINE_BYTES), b""), start=2):
                head = raw.split(b",", 1)[0].strip()
                if not head:
                    if raw.strip():
                        raise InputError(f"line {line_no}: empty video id", path)
                    continue
                if len(head) > MAX_ID_BYTES:
                    raise InputError(f"line {line_no}: video id longer than {MAX_ID_BYTES} bytes", path)
                ids.append(head.decode("utf-8", "replace"))
                while not raw.endswith(b"\n") and len(raw) == _LINE_BYTES:
                    raw = fh.readline(_LINE_BYTES)  # the rest of a long line (its labels): not needed
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", path) from None
    out = np.asarray(ids, dtype=str)
    uniq, counts = np.unique(out, return_counts=True)
    if (counts > 1).any():
        raise InputError(f"video id {uniq[np.argmax(counts > 1)]!r} appears twice", path)
    return out


def _shown(ids: np.ndarray, n: int = 3) -> str:
    more = f" and {len(ids) - n} more" if len(ids) > n else ""
    return ", ".join(map(str, ids[:n])) + more


def write_checked_submission(store, out, *, top: int = 20, precision: int = 6, split_ok: bool = False,
                             expect=None, verify: bool = True) -> dict:
    """Write the submission CSV of ``store`` after the checks of the module docstring.

    Returns ``{"videos", "top", "split"}``. ``store`` is a store path (its
    split is read from its metadata).
    """
    with open_store(store) as reader:
        split, model = reader.meta.split, reader.meta.model
    if split != "test" and not split_ok:
        raise InputError(f"the store is of split {split!r}, not 'test': a submission is made from the test "
                         f"split (pass --any-split to write it anyway)", store)
    pred = read_store(store, verify=verify)
    if len(pred) == 0:
        raise InputError("the store holds no video: a submission needs at least one row", store)
    if expect is not None:
        wanted = read_expected_ids(expect)
        lacking = np.setdiff1d(wanted, pred.ids)
        extra = np.setdiff1d(pred.ids, wanted)
        if len(lacking) or len(extra):
            parts = ([f"lacks {len(lacking)} expected video(s) ({_shown(lacking)})"] if len(lacking) else []) + (
                [f"adds {len(extra)} not expected ({_shown(extra)})"] if len(extra) else [])
            raise InputError(f"the submission of {model!r} ({len(pred)} videos) {' and '.join(parts)} "
                             f"against {expect} ({len(wanted)} videos)", store)
    write_submission(out, pred, top=top, precision=precision)
    return {"videos": len(pred), "top": top, "split": split}
