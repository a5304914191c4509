#!/usr/bin/env bash
# The tiny LAM over three seeds at one config (default: the preset, few-label mode with one labelled episode):
# prints each seed's movement accuracy on identifiable validation transitions (the final evaluation, 256 clips)
# and the minutes the run took. ~15-20 min on 2 CPU cores. Results in docs/lam.md.
#   [LABELS=F] bash experiments/lam_seeds.sh [CONFIG] [OUT_DIR] [extra `genie train lam` flags...]
# LABELS: the share of training episodes labelled (default 0.025: one episode of the demo's 40; 0 = unsupervised).
set -euo pipefail
CONFIG=${1:-configs/tiny/lam.yaml}
OUT=${2:-experiments/results/lam_seeds}
shift $(( $# > 2 ? 2 : $# ))
mkdir -p "$OUT"
for seed in 0 1 2; do
  start=$(date +%s)
  .venv/bin/genie train lam --config "$CONFIG" --data_dir data --dataset pong --label_fraction "${LABELS:-0.025}" \
    --seed "$seed" --output_dir "$OUT/seed$seed" --eval_dir "$OUT/seed$seed/eval" --quiet "$@"
  minutes=$(( ($(date +%s) - start) / 60 ))
  .venv/bin/python - "$OUT/seed$seed/eval" "$seed" "$minutes" <<'PY'
import json, sys
from pathlib import Path
report = json.loads(sorted(Path(sys.argv[1]).rglob("*.json"), key=lambda p: p.stat().st_mtime)[-1].read_text())
m = report["metrics"]
held_out = m.get("val/many_to_one_acc_identifiable")
extra = f" many-to-one held out {held_out:.3f}" if held_out is not None else ""
print(f"seed {sys.argv[2]}: move_acc_identifiable {m['val/move_acc_identifiable']:.3f}{extra} "
      f"psnr_changed {m['val/psnr_changed']:.2f} ({sys.argv[3]} min)", flush=True)
PY
done
