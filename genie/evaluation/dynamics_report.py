"""The dynamics model's final evaluation, an app over the trained world: the rollout metrics of the report
clips, four of their rollouts as a video (real | generated), a long rollout's video and the objects it still
shows, object counts in long play, and the JSON of it all.

The dynamics stage runs it at the end of training and for `genie eval dynamics`; the numbers are those of
`genie.evaluation.world_eval`, over more clips than a periodic validation scores.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import to_float
from genie.evaluation.video import SHOWN_CLIPS, side_by_side, write_mp4
from genie.evaluation.world_eval import (
    clip_actions,
    long_play_counts,
    long_rollouts,
    rollout_metrics,
    rollouts,
)
from genie.inference import PROMPT_FRAMES, TrainedWorld
from genie.outputs import EvalFiles
from genie.progress import progress_bar
from genie.training.sampler import validation_clips
from genie.training.stage import Batch


@dataclass(frozen=True)
class DynamicsReport:
    """What the final evaluation scored and measured: the checkpoint and its step, the dataset, the upstream
    records ({actions, tokenizer, lam}), the sampling settings and the metrics (val/, long/, play/ keys)."""

    checkpoint: str | None
    step: int
    dataset: str
    upstream: dict[str, Any]
    sampling: dict[str, Any]
    metrics: dict[str, float]

    def record(self) -> dict[str, Any]:
        """The evaluation JSON, its keys in the order readers have always seen them."""
        return {
            "stage": "dynamics",
            "checkpoint": self.checkpoint,
            "step": self.step,
            "dataset": self.dataset,
            "upstream": self.upstream,
            "prompt_frames": PROMPT_FRAMES,
            "sampling": self.sampling,
            "metrics": self.metrics,
        }


@torch.no_grad()
def dynamics_report(
    world: TrainedWorld,
    files: EvalFiles,
    *,
    checkpoint: str | None,
    step: int,
    upstream: dict[str, Any],
    clips: int,
    batch_size: int,
) -> DynamicsReport:
    """Score `clips` validation clips spread over the split (in batches of `batch_size`), write
    `files.video`, `files.extra` (the long rollout, where a validation episode is long enough) and
    `files.json`."""
    world.dynamics.eval()
    d, t = world.config.data, world.config.training
    val = ClipDataset(world.store, "val", d.sequence_length, stride=d.sequence_length)
    picks = evenly_spaced(len(val), clips)
    loader = DataLoader(validation_clips(val, picks), batch_size=batch_size)
    bar = progress_bar(total=len(loader) + 3, desc=f"evaluating dynamics step {step}", unit="part")

    def batches() -> Iterator[Batch]:
        for b in loader:
            yield {k: v.to(world.device) for k, v in b.items()}
            bar.update(1)

    with bar:
        metrics = rollout_metrics(world, batches(), len(picks))
        write_mp4(files.video, _comparison(world, val, picks[:SHOWN_CLIPS]), fps=world.fps)
        bar.update(1)
        long, seen = long_rollouts(world)
        metrics.update(seen)
        bar.update(1)
        if long is not None:
            write_mp4(files.extra, long, fps=world.fps)
        if t.eval_play_frames:
            metrics.update(long_play_counts(world, t.eval_play_frames, t.eval_play_prompts))
        bar.update(1)
    report = DynamicsReport(checkpoint, step, world.store.name, upstream, vars(world.sampling), metrics)
    files.json.write_text(json.dumps(report.record(), indent=2) + "\n")
    return report


def _comparison(world: TrainedWorld, val: ClipDataset, picks: list[int]) -> np.ndarray:
    """real | generated frames after the prompt of the picked clips, one clip after another."""
    shown = {k: torch.stack([val[i][k] for i in picks]).to(world.device) for k in val[0]}
    x = to_float(shown["frames"])
    gen = rollouts(world, x, clip_actions(world, shown))["inferred"]
    return side_by_side(x[:, PROMPT_FRAMES:].flatten(0, 1), gen.flatten(0, 1))
