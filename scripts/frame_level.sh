#!/usr/bin/env bash
# Frame-level producers on generated frame-level data, with and without multi-crop averaging.
#
#   bash scripts/frame_level.sh [RUN_DIR]        (default /work/frame-run, outside the repo)
#
# Generates VIDEOS labelled frame-level videos (env, default 3000; no test split), trains and
# predicts every configs/frame/<model>.toml one at a time (5 inference crops + their mean on the
# heldout and eval splits), scores each model on eval with every crop alone (--fold-crops none)
# and with the crops averaged (--fold-crops mean), then builds a uniform ensemble of the frame
# models (crops averaged) and scores it. Per-model JSON results and train times land in
# RUN_DIR/results/. MODELS (env) picks a subset, e.g. MODELS="dbof lstm".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
RUN=${1:-/work/frame-run}
VIDEOS=${VIDEOS:-3000}
MODELS=${MODELS:-"dbof lstm three_point_attention bigru attention_lstm late_fusion"}
bash scripts/setup.sh
. .venv/bin/activate
mkdir -p "$RUN"
RUN=$(cd "$RUN" && pwd)
mkdir -p "$RUN/configs" "$RUN/results"
if [ "$(cat "$RUN/data/.done" 2>/dev/null)" != "$VIDEOS" ]; then  # (re)generate on a new size
  rm -rf "$RUN/data"
  produce generate "$RUN/data" --level frame --videos "$VIDEOS" --test-videos 0 --seed 0 --quiet
  echo "$VIDEOS" > "$RUN/data/.done"
fi
for model in $MODELS; do
  cp "$REPO/configs/frame/$model.toml" "$RUN/configs/$model.toml"
  cfg=$RUN/configs/$model.toml
  t0=$(date +%s)
  produce train "$cfg" --restart --quiet
  t1=$(date +%s)
  produce predict "$cfg" --quiet
  t2=$(date +%s)
  echo "{\"model\": \"$model\", \"train_s\": $((t1 - t0)), \"predict_s\": $((t2 - t1))}" > "$RUN/results/$model.time.json"
  for fold in none mean; do
    ensemble evaluate --members "$RUN/predictions/$model.*.h5" --labels "$RUN/labels" --split eval \
      --fold-crops "$fold" --json > "$RUN/results/$model.$fold.json"
  done
  echo "$model: train $((t1 - t0)) s, predict $((t2 - t1)) s"
done
members=()
for model in $MODELS; do members+=("$RUN/predictions/$model.*.h5"); done
ensemble build --weights uniform --members "${members[@]}" --labels "$RUN/labels" \
  --out "$RUN/ensemble" --fold-crops mean --json > "$RUN/results/ens-uniform.build.json"
ensemble evaluate --members "$RUN/ensemble/ens-uniform.eval.full.h5" --labels "$RUN/labels" --split eval \
  --json > "$RUN/results/ens-uniform.json"
ensemble evaluate --members "${members[@]}" --labels "$RUN/labels" --split eval --fold-crops none
ensemble evaluate --members "${members[@]}" "$RUN/ensemble/ens-uniform.eval.full.h5" --labels "$RUN/labels" \
  --split eval --fold-crops mean
echo "done: results in $RUN/results"
