#!/usr/bin/env bash
# Every frame-level producer on generated frame-level data: Zou's crops (1 vs 5 test-time crops) and all frames.
#
#   bash scripts/frame_level.sh [RUN_DIR]        (default /work/frame-run, outside the repo)
#
# Generates VIDEOS labelled frame-level videos (env, default 2000; 60-300 frames each; no test split);
# 600 are the eval split, the rest train (5% of them dev). For every configs/frame/<model>.toml (small
# widths, 3 epochs; see docs/frame-models.md):
#   * "<model>": trained on Zou's random 45-frame crops ([train] frames = "crop"), predicted with 5
#     test-time crops, stored per crop and averaged;
#   * "<model>-all" (VARIANTS contains "all"): the same job with frames = "all" (every frame, up to 300)
#     in training and prediction.
# Then scripts/frame_table.py writes RUN_DIR/results/table.md: train time and eval GAP@20 of crop 0,
# the mean of 5 crops, the mean under Zou's top-20 rule, and all frames. MODELS (env) picks a subset,
# e.g. MODELS="dbof netvlad"; VARIANTS="crop" skips the all-frames runs.
set -euo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
REPO=$PWD
RUN=${1:-/work/frame-run}
VIDEOS=${VIDEOS:-2000}
MODELS=${MODELS:-"frame_logistic dbof netvlad netrvlad netfv soft_dbof gated_dbof lstm bilstm bigru residual_lstm
  stacked_bilstm_pool attention_bigru multi_attention split_attention maxpool_bilstm random_bilstm hier_bilstm
  ln_lstm three_point_attention late_fusion"}
VARIANTS=${VARIANTS:-"crop all"}
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
run_job() {  # run_job NAME CONFIG: train, predict, record the wall times
  local name=$1 cfg=$2 t0 t1 t2
  t0=$(date +%s)
  if ! produce train "$cfg" --restart --quiet; then echo "$name: training failed"; return 0; fi
  t1=$(date +%s)
  if ! produce predict "$cfg" --quiet; then echo "$name: prediction failed"; return 0; fi
  t2=$(date +%s)
  load=$(cut -d" " -f1 /proc/loadavg)
  echo "{\"model\": \"$name\", \"train_s\": $((t1 - t0)), \"predict_s\": $((t2 - t1)), \"load\": $load}" \
    > "$RUN/results/$name.time.json"
  echo "$name: train $((t1 - t0)) s, predict $((t2 - t1)) s, load average $load"
}
for model in $MODELS; do
  cfg=$RUN/configs/$model.toml
  cp "$REPO/configs/frame/$model.toml" "$cfg"
  if [[ " $VARIANTS " == *" crop "* ]]; then run_job "$model" "$cfg"; fi
  if [[ " $VARIANTS " == *" all "* ]]; then
    sed -e 's/^frames = "crop"/frames = "all"/' -e 's/^crops = 5/crops = 1/' \
        -e "s/^run_dir = \"..\"/run_dir = \"..\"\nname = \"$model-all\"/" "$cfg" > "$RUN/configs/$model-all.toml"
    run_job "$model-all" "$RUN/configs/$model-all.toml"
  fi
done
python scripts/frame_table.py "$RUN" $MODELS | tee "$RUN/results/table.md"
echo "done in $(( $(date +%s) - T0 )) s (load average at the end: $(cut -d" " -f1-3 /proc/loadavg)): results in $RUN/results"
