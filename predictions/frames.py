"""pandas DataFrames in and out: predictions and labels as the tables users already have.

Two layouts are read and written:

* **Kaggle**: predictions ``VideoId, LabelConfidencePairs`` (``"3 0.91 17 0.40"``),
  truth ``VideoId, Labels`` (``"3 17"``);
* **long**: one row per (video, label): predictions ``video_id, label, score``,
  truth ``video_id, label``.

:meth:`Predictions.to_frame` and :meth:`Labels.to_frame` return the long
layout (``kaggle=True`` for the other). pandas is imported only here, when a
frame is made or read (it is an optional dependency: ``[pandas]``).
"""
from __future__ import annotations

import numpy as np

from .errors import InputError
from .extras import require
from .frames_out import labels_to_frame, predictions_to_frame
from .types import Labels, Predictions

__all__ = ["is_frame", "predictions_from_frame", "labels_from_frame", "predictions_to_frame", "labels_to_frame"]

KAGGLE_PRED = ("VideoId", "LabelConfidencePairs")
KAGGLE_TRUTH = ("VideoId", "Labels")
LONG_PRED = ("video_id", "label", "score")
LONG_TRUTH = ("video_id", "label")


def is_frame(x) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    return type(x).__name__ == "DataFrame" and type(x).__module__.startswith("pandas")


def _labels_column(values, name: str, num_classes: int) -> np.ndarray:
    try:
        labels = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"DataFrame column {name!r} must hold integer class ids") from None
    if labels.size and (np.isnan(labels).any() or (labels != np.round(labels)).any() or labels.min() < 0
                        or labels.max() >= num_classes):
        raise InputError(f"DataFrame column {name!r}: class ids must be integers in [0, {num_classes})")
    return labels.astype(np.int64)


def _split_rows(text_column, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(counts, flat float numbers) of a column of space-separated numbers."""
    counts, flat = [], []
    for i, cell in enumerate(text_column):
        parts = str(cell).split() if isinstance(cell, str) else []
        if cell is not None and not isinstance(cell, str) and cell == cell:  # not NaN
            raise InputError(f"DataFrame row {i}: {what} must be a string of space-separated numbers")
        try:
            flat.extend(float(p) for p in parts)
        except ValueError:
            raise InputError(f"DataFrame row {i}: {what} holds a non-number") from None
        counts.append(len(parts))
    return np.asarray(counts, dtype=np.int64), np.asarray(flat, dtype=np.float64)


def predictions_from_frame(df, num_classes: int) -> Predictions:
    """Top-k Predictions of a Kaggle or long DataFrame (see the module docstring)."""
    cols = tuple(df.columns)
    if set(KAGGLE_PRED) <= set(cols):
        counts, flat = _split_rows(df["LabelConfidencePairs"].tolist(), "LabelConfidencePairs")
        if (counts % 2).any():
            raise InputError("DataFrame LabelConfidencePairs: every row needs label/score pairs")
        ids = df["VideoId"].astype(str).to_numpy()
        row = np.repeat(np.arange(len(ids)), counts // 2)
        label = _labels_column(flat[0::2], "LabelConfidencePairs labels", num_classes)
        score = flat[1::2]
    elif set(LONG_PRED) <= set(cols):
        video = df["video_id"].astype(str).to_numpy()
        ids, row = np.unique(video, return_inverse=True)
        first = np.full(len(ids), len(video))
        np.minimum.at(first, row, np.arange(len(video)))
        order = np.argsort(first, kind="stable")            # ids in order of first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        ids, row = ids[order], rank[row]
        label = _labels_column(df["label"].to_numpy(), "label", num_classes)
        score = np.asarray(df["score"].to_numpy(), dtype=np.float64)
    else:
        raise InputError(f"a predictions DataFrame needs columns {', '.join(KAGGLE_PRED)} or "
                         f"{', '.join(LONG_PRED)}; got {', '.join(map(str, cols))}")
    if score.size and (np.isnan(score).any() or score.min() < 0 or score.max() > 1):
        raise InputError("DataFrame scores must lie in [0, 1]")
    if len(np.unique(ids)) != len(ids):
        raise InputError("DataFrame: a video id appears on two rows")
    return _topk(ids, row, label, score.astype(np.float32), num_classes)


def _topk(ids, row, label, score, num_classes: int) -> Predictions:
    n = len(ids)
    counts = np.bincount(row, minlength=n)
    k = max(1, int(counts.max()) if n else 1)
    order = np.lexsort((-score, row))                       # by video, best score first
    row, label, score = row[order], label[order], score[order]
    start = np.concatenate([[0], np.cumsum(counts)[:-1]]) if n else np.zeros(0, np.int64)
    col = np.arange(len(row)) - start[row]
    if len(row):
        pair = row.astype(np.int64) * num_classes + label
        if len(np.unique(pair)) != len(pair):
            raise InputError("DataFrame: a label appears twice for one video")
    S = np.zeros((n, k), dtype=np.float32)
    L = np.zeros((n, k), dtype=np.int32)
    S[row, col] = score
    L[row, col] = label
    for i in np.flatnonzero(counts < k):                    # pad short rows with unused labels at score 0
        used = set(L[i, :counts[i]].tolist())
        free = [c for c in range(num_classes) if c not in used][:k - counts[i]]
        if len(free) < k - counts[i]:
            raise InputError(f"DataFrame: video {ids[i]!r} cannot be padded to {k} labels of {num_classes}")
        L[i, counts[i]:] = free
    return Predictions(ids, S, L, num_classes)


def labels_from_frame(df, num_classes: int) -> Labels:
    """Labels of a Kaggle truth (``VideoId, Labels``) or long (``video_id, label``) DataFrame."""
    cols = tuple(df.columns)
    if set(KAGGLE_TRUTH) <= set(cols):
        counts, flat = _split_rows(df["Labels"].tolist(), "Labels")
        ids = df["VideoId"].astype(str).to_numpy()
        lists = np.split(_labels_column(flat, "Labels", num_classes), np.cumsum(counts)[:-1]) if len(ids) else []
    elif set(LONG_TRUTH) <= set(cols) and "score" not in cols:
        video = df["video_id"].astype(str).to_numpy()
        label = _labels_column(df["label"].to_numpy(), "label", num_classes)
        ids, first = np.unique(video, return_index=True)
        ids = ids[np.argsort(first, kind="stable")]
        pos = {v: i for i, v in enumerate(ids.tolist())}
        lists = [[] for _ in ids]
        for v, c in zip(video.tolist(), label.tolist()):
            lists[pos[v]].append(c)
    else:
        raise InputError(f"a labels DataFrame needs columns {', '.join(KAGGLE_TRUTH)} or {', '.join(LONG_TRUTH)}; "
                         f"got {', '.join(map(str, cols))}")
    if len(np.unique(ids)) != len(ids):
        raise InputError("labels DataFrame: a video id appears on two rows")
    return Labels.from_lists(ids, [np.unique(np.asarray(x, dtype=np.int64)) for x in lists], num_classes)
