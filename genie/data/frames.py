"""The uint8 <-> float boundary of the models, and the static-background baseline.

Models see float [..., 3, H, W] in [0, 1]; uint8 stays in genie/data. Convert after `.to(device)`
so the host-to-device copy moves 1 byte per pixel, not 4.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genie.data.clips import evenly_spaced
from genie.data.store import EpisodeStore


def to_float(frames: Tensor) -> Tensor:
    """uint8 [..., 3, H, W] -> float32 in [0, 1], on the input's device."""
    if frames.dtype != torch.uint8:
        raise TypeError(f"to_float expects uint8 frames, got {frames.dtype}")
    return frames.to(torch.float32).div_(255.0)  # a new tensor, so dividing in place is safe


def to_uint8(x: Tensor) -> Tensor:
    """float [..., 3, H, W] in [0, 1] -> uint8 (clamped, rounded to nearest)."""
    return x.detach().mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def median_background(store: EpisodeStore, split: str = "train", max_frames: int = 2000) -> np.ndarray:
    """Per-pixel median of up to `max_frames` evenly spaced frames of the split: [H, W, 3] uint8.

    On Pong this is the court without ball or paddles, the baseline a reconstruction must beat.
    """
    episodes = store.episodes[store.split_episodes(split)]
    index = np.concatenate([np.arange(s, e) for s, e in episodes])
    picks = np.asarray(evenly_spaced(len(index), max_frames))
    frames = torch.from_numpy(np.asarray(store.frames[index[picks]]))  # (n, H, W, 3) uint8
    return frames.median(dim=0).values.numpy()  # the lower median: stays uint8, no float copy


def background_frame(store: EpisodeStore, device: torch.device) -> Tensor:
    """`median_background` as float [3, H, W] in [0, 1] on `device`, the form the metrics compare with."""
    median = torch.from_numpy(np.ascontiguousarray(median_background(store)))
    return to_float(median.permute(2, 0, 1)).to(device)
