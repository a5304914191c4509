"""A Markdown table, one row per run and then mean ± sd per variant, from experiments/world_measures.py's
JSON files.

    python experiments/summarize_dynamics.py OUT_DIR     # OUT_DIR of experiments/dynamics_seeds.sh

Rows are named VARIANT_seedN.json. Token accuracy is the run's last validation (metrics.jsonl); the rest
come from the measures at guidance 1: control over 64 held-out prompts, rollout PSNR and ΔtPSNR@4 over 256
validation clips (± one standard error), long play (frames 257-1,000: exactly one / two or more).
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def row(path: Path) -> dict[str, float]:
    report = json.loads(path.read_text())
    m = report["by_guidance"]["1.0"]
    rows = [json.loads(line) for line in (Path(report["run"]) / "metrics.jsonl").read_text().splitlines()]
    acc = [r["val/token_acc"] for r in rows if "val/token_acc" in r]
    out = {
        "token_acc": acc[-1] if acc else float("nan"),
        "up": 100 * m["control"]["up_rate"],
        "down": 100 * m["control"]["down_rate"],
        "psnr": m["val/rollout_psnr"],
        "dt4": m["val/delta_psnr_t4"],
        "dt4_se": m["val/delta_psnr_t4_se"],
        "dt4m": m["val/delta_psnr_moving_t4"],
        "dt4m_se": m["val/delta_psnr_moving_t4_se"],
    }
    for name in ("agent_paddle", "opponent_paddle", "ball"):
        out[f"{name}_one"] = m.get(f"play/{name}_one_t1000", float("nan"))
        out[f"{name}_many"] = m.get(f"play/{name}_many_t1000", float("nan"))
    return out


def mean_sd(values: list[float], fmt: str) -> str:
    """'mean ± sd' over seeds (sd with n - 1; nan for one seed)."""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt.lstrip('+')}}"


def main() -> None:
    runs = defaultdict(dict)
    for path in sorted(Path(sys.argv[1]).glob("*_seed*.json")):
        variant, seed = path.stem.rsplit("_seed", 1)
        if not seed.isdigit():  # a side measurement of a run (e.g. SEED_rounds3.json), not a run's own
            continue
        runs[variant][int(seed)] = row(path)
    print(
        "| variant | seed | token acc | control up / down | rollout PSNR | ΔtPSNR@4 | on moving px "
        "| long play: agent / opponent / ball |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for variant, seeds in runs.items():
        for seed, r in sorted(seeds.items()):
            play = " · ".join(
                f"{r[f'{n}_one']:.2f} / {r[f'{n}_many']:.2f}"
                for n in ("agent_paddle", "opponent_paddle", "ball")
            )
            print(
                f"| {variant} | {seed} | {r['token_acc']:.3f} | {r['up']:.0f}% / {r['down']:.0f}% | "
                f"{r['psnr']:.2f} | {r['dt4']:+.2f} ± {r['dt4_se']:.2f} | "
                f"{r['dt4m']:+.2f} ± {r['dt4m_se']:.2f} "
                f"| {play} |"
            )
    for variant, seeds in runs.items():
        col = {key: [r[key] for r in seeds.values()] for key in next(iter(seeds.values()))}
        print(
            f"| **{variant}, mean ± sd ({len(seeds)} seeds)** | | {mean_sd(col['token_acc'], '.3f')} | "
            f"{mean_sd(col['up'], '.0f')}% / {mean_sd(col['down'], '.0f')}% | "
            f"{mean_sd(col['psnr'], '.2f')} | "
            f"{mean_sd(col['dt4'], '+.2f')} | {mean_sd(col['dt4m'], '+.2f')} | "
            f"agent one {mean_sd(col['agent_paddle_one'], '.2f')} |"
        )


if __name__ == "__main__":
    main()
