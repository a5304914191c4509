#!/usr/bin/env bash
# Re-evaluate the LAM runs of `experiments/lam_seeds.sh` (their last checkpoints) with today's measures, and print
# the movement accuracy on identifiable validation transitions: one-to-one (the headline), many-to-one held out
# (each code's movement read on half of the validation episodes, scored on the others) and the linear probe.
#   bash experiments/lam_eval_seeds.sh OUT_DIR [OUT_DIR ...]
set -euo pipefail
for out in "$@"; do
  for run in "$out"/seed*/lam/run_*; do
    .venv/bin/genie eval lam --checkpoint "$run" --data_dir data --eval_dir "$run/reeval" > /dev/null
    .venv/bin/python - "$run/reeval" <<'PY'
import json, sys
from pathlib import Path
path = sorted(Path(sys.argv[1]).rglob("*.json"), key=lambda p: p.stat().st_mtime)[-1]
m = json.loads(path.read_text())["metrics"]
usage = " ".join(f"{m[k]:.2f}" for k in sorted(m) if k.startswith("val/usage_"))
print(f"{sys.argv[1]}: one-to-one {m['val/move_acc_identifiable']:.3f} "
      f"many-to-one {m.get('val/many_to_one_acc_identifiable', float('nan')):.3f} "
      f"probe {m.get('val/probe_acc_identifiable', float('nan')):.3f} usage {usage}", flush=True)
PY
  done
done
