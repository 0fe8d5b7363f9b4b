"""Label vocabularies: class id -> name, vertical (topic group) and training count.

One loader, :func:`load_vocabulary`, for the formats in use for YouTube-8M:

* the official 2018 ``vocabulary.csv`` (``Index,TrainVideoCount,KnowledgeGraphId,
  Name,WikiUrl,Vertical1,...``; rows ordered by ``TrainVideoCount``, not by ``Index``);
* the project generator's ``vocabulary.csv`` (``Index,Name,Vertical1``);
* a ``label_id,label_name`` CSV (e.g. ``label_names_2018_3862.csv``), optionally
  with a ``label_id<TAB>vertical`` TSV for the verticals (``vertical_2017_4716.tsv``).

Every format gives the same :class:`Vocabulary`, dense over class ids
``0 .. C-1`` (``C`` = largest listed id + 1). Verticals are numbered so that
a model can use them directly: integer verticals (the TSV) keep their number;
named verticals (``Vertical1``) are numbered by their position in the sorted
list of names (for the 2018 file: ``0 = (Unknown), 1 = Arts & Entertainment,
..., 24 = Travel``). Used by the report (names of classes), by models with a
vertical structure (``verticals = "vocabulary.csv"`` in a producer config) and
by the stackers' ``vertical`` feature (:func:`class_verticals`).

Anything unreadable is an :class:`~predictions.errors.InputError` naming the
file (and the line) and the problem. Pure standard library + numpy: importing
this module is cheap.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .paths import check_input_file

__all__ = ["Vocabulary", "load_vocabulary", "class_verticals", "MAX_VOCAB_CLASSES", "MAX_VERTICALS",
           "MAX_VOCAB_BYTES"]

#: Largest class index a vocabulary may list (below 10**6): the vocabulary is dense over class ids, so a
#: 30-byte file naming class 10**9 would allocate gigabytes; refused on the line that names it.
MAX_VOCAB_CLASSES = 10 ** 6
#: Largest vertical number (integer verticals keep their number; the official files have 25).
MAX_VERTICALS = 1 << 16
#: Largest vocabulary or verticals file read (the official 2018 vocabulary is 3.6 MB).
MAX_VOCAB_BYTES = 64 << 20

_KNOWN = ("Index,Name[,Vertical1,...] (official 2018 or generator vocabulary.csv), "
          "or label_id,label_name (label_names csv)")


@dataclass(frozen=True)
class Vocabulary:
    """Names, verticals and training counts of ``C`` classes, indexed by class id.

    Attributes
    ----------
    names : (C,) object array of str; ``""`` for a class the file does not list.
    verticals : (C,) int64 vertical id of each class (an index into
        ``vertical_names``), -1 where unknown.
    vertical_names : name of each vertical id.
    train_counts : (C,) int64 training videos of each class (official file only,
        -1 where not listed), or ``None`` when the file has no counts.
    path : the file read (for error messages), or None.
    """

    names: np.ndarray
    verticals: np.ndarray
    vertical_names: tuple
    train_counts: np.ndarray | None = None
    path: str | None = None

    @property
    def num_classes(self) -> int:
        """C: one more than the largest class id listed."""
        return len(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def has_verticals(self) -> bool:
        """Whether at least one class has a known vertical."""
        return bool((self.verticals >= 0).any())

    def describe(self, classes) -> tuple[list[str], list[str]]:
        """Names and vertical names of ``classes`` (ints): ``"class N"`` / ``""`` when unknown."""
        names, verts = [], []
        for c in np.asarray(classes, dtype=np.int64).ravel().tolist():
            known = 0 <= c < self.num_classes
            names.append((self.names[c] if known else "") or f"class {c}")
            v = self.verticals[c] if known else -1
            verts.append(self.vertical_names[v] if v >= 0 else "")
        return names, verts

    def verticals_for(self, num_classes: int) -> np.ndarray:
        """(num_classes,) int64 vertical id of every class; InputError unless each class has one."""
        where = self.path or "vocabulary"
        if self.num_classes != num_classes:
            raise InputError(f"lists {self.num_classes} classes, expected {num_classes}", where)
        missing = np.flatnonzero(self.verticals < 0)
        if len(missing):
            raise InputError(f"{len(missing)} of {num_classes} classes have no vertical "
                             f"(first: class {int(missing[0])})", where)
        return self.verticals.copy()


def load_vocabulary(path, verticals=None, *, num_classes: int | None = None) -> Vocabulary:
    """Read a vocabulary file (any format of the module docstring).

    Parameters
    ----------
    path : the vocabulary CSV.
    verticals : optional TSV ``label_id<TAB>vertical`` (no header); its values
        replace (or supply) the verticals of the listed classes.
    num_classes : the class count the vocabulary is for, when known: a class
        index at or above it is refused on its line (before anything is
        allocated for it). Every class index is below :data:`MAX_VOCAB_CLASSES`
        and every integer vertical below :data:`MAX_VERTICALS` in any case.
    """
    path = _path(path, "path")
    if num_classes is not None:
        from .params import check_number
        check_number("num_classes", num_classes, lo=1, hi=MAX_VOCAB_CLASSES, integer=True)
    bound = MAX_VOCAB_CLASSES if num_classes is None else int(num_classes)
    header, rows = _read_table(path, delimiter=",", what="vocabulary CSV")
    if not header:
        raise InputError(f"empty file; expected a vocabulary CSV with header {_KNOWN}", path)
    cols = {c.strip().lower(): i for i, c in enumerate(header)}
    if "index" in cols and "name" in cols:
        id_col, name_col = cols["index"], cols["name"]
    elif "label_id" in cols and "label_name" in cols:
        id_col, name_col = cols["label_id"], cols["label_name"]
    else:
        raise InputError(f"unknown vocabulary format: header {','.join(header[:6])!r}; expected {_KNOWN}", path)
    id_name = header[id_col].strip()
    ids = np.array([_class_index(r, id_col, path, line, id_name, bound, num_classes) for line, r in rows],
                   dtype=np.int64)
    if len(ids):
        uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            raise InputError(f"class index {int(uniq[counts > 1][0])} appears twice "
                             f"(line {rows[first[counts > 1][0]][0]} and later)", path)
    C = int(ids.max()) + 1 if len(ids) else 0
    names = np.full(C, "", dtype=object)
    names[ids] = [_cell(r, name_col) for _, r in rows]
    counts = None
    count_col = cols.get("trainvideocount", cols.get("traincount"))
    if count_col is not None:
        counts = np.full(C, -1, dtype=np.int64)
        counts[ids] = [_int(r, count_col, path, line, header[count_col].strip()) for line, r in rows]
    raw = np.full(C, "", dtype=object)
    if "vertical1" in cols:
        raw[ids] = [_cell(r, cols["vertical1"]) for _, r in rows]
    if verticals is not None:
        raw = _read_vertical_tsv(_path(verticals, "verticals"), ids, C)
    vert, vert_names = _number_verticals(raw, Path(verticals) if verticals is not None else path)
    return Vocabulary(names=names, verticals=vert, vertical_names=vert_names, train_counts=counts,
                      path=str(path))


def class_verticals(spec, num_classes: int) -> np.ndarray:
    """(num_classes,) int64 vertical id of every class, from any way of naming them.

    ``spec``: a vocabulary file (path), a :class:`Vocabulary`, or one
    non-negative int per class. InputError (naming the file) otherwise.
    """
    if isinstance(spec, (str, os.PathLike)):
        spec = load_vocabulary(spec, num_classes=num_classes)
    if isinstance(spec, Vocabulary):
        return spec.verticals_for(num_classes)
    try:
        v = np.asarray(spec)
    except (TypeError, ValueError):
        v = np.zeros(0, dtype=object)
    if v.shape != (num_classes,) or v.dtype.kind not in "iu" or (v.size and v.min() < 0):
        raise InputError(f"verticals must be a vocabulary file or ({num_classes},) non-negative ints, "
                         f"got shape {v.shape} dtype {v.dtype}")
    return v.astype(np.int64)


# --------------------------------------------------------------------------- helpers
def _path(value, name: str) -> Path:
    if not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(os.fspath(value))


def _read_table(path: Path, *, delimiter: str, what: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and ``(line number, cells)`` rows of a UTF-8 CSV/TSV (blank lines skipped).

    Refused before opening: anything but a regular file (a FIFO would block), a file over MAX_VOCAB_BYTES.
    """
    check_input_file(path, f"a {what}")
    size = path.stat().st_size
    if size > MAX_VOCAB_BYTES:
        raise InputError(f"is {size >> 20} MiB, more than any {what} (at most {MAX_VOCAB_BYTES >> 20} MiB)", path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh, delimiter=delimiter)
            rows = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]
    except UnicodeDecodeError:
        raise InputError(f"not a UTF-8 text file (expected a {what})", path) from None
    except csv.Error as err:
        raise InputError(f"not a readable {what} ({err})", path) from None
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", path) from None
    if delimiter == "\t":
        return [], rows  # the verticals TSV has no header
    return (rows[0][1], rows[1:]) if rows else ([], [])


