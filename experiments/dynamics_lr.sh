#!/usr/bin/env bash
# The tiny dynamics model's learning rate, on the true actions (the oracle), 3 seeds each, one tokenizer:
# the old preset (max_lr 1e-3) against 3x (3e-3, the preset since 2026-12-02). Results in docs/dynamics.md. ~2 h on 2 CPU cores.
#   bash experiments/dynamics_lr.sh TOKENIZER_RUN [OUT_DIR]
set -euo pipefail
TOK=${1:?a tokenizer run directory or checkpoint}
OUT=${2:-experiments/results/dynamics_lr}
mkdir -p "$OUT"
for seed in 0 1 2; do
  for variant in lr1e-3 lr3e-3; do
    config=experiments/configs/dynamics_lr1e-3.yaml
    [ "$variant" = lr3e-3 ] && config=experiments/configs/dynamics_lr3e-3.yaml
    run="$OUT/${variant}_seed$seed"
    .venv/bin/genie train dynamics --config "$config" --data_dir data --dataset pong --tokenizer_path "$TOK" \
      --actions true --seed "$seed" --output_dir "$run" --no_eval --quiet
    .venv/bin/python experiments/world_measures.py "$(ls -d "$run"/dynamics/run_*)" --guidance 1 --long_play \
      --out "$OUT/${variant}_seed$seed.json"
  done
done
