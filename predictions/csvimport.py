"""Kaggle CSVs as ensemble members: imported into stores, once, and cached.

A Kaggle CSV (``VideoId,LabelConfidencePairs``, or rank-only ``VideoId,Label``)
names neither its model nor its split, so both come from the file name (see
:func:`member_of_csv`): ``MODEL.SPLIT.csv`` when the last part before
``.csv`` is a split name (``team_a.heldout.csv``), else ``MODEL.csv`` for the
``test`` split (what a Kaggle submission predicts).

* :func:`import_csv` reads one CSV with
  :func:`~predictions.csvio.read_predictions_csv` (every check, one-line
  errors with the line number) and writes it as a store, atomically.
* :func:`stores_of_members` is how ``ensemble build`` and ``evaluate`` accept
  CSVs among ``--members``: each CSV is replaced by its store in the **cache
  directory**, imported the first time it is seen and reused while the file is
  unchanged, so a CSV is parsed and validated once (the store's checksum then
  guards it like any store).

The cache
---------
* **Where**: ``--csv-cache DIR`` (``csv_cache=`` in Python), else the
  environment variable ``ENSEMBLE_CSV_CACHE``, else
  ``$XDG_CACHE_HOME/yt8m-ensembler/csv`` (``~/.cache/yt8m-ensembler/csv``).
* **Key**: the CSV's resolved path, size, modification time (ns), inode and
  device, a SHA-256 of its first and last 64 KiB, the class count, the model
  and split names and :data:`CACHE_VERSION`. Any change to the file (even one
  that keeps its size and time) that touches its ends, or a new class count,
  is a new entry.
* **Layout**: ``<cache>/<hash of the path>/<model>.<split>.<hash of the key>.h5``;
  writing a new version of a CSV removes the older versions of that path.
* **Writes** are atomic (temporary file, then rename): an interrupted import
  leaves nothing, and two runs importing the same CSV at once each write a
  complete store (the last rename wins, both are the same).
* **Clearing**: delete the directory (``rm -r ~/.cache/yt8m-ensembler/csv``)
  whenever no build is running; it is rebuilt on demand. A cached store is
  verified like any member (its checksum, ``--verify``): one that was damaged
  on disk fails the build naming its cache path; delete it (or the cache).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path

from .csvio import read_predictions_csv
from .errors import InputError
from .store import StoreWriter, check_input_file, check_name, expand_paths

__all__ = ["CSV_SPLITS", "CACHE_VERSION", "member_of_csv", "import_csv", "default_cache_dir", "cached_store",
           "stores_of_members", "is_csv"]

#: Split names recognised in ``MODEL.SPLIT.csv`` (the stores' own ``<model>.<split>.full.h5`` splits).
CSV_SPLITS = ("train", "heldout", "eval", "test")
#: Bump when the imported store of a given CSV would differ (reader or store format change).
CACHE_VERSION = 1
_ENDS = 1 << 16  # bytes hashed at each end of a CSV for its cache key


def is_csv(path) -> bool:
    return os.fspath(path).lower().endswith(".csv")


def member_of_csv(path) -> tuple[str, str]:
    """``(model, split)`` of a CSV from its file name: ``MODEL.SPLIT.csv`` when SPLIT is one of
    :data:`CSV_SPLITS`, else ``(stem, "test")``. InputError when the model name is not a valid name."""
    stem = Path(path).name[:-len(".csv")] if is_csv(path) else Path(path).stem
    model, dot, split = stem.rpartition(".")
    if not (dot and model and split in CSV_SPLITS):
        model, split = stem, "test"
    check_name("model name (from the file name)", model, path)
    return model, split


def import_csv(csv, out, *, model: str, split: str, num_classes: int, staging=None) -> dict:
    """Read one predictions CSV and write it as the store ``out``; returns ``{"out", "videos", "k"}``.

    The CSV is read and checked completely before anything is created. With ``staging`` (an
    :class:`~predictions.atomic.AtomicSet`) the store is written to its temporary file there and
    appears on the set's commit; otherwise it is written atomically on its own. InputError naming
    the CSV (and line) for bad input; nothing is written then.
    """
    check_input_file(Path(csv), "a CSV file")  # a FIFO would block, a directory is no CSV
    pred = read_predictions_csv(csv, num_classes)
    if len(pred) == 0:
        raise InputError("no video rows after the header: nothing to import", csv)
    try:  # the writer checks the ids (non-empty, no NUL, length, unique): a problem there is the CSV's
        writer = StoreWriter(out, ids=pred.ids, num_classes=pred.num_classes, k=pred.k, model=model, split=split,
                             config={"imported_from": str(csv)}, atomic=staging is None)
    except InputError as err:
        raise InputError(err.problem, csv) from None
    if staging is not None:
        writer.path = staging.add(out)  # checked and created only now that the CSV is known good
    with writer as w:
        w.write(pred)
    return {"out": str(out), "videos": len(pred), "k": pred.k}


def default_cache_dir() -> Path:
    """``$ENSEMBLE_CSV_CACHE``, else ``$XDG_CACHE_HOME/yt8m-ensembler/csv`` (``~/.cache/...``)."""
    env = os.environ.get("ENSEMBLE_CSV_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "yt8m-ensembler" / "csv"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:16]


def _key(csv: Path, model: str, split: str, num_classes: int) -> tuple[Path, str, str]:
    """(resolved path, hash of the path, hash of the whole key) of a CSV as it is now."""
    check_input_file(csv, "a CSV file")
    real = Path(os.path.realpath(csv))
    try:
        with open(real, "rb") as fh:
            st = os.fstat(fh.fileno())
            ends = hashlib.sha256(fh.read(_ENDS))
            if st.st_size > _ENDS:
                fh.seek(max(_ENDS, st.st_size - _ENDS))
                ends.update(fh.read(_ENDS))
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", csv) from None
    key = json.dumps([str(real), st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev, ends.hexdigest(),
                      int(num_classes), model, split, CACHE_VERSION])
    return real, _digest(str(real)), _digest(key)


def cached_store(csv, *, num_classes: int, cache_dir=None, model: str | None = None,
                 split: str | None = None) -> tuple[Path, bool]:
    """The cached store of ``csv`` (imported now if absent or stale); returns ``(path, imported)``.

    ``model`` and ``split`` default to :func:`member_of_csv`. See the module doc for the cache.
    """
    csv = Path(csv)
    if model is None or split is None:
        m, s = member_of_csv(csv)
        model, split = model or m, split or s
    _, where, key = _key(csv, model, split, num_classes)
    d = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = d / where / f"{model[:64]}.{split[:32]}.{key}.h5"  # (readable, and short enough for any file system)
    if entry.is_file():
        return entry, False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the CSV cache directory ({err.strerror or err}); "
                         f"set --csv-cache or ENSEMBLE_CSV_CACHE", entry.parent) from None
    import_csv(csv, entry, model=model, split=split, num_classes=num_classes)
    for old in entry.parent.glob("*.h5"):  # older versions of this CSV
        if old != entry:
            with contextlib.suppress(OSError):
                old.unlink()
    return entry, True


def stores_of_members(patterns, *, num_classes: int | None, cache_dir=None, progress: bool = False,
                      log=None) -> list[str]:
    """``--members`` with every CSV replaced by its cached store (stores, directories and globs of
    stores are passed through unchanged, in order).

    A CSV is a ``*.csv`` file named directly or matched by a glob (``'teams/*.csv'``); a
    directory contributes its ``*.h5`` stores only. ``num_classes`` (needed to read a CSV) may be
    None when there is no CSV. Two CSVs of the same model and split are an InputError naming both.
    """
    if isinstance(patterns, (str, os.PathLike)):
        patterns = [patterns]
    texts = [os.fspath(p) for p in patterns]
    # a pattern ending in .csv (a file or a glob; never a directory) stands for CSVs
    groups = [expand_paths([t], suffix=".csv") if is_csv(t) and not os.path.isdir(t) else t for t in texts]
    csvs = [c for g in groups if isinstance(g, list) for c in g]
    if not csvs:
        return texts
    if num_classes is None:
        raise InputError("CSV members need the number of classes (--classes)", csvs[0])
    seen: dict[tuple[str, str], Path] = {}
    for c in csvs:
        ms = member_of_csv(c)
        if ms in seen:
            raise InputError(f"two CSVs give the same member (model {ms[0]!r}, split {ms[1]!r}): {seen[ms]} "
                             f"and {c}; rename one (MODEL.SPLIT.csv)", c)
        seen[ms] = c
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(csvs), unit="csv", desc="CSV members (cache)")
    store_of = {}
    for c in csvs:
        path, imported = cached_store(c, num_classes=num_classes, cache_dir=cache_dir)
        if imported and log is not None:
            log(f"imported {c} -> {path}")
        store_of[c] = str(path)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    out: list[str] = []
    for g in groups:
        out += [store_of[c] for c in g] if isinstance(g, list) else [g]
    return out
