#!/usr/bin/env bash
# History guidance over tokenizers (docs/dynamics.md, 2026-12-06, night): the preset trained with 10% of clips
# seeing no past (experiments/configs/dynamics_history_dropout10.yaml, true actions, seed 0, with the usual
# measures at guidance 1), then 300 frames of long play from 8 held-out prompts at each history-guidance weight
# (experiments/long_play_frames.py: none / one / two or more of each object). ~17 min a tokenizer on 2 cores.
#   bash experiments/history_guidance.sh OUT_DIR "WEIGHTS" TOKENIZER_RUN [TOKENIZER_RUN ...]
set -euo pipefail
OUT=${1:?an output directory}
WEIGHTS=${2:-"1 1.15 1.3"}
shift 2
i=0
for tok in "$@"; do
  dir="$OUT/tok$i"
  [ -d "$dir/history_dropout10_seed0" ] || bash experiments/dynamics_seeds.sh "$tok" "$dir" "history_dropout10:0"
  run=$(ls -d "$dir"/history_dropout10_seed0/dynamics/run_*)
  for w in $WEIGHTS; do
    [ -f "$dir/long_play_w$w/counts.json" ] && continue
    .venv/bin/python experiments/long_play_frames.py "$run" --frames 300 --history_guidance "$w" \
      --out "$dir/long_play_w$w" | tail -1
  done
  i=$((i + 1))
done
