"""Where a training step's time goes: steps/s of each tiny stage and its heaviest operators (torch.profiler).

Runs the real loop's step (`Trainer.train_step`, the finiteness check, the optimizer and the stage's
`after_step`) on Pong, at the given torch thread count, and prints the operators by self CPU time.
For the dynamics stage it also times the frozen upstream work inside each step (the tokenizer's encode
and the LAM's actions), which a token cache would remove.

    .venv/bin/python benchmarks/step_profile.py tokenizer                       # ~1 min on 2 CPU cores
    .venv/bin/python benchmarks/step_profile.py dynamics --tokenizer_path RUN --lam_path RUN
    .venv/bin/python benchmarks/step_profile.py lam --threads 1
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import build_trainer, dynamics_upstream, machine, save, training_step
from torch.profiler import ProfilerActivity, profile

from genie.config import load_config
from genie.data.frames import to_float
from genie.stages.registry import stage_class

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["tokenizer", "lam", "dynamics"])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--steps", type=int, default=40, help="timed steps (after 5 warm-up steps)")
    p.add_argument("--tokenizer_path", type=Path, help="dynamics: the frozen tokenizer")
    p.add_argument("--lam_path", type=Path, help="dynamics: the frozen LAM (default: the true actions)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    cfg = load_config(stage_class(a.stage).config_cls, ROOT / f"configs/tiny/{a.stage}.yaml")
    upstream = None
    if a.stage == "dynamics":
        if a.tokenizer_path is None:
            p.error("the dynamics stage needs --tokenizer_path")
        upstream = dynamics_upstream(a.tokenizer_path, a.lam_path)
    trainer = build_trainer(a.stage, cfg, a.data_dir, "cpu", upstream)
    stage = trainer.stage
    data = iter(trainer.train_loader)

    def step() -> None:
        training_step(trainer, data)

    for _ in range(5):
        step()
    start = time.perf_counter()
    for _ in range(a.steps):
        step()
    seconds = (time.perf_counter() - start) / a.steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(5):
            step()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    result = {
        **machine(f"step_profile_{a.stage}", "cpu"),
        "threads": a.threads,
        "batch_size": cfg.data.batch_size,
        "sequence_length": cfg.data.sequence_length,
        "seconds_per_step": round(seconds, 4),
        "steps_per_s": round(1 / seconds, 3),
        "frames_per_s": round(cfg.data.batch_size * cfg.data.sequence_length / seconds, 1),
        "top_ops_share_of_self_cpu": {e.key: round(e.self_cpu_time_total / total, 3) for e in ops[:12]},
    }
    if a.stage == "dynamics":  # the frozen upstream work inside each step
        batch = next(data)
        with torch.no_grad():
            timed = {"tokenizer_encode": lambda: stage.tokenizer.encode(to_float(batch["frames"]))}
            if stage.actions.lam is not None:
                timed["lam_actions"] = lambda: stage.actions_of(batch)
            for name, fn in timed.items():
                fn()
                t = time.perf_counter()
                for _ in range(10):
                    fn()
                result[f"{name}_s_per_step"] = round((time.perf_counter() - t) / 10, 4)
        upstream = sum(v for k, v in result.items() if k.endswith("_s_per_step"))
        result["upstream_share_of_step"] = round(upstream / seconds, 3)
    for name, share in result["top_ops_share_of_self_cpu"].items():
        print(f"  {share:6.1%}  {name}")
    save(result, ROOT / f"benchmarks/results/step_profile_{a.stage}.json", width=30, digits=3)


if __name__ == "__main__":
    main()
