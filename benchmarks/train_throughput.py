"""Training throughput and memory, through the real training loop (genie.training.loop.Trainer).

Prints and writes JSON (benchmarks/results/train_throughput.json): frames/s and peak memory for the
tiny preset and for the user's config (at a batch size that fits this machine), and memory at step
100 vs the last step of a longer tiny run, to show memory is flat.

    .venv/bin/python benchmarks/train_throughput.py            # ~4 min on 2 CPU cores
    .venv/bin/python benchmarks/train_throughput.py --device cuda --user_batch 8
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from common import machine, save

from genie.config import TokenizerConfig, load_config
from genie.data.clips import ClipDataset
from genie.data.collect import ensure_dataset
from genie.data.store import EpisodeStore
from genie.stages.tokenizer import TokenizerStage
from genie.training.loop import Trainer
from genie.training.metrics_log import read_metrics
from genie.training.runtime import setup_runtime

ROOT = Path(__file__).resolve().parents[1]


def measure(config: TokenizerConfig, store: EpisodeStore, device: str, steps: int, log_every: int) -> dict:
    t = config.training
    t.max_steps, t.log_every, t.eval_every, t.save_every = steps, log_every, 10**9, 10**9
    t.warmup_steps = min(t.warmup_steps, steps)
    rt = setup_runtime(device, t.mixed_precision)
    stage = TokenizerStage(config, store, rt.device)
    T = config.data.sequence_length
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            stage,
            config,
            rt,
            train_set=ClipDataset(store, "train", T),
            val_set=ClipDataset(store, "val", T, stride=T),
            run_root=Path(tmp),
            progress=False,
        )
        trainer.cfg.eval_batches = 1
        trainer.train()
        rows = [r for r in read_metrics(trainer.run_dir) if "train/loss" in r]
    timed = rows[1:] if len(rows) > 1 else rows  # the first interval includes start-up
    fps = sum(r["frames_per_s"] for r in timed) / len(timed)
    return {
        "params_M": sum(p.numel() for p in trainer.model.parameters()) / 1e6,
        "batch_size": config.data.batch_size,
        "sequence_length": T,
        "patch_size": config.model.patch_size,
        "steps": steps,
        "frames_per_s": round(fps, 1),
        "steps_per_s": round(fps / (config.data.batch_size * T), 3),
        "peak_mem_mb": round(rows[-1]["mem/peak_mb"], 1),
        "memory_by_step": {r["step"]: round(r.get("mem/anon_mb", r["mem/peak_mb"]), 1) for r in rows},
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--device", default="cpu")
    p.add_argument("--tiny_steps", type=int, default=300, help="long enough to compare memory at 100 vs N")
    p.add_argument("--user_steps", type=int, default=4)
    p.add_argument("--user_batch", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/train_throughput.json")
    a = p.parse_args()

    store = EpisodeStore.open(ensure_dataset(a.data_dir, "pong"))
    tiny = load_config(TokenizerConfig, ROOT / "configs/tiny/tokenizer.yaml")
    user = load_config(TokenizerConfig, ROOT / "configs/tokenizer_config.yaml")
    user.data.batch_size = a.user_batch

    result = {
        **machine("train_throughput", a.device),
        "tiny": measure(tiny, store, a.device, a.tiny_steps, log_every=10),
        "user_config": measure(user, store, a.device, a.user_steps, log_every=1),
    }
    mem = result["tiny"]["memory_by_step"]
    at_100, last = mem.get(100), mem[max(mem)]
    result["tiny"]["memory_flat"] = {"step_100_mb": at_100, f"step_{max(mem)}_mb": last}
    result["ratio_tiny_to_user_frames_per_s"] = round(
        result["tiny"]["frames_per_s"] / max(result["user_config"]["frames_per_s"], 1e-9), 1
    )
    for name in ("tiny", "user_config"):
        r = result[name]
        print(
            f"{name:12s} {r['params_M']:6.2f}M params  B={r['batch_size']} T={r['sequence_length']} "
            f"p={r['patch_size']}  {r['frames_per_s']:8.1f} frames/s  peak {r['peak_mem_mb']:.0f} MB"
        )
    print(f"tiny anonymous memory (heap, no memmapped data): step 100 {at_100} MB, step {max(mem)} {last} MB")
    save(result, a.out, width=34, digits=1)


if __name__ == "__main__":
    main()
