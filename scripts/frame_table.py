"""Eval GAP@20 table of the frame-level runs of scripts/frame_level.sh (markdown on stdout, JSON beside it).

    python scripts/frame_table.py RUN_DIR MODEL [MODEL ...] [--previous TABLE]

For each model: train time (wall seconds of ``produce train``) and eval GAP@20
of crop 0 alone, of the plain mean of its 5 test-time crops, of the mean under
Zou's rule (each crop's top 20 only, :func:`producers.crops.crop_mean`), and of
the ``frames = "all"`` run (``<model>-all``). The crop stores are top-100, so
the top-20 rule is exact. Writes RUN_DIR/results/table.json too.

``--previous TABLE``: an earlier run's numbers beside the new ones, each cell
"new (was old)"; TABLE is that run's ``table.json`` or a markdown file whose
first table has this script's header (README.md, docs/frame-models.md).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from predictions.errors import InputError
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


HEADER = "| model | train s (crop / all) | crop 0 | mean of 5 crops | 5 crops, Zou top-20 | all frames |"
GAPS = ("crop0", "mean5", "zou5", "all")


def _number(cell: str, path: Path, what: str):
    cell = cell.strip().strip("*").strip()
    if cell in ("–", "-", ""):
        return None
    try:
        return float(cell) if "." in cell else int(cell)
    except ValueError:
        raise InputError(f"{what}: not a number: {cell!r}", str(path)) from None


def read_previous(path: Path) -> dict[str, dict]:
    """model -> its row (keys as table.json: train_s, train_all_s, crop0, mean5, zou5, all) of an earlier table."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", str(path))
    text = path.read_text()
    if path.suffix == ".json":
        try:
            rows = json.loads(text)
            return {r["model"]: r for r in rows}
        except (ValueError, TypeError, KeyError) as err:
            raise InputError(f"not a frame table JSON (a list of rows with 'model'): {err}", str(path)) from None
    lines = text.splitlines()
    if HEADER not in lines:
        raise InputError(f"has no frame table (header {HEADER!r})", str(path))
    out = {}
    for line in lines[lines.index(HEADER) + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 6 or "/" not in cells[1]:
            raise InputError(f"frame table row has not 6 cells: {line!r}", str(path))
        model = cells[0]
        train, train_all = cells[1].split("/", 1)
        out[model] = dict(model=model, train_s=_number(train, path, model), train_all_s=_number(train_all, path, model),
                          **{k: _number(c, path, model) for k, c in zip(GAPS, cells[2:])})
    return out


def main(run: Path, models: list[str], previous: dict[str, dict] | None = None) -> None:
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

    print(HEADER)
    print("|---|---|---|---|---|---|")
    for r in rows:
        was = (previous or {}).get(r["model"], {})

        def cell(k, fmt="{:.4f}"):
            v = f(r[k], fmt)
            return v if previous is None else f"{v} (was {f(was.get(k), fmt)})"

        best = max((r[k] for k in GAPS if r[k] is not None), default=None)
        cells = [("**" + cell(k) + "**") if r[k] is not None and r[k] == best else cell(k) for k in GAPS]
        print(f"| {r['model']} | {cell('train_s', '{}')} / {cell('train_all_s', '{}')} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="RUN_DIR of scripts/frame_level.sh")
    ap.add_argument("models", nargs="+", help="model names (configs/frame/<model>.toml)")
    ap.add_argument("--previous", type=Path, help="an earlier table.json or markdown table to show beside")
    a = ap.parse_args()
    try:
        main(a.run, a.models, read_previous(a.previous) if a.previous else None)
    except InputError as err:
        raise SystemExit(f"frame_table: error: {err}") from None
