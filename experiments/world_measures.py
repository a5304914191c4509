"""Measure a trained world at several classifier-free guidance weights: control, ΔtPSNR, play speed.

    python experiments/world_measures.py checkpoints/dynamics/run_X --guidance 1 1.5 2 3 \
        --out experiments/results/run_X.json [--long_play] [--steps N] [--temperature T]

For each weight: the control measure of `genie report` (64 held-out prompts, 4 held steps of "up" and of
"down"), ΔtPSNR over 256 validation clips (the final evaluation's clips) with its standard error, and
play frames/s (`World.step`, batch 1); with --long_play also the 1,000-frame object counts. A weight
other than 1 needs a model trained with training.action_dropout > 0. True actions only measure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.data.clips import ClipDataset, evenly_spaced  # noqa: E402
from genie.evaluation.world_eval import long_play_counts, rollout_metrics  # noqa: E402
from genie.inference import TrainedWorld  # noqa: E402
from genie.stages.common import REPORT_CLIPS  # noqa: E402
from genie.training.sampler import validation_clips  # noqa: E402
from genie.world import World, WorldModels  # noqa: E402
from genie.world.control import control_rate  # noqa: E402

PLAY_FRAMES = 100


def play_fps(models: WorldModels) -> float:
    world = World(models, seed=0)
    world.reset()
    for _ in range(5):
        world.step(0)
    start = time.perf_counter()
    for i in range(PLAY_FRAMES):
        world.step(i % models.dynamics.num_actions)
    return PLAY_FRAMES / (time.perf_counter() - start)


@torch.no_grad()
def delta_psnr(world: TrainedWorld) -> dict[str, float]:
    T = world.window
    val = ClipDataset(world.store, "val", T, stride=T)
    picks = evenly_spaced(len(val), REPORT_CLIPS["dynamics"])
    loader = DataLoader(validation_clips(val, picks), batch_size=8)
    batches = ({k: v.to(world.device) for k, v in b.items()} for b in loader)
    metrics = rollout_metrics(world, batches, len(picks))
    return {k: v for k, v in metrics.items() if "delta_psnr" in k or k.startswith("val/rollout_psnr")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a dynamics run directory (its best checkpoint) or checkpoint")
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--long_play", action="store_true", help="also the 1,000-frame object counts")
    p.add_argument(
        "--play_frames", type=int, help="long play of this many frames instead (implies --long_play)"
    )
    p.add_argument("--play_prompts", type=int, default=8, help="held-out prompts of the long play")
    p.add_argument("--no_delta", action="store_true", help="skip ΔtPSNR (256 rollouts)")
    p.add_argument("--steps", type=int, help="MaskGIT rounds (default: the run's)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default: the run's)")
    p.add_argument("--top_p", type=float, help="nucleus sampling mass (default: the run's)")
    a = p.parse_args()
    results: dict = {"run": str(a.run), "steps": a.steps, "temperature": a.temperature, "top_p": a.top_p}
    results["by_guidance"] = {}
    for w in a.guidance:
        models = WorldModels.load(a.run, guidance=w, steps=a.steps, temperature=a.temperature, top_p=a.top_p)
        row: dict = {"control": control_rate(models), "play_fps": play_fps(models)}
        world = replace(models.trained, sampling=models.sampling)
        if not a.no_delta:
            row |= delta_psnr(world)
        if a.long_play or a.play_frames:
            frames = a.play_frames or world.config.training.eval_play_frames
            row |= long_play_counts(world, frames, a.play_prompts)
        results["by_guidance"][str(w)] = row
        c, nan = row["control"] or {}, float("nan")
        print(
            f"guidance {w}: control up {c.get('up_rate', nan):.0%} down {c.get('down_rate', nan):.0%}; "
            f"ΔtPSNR@4 {row.get('val/delta_psnr_t4', nan):+.3f} "
            f"± {row.get('val/delta_psnr_t4_se', nan):.3f}; "
            f"play {row['play_fps']:.1f} frames/s",
            flush=True,
        )
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
