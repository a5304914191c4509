#!/usr/bin/env bash
# The tiny dynamics model's learning rate, on the true actions (the oracle), 3 seeds each, one tokenizer:
# the old preset (max_lr 1e-3) against 3x (3e-3, the preset since 2026-12-02). Results in docs/dynamics.md. ~2 h on 2 CPU cores.
#   bash experiments/dynamics_lr.sh TOKENIZER_RUN [OUT_DIR]
set -euo pipefail
exec bash "$(dirname "$0")/dynamics_seeds.sh" "${1:?a tokenizer run directory or checkpoint}" \
  "${2:-experiments/results/dynamics_lr}" "lr1e-3:0 lr3e-3:0 lr1e-3:1 lr3e-3:1 lr1e-3:2 lr3e-3:2"
