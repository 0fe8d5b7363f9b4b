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
* **Key**: a SHA-256 of the CSV's **whole content** (read at disk speed,
  a small fraction of an import: see :func:`content_digest`), its size, the
  class count, the model and split names and :data:`CACHE_VERSION`. Any change
  to the content is a new entry, even one that keeps the file's size and
  modification time (``touch -r``, ``rsync -t``, ``cp -p``); a file that
  changes while it is being imported is refused (its hash is taken again
  after the import).
* **Layout**: ``<cache>/<hash of the resolved path>/<model>.<split>.<hash of the key>.h5``.
  Entries are never removed by a build that another build may be about to
  read: two builds with different class counts, or two names (links) of one
  file, each get their own entry. A hit refreshes its entry's time; entries of
  the same source not used for :data:`PRUNE_DAYS` days are removed when a new
  version of it is written.
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
import time
from pathlib import Path

from .csvio import read_predictions_csv
from .errors import InputError
from .params import Num
from .paths import as_path, check_input_file, expand_paths
from .storeformat import MAX_CLASSES, check_name
from .storewriter import StoreWriter

__all__ = ["CSV_SPLITS", "CACHE_VERSION", "PRUNE_DAYS", "member_of_csv", "import_csv", "default_cache_dir",
           "cached_store", "content_digest", "stores_of_members", "is_csv"]

#: Split names recognised in ``MODEL.SPLIT.csv`` (the stores' own ``<model>.<split>.full.h5`` splits).
CSV_SPLITS = ("train", "heldout", "eval", "test")
#: Bump when the imported store of a given CSV would differ (reader or store format change).
CACHE_VERSION = 2
#: Entries of a source not used for this many days are removed when a new version of it is written.
PRUNE_DAYS = 7
_HASH_BLOCK = 1 << 20  # bytes read at once by content_digest


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
    csv = as_path(csv, "csv")
    check_input_file(csv, "a CSV file")  # a FIFO would block, a directory is no CSV
    out = as_path(out, "out")
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


def content_digest(path) -> tuple[str, int]:
    """``(SHA-256 hex digest, size in bytes)`` of the whole file ``path``, read in 1 MiB blocks.

    SHA-256 is the fastest hash of hashlib on CPUs with SHA extensions (measured here:
    1.5 GB/s, BLAKE2b 0.85 GB/s, MD5 0.67 GB/s; hashlib releases the GIL); a cache hit on a
    57 MB member CSV costs about a tenth of its import (see the closing note of issue 25).
    InputError naming the file when it cannot be read.
    """
    path = as_path(path)
    check_input_file(path, "a CSV file")
    h = hashlib.sha256()
    size = 0
    buf = bytearray(_HASH_BLOCK)
    view = memoryview(buf)
    try:
        with open(path, "rb", buffering=0) as fh:
            while got := fh.readinto(buf):
                h.update(view[:got])
                size += got
    except OSError as err:
        raise InputError(f"cannot read file ({err.strerror or err})", path) from None
    return h.hexdigest(), size


def _key(csv: Path, model: str, split: str, num_classes: int) -> tuple[str, str]:
    """(hash of the resolved path, hash of the whole key) of a CSV as its content is now."""
    digest, size = content_digest(csv)
    real = os.path.realpath(csv)
    key = json.dumps([digest, size, int(num_classes), model, split, CACHE_VERSION])
    return _digest(real), _digest(key)


def cached_store(csv, *, num_classes: int, cache_dir=None, model: str | None = None,
                 split: str | None = None) -> tuple[Path, bool]:
    """The cached store of ``csv`` (imported now if absent or stale); returns ``(path, imported)``.

    ``model`` and ``split`` default to :func:`member_of_csv`. See the module doc for the cache.
    """
    csv = as_path(csv, "csv")
    _check_classes(num_classes, csv)
    if model is None or split is None:
        m, s = member_of_csv(csv)
        model, split = model or m, split or s
    where, key = _key(csv, model, split, num_classes)
    d = as_path(cache_dir, "cache_dir") if cache_dir is not None else default_cache_dir()
    entry = d / where / f"{model[:64]}.{split[:32]}.{key}.h5"  # (readable, and short enough for any file system)
    if entry.is_file():
        with contextlib.suppress(OSError):  # a read-only cache still serves its entries
            os.utime(entry)                 # in use: never pruned (see _prune)
        return entry, False
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(f"cannot create the CSV cache directory ({err.strerror or err}); "
                         f"set --csv-cache or ENSEMBLE_CSV_CACHE", entry.parent) from None
    import_csv(csv, entry, model=model, split=split, num_classes=num_classes)
    if _key(csv, model, split, num_classes)[1] != key:  # edited while it was read: the entry may mix versions
        with contextlib.suppress(OSError):
            entry.unlink()
        raise InputError("the file changed while it was being imported; run again once it is complete", csv)
    _prune(entry)
    return entry, True


def _check_classes(num_classes, path) -> None:
    """num_classes an integer (never a bool, NaN or a float) in [1, MAX_CLASSES], before any file is read."""
    try:
        Num(1, MAX_CLASSES, integer=True).check("num_classes", num_classes)
    except InputError as err:
        raise InputError(err.problem, path) from None


def _prune(entry: Path) -> None:
    """Remove the entries of the same source not used for PRUNE_DAYS days (never one a build may read now)."""
    limit = time.time() - PRUNE_DAYS * 86400
    for old in entry.parent.glob("*.h5"):
        with contextlib.suppress(OSError):
            if old != entry and old.stat().st_mtime < limit:
                old.unlink()


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
    if not isinstance(patterns, (list, tuple)):
        raise InputError(f"members must be a path or a list of paths, got {type(patterns).__name__}")
    texts = [os.fspath(as_path(p, "member")) for p in patterns]
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
    try:
        for c in csvs:
            path, imported = cached_store(c, num_classes=num_classes, cache_dir=cache_dir)
            if imported and log is not None:
                log(f"imported {c} -> {path}")
            store_of[c] = str(path)
            if bar is not None:
                bar.update(1)
    except BaseException:
        if bar is not None:   # cleared, not left drawn: the error is the last thing the user sees
            bar.leave = False
            bar.close()
        raise
    if bar is not None:
        bar.close()
    out: list[str] = []
    for g in groups:
        out += [store_of[c] for c in g] if isinstance(g, list) else [g]
    return out
