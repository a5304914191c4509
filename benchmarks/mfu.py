"""Model FLOPs utilisation of every stage: achieved FLOP/s of a real training step against the machine's
measured matmul peak.

FLOPs are counted from the operators' shapes (torch.utils.flop_counter over one real step, forward and
backward: matmuls as 2·m·n·k, attention as PyTorch's SDPA formulas, counted in full also where it is
causal; element-wise work is not counted), the frozen upstream models' forward included for the dynamics
stage. The peak is a large matmul timed on the same device (fp32 and bf16 on CPU, bf16 on GPU), so MFU
says how far a stage is from what these cores or this GPU can do, not from a datasheet.

    .venv/bin/python benchmarks/mfu.py                      # tiny presets, ~3 min on 2 CPU cores
    .venv/bin/python benchmarks/mfu.py --device cuda --user --batch 8 64
    .venv/bin/python benchmarks/mfu.py --compile inductor   # each stage also compiled, beside eager
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import build_trainer, dynamics_upstream, machine, one_step_runs, save, training_step
from torch.utils import flop_counter

from genie.config import load_config
from genie.stages.registry import stage_class

ROOT = Path(__file__).resolve().parents[1]
TINY = {s: ROOT / f"configs/tiny/{s}.yaml" for s in ("tokenizer", "lam", "dynamics")}
USER = {
    "tokenizer": ROOT / "configs/tokenizer_config.yaml",
    "lam": ROOT / "configs/lam_config_paper.yaml",
    "dynamics": ROOT / "configs/dynamics_config_3actions.yaml",
}

LOADER_BATCHES = 20  # batches timed from the stage's own loader, before the steps
aten = torch.ops.aten
if not hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):  # pragma: no cover
    raise SystemExit("this torch has no CPU flash attention op to count")


@flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu)
def _sdpa_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)  # the counter knows only the GPU kernels


@flop_counter.register_flop_formula(aten._scaled_dot_product_flash_attention_for_cpu_backward)
def _sdpa_cpu_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """FLOP/s of a large square matmul (best of a few), the denominator of MFU."""
    n = 2048 if device.type == "cpu" else 8192
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = 0.0
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start, reps = time.perf_counter(), 3 if device.type == "cpu" else 20
        for _ in range(reps):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - start))
    return best


def measure(
    stage: str,
    config_path: Path,
    device: str,
    data_dir: Path,
    upstream: dict,
    batch: int | None,
    steps: int,
    *,
    workers: int | None = 0,
    compile_backend: str | None = None,
    max_seconds: float = float("inf"),
    compile_warmup: int = 3,
) -> dict:
    """Steps/s, frames/s and FLOPs of one stage's real training step. `workers` None keeps the config's
    loader workers (0 by default: on a 2-core CPU workers compete with the step). With `compile_backend`
    the model is `torch.compile`d after the FLOPs are counted eagerly (the counter sees no operators
    inside compiled code), then `compile_warmup` steps compile it before the timing. The timed loop stops
    after `steps` steps or `max_seconds`, whichever comes first, so a slow size cannot eat a time budget."""
    config = load_config(stage_class(stage).config_cls, config_path)
    if batch is not None:
        config.data.batch_size = batch
    if workers is not None:
        config.data.num_workers = workers
    extra = dynamics_upstream(upstream["tokenizer"], upstream["lam"]) if stage == "dynamics" else None
    trainer = build_trainer(stage, config, data_dir, device, extra)
    data = iter(trainer.train_loader)
    next(data)  # workers (if any) started: not timed
    start = time.perf_counter()
    for _ in range(LOADER_BATCHES):
        next(data)
    loader_clips_per_s = LOADER_BATCHES * config.data.batch_size / (time.perf_counter() - start)
    sync = torch.cuda.synchronize if trainer.rt.device.type == "cuda" else lambda: None
    training_step(trainer, data)  # warm-up (allocator, kernels)
    with flop_counter.FlopCounterMode(display=False) as counter:
        training_step(trainer, data)
    flops = counter.get_total_flops()
    compile_s = None
    if compile_backend is not None:
        start = time.perf_counter()
        trainer.model.compile(backend=compile_backend)
        for _ in range(compile_warmup):
            training_step(trainer, data)
        sync()
        compile_s = time.perf_counter() - start
    if trainer.rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync()
    start, done = time.perf_counter(), 0
    while done < steps and (done == 0 or time.perf_counter() - start < max_seconds):
        training_step(trainer, data)  # its finiteness check syncs every step: the clock is not ahead
        done += 1
    sync()
    seconds = (time.perf_counter() - start) / done
    frames = config.data.batch_size * config.data.sequence_length
    out = {
        "config": str(config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path),
        "params_M": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
        "batch_size": config.data.batch_size,
        "autocast": str(trainer.rt.dtype).replace("torch.", "") if trainer.rt.dtype else "fp32",
        "compile": compile_backend or "off",
        "steps_timed": done,
        "steps_per_s": round(1 / seconds, 3),
        "frames_per_s": round(frames / seconds, 1),
        # clips/s the loader delivers alone, against the clips/s the step consumes: the loader is not
        # the limit while the first is well above the second
        "loader_clips_per_s": round(loader_clips_per_s, 1),
        "consumed_clips_per_s": round(config.data.batch_size / seconds, 1),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflop_per_s": round(flops / seconds / 1e9, 1),
    }
    if compile_s is not None:
        out["compile_s"] = round(compile_s, 1)
    if trainer.rt.device.type == "cuda":
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--steps", type=int, default=10, help="timed steps per stage")
    p.add_argument("--user", action="store_true", help="the user's configs instead of the tiny presets")
    p.add_argument("--batch", type=int, nargs="*", default=[None], help="batch sizes (default: the config's)")
    p.add_argument("--compile", help="also measure each stage torch.compile'd with this backend (inductor)")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/mfu.json", help="JSON; a .md beside it"
    )
    a = p.parse_args()
    device = torch.device(a.device)
    peak_dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    result: dict = {**machine("mfu", a.device)}
    result["peak_fp32_gflop_per_s"] = round(matmul_peak(device, torch.float32) / 1e9, 1)
    result["peak_bf16_gflop_per_s"] = round(matmul_peak(device, torch.bfloat16) / 1e9, 1)
    peak = result[f"peak_{'fp32' if peak_dtype == torch.float32 else 'bf16'}_gflop_per_s"]
    configs = USER if a.user else TINY
    upstream = one_step_runs({s: configs[s] for s in ("tokenizer", "lam")}, a.device, a.data_dir)
    for stage, path in configs.items():
        for batch in a.batch:
            for backend in [None] + ([a.compile] if a.compile else []):
                r = measure(
                    stage, path, a.device, a.data_dir, upstream, batch, a.steps, compile_backend=backend
                )
                r["mfu"] = round(r["achieved_gflop_per_s"] / peak, 3)
                result[f"{stage}_b{r['batch_size']}" + (f"_{backend}" if backend else "")] = r
                print(
                    f"{stage:10s} B={r['batch_size']:<4d} {r['compile']:9s} {r['steps_per_s']:7.2f} steps/s "
                    f"{r['frames_per_s']:8.1f} frames/s  {r['gflop_per_step']:8.2f} GFLOP/step  "
                    f"{r['achieved_gflop_per_s']:8.1f} GFLOP/s  MFU {r['mfu']:.1%} of {peak:.0f}"
                    + f"  loader {r['loader_clips_per_s']:.0f} clips/s (uses {r['consumed_clips_per_s']:.0f})"
                    + (f"  (compile {r['compile_s']} s)" if "compile_s" in r else "")
                )
    save(result, a.out, width=28, digits=1)
    table = a.out.with_suffix(".md")
    table.write_text(markdown(result, peak))
    print(f"wrote {table}")


def markdown(result: dict, peak: float) -> str:
    """The results as the Markdown table benchmarks/README.md shows."""
    head = f"{result['device']} ({result['cpu_count']} CPUs, torch {result['torch']}), {result['date']}"
    lines = [
        f"{head}; matmul peak fp32 {result['peak_fp32_gflop_per_s']:.0f}, bf16 "
        f"{result['peak_bf16_gflop_per_s']:.0f} GFLOP/s",
        "",
        "| stage | config | batch | autocast | compile | steps/s | frames/s | GFLOP/step | GFLOP/s | MFU | "
        "loader clips/s (step uses) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, r in result.items():
        if isinstance(r, dict) and "mfu" in r:
            lines.append(
                f"| {key.rsplit('_b', 1)[0]} | {r['config']} | {r['batch_size']} | {r['autocast']} | "
                f"{r['compile']} | {r['steps_per_s']} | {r['frames_per_s']} | {r['gflop_per_step']} | "
                f"{r['achieved_gflop_per_s']} | {r['mfu']:.0%} of {peak:.0f} | "
                f"{r['loader_clips_per_s']:.0f} ({r['consumed_clips_per_s']:.0f}) |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