def _cell(row: list[str], col: int) -> str:
    return row[col].strip() if col < len(row) else ""


def _int(row: list[str], col: int, path, line: int, what: str) -> int:
    text = _cell(row, col)
    try:
        return int(text)
    except ValueError:
        raise InputError(f"line {line}: column {what}: {text!r} is not an integer", path) from None


def _class_index(row: list[str], col: int, path, line: int, what: str, bound: int, declared) -> int:
    """The class index of a row, refused on its line when negative or at or above ``bound``."""
    value = _int(row, col, path, line, what)
    if value < 0:
        raise InputError(f"line {line}: negative class index {value}", path)
    if value >= bound:
        limit = (f"the {declared} classes of the predictions" if declared is not None
                 else f"{MAX_VOCAB_CLASSES} (the largest vocabulary accepted)")
        raise InputError(f"line {line}: class index {value} is not below {limit}", path)
    return value


def _read_vertical_tsv(path, ids: np.ndarray, C: int) -> np.ndarray:
    """(C,) raw vertical of each class from a ``label_id<TAB>vertical`` TSV ("" where not given)."""
    _, rows = _read_table(path, delimiter="\t", what="verticals TSV")
    if any(len(r) < 2 for _, r in rows):
        line = next(line for line, r in rows if len(r) < 2)
        raise InputError(f"line {line}: expected two tab-separated columns: label_id, vertical", path)
    lookup = {_int(r, 0, path, line, "label_id"): _cell(r, 1) for line, r in rows}
    raw = np.full(C, "", dtype=object)
    raw[ids] = [lookup.get(int(i), "") for i in ids]
    return raw


def _number_verticals(raw: np.ndarray, path) -> tuple[np.ndarray, tuple]:
    """Vertical ids and names from raw cells: integers keep their number (below MAX_VERTICALS), names
    their sorted position."""
    known = raw != ""
    values = raw[known]
    ids = np.full(len(raw), -1, dtype=np.int64)
    if not len(values):
        return ids, ()
    if all(v.isdigit() and v.isascii() for v in values):
        big = next((v for v in values if len(v) > 6 or int(v) >= MAX_VERTICALS), None)
        if big is not None:
            cls = int(np.flatnonzero(raw == big)[0])
            raise InputError(f"vertical {big[:20]} of class {cls} is not below {MAX_VERTICALS} (verticals are "
                             f"numbered from 0, the official files have 25)", path)
        ids[known] = [int(v) for v in values]
        return ids, tuple(f"vertical {i}" for i in range(int(ids.max()) + 1))
    names = sorted(set(values.tolist()))
    position = {name: i for i, name in enumerate(names)}
    ids[known] = [position[v] for v in values]
    return ids, tuple(names)
