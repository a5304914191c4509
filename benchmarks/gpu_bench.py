"""The parts of benchmarks/gpu.sh: the user's three configs on one GPU, each part its own process.

gpu.sh runs every part under its own `timeout`, so a slow compile or an out-of-memory batch costs that
part alone; each part writes a JSON file into --work (after every measurement, so a part stopped at its
cap keeps what it measured), and `report` merges them into --out (gpu.json and gpu.md). The measuring
itself is benchmarks/mfu.py's (`measure`, `matmul_peak`) and benchmarks/train_throughput.py's (the real
training loop's memory by step); this file only chooses sizes and writes results.

    python benchmarks/gpu_bench.py bundle --frames 10000           # here: the compressed Pong subset
    python benchmarks/gpu_bench.py stage tokenizer --device cuda   # one part (gpu.sh runs them all)
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import yaml
from common import machine, one_step_runs
from mfu import ROOT, USER, matmul_peak, measure

STAGES = ("tokenizer", "lam", "dynamics")


def _write(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bundle(a: argparse.Namespace) -> None:
    """The first whole episodes of the Pong dataset, up to --frames, as one compressed [N, H, W, 3] uint8
    array: `genie ingest` reads it on the GPU machine, which cannot collect or download anything."""
    from genie.data.store import EpisodeStore

    store = EpisodeStore.open(a.data_dir / "pong")
    ends = [int(end) for _, end in store.episodes if end <= a.frames] or [int(store.episodes[0, 1])]
    frames = np.asarray(store.frames[: ends[-1]])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(a.out, frames=frames)
    print(
        f"wrote {a.out}: {len(frames)} frames of {len(ends)} episodes, {a.out.stat().st_size / 2**20:.1f} MiB"
    )


def _configs(a: argparse.Namespace) -> dict[str, Path]:
    """The user's configs; with --shrink, copies at 1 layer x 32 wide that keep everything else (gradient
    checkpointing, patch sizes, clip lengths, vocabulary, QK-norm): the GPU run's code paths on a CPU."""
    if not a.shrink:
        return USER
    out = {}
    for stage_name, path in USER.items():
        cfg = yaml.safe_load(path.read_text())
        model = cfg["model"]
        for key in ("encoder", "decoder", "architecture"):
            if key in model:
                model[key].update(num_layers=1, d_model=32, num_heads=2, dim_feedforward=64)
        for key in ("token_embedding", "action_embedding"):
            if key in model:
                model[key]["embedding_dim"] = 32
        out[stage_name] = a.work / "configs" / path.name
        out[stage_name].parent.mkdir(parents=True, exist_ok=True)
        out[stage_name].write_text(yaml.safe_dump(cfg, sort_keys=False))
    return out


def peak(a: argparse.Namespace) -> None:
    """The denominators: a large matmul's FLOP/s in bf16 (MFU's) and fp32, on this device."""
    device = torch.device(a.device)
    result = {**machine("gpu", a.device)}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        result |= {"gpu": props.name, "gpu_mem_gb": round(props.total_memory / 2**30, 1)}
        result |= {"cuda": torch.version.cuda}
    for dtype in (torch.bfloat16, torch.float32):
        name = "bf16" if dtype == torch.bfloat16 else "fp32"
        result[f"peak_{name}_gflop_per_s"] = round(matmul_peak(device, dtype) / 1e9, 1)
        _log(f"matmul peak {name}: {result[f'peak_{name}_gflop_per_s'] / 1e3:.1f} TFLOP/s")
    _write(a.work / "peak.json", result)


def upstream(a: argparse.Namespace) -> None:
    """One-step tokenizer and LAM runs of the measured size: the dynamics stage's frozen inputs (speed
    does not depend on their weights, and their encode and actions are part of its step)."""
    configs = _configs(a)
    runs = one_step_runs({s: configs[s] for s in ("tokenizer", "lam")}, a.device, a.data_dir)
    _write(a.work / "upstream.json", {s: str(p) for s, p in runs.items()})
    _log(f"upstream runs: {runs}")


