"""Which part of the training loop raises a stage's memory? Each part's own peak RSS, and the live memory it
leaves, one part at a time in one process.

Peak RSS (VmHWM) only rises, so a run's peak is the highest of its parts'. Linux resets it on writing 5 to
/proc/self/clear_refs: before each part the heap's free pages are handed back (gc, malloc_trim) and the peak
is reset; after it, the peak is that part's own. The live memory a part leaves is the next part's starting
anonymous memory (after its trim) minus this one's. Parts, in the loop's order: training steps, a validation,
a checkpoint save, the loss curve drawn in this process (`plot_run`, what the loop did until 2026-12-06) and
in a child process (`plot_run_apart`, what it does now).

    .venv/bin/python benchmarks/loop_memory.py tokenizer                 # ~2 min on 2 CPU cores
    .venv/bin/python benchmarks/loop_memory.py lam --rounds 3
"""

from __future__ import annotations

import argparse
import gc
from collections.abc import Callable
from pathlib import Path

import torch
from common import DEMO_LABEL_FRACTION, build_trainer, machine, save, training_step

from genie.config import load_config
from genie.stages.registry import stage_class
from genie.training.curves import plot_run, plot_run_apart
from genie.training.metrics_log import MetricsLog
from genie.training.runtime import memory_mb, release_free_memory

ROOT = Path(__file__).resolve().parents[1]
CLEAR_REFS = Path("/proc/self/clear_refs")


def status_mb() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmHWM", "VmRSS", "RssAnon"):
            out[key] = int(line.split()[1]) / 1024
    return out


def measured(fn: Callable[[], object]) -> dict[str, float]:
    """fn's own peak RSS above the RSS it started from, and the anonymous memory it started from (trimmed)."""
    gc.collect()
    release_free_memory()
    CLEAR_REFS.write_text("5")  # the peak RSS restarts from the RSS now
    before = status_mb()
    fn()
    return {"own_peak_mb": status_mb()["VmHWM"] - before["VmRSS"], "anon_before_mb": before["RssAnon"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["tokenizer", "lam"])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--rounds", type=int, default=2, help="rounds of steps, validation, save and plots")
    p.add_argument("--steps", type=int, default=20, help="training steps a round")
    a = p.parse_args()
    if not CLEAR_REFS.exists():
        raise SystemExit("this needs Linux's /proc/self/clear_refs (resetting the peak RSS)")

    cfg = load_config(stage_class(a.stage).config_cls, ROOT / f"configs/tiny/{a.stage}.yaml")
    if a.stage == "lam":
        cfg.supervision.label_fraction = DEMO_LABEL_FRACTION
    trainer = build_trainer(a.stage, cfg, a.data_dir, "cpu")
    data, log = iter(trainer.train_loader), MetricsLog(trainer.run_dir)

    def steps() -> None:
        for _ in range(a.steps):
            training_step(trainer, data)
            trainer.step += 1
        log.log({"train/loss": 1.0, **memory_mb(torch.device("cpu"))}, trainer.step)

    parts = {
        "training steps": steps,
        "validation": trainer.validate,
        "checkpoint save": lambda: trainer.save({}),
        "plot, child process": lambda: plot_run_apart(trainer.run_dir),
        "plot, this process": lambda: plot_run(trainer.run_dir),
    }
    measured(steps)  # warm-up: the first steps' allocations
    readings: list[tuple[str, dict[str, float]]] = []
    for _ in range(a.rounds):
        readings += [(name, measured(fn)) for name, fn in parts.items()]
    readings.append(("end", measured(lambda: None)))
    result: dict[str, object] = {**machine(f"loop_memory_{a.stage}", "cpu"), "steps_a_round": a.steps}
    print(f"{'part':22s} {'own peak':>9s} {'live left':>10s}")
    for i, (name, r) in enumerate(readings[:-1]):
        left = readings[i + 1][1]["anon_before_mb"] - r["anon_before_mb"]
        print(f"{name:22s} {r['own_peak_mb']:+8.1f}M {left:+9.1f}M")
        result[f"{i:02d} {name}"] = {
            "own_peak_mb": round(r["own_peak_mb"], 1),
            "live_left_mb": round(left, 1),
        }
    save(result, ROOT / f"benchmarks/results/loop_memory_{a.stage}.json", width=30, digits=1)


if __name__ == "__main__":
    main()
