#!/usr/bin/env bash
# The demo's dynamics budget: 6e-3 over 800 steps against the preset's 3e-3 over 1,000, on the true actions
# (the oracle), one tokenizer, the seeds given. Results in docs/dynamics.md. ~15 min a run on 2 CPU cores.
#   bash experiments/dynamics_budget.sh TOKENIZER_RUN OUT_DIR "VARIANT:SEED ..."
#   VARIANT: lr6e-3_800 (experiments/configs/dynamics_lr6e-3_800.yaml) or lr3e-3 (dynamics_lr3e-3.yaml)
set -euo pipefail
TOK=${1:?a tokenizer run directory or checkpoint}
OUT=${2:-experiments/results/dynamics_budget}
RUNS=${3:-"lr6e-3_800:0 lr3e-3:0"}
mkdir -p "$OUT"
for item in $RUNS; do
  variant=${item%%:*} seed=${item##*:}
  run="$OUT/${variant}_seed$seed"
  start=$(date +%s)
  .venv/bin/genie train dynamics --config "experiments/configs/dynamics_$variant.yaml" --data_dir data \
    --dataset pong --tokenizer_path "$TOK" --actions true --seed "$seed" --output_dir "$run" --no_eval --quiet
  echo "$variant seed $seed: trained in $(( ($(date +%s) - start) / 60 )) min"
  .venv/bin/python experiments/world_measures.py "$(ls -d "$run"/dynamics/run_*)" --guidance 1 --long_play \
    --out "$OUT/${variant}_seed$seed.json"
done
