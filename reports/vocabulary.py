"""Label vocabularies: class id -> human-readable name and vertical (topic group).

:func:`load_vocabulary` reads the formats in use for YouTube-8M:

* the official 2018 ``vocabulary.csv`` (``Index,TrainVideoCount,KnowledgeGraphId,
  Name,WikiUrl,Vertical1,...``; rows ordered by ``TrainVideoCount``, not by ``Index``);
* the project generator's ``vocabulary.csv`` (``Index,Name,Vertical1``);
* a ``label_id,label_name`` CSV (e.g. ``label_names_2018_3862.csv``), optionally
  with a ``label_id<TAB>vertical_index`` TSV for the verticals.

Every format gives the same table; anything else is an
:class:`~predictions.errors.InputError` naming the file.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pandas as pd

from predictions.errors import InputError

__all__ = ["load_vocabulary", "describe_classes"]

_KNOWN = ("Index,Name[,Vertical1,...] (official 2018 or generator vocabulary.csv), "
          "or label_id,label_name (label_names csv)")


def load_vocabulary(path, verticals=None) -> pd.DataFrame:
    """Read a vocabulary file.

    Parameters
    ----------
    path : a vocabulary CSV in one of the formats of the module docstring.
    verticals : optional TSV ``label_id<TAB>vertical`` (no header); its values
        replace (or supply) the ``vertical`` column. Integer verticals are shown
        as ``"vertical N"``.

    Returns
    -------
    DataFrame indexed by class id (sorted), with columns ``index`` (int, the
    class id), ``name`` (str) and ``vertical`` (str, ``""`` when unknown); the
    official file also gives ``train_count`` (int).
    """
    path = Path(path)
    header = _header(path)
    cols = {c.strip().lower(): c for c in header}
    df = _read_csv(path)
    if "index" in cols and "name" in cols:
        out = pd.DataFrame({"index": _ints(df[cols["index"]], path, "Index"),
                            "name": _text(df[cols["name"]])})
        out["vertical"] = _text(df[cols["vertical1"]]) if "vertical1" in cols else ""
        if "traincount" in cols or "trainvideocount" in cols:
            out["train_count"] = _ints(df[cols.get("trainvideocount", cols.get("traincount"))], path,
                                       "TrainVideoCount")
    elif "label_id" in cols and "label_name" in cols:
        out = pd.DataFrame({"index": _ints(df[cols["label_id"]], path, "label_id"),
                            "name": _text(df[cols["label_name"]]), "vertical": ""})
    else:
        raise InputError(f"unknown vocabulary format: header {','.join(header[:6])!r}; expected {_KNOWN}",
                         path)
    dup = out["index"].duplicated()
    if dup.any():
        raise InputError(f"class index {int(out['index'][dup].iloc[0])} appears twice", path)
    if len(out) and out["index"].min() < 0:
        raise InputError(f"negative class index {int(out['index'].min())}", path)
    out = out.set_index(out["index"].rename(None)).sort_index()
    if verticals is not None:
        out["vertical"] = _read_verticals(verticals, out.index.to_numpy())
    return out


def describe_classes(vocab: pd.DataFrame | None, classes) -> tuple[list[str], list[str]]:
    """Names and verticals of ``classes`` (ints); ``"class N"`` / ``""`` when unknown or no vocabulary."""
    classes = [int(c) for c in np.asarray(classes).ravel()]
    if vocab is None:
        return [f"class {c}" for c in classes], ["" for _ in classes]
    names, verts = [], []
    for c in classes:
        if c in vocab.index:
            names.append(str(vocab.at[c, "name"]) or f"class {c}")
            verts.append(str(vocab.at[c, "vertical"]))
        else:
            names.append(f"class {c}")
            verts.append("")
    return names, verts


# --------------------------------------------------------------------------- helpers
def _header(path: Path) -> list[str]:
    if not path.exists():
        raise InputError("file not found", path)
    if path.is_dir():
        raise InputError("is a directory, expected a vocabulary CSV", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            first = next(csv.reader(fh), None)
    except UnicodeDecodeError:
        raise InputError("not a UTF-8 text file (expected a vocabulary CSV)", path) from None
    except csv.Error as err:
        raise InputError(f"not a readable CSV ({err})", path) from None
    if not first:
        raise InputError(f"empty file; expected a vocabulary CSV with header {_KNOWN}", path)
    return first


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable CSV ({' '.join(str(err).split())})", path) from None


def _ints(col: pd.Series, path, what: str) -> np.ndarray:
    values = pd.to_numeric(col.str.strip(), errors="coerce")
    if values.isna().any():
        bad = col[values.isna()].iloc[0]
        raise InputError(f"column {what}: {bad!r} is not an integer", path)
    if (values != values.round()).any():
        raise InputError(f"column {what} has non-integer values", path)
    return values.astype(np.int64).to_numpy()


def _text(col: pd.Series) -> np.ndarray:
    return col.fillna("").astype(str).str.strip().to_numpy()


def _read_verticals(path, index: np.ndarray) -> np.ndarray:
    """(len(index),) str verticals from a ``label_id<TAB>vertical`` TSV ("" where missing)."""
    path = Path(os.fspath(path))
    if not path.exists():
        raise InputError("file not found", path)
    try:
        tsv = pd.read_csv(path, sep="\t", header=None, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(f"not a readable TSV ({' '.join(str(err).split())})", path) from None
    if tsv.shape[1] < 2:
        raise InputError("expected two tab-separated columns: label_id, vertical", path)
    ids = _ints(tsv[0], path, "label_id")
    vals = _text(tsv[1])
    vals = np.array([f"vertical {v}" if v.isdigit() else v for v in vals], dtype=object)
    lookup = dict(zip(ids.tolist(), vals.tolist()))
    return np.array([lookup.get(int(i), "") for i in index], dtype=object)
