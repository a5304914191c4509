"""Leak or allocator? A tiny stage's real training step in one process, and every `--every` steps the memory
that is still *live* once the heap's free pages are handed back (gc, then glibc's malloc_trim).

`memory_flat.py` reads the process's peak RSS and anonymous RSS, which include the pages glibc keeps after a
step frees its activations; those wander and creep with how the next step's allocations fit. A leak grows the
live memory instead, or the number of live tensors, or Python's own allocations (tracemalloc): this prints
all three, with the stage's validation run every `--validate_every` steps as the loop runs it.

    .venv/bin/python benchmarks/live_memory.py lam --steps 2000                  # ~10 min on 2 CPU cores
    .venv/bin/python benchmarks/live_memory.py dynamics --tokenizer_path RUN --steps 1000
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
import warnings
from pathlib import Path

import torch
from common import DEMO_LABEL_FRACTION, build_trainer, dynamics_upstream, machine, save, training_step

from genie.config import load_config
from genie.stages.registry import stage_class
from genie.training.runtime import memory_mb, release_free_memory

ROOT = Path(__file__).resolve().parents[1]


def live_tensors() -> int:
    with warnings.catch_warnings():  # isinstance on every object touches deprecated torch.distributed names
        warnings.simplefilter("ignore", FutureWarning)
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["tokenizer", "lam", "dynamics"])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=100, help="steps between two readings")
    p.add_argument("--validate_every", type=int, default=500, help="the tiny presets' eval_every; 0: none")
    p.add_argument("--tokenizer_path", type=Path, help="dynamics: the frozen tokenizer (true actions)")
    a = p.parse_args()
    if a.stage == "dynamics" and a.tokenizer_path is None:
        p.error("the dynamics stage needs --tokenizer_path")

    cfg = load_config(stage_class(a.stage).config_cls, ROOT / f"configs/tiny/{a.stage}.yaml")
    if a.stage == "lam":
        cfg.supervision.label_fraction = DEMO_LABEL_FRACTION
    upstream = dynamics_upstream(a.tokenizer_path) if a.stage == "dynamics" else None
    trainer = build_trainer(a.stage, cfg, a.data_dir, "cpu", upstream)
    data = iter(trainer.train_loader)
    cpu = torch.device("cpu")
    tracemalloc.start()
    readings, start = [], time.perf_counter()
    for step in range(1, a.steps + 1):
        training_step(trainer, data)
        if a.validate_every and step % a.validate_every == 0:
            trainer.validate()
        if step % a.every == 0:
            gc.collect()
            peak = memory_mb(cpu)["mem/peak_mb"]  # before the trim: the high-water mark as the loop sees it
            release_free_memory()
            reading = {
                "step": step,
                "live_mb": round(memory_mb(cpu)["mem/anon_mb"], 1),
                "peak_rss_mb": round(peak, 1),
                "live_tensors": live_tensors(),
                "python_traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
            }
            readings.append(reading)
            print("  ".join(f"{k} {v}" for k, v in reading.items()), flush=True)
    first, last = readings[0], readings[-1]
    result = {
        **machine(f"live_memory_{a.stage}", "cpu"),
        "steps": a.steps,
        "minutes": round((time.perf_counter() - start) / 60, 1),
        "live_mb_first": first["live_mb"],
        "live_mb_last": last["live_mb"],
        "live_mb_max": max(r["live_mb"] for r in readings),
        "live_tensors_first": first["live_tensors"],
        "live_tensors_last": last["live_tensors"],
        "peak_rss_mb_first": first["peak_rss_mb"],
        "peak_rss_mb_last": last["peak_rss_mb"],
        "readings": {str(r["step"]): r for r in readings},
    }
    save(result, ROOT / f"benchmarks/results/live_memory_{a.stage}.json", width=22, digits=1)


if __name__ == "__main__":
    main()
