#!/usr/bin/env bash
# The world's measures (experiments/world_measures.py: control, ΔtPSNR, 1,000-frame long play) of trained
# dynamics runs at several sampling temperatures; no retraining. Results in docs/dynamics.md.
#   bash experiments/temperature.sh OUT_DIR "1.1 1.0 0.8" RUN_DIR [RUN_DIR ...]
# writes OUT_DIR/temp<T>_seed<i>.json (i: the run's position in the list), tabled by summarize_dynamics.py.
set -euo pipefail
OUT=${1:?an output directory}
TEMPS=${2:?temperatures}
shift 2
mkdir -p "$OUT"
for t in $TEMPS; do
  i=0
  for run in "$@"; do
    .venv/bin/python experiments/world_measures.py "$run" --guidance 1 --long_play --temperature "$t" \
      --out "$OUT/temp${t}_seed$i.json"
    i=$((i + 1))
  done
done
