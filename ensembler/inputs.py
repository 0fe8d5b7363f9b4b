"""What the Python API accepts as members and labels, turned into Candidates and Labels.

Members (the per-member scores of the same videos) may come as

* :class:`~ensembler.candidates.Candidates` (used as they are);
* a mapping ``{name: Predictions or (n_videos, n_classes) array}``;
* a sequence of :class:`~predictions.types.Predictions` (aligned on video id:
  checked, never assumed) or of ``(n_videos, n_classes)`` score arrays (rows
  are the same videos in the same order; they get ids ``"0" .. "n-1"``).

Labels may come as :class:`~predictions.types.Labels` (reordered to follow the
members' video ids; every video must have an entry), or as an
``(n_videos, n_classes)`` 0/1 matrix (dense or scipy.sparse) whose rows are the
members' videos in order. Anything else is a TypeError (a programming error);
arrays of the wrong shape or values are an InputError.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from predictions.errors import InputError
from predictions.types import Labels, Predictions

from .candidates import Candidates

__all__ = ["as_candidates", "as_labels"]

_MEMBERS = ("Candidates, a {name: Predictions or array} mapping, or a list of Predictions or of "
            "(n_videos, n_classes) score arrays")


def as_candidates(members, fitted_names=None) -> Candidates:
    """Candidates of ``members`` in any accepted form (see the module docstring).

    ``fitted_names``: the member names a fitted combiner expects; an unnamed
    sequence of that length takes them, and a mapping with exactly those names
    is put in that order (so dict order does not matter).
    """
    if isinstance(members, Candidates):
        return members
    if isinstance(members, Mapping):
        names = list(members)
        if fitted_names is not None and set(names) == set(fitted_names) and len(names) == len(fitted_names):
            names = list(fitted_names)
        values = [members[n] for n in names]
    elif isinstance(members, (Sequence, np.ndarray)) and not isinstance(members, (str, bytes)):
        values = list(members)
        names = (list(fitted_names) if fitted_names is not None and len(fitted_names) == len(values)
                 else [f"m{i}" for i in range(len(values))])
    else:
        raise TypeError(f"members must be {_MEMBERS}; got {type(members).__name__}")
    if not values:
        raise InputError("no members to combine")
    if all(isinstance(v, Predictions) for v in values):
        return Candidates.from_members(values, [str(n) for n in names])
    if any(isinstance(v, Predictions) for v in values):
        raise TypeError("members mix Predictions and arrays: give all as Predictions (keyed by video id) "
                        "or all as score arrays")
    return Candidates.from_members(_arrays_to_predictions(values, names), [str(n) for n in names])


def _arrays_to_predictions(values, names) -> list[Predictions]:
    out, shape = [], None
    for name, v in zip(names, values):
        if not isinstance(v, np.ndarray) and not isinstance(v, (list, tuple)):
            raise TypeError(f"member {name!r} is a {type(v).__name__}; members must be {_MEMBERS}")
        a = np.asarray(v)
        if a.ndim != 2 or a.dtype.kind not in "fiub":
            raise InputError(f"member {name!r}: expected an (n_videos, n_classes) array of scores, "
                             f"got shape {a.shape} dtype {a.dtype}")
        if shape is None:
            shape = a.shape
        elif a.shape != shape:
            raise InputError(f"member {name!r} has shape {a.shape}, member {names[0]!r} has {shape}")
        a = a.astype(np.float32, copy=False)
        if not np.isfinite(a).all():
            raise InputError(f"member {name!r} has NaN or infinite scores")
        out.append(Predictions(np.arange(shape[0]).astype(str), a, None, shape[1]))
    return out


def as_labels(labels, cands: Candidates) -> Labels:
    """Labels of ``cands.ids`` from Labels (reindexed by video id) or an (n_videos, n_classes) 0/1 matrix."""
    if isinstance(labels, Labels):
        if labels.num_classes != cands.num_classes:
            raise InputError(f"labels have {labels.num_classes} classes, the members {cands.num_classes}")
        return labels.reindex(cands.ids)
    shape = (cands.n_videos, cands.num_classes)
    if hasattr(labels, "tocsr"):                       # scipy.sparse
        csr = labels.tocsr(copy=True)
        if csr.shape != shape:
            raise InputError(f"label matrix has shape {csr.shape}, expected {shape} (videos x classes)")
        csr.sum_duplicates()
        csr.eliminate_zeros()
        if csr.nnz and not np.all(csr.data == 1):
            raise InputError("label matrix must hold only 0 and 1")
        csr.sort_indices()
        return Labels(cands.ids, csr.indptr, csr.indices, cands.num_classes)
    if not isinstance(labels, (np.ndarray, list, tuple)):
        raise TypeError(f"labels must be Labels or an (n_videos, n_classes) 0/1 matrix; "
                        f"got {type(labels).__name__}")
    y = np.asarray(labels)
    if y.shape != shape:
        raise InputError(f"label matrix has shape {y.shape}, expected {shape} (videos x classes)")
    if y.dtype.kind not in "fiub" or not np.isin(y, (0, 1)).all():
        raise InputError("label matrix must hold only 0 and 1")
    rows, cols = np.nonzero(y)
    indptr = np.zeros(shape[0] + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return Labels(cands.ids, indptr, cols.astype(np.int32), cands.num_classes)
