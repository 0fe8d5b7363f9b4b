"""The plain-MLP reference of the real-data run: a 15-line torch model, none of the producers' recipe.

Usage: python scripts/plain_mlp.py DATA_GLOB [--out result.json] [--seed 0]

Exactly the baseline of issue 11: 1152 inputs (mean_rgb ++ mean_audio) ->
Linear 2048 -> BatchNorm1d -> ReLU -> Dropout 0.5 -> Linear 3862 -> sigmoid;
BCE; Adam lr 1e-3, batch 256, 15 epochs; keep the epoch with the best dev
GAP@20. Same videos as every producer: the ``train`` split of
``assign_splits(heldout=3000, eval=3000)`` minus its hashed 5 % dev slice,
which picks the epoch; the score printed is on the ``eval`` split. Only the
shard reader and the GAP metric come from the project, so a producer that does
not beat this number is not using the data.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from predictions.metrics import gap  # noqa: E402
from predictions.split import assign_splits, dev_mask  # noqa: E402
from predictions.types import Predictions  # noqa: E402
from producers.data.readers import load_video_level  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="video-level shards (glob)")
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ids, X, labels = load_video_level(args.data, num_classes=3862)
    split = assign_splits(ids, heldout=3000, eval=3000)
    train = np.flatnonzero(split == "train")
    is_dev = dev_mask(ids[train], 0.05)
    fit, dev, ev = train[~is_dev], train[is_dev], np.flatnonzero(split == "eval")
    Y = np.zeros((len(ids), 3862), np.float32)
    Y[labels.rows(), labels.indices] = 1.0
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)

    torch.manual_seed(args.seed)
    model = nn.Sequential(nn.Linear(1152, 2048), nn.BatchNorm1d(2048), nn.ReLU(), nn.Dropout(0.5),
                          nn.Linear(2048, 3862))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()

    def score(rows):
        model.eval()
        with torch.no_grad():
            p = torch.sigmoid(model(Xt[rows])).numpy()
        return gap(Predictions.from_dense(ids[rows], p, k=20), labels.take(rows), k=20)

    best, best_epoch, best_state, curve = -1.0, 0, None, []
    t1 = time.perf_counter()
    for epoch in range(15):
        model.train()
        for batch in torch.from_numpy(fit)[torch.randperm(len(fit))].split(256):
            opt.zero_grad()
            loss_fn(model(Xt[batch]), Yt[batch]).backward()
            opt.step()
        g = score(dev)
        curve.append(round(g, 4))
        if g > best:
            best, best_epoch, best_state = g, epoch + 1, {k: v.clone() for k, v in model.state_dict().items()}
    train_s = time.perf_counter() - t1
    model.load_state_dict(best_state)
    result = {"model": "plain MLP (issue 11 reference)", "eval_gap": score(ev), "dev_gap": best,
              "best_epoch": best_epoch, "dev_curve": curve, "n_train": len(fit), "n_dev": len(dev),
              "n_eval": len(ev), "train_seconds": round(train_s, 1),
              "total_seconds": round(time.perf_counter() - t0, 1), "seed": args.seed}
    print(f"plain MLP: eval GAP@20 {result['eval_gap']:.4f} (best dev epoch {result['best_epoch']}, "
          f"{train_s:.0f}s training)")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