def stage(a: argparse.Namespace) -> None:
    """One stage at each --batch, eager or compiled. A batch that runs out of memory is halved (down to
    the first batch) and the OOM recorded, so "the large batch" is the largest of the tried ones that fits."""
    path = _configs(a)[a.stage]
    ups = {}
    if a.stage == "dynamics":
        ups = {k: Path(v) for k, v in json.loads((a.work / "upstream.json").read_text()).items()}
    backend = a.compile_backend if a.mode == "compile" else None
    out = a.work / f"{a.stage}_{a.mode}.json"
    result: dict = {"stage": a.stage, "mode": a.mode, "runs": []}
    for batch in a.batch:
        while True:
            _log(f"{a.stage} {a.mode} batch {batch}")
            try:
                r = measure(
                    a.stage,
                    path,
                    a.device,
                    a.data_dir,
                    ups,
                    batch,
                    a.steps,
                    workers=None,
                    compile_backend=backend,
                    max_seconds=a.seconds,
                )
            except torch.OutOfMemoryError:
                result["runs"].append({"batch_size": batch, "error": "out of memory"})
                r = None
            except Exception as e:  # recorded, and the next batch still runs
                traceback.print_exc()
                result["runs"].append({"batch_size": batch, "error": f"{type(e).__name__}: {e}"[:300]})
                r = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            if r is not None:
                result["runs"].append(r)
                _log(f"  {json.dumps(r)}")
                break
            _write(out, result)
            if batch // 2 < a.batch[0] or batch == a.batch[0]:
                break
            batch //= 2
        _write(out, result)


