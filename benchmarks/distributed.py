"""Training throughput of one process vs torchrun DDP vs torchrun FSDP, at the same global batch.

Runs `genie train tokenizer` on the tiny preset through the real CLI: one process using every core, then
`torchrun --nproc_per_node N` with one thread each (DDP, then FSDP), then one process with --grad_accum 2.
The variants alternate for `--repeats` rounds so a noisy machine hits them alike; frames/s is read from
each run's metrics.jsonl (the first logged interval, which includes start-up, is left out). Prints a
table and writes benchmarks/results/distributed.json.

    .venv/bin/python benchmarks/distributed.py                 # ~5 min on 2 CPU cores
    .venv/bin/python benchmarks/distributed.py --steps 200 --nproc 4 --device cuda
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from common import machine, save

from genie.data.collect import ensure_dataset
from genie.training.metrics_log import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def run(variant: str, args: argparse.Namespace, config: Path, out: Path) -> dict[str, float]:
    """One training run of `variant`; its mean frames/s after start-up and rank 0's peak memory."""
    train = ["train", "tokenizer", "--config", str(config), "--data_dir", str(args.data_dir)]
    train += ["--dataset", "pong", "--device", args.device, "--output_dir", str(out), "--no_eval", "--quiet"]
    env = dict(os.environ)
    if variant.startswith("torchrun"):
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launch.append(f"--nproc_per_node={args.nproc}")
        cmd = [*launch, "-m", "genie.cli", *train, "--strategy", variant.split()[1]]
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // args.nproc))
    else:
        cmd = [sys.executable, "-m", "genie.cli", *train]
        if variant == "1 process, grad_accum 2":
            cmd += ["--grad_accum", "2"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    (run_dir,) = (out / "tokenizer").iterdir()
    rows = [r for r in read_metrics(run_dir) if "frames_per_s" in r]
    timed = rows[1:] or rows
    return {
        "frames_per_s": statistics.mean(r["frames_per_s"] for r in timed),
        "peak_mem_mb": rows[-1]["mem/peak_mb"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--nproc", type=int, default=2, help="torchrun processes (one thread each on CPU)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/distributed.json")
    a = p.parse_args()
    ensure_dataset(a.data_dir, "pong")

    config = yaml.safe_load((ROOT / "configs/tiny/tokenizer.yaml").read_text())
    config["training"].update(max_steps=a.steps, log_every=10, eval_every=10**6, save_every=10**6)
    variants = ["1 process", "torchrun ddp", "torchrun fsdp", "1 process, grad_accum 2"]
    seen: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tokenizer.yaml"
        path.write_text(yaml.safe_dump(config))
        for r in range(a.repeats):
            for i, variant in enumerate(variants):
                seen[variant].append(run(variant, a, path, Path(tmp) / f"run{r}_{i}"))
                print(f"round {r + 1}: {variant:26s} {seen[variant][-1]['frames_per_s']:7.1f} frames/s")

    results: dict[str, object] = {
        **machine("distributed", a.device),
        "config": "configs/tiny/tokenizer.yaml",
        "global_batch": config["data"]["batch_size"],
        "steps": a.steps,
        "nproc": a.nproc,
    }
    base = statistics.median(x["frames_per_s"] for x in seen["1 process"])
    for variant, runs in seen.items():
        fps = statistics.median(x["frames_per_s"] for x in runs)
        results[f"{variant}: frames/s"] = fps
        results[f"{variant}: vs 1 process"] = fps / base
        results[f"{variant}: rank-0 peak MB"] = max(x["peak_mem_mb"] for x in runs)
    save(results, a.out, width=40, digits=2)


if __name__ == "__main__":
    main()
