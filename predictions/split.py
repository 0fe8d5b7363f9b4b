"""Deterministic held-out split from a hash of the video id.

Every producer and the ensembler compute the same split from the ids alone, with
no shared file: each id gets a 64-bit key ``blake2b(salt + id)``; the ``heldout``
ids with the smallest keys form the held-out split (where ensembles are fitted),
the next ``eval`` ids the evaluation split (scored by nobody until the end), the
rest ``train``. The rule depends only on the set of ids, not on their order or on
how the data is sharded. Producers carve their early-stopping ``dev`` videos out
of ``train`` with :func:`dev_mask`, so they never look at held-out labels.
"""
from __future__ import annotations

import hashlib

import numpy as np

from .errors import InputError
from .types import as_ids

SPLITS = ("train", "heldout", "eval")
DEFAULT_SALT = "yt8m-ensemble-v1"


def hash_keys(ids, salt: str = DEFAULT_SALT) -> np.ndarray:
    """(n,) uint64 keys, ``blake2b(salt || id)`` truncated to 8 bytes (big-endian)."""
    prefix = salt.encode("utf-8") + b"\x00"
    keys = [hashlib.blake2b(prefix + i.encode("utf-8"), digest_size=8).digest() for i in as_ids(ids).tolist()]
    return np.frombuffer(b"".join(keys), dtype=">u8").astype(np.uint64) if keys else np.zeros(0, np.uint64)


def assign_splits(ids, *, heldout: int = 20000, eval: int = 0, salt: str = DEFAULT_SALT) -> np.ndarray:
    """(n,) array of split names (``"train"``, ``"heldout"``, ``"eval"``), one per id.

    Raises InputError when the ids are too few to leave at least one training
    video, or when they are not unique.
    """
    ids = as_ids(ids)
    n = len(ids)
    if heldout < 0 or eval < 0:
        raise InputError(f"split sizes must be >= 0, got heldout={heldout}, eval={eval}")
    if heldout + eval >= n:
        raise InputError(f"the data has {n} videos, too few for a held-out split of {heldout} "
                         f"and an eval split of {eval} (set [split] heldout/eval smaller)")
    if len(np.unique(ids)) != n:
        raise InputError("video ids are not unique; cannot split")
    order = np.lexsort((ids, hash_keys(ids, salt)))  # ids break (astronomically rare) key ties
    out = np.full(n, "train", dtype="<U7")
    out[order[:heldout]] = "heldout"
    out[order[heldout:heldout + eval]] = "eval"
    return out


def dev_mask(ids, fraction: float = 0.05, salt: str = DEFAULT_SALT) -> np.ndarray:
    """(n,) bool: a deterministic ``fraction`` of ids (by a second hash) for early stopping."""
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"dev fraction must be in [0, 1), got {fraction}")
    keys = hash_keys(ids, salt + "/dev")
    return keys < np.uint64(int(fraction * 2.0**64))


def fold_of(ids, n_folds: int, salt: str = DEFAULT_SALT) -> np.ndarray:
    """(n,) int fold in ``0 .. n_folds - 1`` of each id, from a third hash: stable whatever the other ids."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise InputError(f"the number of folds must be an integer >= 2, got {n_folds!r}")
    return (hash_keys(ids, salt + "/fold") % np.uint64(n_folds)).astype(np.int64)
