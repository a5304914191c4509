#!/usr/bin/env bash
# The world on a LAM's codes: the tiny dynamics preset trained on each given LAM run's actions (one tokenizer),
# then the control / ΔtPSNR / long-play measures of experiments/world_measures.py, to set beside the same
# preset on the true actions (experiments/dynamics_seeds.sh). ~15 min a run on 2 CPU cores. docs/lam.md.
#   bash experiments/lam_world.sh TOKENIZER_RUN OUT_DIR LAM_RUN...
set -euo pipefail
TOK=${1:?a tokenizer run directory or checkpoint}
OUT=${2:?an output directory}
shift 2
mkdir -p "$OUT"
i=0
for lam in "$@"; do
  run="$OUT/lam$i"
  start=$(date +%s)
  .venv/bin/genie train dynamics --config configs/tiny/dynamics.yaml --data_dir data --dataset pong \
    --tokenizer_path "$TOK" --lam_path "$lam" --seed 0 --output_dir "$run" --no_eval --quiet
  echo "$lam: trained in $(( ($(date +%s) - start) / 60 )) min"
  .venv/bin/python experiments/world_measures.py "$(ls -d "$run"/dynamics/run_*)" --guidance 1 --long_play \
    --out "$OUT/lam$i.json"
  i=$((i + 1))
done
