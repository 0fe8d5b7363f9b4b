"""Predictions and Labels out as pandas DataFrames (the long or the Kaggle layout; see
:mod:`predictions.frames` for the way in). Kept apart from the readers so that
:mod:`predictions.types` can offer ``to_frame()`` without an import cycle: nothing
here imports the types, it reads their arrays.
"""
from __future__ import annotations

import numpy as np

from .extras import require

__all__ = ["predictions_to_frame", "labels_to_frame"]


def predictions_to_frame(pred, *, kaggle: bool = False, top: int | None = None):
    """The long frame (``video_id, label, score``, best first per video) or the Kaggle one."""
    pd = require("pandas", what="Predictions.to_frame()")
    p = pred if pred.indices is not None else type(pred).from_dense(pred.ids, pred.dense(), k=top or 20)
    if top is not None:
        p = p.topk(min(top, p.k))
    n, k = p.scores.shape
    if kaggle:
        pairs = [" ".join(f"{int(c)} {s:.6f}" for c, s in zip(p.indices[i], p.scores[i])) for i in range(n)]
        return pd.DataFrame({"VideoId": p.ids, "LabelConfidencePairs": pairs})
    return pd.DataFrame({"video_id": np.repeat(p.ids, k), "label": p.indices.reshape(-1).astype(np.int64),
                         "score": p.scores.reshape(-1)})


def labels_to_frame(labels, *, kaggle: bool = False):
    """The long frame (``video_id, label``) or the Kaggle truth frame (``VideoId, Labels``)."""
    pd = require("pandas", what="Labels.to_frame()")
    counts = np.diff(labels.indptr)
    if kaggle:
        text = [" ".join(map(str, labels.indices[a:b])) for a, b in zip(labels.indptr[:-1], labels.indptr[1:])]
        return pd.DataFrame({"VideoId": labels.ids, "Labels": text})
    return pd.DataFrame({"video_id": np.repeat(labels.ids, counts), "label": labels.indices.astype(np.int64)})
