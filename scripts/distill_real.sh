#!/usr/bin/env bash
# Distil an ensemble of real-data producers into one student (issue 13), after scripts/real_data.sh.
#
# Usage: bash scripts/distill_real.sh [RUN_DIR]     (default /work/real-run: the real_data.sh run dir)
#
# Teachers: the ensemble (scheme $SCHEME, default xgboost stacking) of the members $TEACHERS (default
# "mlp lr moe mlp_rgb mlp_audio": cheap to train 3 more times, and diverse: lr stacking over mlp, lr and moe
# alone scored 0.6445 on eval, under the mlp's 0.6479), fitted on the heldout split as usual and applied to
# their train-split stores:
#   * in-sample: the train-split stores real_data.sh wrote (each member predicts videos it trained on),
#     copied first to RUN_DIR/insample/;
#   * out-of-fold: each member again with [predict] train_folds = 3 (3 more models each, trained without
#     one third of the train split; its train-split store becomes out of fold). Costs 3 more trainings.
#   * pool (issue 22; when POOL_RUN, default /work/real-oof, holds a `FOLDS=5 bash scripts/real_data.sh --oof`
#     run with every member of $TEACHERS): the same scheme fitted on the members' 5-fold out-of-fold pool
#     (`ensemble build --fit-split oof`, train + heldout), its oof store (every training video, predicted by
#     fold models that never saw it; each fold model saw 80 % of the pool) the teacher. No extra training here.
# Students ($STUDENTS, default "mlp lr"): the member's own config plus [distill] teacher = the train-split
# teacher store, for alpha in $ALPHAS (default "0.5 0.9") and temperature 1; names <student>-<insample|oof|pool>-a<alpha digits>.
# Writes RUN_DIR/distill.tsv (name, teacher, alpha, eval GAP@20, train s) and prints it.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=$(realpath -m "${1:-/work/real-run}")
SCHEME=${SCHEME:-xgboost}
TEACHERS=${TEACHERS:-"mlp lr moe mlp_rgb mlp_audio"}
STUDENTS=${STUDENTS:-"mlp lr"}
ALPHAS=${ALPHAS:-"0.5 0.9"}
. .venv/bin/activate
[ -d "$RUN/predictions" ] || { echo "no run in $RUN: run scripts/real_data.sh first" >&2; exit 2; }
mkdir -p "$RUN/insample" "$RUN/teachers" "$RUN/configs"
now() { date +%s; }

for t in $TEACHERS; do   # keep the in-sample stores, then make the member's train split out of fold
  if [ ! -f "$RUN/insample/$t.train.full.h5" ]; then
    cp "$RUN/predictions/$t".{train,heldout,eval}.full.h5 "$RUN/insample/"
  fi
  cfg="$RUN/configs/$t-oof.toml"
  sed -e 's/^splits = .*/splits = ["train", "heldout", "eval"]\ntrain_folds = 3/' "$RUN/configs/$t.toml" > "$cfg"
  if [ ! -f "$RUN/$t/folds.done" ]; then
    echo "=== out-of-fold $t ($(date +%T))"
    t0=$(now)
    produce train "$cfg" --quiet && produce predict "$cfg" --quiet && touch "$RUN/$t/folds.done"
    printf 'train\t%s-folds\t%s\tok\n' "$t" "$(( $(now) - t0 ))" >> "$RUN/timings.tsv"
  fi
done

for kind in insample oof; do
  src=$([ $kind = insample ] && echo "$RUN/insample" || echo "$RUN/predictions")
  members=(); for t in $TEACHERS; do members+=("$src/$t".{train,heldout,eval}.full.h5); done
  if [ ! -f "$RUN/teachers/teacher-$kind.train.full.h5" ]; then
    echo "=== teacher-$kind: $SCHEME over $TEACHERS ($(date +%T))"
    ensemble build --weights="$SCHEME" --members "${members[@]}" --labels "$RUN/labels" \
      --out "$RUN/teachers" --name "teacher-$kind" --seed 0 --quiet
  fi
done

POOL_RUN=$(realpath -m "${POOL_RUN:-/work/real-oof}")
KINDS="insample oof"
pool_members=(); for t in $TEACHERS; do pool_members+=("$POOL_RUN/predictions/$t".{oof,eval}.full.h5); done
if ls "${pool_members[@]}" >/dev/null 2>&1; then
  KINDS="$KINDS pool"
  if [ ! -f "$RUN/teachers/teacher-pool.oof.full.h5" ]; then
    echo "=== teacher-pool: $SCHEME over $TEACHERS, fitted on the out-of-fold pool of $POOL_RUN ($(date +%T))"
    ensemble build --weights="$SCHEME" --members "${pool_members[@]}" --labels "$POOL_RUN/labels" --fit-split oof \
      --out "$RUN/teachers" --name teacher-pool --seed 0 --quiet || KINDS="insample oof"
  fi
else
  echo "no out-of-fold pool run in $POOL_RUN (FOLDS=5 bash scripts/real_data.sh --oof $POOL_RUN): no pool teacher"
fi
teacher_store() { [ "$1" = pool ] && echo "$RUN/teachers/teacher-pool.oof.full.h5" || echo "$RUN/teachers/teacher-$1.train.full.h5"; }

OUT="$RUN/distill.tsv"
printf 'name\tteacher\talpha\teval_gap\ttrain_s\n' > "$OUT"
score() { python - "$1" "$RUN/labels/labels.eval.h5" <<'EOF'
import sys
from predictions.labels import read_labels
from predictions.metrics import gap
from predictions.store import read_store
p = read_store(sys.argv[1]); print(f"{gap(p, read_labels(sys.argv[2]).reindex(p.ids), k=20):.4f}")
EOF
}
printf 'teacher (%s over %s)\t-\t-\t%s\t-\n' "$SCHEME" "$TEACHERS" "$(score "$RUN/teachers/teacher-oof.eval.full.h5")" >> "$OUT"
case " $KINDS " in *" pool "*) printf 'teacher (%s over the 5-fold pool)\tpool\t-\t%s\t-\n' "$SCHEME" \
  "$(score "$RUN/teachers/teacher-pool.eval.full.h5")" >> "$OUT";; esac
for s in $STUDENTS; do
  printf '%s (labels only)\t-\t0\t%s\t-\n' "$s" "$(score "$RUN/predictions/$s.eval.full.h5")" >> "$OUT"
  for kind in $KINDS; do
    for a in $ALPHAS; do
      name="$s-$kind-a${a/./}"; cfg="$RUN/configs/$name.toml"
      sed -e "/^\[output\]/,\$ s/^name = .*/name = \"$name\"/" -e 's/^splits = .*/splits = ["eval"]/' "$RUN/configs/$s.toml" > "$cfg"
      printf '\n[distill]\nteacher = "%s"\nalpha = %s\ntemperature = 1.0\n' \
        "$(teacher_store "$kind")" "$a" >> "$cfg"
      t0=$(now)
      if [ ! -f "$RUN/predictions/$name.eval.full.h5" ]; then
        echo "=== distill $name ($(date +%T))"
        produce distill "$cfg" --quiet && produce predict "$cfg" --quiet || { echo "$name failed"; continue; }
      fi
      printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$a" "$(score "$RUN/predictions/$name.eval.full.h5")" \
        "$(( $(now) - t0 ))" >> "$OUT"
    done
  done
done
column -t -s$'\t' "$OUT"
