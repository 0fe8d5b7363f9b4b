"""The distillation teacher: stores of the training videos read into soft targets aligned on video id.

:func:`teacher_targets` reads the ``[distill] teacher`` stores (an ensemble's
``train`` split store, or several members' stores, averaged), validates them
like any member (class count, values, ids), verifies its checksum and split (``train`` or ``oof``), aligns them on the student's
training video ids (every training video must be there: a missing one is an
error naming the store and an example id) and returns a dense (n, C) matrix.
Top-k stores give ``floor`` to the labels outside their top k.
Memory: n x C float32 (8,000 training videos x 3,862 classes: 124 MB).
"""
from __future__ import annotations

import glob
from pathlib import Path

import numpy as np

from predictions.errors import InputError
from predictions.store import open_store
from predictions.types import as_ids


def teacher_paths(patterns: list[str]) -> list[Path]:
    """The teacher store files (globs expanded, sorted, each named once); InputError if a pattern matches nothing."""
    out: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            raise InputError("[distill] teacher pattern matches no store", pattern)
        out += [Path(p) for p in found if Path(p) not in out]
    return out


#: Store splits that predict the training videos: ``train`` (an ensemble's or a member's) or ``oof``
#: (the out-of-fold pool of a ``[train] folds`` job, which holds the train split).
TEACHER_SPLITS = ("train", "oof")


def check_teacher(store, num_classes: int, path) -> None:
    """Verify a teacher like an ensemble member: split, class count, then its checksum (streamed).

    InputError naming ``path``: a store of another split (its ids may still
    overlap the training videos, but its scores were fitted differently), a
    class count other than the job's, or scores that no longer match the
    store's checksum (edited or corrupt).
    """
    if store.meta.split not in TEACHER_SPLITS:
        raise InputError(f"teacher store is of split {store.meta.split!r}; a teacher predicts the training "
                         f"videos (split {' or '.join(map(repr, TEACHER_SPLITS))})", path)
    if store.meta.num_classes != num_classes:
        raise InputError(f"teacher store has {store.meta.num_classes} classes, the job {num_classes}", path)
    store.verify()


def teacher_targets(distill, ids, num_classes: int) -> np.ndarray:
    """(len(ids), C) float32 teacher probabilities for the videos ``ids`` (mean over the teacher stores)."""
    ids = as_ids(ids)
    paths = teacher_paths(distill.teacher)
    out = np.zeros((len(ids), num_classes), dtype=np.float32)
    for path in paths:
        with open_store(path) as store:
            check_teacher(store, num_classes, path)
            missing = ~np.isin(ids, store.ids)
            if missing.any():
                raise InputError(f"teacher store lacks {int(missing.sum())} of the {len(ids)} training videos "
                                 f"(e.g. {str(ids[np.argmax(missing)])!r}); predict the train split with the "
                                 f"teacher's members, then build the ensemble for it", path)
            pred = store.read().reindex(ids)
        dense = pred.dense()
        if pred.indices is not None and distill.floor > 0:
            outside = np.ones_like(dense, dtype=bool)
            np.put_along_axis(outside, pred.indices.astype(np.int64), False, axis=1)
            dense[outside] = distill.floor
        out += dense
    out /= len(paths)
    return out
