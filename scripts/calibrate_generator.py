#!/usr/bin/env python
"""Measure the generated data against the real YouTube-8M shards, side by side.

For each source (the real 2018 validate shards, and data written by
``producers.data.generate`` at the same size) it measures:

* the label-count distribution (fraction of videos with 1, 2, ..., 8+ labels);
* the class-frequency curve (share of videos holding the class of rank 1, 10, 100, 1000);
* per-dimension mean and std of ``mean_rgb`` and ``mean_audio`` (summaries);
* three members trained the same way on each (``produce train/predict`` on the
  same recipe): LR, an MLP and an audio-only MLP (``--members`` adds rgb-only);
  their eval GAP@20, the gaps to LR, and their pairwise Pearson correlation
  over the candidates (as in the HTML report's diversity heatmap).

Example (about 4 minutes on 2 busy cores)::

    nice python scripts/calibrate_generator.py --videos 6000 --out /tmp/calib
    nice python scripts/calibrate_generator.py --skip-real --param nonlinear=0.4 --out /tmp/calib2

The table is printed as Markdown and written to ``OUT/calibration.json``.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REAL = ROOT.parent / "shared" / "data" / "yt8m2018-video-validate"
# one recipe for every member on both sources: the demo's (configs/demo/*.toml): LR at the learning rate
# its search picks, MLPs 1x512 at Adam 3e-3 (inputs L2-normalised, output bias at the class log-odds)
_MLP = {"hidden_dim": 512, "dropout": 0.5, "head": "lr"}
_MLP_TRAIN = {"lr": 0.003, "lr_decay": 0.95}
MEMBERS = {
    "lr": ({"name": "lr"}, {"lr": 0.03, "lr_decay": 0.9}),
    "mlp": ({"name": "mlp", "hparams": _MLP}, _MLP_TRAIN),
    "mlp_audio": ({"name": "mlp", "features": "audio", "hparams": _MLP}, _MLP_TRAIN),
    "mlp_rgb": ({"name": "mlp", "features": "rgb", "hparams": _MLP}, _MLP_TRAIN),
}


def _toml_value(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


def _job_toml(member: str, data_glob: str, run_dir: Path, epochs: int, heldout: int, eval_: int) -> str:
    model, train = MEMBERS[member]
    lines = ["[model]", f"name = {_toml_value(model['name'])}"]
    if "features" in model:
        lines.append(f"features = {_toml_value(model['features'])}")
    if "hparams" in model:
        lines.append("[model.hparams]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in model["hparams"].items()]
    lines += ["[data]", f"train = {_toml_value(data_glob)}", "num_classes = 3862",
              "[split]", f"heldout = {heldout}", f"eval = {eval_}",
              "[train]", f"epochs = {epochs}", "batch_size = 256", "patience = 3", "seed = 0"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in train.items()]
    lines += ["[predict]", "top_k = 100", 'splits = ["eval"]',
              "[output]", f"run_dir = {_toml_value(str(run_dir))}", f"name = {_toml_value(member)}"]
    return "\n".join(lines) + "\n"


def data_stats(files: list[str]) -> dict:
    """Label counts, class-frequency curve and per-dimension feature moments of video-level shards."""
    from producers.data import load_video_level

    _, X, labels = load_video_level(files)
    counts = labels.counts()
    hist = np.bincount(np.minimum(counts, 8), minlength=9)[1:] / len(counts)
    freq = np.sort(np.bincount(labels.indices, minlength=labels.num_classes))[::-1] / len(counts)
    rgb, audio = X[:, :1024], X[:, 1024:]
    sr, sa = rgb.std(0), audio.std(0)
    return {
        "videos": int(len(counts)), "labels_per_video": float(counts.mean()),
        "label_count_hist": [round(float(h), 4) for h in hist],  # 1, 2, ..., 7, 8+
        "class_share": {str(r): float(freq[r - 1]) for r in (1, 10, 100, 1000)},
        "classes_seen": int((freq > 0).sum()),
        "rgb_std": {"mean": float(sr.mean()), "dim0": float(sr[0]), "dim100": float(sr[100]),
                    "dim1023": float(sr[-1])},
        "audio_std": {"mean": float(sa.mean()), "dim0": float(sa[0]), "dim127": float(sa[-1])},
        "rgb_abs_mean": float(np.abs(rgb.mean(0)).mean()), "audio_abs_mean": float(np.abs(audio.mean(0)).mean()),
    }


def member_stats(data_glob: str, work: Path, members: list[str], epochs: int, heldout: int, eval_: int) -> dict:
    """Train and predict each member with ``produce``; eval GAP@20 and pairwise correlations."""
    from predictions import metrics, read_labels
    from predictions.align import align_labels
    from predictions.storereader import read_store
    from producers.cli import main as produce

    work.mkdir(parents=True, exist_ok=True)
    seconds = {}
    for m in members:
        cfg = work / f"{m}.toml"
        cfg.write_text(_job_toml(m, data_glob, work, epochs, heldout, eval_), encoding="utf-8")
        t = time.perf_counter()
        for cmd in ("train", "predict"):
            if produce([cmd, str(cfg), "--quiet"]) != 0:
                raise SystemExit(f"produce {cmd} {cfg} failed")
        seconds[m] = round(time.perf_counter() - t, 1)
    preds = {m: read_store(work / "predictions" / f"{m}.eval.full.h5") for m in members}
    ids = preds[members[0]].ids
    for m in members:
        if not np.array_equal(preds[m].ids, ids):
            raise SystemExit(f"{m}: eval ids differ from {members[0]}'s")
    truth = align_labels(read_labels(work / "labels" / "labels.eval.h5"), ids)
    gaps = {m: metrics.gap(preds[m], truth, k=20) for m in members}
    corr = candidate_correlation([preds[m] for m in members])
    pairs = {f"{a}~{b}": float(corr[i, j]) for i, a in enumerate(members) for j, b in enumerate(members) if i < j}
    return {"gap": gaps, "gap_vs_lr": {n: gaps[n] - gaps["lr"] for n in members},
            "correlation": pairs, "mean_correlation": float(np.mean(list(pairs.values()))) if pairs else 1.0,
            "train_predict_s": seconds}


def candidate_correlation(preds, k: int = 100) -> np.ndarray:
    """(M, M) Pearson correlation of the members' scores over the union of their top-``k`` labels.

    The figure of the HTML report's diversity heatmap (``reports.report.diversity``): a
    member scores 0 on a candidate outside its own top ``k``.
    """
    dense = [p.topk(k).dense() for p in preds]
    mask = np.zeros(dense[0].shape, bool)
    for d in dense:
        mask |= d > 0
    scores = np.stack([d[mask] for d in dense], axis=1).astype(np.float64)
    return np.corrcoef(scores, rowvar=False)


def _parse_param(text: str):
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _row(name: str, real, gen, fmt="{:.4f}") -> str:
    cell = lambda v: "–" if v is None else (fmt.format(v) if isinstance(v, float) else str(v))
    return f"| {name} | {cell(real)} | {cell(gen)} |"


def table(res: dict) -> str:
    real, gen = res.get("real"), res["generated"]
    get = lambda d, *ks: None if d is None else _dig(d, ks)
    lines = ["| measure | real (yt8m2018 validate) | generated |", "|---|---|---|"]
    lines.append(_row("videos", get(real, "data", "videos"), get(gen, "data", "videos")))
    lines.append(_row("labels per video", get(real, "data", "labels_per_video"),
                      get(gen, "data", "labels_per_video"), "{:.2f}"))
    for k, label in enumerate(["1", "2", "3", "4", "5", "6", "7", "8+"]):
        lines.append(_row(f"share with {label} labels", get(real, "data", "label_count_hist", k),
                          get(gen, "data", "label_count_hist", k), "{:.3f}"))
    for r in ("1", "10", "100", "1000"):
        lines.append(_row(f"share of videos with the rank-{r} class", get(real, "data", "class_share", r),
                          get(gen, "data", "class_share", r), "{:.4f}"))
    lines.append(_row("classes seen", get(real, "data", "classes_seen"), get(gen, "data", "classes_seen")))
    for mod, keys in (("rgb", ("mean", "dim0", "dim100", "dim1023")), ("audio", ("mean", "dim0", "dim127"))):
        for k in keys:
            lines.append(_row(f"mean_{mod} std ({k})", get(real, "data", f"{mod}_std", k),
                              get(gen, "data", f"{mod}_std", k), "{:.3f}"))
        lines.append(_row(f"mean_{mod} mean |mean|", get(real, "data", f"{mod}_abs_mean"),
                          get(gen, "data", f"{mod}_abs_mean"), "{:.4f}"))
    names = list((gen.get("members") or {}).get("gap", {}))
    for n in names:
        lines.append(_row(f"eval GAP@20 {n}", get(real, "members", "gap", n), get(gen, "members", "gap", n)))
    for n in names:
        if n != "lr":
            lines.append(_row(f"{n} - lr", get(real, "members", "gap_vs_lr", n),
                              get(gen, "members", "gap_vs_lr", n), "{:+.4f}"))
    for pair in (gen.get("members") or {}).get("correlation", {}):
        lines.append(_row(f"correlation {pair}", get(real, "members", "correlation", pair),
                          get(gen, "members", "correlation", pair), "{:.3f}"))
    if gen.get("members"):
        lines.append(_row("mean pairwise correlation", get(real, "members", "mean_correlation"),
                          get(gen, "members", "mean_correlation"), "{:.3f}"))
    return "\n".join(lines)


def _dig(d, keys):
    for k in keys:
        if d is None:
            return None
        d = d[k] if isinstance(d, list) else d.get(k)
    return d


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="work folder (runs, calibration.json)")
    ap.add_argument("--real", type=Path, default=REAL, help=f"real video-level shards (default {REAL})")
    ap.add_argument("--videos", type=int, default=6000,
                    help="videos per source (default 6000, the demo's labelled videos): the first real "
                         "shards holding that many, and that many generated")
    ap.add_argument("--heldout", type=int, default=1500)
    ap.add_argument("--eval", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0, help="generator seed")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a generate() keyword (repeatable), e.g. --param nonlinear=0.4")
    ap.add_argument("--members", default="lr,mlp,mlp_audio", help=f"comma list among {', '.join(MEMBERS)}")
    ap.add_argument("--skip-real", action="store_true", help="measure the generated data only")
    ap.add_argument("--real-from", type=Path, help="reuse the real-data results of an earlier calibration.json")
    ap.add_argument("--skip-members", action="store_true", help="data statistics only (seconds)")
    args = ap.parse_args(argv)
    from producers.data import generate

    members = [m for m in args.members.split(",") if m]
    unknown = sorted(set(members) - set(MEMBERS))
    if unknown or "lr" not in members:
        ap.error(f"--members must include lr and name only {', '.join(MEMBERS)}; got {args.members}")
    args.out.mkdir(parents=True, exist_ok=True)
    res: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    for old in ("gen-data", "gen-run"):  # this script's own outputs of an earlier run
        shutil.rmtree(args.out / old, ignore_errors=True)
    if args.real_from:
        res["real"] = json.loads(args.real_from.read_text(encoding="utf-8"))["real"]
    elif not args.skip_real:
        shutil.rmtree(args.out / "real-run", ignore_errors=True)
        files = sorted(glob.glob(str(args.real / "*.tfrecord")))
        if not files:
            raise SystemExit(f"no *.tfrecord under {args.real}")
        from producers.data import scan_ids
        chosen, total = [], 0
        for f in files:  # the first shards holding --videos videos
            if total >= args.videos:
                break
            chosen.append(f)
            total += len(scan_ids([f]))
        link_dir = args.out / "real-shards"  # symlinks: the real files are read in place
        link_dir.mkdir(exist_ok=True)
        for f in chosen:
            link = link_dir / Path(f).name
            if not link.exists():
                os.symlink(f, link)
        res["real"] = {"data": data_stats(chosen), "shards": len(chosen)}
        if not args.skip_members:
            res["real"]["members"] = member_stats(str(link_dir / "*.tfrecord"), args.out / "real-run", members,
                                                  args.epochs, args.heldout, args.eval)
    params = dict(_parse_param(p) for p in args.param)
    t = time.perf_counter()
    info = generate(args.out / "gen-data", n_train=args.videos, n_test=0, seed=args.seed, **params)
    res["generated"] = {"params": params, "generate_s": round(time.perf_counter() - t, 2),
                        "data": data_stats([str(p) for p in info["shards"]["video"]["train"]])}
    if not args.skip_members:
        res["generated"]["members"] = member_stats(str(args.out / "gen-data" / "video" / "train-*.tfrecord"),
                                                   args.out / "gen-run", members, args.epochs, args.heldout,
                                                   args.eval)
    (args.out / "calibration.json").write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    print(table(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
