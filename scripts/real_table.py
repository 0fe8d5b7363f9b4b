"""Markdown tables of a real-data run (scripts/real_data.sh): producers, learning curves, ensembles.

    python scripts/real_table.py RUN_DIR > RUN_DIR/tables.md

Every number is recomputed here from the run's files, so the tables cannot
drift from the stores: eval GAP@20 from ``predictions/<name>.eval.full.h5`` and
``ensembles/ens-<scheme>.eval.full.h5`` against ``labels/labels.eval.h5``;
the best epoch and the dev curve from ``<producer>/history.json``; wall times
from ``timings.tsv``; the heldout estimate and its fold standard error from
``ensembles/ens-<scheme>.build.json``; the plain-MLP reference from
``plain_mlp.json`` (scripts/plain_mlp.py, trained in the same run).
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from ensembler.record import BuildRecord
from predictions.labels import read_labels
from predictions.metrics import gap
from predictions.store import read_store


def _gap(path: Path, truth) -> float | None:
    if not path.exists():
        return None
    pred = read_store(path)
    return float(gap(pred, truth.reindex(pred.ids), k=20))


def _seconds(run: Path) -> dict[tuple[str, str], float]:
    path = run / "timings.tsv"
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {(r["kind"], r["name"]): float(r["seconds"]) for r in csv.DictReader(f, delimiter="\t")
                if r["status"] == "ok"}


def _f(v, fmt="{:.4f}") -> str:
    return "–" if v is None else fmt.format(v)


def producers_table(run: Path, truth, seconds) -> tuple[list[str], float | None]:
    plain = json.loads((run / "plain_mlp.json").read_text()) if (run / "plain_mlp.json").exists() else None
    ref = plain["eval_gap"] if plain else None
    lines = ["| producer | model | eval GAP@20 | vs plain MLP | best epoch / trained | dev GAP@20 | train s |",
             "|---|---|---|---|---|---|---|"]
    if plain:
        lines.append(f"| plain MLP (reference) | scripts/plain_mlp.py | {ref:.4f} | – | {plain['best_epoch']} / "
                     f"{len(plain['dev_curve'])} | {plain['dev_gap']:.4f} | {plain['train_seconds']:.0f} |")
    curves = []
    for hist in sorted(run.glob("*/history.json")):
        name = hist.parent.name
        cfg = json.loads((hist.parent / "config.json").read_text()) if (hist.parent / "config.json").exists() else {}
        if cfg.get("distill"):
            continue  # a student of scripts/distill_real.sh: see RUN_DIR/distill.tsv
        h = json.loads(hist.read_text())
        g = _gap(run / "predictions" / f"{name}.eval.full.h5", truth)
        if g is None:
            continue
        model = cfg.get("model", {}).get("name", "?")
        delta = None if ref is None else g - ref
        lines.append(f"| {name} | {model} | {g:.4f} | {_f(delta, '{:+.4f}')} | {h['best_epoch']} / {len(h['dev_gap'])} "
                     f"| {h['best_gap']:.4f} | {_f(seconds.get(('train', name)), '{:.0f}')} |")
        curves.append(f"| {name} | " + " ".join(f"{x:.3f}" for x in h["dev_gap"]) + " | "
                      + " ".join(f"{x:.2f}" for x in h["loss"]) + " |")
    lines += ["", "Learning curves (dev GAP@20 per epoch; training loss per epoch, summed BCE per video):", "",
              "| producer | dev GAP@20 by epoch | train loss by epoch |", "|---|---|---|"] + curves
    return lines, ref


def ensembles_table(run: Path, truth, seconds, best_single: float | None) -> list[str]:
    lines = ["| ensemble | heldout estimate ± s.e. | eval GAP@20 | vs best member | build s |", "|---|---|---|---|---|"]
    for rec_path in sorted((run / "ensembles").glob("*.build.json")):
        rec = BuildRecord.read(rec_path)
        g = _gap(run / "ensembles" / f"{rec.name}.eval.full.h5", truth)
        est = "–" if rec.estimate is None else (f"{rec.estimate:.4f}" + ("" if rec.std_error is None
                                                                         else f" ± {rec.std_error:.4f}"))
        delta = None if g is None or best_single is None else g - best_single
        lines.append(f"| {rec.name} ({'cross-fitted' if rec.crossfit else 'plain'}) | {est} | {_f(g)} | "
                     f"{_f(delta, '{:+.4f}')} | {_f(seconds.get(('build', rec.name)), '{:.0f}')} |")
    return lines


def main(run: Path) -> None:
    truth = read_labels(run / "labels" / "labels.eval.h5")
    seconds = _seconds(run)
    lines, _ = producers_table(run, truth, seconds)
    members = {m.name for r in (run / "ensembles").glob("*.build.json") for m in BuildRecord.read(r).members}
    singles = [_gap(run / "predictions" / f"{m}.eval.full.h5", truth) for m in sorted(members)]
    best = max((g for g in singles if g is not None), default=None)
    print("\n".join(lines + [""] + ensembles_table(run, truth, seconds, best)))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
