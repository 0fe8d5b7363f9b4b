#!/usr/bin/env bash
# Measure producers and every ensembling scheme on REAL YouTube-8M data.
#
# Usage: bash scripts/real_data.sh [RUN_DIR]        (default /work/real-run; keep it outside the repo)
#
# Data: the 14,547 videos of the official YouTube-8M 2018 video-level validate shards
# validate0000-0049 in ../shared/data/yt8m2018-video-validate (see its PROVENANCE.md; 3862 classes,
# ~3 labels/video). They are read in place and never copied into the repo or the run dir.
#
# Split rule (the same for every producer and every ensemble, computed from the ids alone):
# predictions.split.assign_splits(ids, heldout=3000, eval=3000) with the default salt.
#   - train   : the remaining 8,547 videos; each producer trains on them minus its 5% dev
#               (predictions.split.dev_mask) used for early stopping;
#   - heldout : 3,000 videos where every ensemble is fitted (and its cross-fitted estimate computed);
#   - eval    : 3,000 videos that no producer and no combiner has seen; all reported numbers are on it.
#
# Producers: configs/real/*.toml (video-level; the recipe of docs/real-data-training.md), trained one
# at a time, each predicting train (in-sample, for distillation), heldout and eval with top_k 100. A producer whose
# eval store already exists is skipped, so a rerun resumes. Then `ensemble build` for every scheme of
# `ensemble schemes`, over the producer stores only, named ens-<scheme>, written to RUN_DIR/ensembles;
# `ensemble evaluate --split eval`; `ensemble report` into RUN_DIR/report. Timings go to
# RUN_DIR/timings.tsv; build results (JSON) to RUN_DIR/builds/.
# Measured (2026-11-30, 2 CPU cores shared with other jobs at load 3-4, summed over resumed runs): about
# 70 min; producers ~60 min (0.5-16 min each: docs/real-data-training.md), the 10 builds ~7 min
# (xgboost 3 min). RUN_DIR takes ~4 GB (mostly checkpoints; 6.6 GB after scripts/distill_real.sh). Tables: python scripts/real_table.py RUN_DIR.
#
# Out-of-fold variant: bash scripts/real_data.sh --oof [RUN_DIR]   (default /work/real-oof)
# Each member of OOF_MEMBERS (default: mlp lr mlp_audio mlp_rgb moe mlp_wide mlp_cg hmoe) gets
# `[train] folds = $FOLDS` (default 5) over the pool train + heldout (11,547 videos; eval untouched):
# each fold is its own `produce train --fold k` (resumable, timed per fold), then `produce predict`
# writes <name>.oof.full.h5 (+ labels/labels.oof.h5), the heldout store (out of fold) and the eval store
# (mean of the fold models). Same builds and evaluation on eval as above, fitted on heldout; with an
# `ensemble build --fit-split` option, also fitted on the whole out-of-fold pool (ens-oof-<scheme>).
# REFIT=1 also trains each member once on the whole pool (`--fold refit`, [predict] fold_eval = "both") and
# scores its eval store <name>-refit.eval.full.h5 beside the fold mean (producers.eval.*; not an ensemble member).
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)
OOF=0
if [ "${1:-}" = "--oof" ]; then OOF=1; shift; fi
RUN=$(realpath -m "${1:-$([ $OOF = 1 ] && echo /work/real-oof || echo /work/real-run)}")
DATA=$(realpath -m "${DATA:-$REPO/../shared/data}")
case "$RUN/" in "$REPO"/*) echo "RUN_DIR must be outside the repo: $RUN" >&2; exit 2;; esac
if ! ls "$DATA"/yt8m2018-video-validate/validate*.tfrecord >/dev/null 2>&1; then
  echo "real data not found under $DATA/yt8m2018-video-validate" >&2; exit 2
fi
if [ -z "${VIRTUAL_ENV:-}" ]; then  # an active venv (e.g. a frozen copy of the code on PYTHONPATH) is used as is
  bash scripts/setup.sh
  . .venv/bin/activate
fi
mkdir -p "$RUN/configs" "$RUN/builds" "$RUN/ensembles"
TIMES="$RUN/timings.tsv"
[ -f "$TIMES" ] || printf 'kind\tname\tseconds\tstatus\n' > "$TIMES"
now() { date +%s.%N; }
elapsed() { python -c "print(f'{$2 - $1:.1f}')"; }

if [ $OOF = 1 ]; then
  FOLDS=${FOLDS:-5}
  REFIT=${REFIT:-0}
  REFITS=()
  read -r -a PRODUCERS <<< "${OOF_MEMBERS:-mlp lr mlp_audio mlp_rgb moe mlp_wide mlp_cg hmoe}"
  MEMBERS=()
  for name in "${PRODUCERS[@]}"; do
    cfg="$RUN/configs/$name.toml"
    sed -e "s|^run_dir = .*|run_dir = \"$RUN\"|" -e "s|\"\.\./\.\./\.\./shared/data|\"$DATA|" \
        -e "s|^splits = .*|splits = [\"heldout\", \"eval\"]|" \
        -e "s|^\[train\]\$|[train]\nfolds = $FOLDS\npool = [\"train\", \"heldout\"]|" \
        $([ "$REFIT" = 1 ] && echo "-e s|^\[predict\]\$|[predict]\nfold_eval=\"both\"|") \
        "configs/real/$name.toml" > "$cfg"
    if [ ! -f "$RUN/predictions/$name.eval.full.h5" ] \
       || { [ "$REFIT" = 1 ] && [ ! -f "$RUN/predictions/$name-refit.eval.full.h5" ]; }; then
      ok=1
      targets=$(seq 0 $((FOLDS - 1))); [ "$REFIT" = 1 ] && targets="$targets refit"
      for k in $targets; do
        if [ "$k" = refit ]; then done_file="$RUN/$name/history.json"; else done_file="$RUN/$name/folds/fold-$k/history.json"; fi
        [ -f "$done_file" ] && continue
        echo "=== train $name fold $k/$FOLDS ($(date +%T))"
        t0=$(now)
        if produce train "$cfg" --fold "$k" --quiet; then st=ok; else st=FAILED; ok=0; fi
        printf 'train\t%s/fold-%s\t%s\t%s\n' "$name" "$k" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
        [ "$st" = ok ] || break
      done
      [ $ok = 1 ] || continue
      t0=$(now)
      if produce predict "$cfg" --quiet; then st=ok; else st=FAILED; fi
      printf 'predict\t%s\t%s\t%s\n' "$name" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
      [ "$st" = ok ] || continue
    fi
    MEMBERS+=("$RUN/predictions/$name.heldout.full.h5" "$RUN/predictions/$name.eval.full.h5")
    [ "$REFIT" = 1 ] && REFITS+=("$RUN/predictions/$name-refit.eval.full.h5")
  done
  [ ${#MEMBERS[@]} -gt 0 ] || { echo "no member finished" >&2; exit 1; }
  echo "=== fold-mean producers on eval ($(date +%T))"
  ensemble evaluate --members "${MEMBERS[@]}" "${REFITS[@]}" --labels "$RUN/labels" --split eval | tee "$RUN/producers.eval.txt"
  ensemble evaluate --json --members "${MEMBERS[@]}" "${REFITS[@]}" --labels "$RUN/labels" --split eval > "$RUN/producers.eval.json"
  FIT_SPLITS=(heldout)
  ensemble build --help 2>/dev/null | grep -q -- "--fit-split" && FIT_SPLITS+=(oof)
  for fit in "${FIT_SPLITS[@]}"; do
    OOFM=()
    for m in "${MEMBERS[@]}"; do
      [ "$fit" = oof ] && m=${m/.heldout.full.h5/.oof.full.h5}
      OOFM+=("$m")
    done
    for scheme in ${OOF_SCHEMES:-uniform caruana lr xgboost}; do
      tag=$([ "$fit" = oof ] && echo "oof-$scheme" || echo "$scheme")
      echo "=== build ens-$tag ($(date +%T))"
      t0=$(now)
      if ensemble build --json --weights="$scheme" --members "${OOFM[@]}" --labels "$RUN/labels" \
           $([ "$fit" = oof ] && echo "--fit-split oof") \
           --out "$RUN/ensembles" --name "ens-$tag" --seed 0 > "$RUN/builds/ens-$tag.json.tmp"; then
        mv "$RUN/builds/ens-$tag.json.tmp" "$RUN/builds/ens-$tag.json"; st=ok
      else
        st=FAILED
      fi
      printf 'build\tens-%s\t%s\t%s\n' "$tag" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
    done
  done
  echo "=== ensembles on eval ($(date +%T))"
  ensemble evaluate --members "$RUN/ensembles" --labels "$RUN/labels" --split eval | tee "$RUN/ensembles.eval.txt"
  ensemble evaluate --json --members "$RUN/ensembles" --labels "$RUN/labels" --split eval > "$RUN/ensembles.eval.json"
  echo "done ($(date +%T)): timings $TIMES"
  exit 0
fi

# The plain-MLP reference (scripts/plain_mlp.py: 15 lines of torch, none of the producers' recipe),
# trained on the same videos in the same run: every producer is measured against it.
if [ ! -f "$RUN/plain_mlp.json" ]; then
  echo "=== plain MLP reference ($(date +%T))"
  t0=$(now)
  if python scripts/plain_mlp.py "$DATA/yt8m2018-video-validate/validate*.tfrecord" --out "$RUN/plain_mlp.json"
  then st=ok; else st=FAILED; fi
  printf 'train\tplain_mlp\t%s\t%s\n' "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
fi

PRODUCERS=(mlp lr moe hmoe mlp_cg chain lstm_translator residualcnn mlp_wide mlp_raw mlp_rgb mlp_audio mlp_std mlp_bn)
MEMBERS=()
for name in "${PRODUCERS[@]}"; do
  cfg="$RUN/configs/$name.toml"
  sed -e "s|^run_dir = .*|run_dir = \"$RUN\"|" \
      -e "s|\"\.\./\.\./\.\./shared/data|\"$DATA|" "configs/real/$name.toml" > "$cfg"
  if [ ! -f "$RUN/predictions/$name.eval.full.h5" ]; then
    echo "=== train $name ($(date +%T))"
    t0=$(now)
    if produce train "$cfg" --quiet; then st=ok; else st=FAILED; fi
    printf 'train\t%s\t%s\t%s\n' "$name" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
    [ "$st" = ok ] || continue
    t0=$(now)
    if produce predict "$cfg" --quiet; then st=ok; else st=FAILED; fi
    printf 'predict\t%s\t%s\t%s\n' "$name" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
    [ "$st" = ok ] || continue
  fi
  MEMBERS+=("$RUN/predictions/$name.heldout.full.h5" "$RUN/predictions/$name.eval.full.h5")
done

echo "=== producers on eval ($(date +%T))"
ensemble evaluate --members "${MEMBERS[@]}" --labels "$RUN/labels" --split eval | tee "$RUN/producers.eval.txt"
ensemble evaluate --json --members "${MEMBERS[@]}" --labels "$RUN/labels" --split eval > "$RUN/producers.eval.json"

# auto (a nested estimate over every other scheme) costs about as much as all of them together: left out here
for scheme in $(ensemble schemes | awk '$1 != "auto" {print $1}'); do
  echo "=== build ens-$scheme ($(date +%T))"
  t0=$(now)
  if ensemble build --json --weights="$scheme" --members "${MEMBERS[@]}" --labels "$RUN/labels" \
       --out "$RUN/ensembles" --name "ens-$scheme" --seed 0 > "$RUN/builds/ens-$scheme.json.tmp"; then
    mv "$RUN/builds/ens-$scheme.json.tmp" "$RUN/builds/ens-$scheme.json"; st=ok
  else
    st=FAILED
  fi
  printf 'build\tens-%s\t%s\t%s\n' "$scheme" "$(elapsed "$t0" "$(now)")" "$st" >> "$TIMES"
done

echo "=== ensembles on eval ($(date +%T))"
ensemble evaluate --members "$RUN/ensembles" --labels "$RUN/labels" --split eval | tee "$RUN/ensembles.eval.txt"
ensemble evaluate --json --members "$RUN/ensembles" --labels "$RUN/labels" --split eval > "$RUN/ensembles.eval.json"
ensemble report --members "${MEMBERS[@]}" "$RUN/ensembles" --labels "$RUN/labels" --split eval \
  --builds "$RUN/ensembles" --vocabulary "$DATA/yt8m-vocabulary/vocabulary_2018_3862.csv" \
  --title "YouTube-8M 2018 validate (real): producers and ensembles on the eval split" --out "$RUN/report"
echo "done ($(date +%T)): $RUN/report/index.html, timings $TIMES"
