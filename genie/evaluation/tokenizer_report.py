"""The tokenizer's final evaluation: its validation numbers over the report clips, a video of four of them
(original | reconstruction), one of seven consecutive clips of a validation episode (where one is long
enough: the seams between clips show), and the JSON of it all."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Subset

from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import to_float
from genie.data.store import EpisodeStore
from genie.evaluation.tokenizer_measures import measure_tokenizer
from genie.evaluation.video import SHOWN_CLIPS, side_by_side, write_mp4
from genie.models.tokenizer import VideoTokenizer
from genie.outputs import EvalFiles

CONSECUTIVE_CLIPS = 7  # clips of one validation episode in the long video
# what the evaluation JSON's numbers mean, written into it
NOTE = (
    "background_psnr scores the per-pixel median frame; object_recall is the share of "
    "foreground pixels reconstructed within 0.1"
)


@dataclass(frozen=True)
class TokenizerReport:
    """What the final evaluation scored and measured: the checkpoint and its step, the dataset, how many
    clips of how many frames, and the metrics (val/... keys)."""

    checkpoint: str | None
    step: int
    dataset: str
    clips: int
    clip_length: int
    metrics: dict[str, float]

    def record(self) -> dict[str, Any]:
        """The evaluation JSON, its keys in the order readers have always seen them."""
        return {
            "stage": "tokenizer",
            "checkpoint": self.checkpoint,
            "step": self.step,
            "dataset": self.dataset,
            "clips": self.clips,
            "clip_length": self.clip_length,
            "metrics": self.metrics,
            "note": NOTE,
        }


@torch.no_grad()
def tokenizer_report(
    model: VideoTokenizer,
    store: EpisodeStore,
    files: EvalFiles,
    *,
    background: torch.Tensor,
    clip_length: int,
    clips: int,
    batch_size: int,
    fps: int,
    checkpoint: str | None,
    step: int,
    device: torch.device,
) -> TokenizerReport:
    """Score `clips` validation clips of `clip_length` frames spread over the split (in batches of
    `batch_size`; `background` the dataset's median frame), write `files.video`, `files.extra` (where a
    validation episode is long enough) and `files.json`."""
    model.eval()
    T = clip_length
    val = ClipDataset(store, "val", T, stride=T)
    picks = evenly_spaced(len(val), clips)
    loader = DataLoader(Subset(val, picks), batch_size=batch_size)
    metrics = measure_tokenizer(model, ({k: v.to(device) for k, v in b.items()} for b in loader), background)
    spread = picks[:: max(1, len(picks) // SHOWN_CLIPS)][:SHOWN_CLIPS]
    shown = torch.stack([val[i]["frames"] for i in spread])
    write_mp4(files.video, _comparison(model, shown, device), fps=fps)
    long = _consecutive_frames(store, CONSECUTIVE_CLIPS * T)
    if long is not None:
        video = _comparison(model, long.reshape(CONSECUTIVE_CLIPS, T, *long.shape[1:]), device)
        write_mp4(files.extra, video, fps=fps)
    report = TokenizerReport(checkpoint, step, store.name, len(picks), T, metrics)
    files.json.write_text(json.dumps(report.record(), indent=2) + "\n")
    return report


def _comparison(model: VideoTokenizer, clips: Tensor, device: torch.device) -> np.ndarray:
    """uint8 clips [K, T, 3, H, W] -> original | reconstruction video, the K clips one after another."""
    x = to_float(clips.to(device))
    recon = model(x).reconstruction.clamp(0, 1)
    return side_by_side(x.flatten(0, 1), recon.flatten(0, 1))


def _consecutive_frames(store: EpisodeStore, length: int) -> Tensor | None:
    """uint8 [length, 3, H, W] from the first validation episode long enough, else None."""
    span = store.first_long_episode("val", length)
    if span is None:
        return None
    frames = store.read_frames(span[0], span[0] + length)  # a writable copy
    return torch.from_numpy(frames).permute(0, 3, 1, 2)
