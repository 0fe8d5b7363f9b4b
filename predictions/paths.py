"""Input paths: refuse what is not a regular file before opening it; expand files, directories and globs.

Used by the store and labels readers, the CSV readers, the CSV-member cache, the
ensembler (``--members``) and the report.
"""
from __future__ import annotations

import glob
import os
import stat
from pathlib import Path

from .atomic import file_kind
from .errors import InputError

__all__ = ["as_path", "check_input_file", "expand_paths"]


def as_path(value, name: str = "path") -> Path:
    """``value`` as a Path; a one-line InputError unless it is a str or an os.PathLike (an int, None,
    a list: a wrong-typed argument of the Python API, refused before anything is opened)."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise InputError(f"{name} must be a path (str or os.PathLike), got {type(value).__name__}")
    return Path(os.fspath(value))


def check_input_file(path: Path, expected: str) -> None:
    """InputError unless ``path`` is a regular file (after symbolic links): never open a FIFO
    (it would block), a device or a directory as a store or labels file."""
    path = as_path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.lexists(path):
            raise InputError(f"dangling symbolic link (to {os.readlink(path)!r})", path) from None
        raise InputError("file not found", path) from None
    except OSError as err:
        raise InputError(f"cannot read ({err.strerror or err})", path) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError(f"is a directory, expected {expected}", path)
    if not stat.S_ISREG(st.st_mode):
        raise InputError(f"is {file_kind(st.st_mode)}, expected {expected} (a regular file)", path)


def expand_paths(patterns, suffix: str = ".h5") -> list[Path]:
    """Expand files, directories (every ``*suffix`` inside, sorted) and globs into paths.

    Names starting with ``"."`` (temporary files of atomic writes) are skipped
    in directories and globs. An item matching nothing is an InputError.
    Order is kept: items in the given order, each expanded sorted.

    Nothing that matches is dropped for being unreadable: a dangling symbolic
    link, a FIFO, a device or a directory named ``*suffix`` is returned, and
    the opener (:func:`open_store`, ``read_labels``) refuses it with a reason.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    out: list[Path] = []
    for pat in patterns:
        text = os.fspath(pat)
        p = Path(text)
        if p.is_dir():
            found = _listing(p, suffix)
        elif os.path.lexists(p):
            found = [p]
        elif glob.has_magic(text):
            found = []
            for m in sorted(glob.glob(text)):
                q = Path(m)
                if q.name.startswith("."):
                    continue
                # a directory matched by the glob is expanded, unless it is named like a store
                found += _listing(q, suffix) if q.is_dir() and not q.name.endswith(suffix) else [q]
        else:
            found = []
        if not found:
            raise InputError(f"no {suffix} file matches" if p.is_dir() or glob.has_magic(text)
                             else "file not found", pat)
        out += found
    return out


def _listing(d: Path, suffix: str) -> list[Path]:
    """The non-hidden entries of ``d`` named ``*suffix``, whatever their type, sorted."""
    try:
        names = os.listdir(d)
    except OSError as err:
        raise InputError(f"cannot list the directory ({err.strerror or err})", d) from None
    return sorted(d / n for n in names if n.endswith(suffix) and not n.startswith("."))
