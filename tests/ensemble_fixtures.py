"""Generated member stores with a known structure, shared by the ensembler tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from predictions.labels import write_labels
from predictions.store import write_store
from predictions.types import Labels, Predictions

SPLITS = {"heldout": 400, "eval": 300, "test": 200}


def make_truth(rng, n: int, C: int, prefix: str) -> Labels:
    ids = np.array([f"{prefix}{i:05d}" for i in range(n)])
    freq = 1.0 / np.arange(1, C + 1)
    freq /= freq.sum()
    lists = [rng.choice(C, size=rng.integers(1, 5), replace=False, p=freq) for _ in range(n)]
    return Labels.from_lists(ids, lists, C)


def member_scores(rng, truth: Labels, noise: float, signal: float = 1.0) -> np.ndarray:
    """(n, C) probabilities: sigmoid of (signal * truth + noise * gaussian - 2)."""
    z = signal * 4.0 * truth.dense() + noise * rng.standard_normal((len(truth), truth.num_classes)) - 2.0
    return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)


def write_members(root: Path, *, C: int = 60, k: int = 20, noises=(1.2, 2.0, 3.0), seed: int = 0,
                  crops: dict | None = None, names=None) -> dict:
    """Write members ``m0..`` (or ``names``; top-k) for heldout/eval/test and labels for heldout/eval.

    Member ``i`` has noise ``noises[i]`` (lower is better). ``crops={"name": n}``
    adds a frame-style member with ``n`` crop stores per split.
    """
    names = [f"m{i}" for i in range(len(noises))] if names is None else list(names)
    rng = np.random.default_rng(seed)
    pred_dir, lab_dir = root / "predictions", root / "labels"
    truths = {}
    for split, n in SPLITS.items():
        truth = make_truth(rng, n, C, split[0])
        truths[split] = truth
        for name, noise in zip(names, noises):
            p = Predictions.from_dense(truth.ids, member_scores(rng, truth, noise), k=k)
            write_store(pred_dir / f"{name}.{split}.full.h5", p, model=name, split=split)
        for name, n_crops in (crops or {}).items():
            for c in range(n_crops):
                p = Predictions.from_dense(truth.ids, member_scores(rng, truth, 2.5), k=k)
                write_store(pred_dir / f"{name}.{split}.crop{c}.h5", p, model=name, split=split, crop=str(c))
        if split != "test":
            write_labels(lab_dir / f"labels.{split}.h5", truth, split=split)
    return {"predictions": pred_dir, "labels": lab_dir, "truth": truths}
