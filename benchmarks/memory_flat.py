"""Does a long run's memory stay flat? Each tiny stage trained for `--steps` through the real CLI, its memory
read from the run's own log at step 200 and at the last step.

The user's old pipeline ran out of memory before 5k tokenizer steps, so the point is a number that would show
a leak. Three numbers per logged step (`genie.training.runtime.memory_mb`): the process's peak RSS (VmHWM),
its anonymous RSS now (heap and tensors: the one a leak grows) and its file-backed RSS now (shared
libraries, and any memory-mapped dataset pages the evaluations touch: training reads clips from the file,
so they stay out of RSS). The stages run one after the other as `make demo` runs them (the LAM in the
few-label mode, the dynamics model on its codes), each with its preset's periodic validation, without the
final evaluation.

    .venv/bin/python benchmarks/memory_flat.py                 # 2,000 steps a stage: ~35 min on 2 CPU cores
    .venv/bin/python benchmarks/memory_flat.py --steps 400     # a quicker look
    .venv/bin/python benchmarks/memory_flat.py --stages dynamics --tokenizer_path RUN   # on the true actions
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import DEMO_LABEL_FRACTION, machine, save

from genie.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("tokenizer", "lam", "dynamics")
EARLY = 200  # the issue's reference step: after warm-up, before the tiny presets' first validation (500)


def train(stage: str, steps: int, data_dir: Path, out: Path, runs: dict[str, Path]) -> Path:
    """Train one tiny stage in its own process (its own RSS) and return its run directory."""
    config = ROOT / f"configs/tiny/{stage}.yaml"
    argv = [sys.executable, "-m", "genie.cli", "train", stage, "--config", str(config)]
    argv += ["--data_dir", str(data_dir), "--dataset", "pong", "--max_steps", str(steps)]
    argv += ["--output_dir", str(out), "--no_eval", "--quiet"]
    if stage == "lam":
        argv += ["--label_fraction", str(DEMO_LABEL_FRACTION)]
    if stage == "dynamics":  # on this run's LAM, or (a trained tokenizer given alone) the true actions
        argv += ["--tokenizer_path", str(runs["tokenizer"])]
        argv += ["--lam_path", str(runs["lam"])] if "lam" in runs else ["--actions", "true"]
    subprocess.run(argv, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return next((out / stage).glob("run_*"))


def memory_at(rows: list[dict], step: int) -> dict[str, float]:
    """The memory numbers of the first logged training row at or after `step`, and the highest anonymous
    memory logged up to it (a peak that excludes the dataset's pages, sampled every `log_every` steps)."""
    row = next(r for r in rows if r["step"] >= step)
    upto = [r["mem/anon_mb"] for r in rows if r["step"] <= row["step"]]
    numbers = {k.removeprefix("mem/"): round(v, 1) for k, v in row.items() if "mem/" in k}
    return {"step": row["step"], **numbers, "anon_peak_mb": round(max(upto), 1)}


def describe(stage: str, early: dict, late: dict, growth: dict) -> str:
    parts = [f"{stage:9s} step {early['step']:>5} -> {late['step']:>5}:"]
    for key, name in (("anon_mb", "anonymous"), ("anon_peak_mb", "its peak"), ("peak_mb", "peak RSS")):
        parts.append(f"{name} {early[key]:.0f} -> {late[key]:.0f} MB ({growth[key]:+.1f}%),")
    parts.append(f"file pages {early['file_mb']:.0f} -> {late['file_mb']:.0f} MB")
    return " ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/memory_flat.json")
    p.add_argument(
        "--tokenizer_path", type=Path, help="--stages dynamics alone: on this tokenizer, true actions"
    )
    a = p.parse_args()
    if a.steps <= EARLY:
        raise SystemExit(f"--steps {a.steps}: expected more than {EARLY}, the step memory is compared with")
    dynamics_alone = a.stages == ["dynamics"]
    if dynamics_alone != (a.tokenizer_path is not None):
        raise SystemExit(
            "--tokenizer_path goes with --stages dynamics alone (which then trains on the true actions)"
        )
    if not dynamics_alone and "dynamics" in a.stages and not {"tokenizer", "lam"} <= set(a.stages):
        raise SystemExit("--stages: the dynamics stage trains on this run's tokenizer and LAM; list them too")

    result: dict[str, object] = {**machine("memory_flat", "cpu"), "steps": a.steps}
    runs: dict[str, Path] = {"tokenizer": a.tokenizer_path} if dynamics_alone else {}
    with tempfile.TemporaryDirectory() as tmp:
        for stage in (s for s in STAGES if s in a.stages):
            start = time.perf_counter()
            runs[stage] = train(stage, a.steps, a.data_dir, Path(tmp), runs)
            rows = [r for r in read_metrics(runs[stage]) if "train/loss" in r and "mem/anon_mb" in r]
            early, late = memory_at(rows, EARLY), memory_at(rows, rows[-1]["step"])
            keys = ("peak_mb", "anon_mb", "anon_peak_mb", "file_mb")
            growth = {k: round(100 * (late[k] / early[k] - 1), 1) for k in keys}
            result[stage] = {"early": early, "last": late, "growth_pct": growth}
            result[f"{stage}_minutes"] = round((time.perf_counter() - start) / 60, 1)
            print(describe(stage, early, late, growth), flush=True)
    save(result, a.out, width=20, digits=1)


if __name__ == "__main__":
    main()
