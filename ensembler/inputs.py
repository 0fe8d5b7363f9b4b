"""What the Python API accepts as members and labels, turned into Candidates and Labels.

Members (the per-member scores of the same videos) may come as

* :class:`~ensembler.candidates.Candidates` (used as they are);
* a mapping ``{name: Predictions or (n_videos, n_classes) array}``;
* a sequence of :class:`~predictions.types.Predictions` (aligned on video id:
  checked, never assumed) or of ``(n_videos, n_classes)`` score arrays (rows
  are the same videos in the same order; they get ids ``"0" .. "n-1"``);
* as values of either: pandas DataFrames (the Kaggle layout
  ``VideoId, LabelConfidencePairs`` or a long ``video_id, label, score`` frame,
  see :mod:`predictions.frames`) and paths of Kaggle CSVs or stores (one file,
  one split; a path in a list is named after its model, ``MODEL.SPLIT.csv`` ->
  ``MODEL``). Files and frames are aligned on video id: the same videos in any
  order are put in the first member's order; different video sets are an
  InputError naming each member and how many videos it lacks (never a silent
  intersection).

A list keeps its order (``member_weights`` given as a list apply in it); a
mapping keeps its key order.

Labels may come as :class:`~predictions.types.Labels` (reordered to follow the
members' video ids; every video must have an entry), a truth CSV path
(``VideoId,Labels``), a labels store path (``labels.<split>.h5``), a DataFrame
(``VideoId, Labels`` or long ``video_id, label``), or as an
``(n_videos, n_classes)`` 0/1 matrix (dense or scipy.sparse) whose rows are the
members' videos in order.

Class count of CSVs and frames: ``num_classes`` when given, else that of a
Predictions or store member, else that of Labels, else 3862 (YouTube-8M 2018). Anything else is a TypeError (a programming error);
arrays of the wrong shape or values are an InputError.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from predictions.errors import InputError
from predictions.frames import is_frame, labels_from_frame, predictions_from_frame
from predictions.types import Labels, Predictions

from .candidates import Candidates

__all__ = ["as_candidates", "as_labels"]

_MEMBERS = ("Candidates, a {name: member} mapping, or a list of members (Predictions, (n_videos, n_classes) "
            "score arrays, DataFrames, or CSV / store paths)")
#: Class count of CSVs and frames when nothing else tells it (YouTube-8M 2018).
DEFAULT_CLASSES = 3862


def as_candidates(members, fitted_names=None, *, num_classes: int | None = None, labels=None) -> Candidates:
    """Candidates of ``members`` in any accepted form (see the module docstring).

    ``fitted_names``: the member names a fitted combiner expects; an unnamed
    sequence of that length takes them, and a mapping with exactly those names
    is put in that order (so dict order does not matter). ``num_classes`` and
    ``labels`` tell the class count of CSV and DataFrame members.
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
                 else _default_names(values))
    else:
        raise TypeError(f"members must be {_MEMBERS}; got {type(members).__name__}")
    if not values:
        raise InputError("no members to combine")
    if any(_is_path(v) or is_frame(v) for v in values):
        classes = num_classes or _class_count(values, labels)
        values = _aligned([_read_member(v, n, classes) for n, v in zip(names, values)], names)
    if all(isinstance(v, Predictions) for v in values):
        return Candidates.from_members(values, [str(n) for n in names])
    if any(isinstance(v, Predictions) for v in values):
        raise TypeError("members mix Predictions and arrays: give all as Predictions (keyed by video id) "
                        "or all as score arrays")
    return Candidates.from_members(_arrays_to_predictions(values, names), [str(n) for n in names])


def _is_path(v) -> bool:
    return isinstance(v, (str, os.PathLike))


def _default_names(values) -> list[str]:
    """``m0, m1, ...``, or the model name of each path (``moe.heldout.csv`` -> ``moe``) when all are paths."""
    if values and all(_is_path(v) for v in values):
        from predictions.csvimport import member_of_csv
        names = [member_of_csv(v)[0] if str(v).lower().endswith(".csv") else Path(v).name.split(".")[0]
                 for v in values]
        if len(set(names)) == len(names):
            return names
    return [f"m{i}" for i in range(len(values))]


def _class_count(values, labels) -> int:
    for v in values:
        if isinstance(v, Predictions):
            return v.num_classes
        if _is_path(v) and not str(v).lower().endswith(".csv"):
            from predictions.store import open_store
            with open_store(v) as r:
                return r.num_classes
    if isinstance(labels, Labels):
        return labels.num_classes
    return DEFAULT_CLASSES


def _read_member(v, name: str, num_classes: int):
    """A path (CSV or store) or a DataFrame as Predictions; anything else unchanged."""
    if is_frame(v):
        try:
            return predictions_from_frame(v, num_classes)
        except InputError as err:
            raise InputError(f"member {name!r}: {err}") from None
    if not _is_path(v):
        return v
    if str(v).lower().endswith(".csv"):
        from predictions.csvio import read_predictions_csv
        return read_predictions_csv(v, num_classes)
    from predictions.store import read_store
    return read_store(v, verify=True)


def _aligned(preds: list, names) -> list:
    """Predictions put in the first one's video order; an InputError when the video sets differ."""
    if not all(isinstance(p, Predictions) for p in preds):
        return preds
    first = preds[0].ids
    out = [preds[0]]
    for name, p in zip(names[1:], preds[1:]):
        if len(p.ids) == len(first) and np.array_equal(p.ids, first):
            out.append(p)
            continue
        missing = np.setdiff1d(first, p.ids).size
        extra = np.setdiff1d(p.ids, first).size
        if missing or extra or len(p.ids) != len(first):
            raise InputError(f"members {names[0]!r} and {name!r} cover different videos: {name!r} lacks {missing} "
                             f"of {names[0]!r}'s {len(first)} and has {extra} it lacks (align them first: "
                             "nothing is dropped silently)")
        out.append(p.reindex(first))
    return out


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
    """Labels of ``cands.ids`` from Labels (reindexed by video id), a truth CSV or labels store path, a
    DataFrame, or an (n_videos, n_classes) 0/1 matrix."""
    if is_frame(labels):
        labels = labels_from_frame(labels, cands.num_classes)
    elif _is_path(labels):
        if str(labels).lower().endswith(".csv"):
            from predictions.csvio import read_truth_csv
            labels = read_truth_csv(labels, cands.num_classes)
        else:
            from predictions.labels import read_labels
            labels = read_labels(labels)
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
