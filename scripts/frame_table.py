"""Eval GAP@20 table of the frame-level runs of scripts/frame_level.sh (markdown on stdout, JSON beside it).

    python scripts/frame_table.py RUN_DIR MODEL [MODEL ...]

For each model: train time (wall seconds of ``produce train``) and eval GAP@20
of crop 0 alone, of the plain mean of its 5 test-time crops, of the mean under
Zou's rule (each crop's top 20 only, :func:`producers.crops.crop_mean`), and of
the ``frames = "all"`` run (``<model>-all``). The crop stores are top-100, so
the top-20 rule is exact. Writes RUN_DIR/results/table.json too.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from predictions.labels import read_labels
from predictions.metrics import gap
from predictions.store import open_store
from predictions.types import Predictions
from producers.crops import ZOU_TOP_K, crop_mean


def _read(path: Path, ids) -> np.ndarray | None:
    if not path.exists():
        return None
    with open_store(path) as s:
        return s.read().reindex(ids).dense()


def _gap(scores: np.ndarray | None, truth) -> float | None:
    if scores is None:
        return None
    return float(gap(Predictions.from_dense(truth.ids, scores, k=20), truth, k=20))


def _seconds(results: Path, name: str) -> int | None:
    p = results / f"{name}.time.json"
    return json.loads(p.read_text())["train_s"] if p.exists() else None


def main(run: Path, models: list[str]) -> None:
    truth = read_labels(run / "labels" / "labels.eval.h5")
    pred, results = run / "predictions", run / "results"
    rows = []
    for m in models:
        crops = [_read(pred / f"{m}.eval.crop{c}.h5", truth.ids) for c in range(5)]
        have5 = all(c is not None for c in crops)
        rows.append(dict(
            model=m, train_s=_seconds(results, m), train_all_s=_seconds(results, f"{m}-all"),
            crop0=_gap(crops[0], truth),
            mean5=_gap(crop_mean(crops, top_k=0) if have5 else None, truth),
            zou5=_gap(crop_mean(crops, ZOU_TOP_K) if have5 else None, truth),
            all=_gap(_read(pred / f"{m}-all.eval.crop0.h5", truth.ids), truth)))
    (results / "table.json").write_text(json.dumps(rows, indent=2) + "\n")

    def f(v, fmt="{:.4f}"):
        return "–" if v is None else fmt.format(v)

    print("| model | train s (crop / all) | crop 0 | mean of 5 crops | 5 crops, Zou top-20 | all frames |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        best = max((r[k] for k in ("crop0", "mean5", "zou5", "all") if r[k] is not None), default=None)
        cells = [("**" + f(r[k]) + "**") if r[k] is not None and r[k] == best else f(r[k])
                 for k in ("crop0", "mean5", "zou5", "all")]
        print(f"| {r['model']} | {f(r['train_s'], '{}')} / {f(r['train_all_s'], '{}')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(Path(sys.argv[1]), sys.argv[2:])
