"""Ground truth in the forms users have: labels stores and the official truth CSV.

``--labels`` (and the Python API's ``labels``) take, mixed freely:

* labels stores ``labels.<split>.h5`` (files, directories or globs);
* truth CSVs in the official layout, ``VideoId,Labels`` with space-separated
  class ids, named ``<anything>.<split>.csv`` (``truth.heldout.csv``) or given
  with their split, ``heldout=truth.csv``.

:func:`find_truth` maps each split to its file; :func:`read_truth` reads them
(a CSV needs the class count, which comes from the members).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from predictions.csvio import read_truth_csv
from predictions.errors import InputError
from predictions.labels import read_labels
from predictions.store import check_input_file
from predictions.types import Labels

from .evaluate import find_label_files

__all__ = ["find_truth", "read_truth", "is_truth_csv"]

_SPLIT_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
_CSV_SPLIT = re.compile(r"^.+\.(?P<split>[A-Za-z0-9_-]+)\.csv$", re.IGNORECASE)


def is_truth_csv(pattern) -> bool:
    text = os.fspath(pattern)
    return text.lower().endswith(".csv")


def _explicit(pattern: str) -> tuple[str | None, str]:
    """``("heldout", "truth.csv")`` for ``heldout=truth.csv``; ``(None, pattern)`` otherwise."""
    split, eq, path = pattern.partition("=")
    if eq and _SPLIT_NAME.fullmatch(split) and not os.path.lexists(pattern):
        return split, path
    return None, pattern


def find_truth(patterns) -> dict[str, Path]:
    """``{split: path}`` of labels stores and truth CSVs (see the module docstring)."""
    if patterns is None:
        return {}
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    out: dict[str, Path] = {}
    stores = []
    for pattern in map(os.fspath, patterns):
        split, path = _explicit(pattern)
        if not is_truth_csv(path):
            if split is not None:
                raise InputError(f"{split}={path}: a split is given only with a truth CSV (labels stores are "
                                 f"named labels.<split>.h5)")
            stores.append(pattern)
            continue
        if split is None:
            m = _CSV_SPLIT.match(Path(path).name)
            if not m:
                raise InputError("a truth CSV needs its split: name it <name>.<split>.csv (truth.heldout.csv) "
                                 "or give it as SPLIT=PATH (heldout=truth.csv)", path)
            split = m.group("split")
        if split in out:
            raise InputError(f"two truth files for split {split!r} (the other: {out[split]})", path)
        check_input_file(Path(path), "a truth CSV (VideoId,Labels)")
        out[split] = Path(path)
    if stores:
        for split, path in find_label_files(stores).items():
            if split in out:
                raise InputError(f"two truth files for split {split!r} (the other: {out[split]})", path)
            out[split] = path
    return out


def read_truth(files: dict[str, Path], num_classes: int | None) -> dict[str, Labels]:
    """``{split: Labels}``; a truth CSV is read with ``num_classes`` classes (required for CSVs)."""
    out = {}
    for split, path in files.items():
        if is_truth_csv(path):
            if num_classes is None:
                raise InputError("the class count of a truth CSV is unknown: give --classes", path)
            out[split] = read_truth_csv(path, num_classes)
        else:
            out[split] = read_labels(path)
    return out
