"""AdamW's implementation on CPU: the per-tensor loop, foreach or fused, in each tiny stage's real step.

    .venv/bin/python benchmarks/optimizer_step.py [--stages tokenizer lam] [--tokenizer_path RUN]

PyTorch runs AdamW on CPU tensors as a Python loop over the parameters unless asked otherwise (its
defaults pick foreach or fused on CUDA only); a tiny model's ~50 parameter tensors then cost hundreds
of small element-wise calls a step. For each stage: the loop's whole step (`common.training_step`:
forward / backward, clipping, the finiteness check, optimizer, scheduler) with each implementation,
alternating within each round on the same model and batches, the median over rounds kept; and the
optimizer's `step()` alone. The dynamics stage needs a tokenizer run (true actions). Writes
benchmarks/results/optimizer_step.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import build_trainer, dynamics_upstream, machine, save, training_step

from genie.config import load_config
from genie.stages.registry import stage_class

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "optimizer_step.json"
IMPLEMENTATIONS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def adamw(trainer, impl: str) -> torch.optim.AdamW:
    """The loop's AdamW (its parameter groups and settings) with the implementation `impl`."""
    cfg = trainer.cfg
    groups = trainer._param_groups(trainer.model)
    return torch.optim.AdamW(groups, lr=cfg.max_lr, betas=(cfg.beta1, cfg.beta2), **IMPLEMENTATIONS[impl])


def measure(stage: str, data_dir: Path, upstream: dict | None, rounds: int, steps: int) -> dict[str, float]:
    cfg = load_config(stage_class(stage).config_cls, ROOT / f"configs/tiny/{stage}.yaml")
    trainer = build_trainer(stage, cfg, data_dir, "cpu", upstream)
    data = iter(trainer.train_loader)
    optimizers = {impl: adamw(trainer, impl) for impl in IMPLEMENTATIONS}
    step_s: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    update_s: dict[str, list[float]] = {impl: [] for impl in IMPLEMENTATIONS}
    for r in range(rounds + 1):  # round 0 warms up (and creates each optimizer's state)
        for impl, optimizer in optimizers.items():
            trainer.optimizer = trainer.scheduler.optimizer = optimizer
            start = time.perf_counter()
            for _ in range(steps):
                training_step(trainer, data)
            if r:
                step_s[impl].append((time.perf_counter() - start) / steps)
                start = time.perf_counter()
                for _ in range(steps):
                    optimizer.step()  # the gradients of the last step, again: the update's own cost
                update_s[impl].append((time.perf_counter() - start) / steps)
    out: dict[str, float] = {
        "parameter_tensors": sum(len(g["params"]) for g in optimizers["loop"].param_groups)
    }
    for impl in IMPLEMENTATIONS:
        out[f"{impl}: steps/s"] = 1 / statistics.median(step_s[impl])
        out[f"{impl}: optimizer ms"] = statistics.median(update_s[impl]) * 1e3
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stages", nargs="+", default=["tokenizer", "lam", "dynamics"])
    p.add_argument("--tokenizer_path", type=Path, help="dynamics: the frozen tokenizer run")
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="steps per implementation and round")
    a = p.parse_args()
    if "dynamics" in a.stages and a.tokenizer_path is None:
        p.error("the dynamics stage needs --tokenizer_path")
    results: dict = machine("optimizer_step", "cpu")
    for stage in a.stages:
        upstream = dynamics_upstream(a.tokenizer_path) if stage == "dynamics" else None
        for key, value in measure(stage, a.data_dir, upstream, a.rounds, a.steps).items():
            results[f"{stage} {key}"] = value
    save(results, RESULTS, width=36, digits=3)


if __name__ == "__main__":
    main()
