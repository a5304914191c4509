"""The table of `experiments/gpu_long_play.sh`: each world's step, ΔtPSNR@4 and long-play object counts (the
last window of `genie eval dynamics`), read from OUT/eval_<size>/.

    python experiments/gpu_long_play_table.py OUT
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

OBJECTS = ("agent_paddle", "opponent_paddle", "ball")


def row(size: str, found: Path) -> str:
    evaluation = json.loads(found.read_text())
    m = evaluation["metrics"]
    horizons = [int(k.rsplit("_t", 1)[1]) for k in m if re.fullmatch(r"play/ball_one_t\d+", k)]
    last = max(horizons, default=None)

    def share(name: str, kind: str, when: str) -> str:
        value = m.get(f"play/{name}_{kind}_{when}")
        return "-" if value is None else f"{value:.2f}"

    delta = m.get("val/delta_psnr_t4")
    delta_text = "-" if delta is None else f"{delta:+.2f} ± {m.get('val/delta_psnr_t4_se', float('nan')):.2f}"
    counts = " / ".join(f"{share(o, 'one', f't{last}')} ({share(o, 'many', f't{last}')})" for o in OBJECTS)
    real = " / ".join(share(o, "one", "real") for o in OBJECTS)
    psnr = m.get("val/rollout_psnr", float("nan"))
    cells = [size, str(evaluation["step"]), f"{psnr:.2f}", delta_text, f"{counts} (frames to {last})", real]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    out = Path(sys.argv[1])
    counts = "long play, exactly one (two or more): agent / opponent / ball"
    print(f"| world | steps | rollout PSNR | ΔtPSNR@4 | {counts} | real, exactly one |")
    print("|---|---|---|---|---|---|")
    for size in ("tiny", "large"):
        found = sorted((out / f"eval_{size}").glob("dynamics/dynamics_comparison_step_*.json"))
        print(row(size, found[-1]) if found else f"| {size} | not evaluated | | | | |")


if __name__ == "__main__":
    main()
