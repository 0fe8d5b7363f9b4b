#!/usr/bin/env bash
# The main job end to end on the embedded default (generated data), set-up included:
# generate YouTube-8M-shaped TFRecords, train four producers that differ as real ones do (LR by a
# 2-trial search, an MLP, an audio-only and an rgb-only MLP), predict the held-out, eval and test splits,
# build uniform, Caruana and LR-stacking ensembles, evaluate, write a submission and an HTML report.
# Everything lands in demo-run/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
RUN=demo-run
rm -rf "$RUN"
produce generate "$RUN/data" --videos 6000 --test-videos 1000 --seed 0
produce search configs/demo/lr.toml    # its [search] table: 2 learning rates, the best on dev GAP@20 kept
produce predict configs/demo/lr.toml
for m in mlp mlp_audio mlp_rgb; do
  produce train configs/demo/$m.toml
  produce predict configs/demo/$m.toml
done
MEMBERS=("$RUN/predictions/lr.*.h5" "$RUN/predictions/mlp*.h5")   # the producers only
ensemble build --weights=uniform --members "${MEMBERS[@]}" --labels "$RUN/labels" --out "$RUN/predictions"
for scheme in caruana lr; do   # learned schemes: cross-fitted on heldout
  ensemble build --weights=$scheme --members "${MEMBERS[@]}" --labels "$RUN/labels" --out "$RUN/predictions"
done
ensemble evaluate --members "$RUN/predictions" --labels "$RUN/labels" --split test
ensemble submit "$RUN/predictions/ens-caruana.test.full.h5" --out "$RUN/submission.csv"   # the best estimate
ensemble report --members "$RUN/predictions" --labels "$RUN/labels" --split eval --builds "$RUN/predictions" \
  --vocabulary "$RUN/data/vocabulary.csv" --out "$RUN/report"
# The everyday blend from Kaggle CSVs: each member's heldout and test predictions as a user has them
# (MODEL.heldout.csv, MODEL.csv), one command fits on heldout, applies to test and writes the checked submission
mkdir -p "$RUN/csv"
for m in lr mlp mlp_audio mlp_rgb; do
  ensemble submit "$RUN/predictions/$m.heldout.full.h5" --any-split --out "$RUN/csv/$m.heldout.csv" --quiet
  ensemble submit "$RUN/predictions/$m.test.full.h5" --out "$RUN/csv/$m.csv" --quiet
done
ensemble build --weights=lr --members "$RUN"/csv/*.csv --labels "$RUN/labels/labels.heldout.h5" \
  --out "$RUN/blend" --submit "$RUN/blend-submission.csv"
ensemble evaluate --members "$RUN/blend" --labels "test=$RUN/data/test_truth.csv" --split test   # a truth CSV
echo "done: submission $RUN/submission.csv, report $RUN/report/index.html, CSV blend $RUN/blend-submission.csv"
