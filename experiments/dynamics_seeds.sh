#!/usr/bin/env bash
# Dynamics variants on the true actions (the oracle), one tokenizer, the seeds given: training, then the
# control / ΔtPSNR / long-play measures of experiments/world_measures.py. Results in docs/dynamics.md.
# ~10 min a run on 2 fast CPU cores (~15 on slower ones).
#   bash experiments/dynamics_seeds.sh TOKENIZER_RUN OUT_DIR "VARIANT:SEED ..."
#   VARIANT: preset (configs/tiny/dynamics.yaml) or NAME (experiments/configs/dynamics_NAME.yaml), e.g.
#   lr6e-3_800, clean_prefix
set -euo pipefail
TOK=${1:?a tokenizer run directory or checkpoint}
OUT=${2:-experiments/results/dynamics_seeds}
RUNS=${3:-"preset:0"}
mkdir -p "$OUT"
for item in $RUNS; do
  variant=${item%%:*} seed=${item##*:}
  config=experiments/configs/dynamics_$variant.yaml
  [ "$variant" = preset ] && config=configs/tiny/dynamics.yaml
  run="$OUT/${variant}_seed$seed"
  start=$(date +%s)
  .venv/bin/genie train dynamics --config "$config" --data_dir data --dataset pong --tokenizer_path "$TOK" \
    --actions true --seed "$seed" --output_dir "$run" --no_eval --quiet
  echo "$variant seed $seed: trained in $(( ($(date +%s) - start) / 60 )) min"
  .venv/bin/python experiments/world_measures.py "$(ls -d "$run"/dynamics/run_*)" --guidance 1 --long_play \
    --out "$OUT/${variant}_seed$seed.json"
done