def memory(a: argparse.Namespace) -> None:
    """The tokenizer at batch 8 through the real training loop (Trainer.train) for as many steps as the
    part's seconds allow at the eager speed measured before: peak memory at an early and the last logged
    step (CUDA's max allocated; anonymous RSS on CPU). Flat is the point: the user's old pipeline ran out
    of memory before 5k steps."""
    from train_throughput import measure as train_measure

    from genie.config import TokenizerConfig, load_config
    from genie.data.collect import ensure_dataset
    from genie.data.store import EpisodeStore

    steps = a.steps
    eager = a.work / "tokenizer_eager.json"
    if eager.exists():  # as many steps as fit in the part's seconds at the measured speed
        runs = [r for r in json.loads(eager.read_text())["runs"] if r.get("batch_size") == a.batch[0]]
        if runs and "steps_per_s" in runs[0]:
            steps = max(10, min(a.max_steps, int(runs[0]["steps_per_s"] * a.seconds)))
    config = load_config(TokenizerConfig, _configs(a)["tokenizer"])
    config.data.batch_size = a.batch[0]
    store = EpisodeStore.open(ensure_dataset(a.data_dir, "pong"))
    log_every = max(1, steps // 20)
    _log(f"tokenizer memory run: {steps} steps, batch {a.batch[0]}, logged every {log_every}")
    r = train_measure(config, store, a.device, steps, log_every=log_every)
    by_step = r["memory_by_step"]
    early = min((s for s in by_step if s >= 2 * log_every), default=min(by_step))
    r["memory_flat"] = {
        "early_step": early,
        "early_mb": by_step[early],
        "last_step": max(by_step),
        "last_mb": by_step[max(by_step)],
        "measure": "max allocated so far" if a.device.startswith("cuda") else "anonymous RSS",
    }
    _write(a.work / "memory.json", r)
    _log(f"memory: {r['memory_flat']}")


def report(a: argparse.Namespace) -> None:
    """Every part's JSON (and its exit status from gpu.sh's parts.txt) into gpu.json and gpu.md."""
    parts = {}
    for line in (a.work / "parts.txt").read_text().splitlines() if (a.work / "parts.txt").exists() else []:
        name, rc, seconds, cap = line.split()
        parts[name] = {
            "rc": int(rc),
            "seconds": int(seconds),
            "cap_s": int(cap),
            "hit_cap": rc in ("124", "137"),
        }
    loaded = {p.stem: json.loads(p.read_text()) for p in sorted(a.work.glob("*.json"))}
    result = {**loaded.pop("peak", {}), "parts": parts, **loaded}
    a.out.mkdir(parents=True, exist_ok=True)
    _write(a.out / "gpu.json", result)
    (a.out / "gpu.md").write_text(markdown(result))
    print((a.out / "gpu.md").read_text())


def _tflops(gflops: float | None) -> str:
    return "?" if gflops is None else f"{gflops / 1e3:.3g}"


def markdown(result: dict) -> str:
    """The table benchmarks/README.md shows."""
    bf16 = result.get("peak_bf16_gflop_per_s")
    where = result.get("gpu", result.get("device", "?"))
    lines = [
        f"{where}, torch {result.get('torch', '?')}, {result.get('date', '?')}; matmul peak measured here: "
        f"bf16 {_tflops(bf16)}, fp32 {_tflops(result.get('peak_fp32_gflop_per_s'))} TFLOP/s",
        "",
        "| stage | batch | compile | steps/s | frames/s | GFLOP/step | TFLOP/s | MFU (bf16) | peak GB "
        "| note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in STAGES:
        for mode in ("eager", "compile"):
            part = result.get(f"{name}_{mode}")
            status = result["parts"].get(f"{name}_{mode}", {})
            if part is None:
                why = "stopped at its time cap" if status.get("hit_cap") else f"exit {status.get('rc', '-')}"
                lines.append(f"| {name} | | {mode} | | | | | | | no result ({why}) |")
                continue
            for r in part["runs"]:
                if "error" in r:
                    lines.append(f"| {name} | {r['batch_size']} | {mode} | | | | | | | {r['error'][:80]} |")
                    continue
                mfu = f"{r['achieved_gflop_per_s'] / bf16:.1%}" if bf16 else ""
                note = f"compiled in {r['compile_s']} s; " if "compile_s" in r else ""
                note += f"{r['steps_timed']} timed steps, {r['autocast']}"
                cells = (name, r["batch_size"], r["compile"], r["steps_per_s"], r["frames_per_s"])
                cells += (r["gflop_per_step"], _tflops(r["achieved_gflop_per_s"]), mfu)
                lines.append("| " + " | ".join(map(str, (*cells, r.get("peak_mem_gb", ""), note))) + " |")
            if status.get("hit_cap"):
                lines.append(
                    f"| {name} | | {mode} | | | | | | | part stopped at its {status['cap_s']} s cap |"
                )
    run = result.get("memory", {})
    if "memory_flat" in run:
        mem = run["memory_flat"]
        lines += [
            "",
            f"Tokenizer memory ({mem['measure']}), batch {run['batch_size']}, {run['steps']} steps of the "
            f"real loop at {run['frames_per_s']} frames/s: step {mem['early_step']} {mem['early_mb']} MB, "
            f"step {mem['last_step']} {mem['last_mb']} MB.",
        ]
    parts = ", ".join(f"{k} {v['seconds']}/{v['cap_s']} s exit {v['rc']}" for k, v in result["parts"].items())
    lines += ["", f"Parts (seconds / cap, exit status; 124 = stopped at its cap, -1 = skipped): {parts}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("part", choices=("bundle", "peak", "upstream", "stage", "memory", "report"))
    p.add_argument("stage", nargs="?", choices=STAGES, help="the stage part's stage")
    p.add_argument("--device", default="cuda")
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--work", type=Path, default=Path("/tmp/genie_gpu/parts"), help="the parts' JSON files")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/gpu", help="report: gpu.json, gpu.md"
    )
    p.add_argument("--shrink", action="store_true", help="the user's configs at 1 layer x 32 (the dry run)")
    p.add_argument("--mode", choices=("eager", "compile"), default="eager")
    p.add_argument("--compile_backend", default="inductor", help="torch.compile backend of --mode compile")
    p.add_argument("--batch", type=int, nargs="+", default=[8, 64])
    p.add_argument("--steps", type=int, default=20, help="timed steps (memory: when no eager speed is known)")
    p.add_argument("--max_steps", type=int, default=3000, help="memory: the most steps")
    p.add_argument("--seconds", type=float, default=8.0, help="cap on one timing (memory: on the run)")
    p.add_argument("--frames", type=int, default=10000, help="bundle: at most this many frames")
    a = p.parse_args()
    if a.part == "bundle" and a.out == ROOT / "benchmarks/results/gpu":
        a.out = ROOT / ".gpu_bundle/pong.npz"
    if a.part == "stage" and a.stage is None:
        p.error("stage needs a stage name")
    globals()[a.part](a)


if __name__ == "__main__":
    main()
