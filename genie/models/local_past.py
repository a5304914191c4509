"""The neighbourhood of each patch in the frames just before, added to its input (a causal, separable 3D conv).

The ST transformer's temporal attention links one patch position across frames; an object that moves from
patch to patch (Pong's ball crosses one every frame or two) reaches the patch where it lands only through a
spatial attention first, which a small model does imprecisely: teacher-forced, the tiny world puts p = 0.31
on the ball's next token (docs/dynamics.md). Here each token of frame t also gets, from each of the `frames`
frames before it, a depthwise `kernel` x `kernel` convolution of their token embeddings on the patch grid,
summed and mixed by one linear layer, so where the neighbours' objects were is in its input. Causal: frame t
reads frames t-1 .. t-frames only. The mixing starts at zero: at init the model is the plain one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


class LocalPast(nn.Module):
    def __init__(self, dim: int, frames: int, grid: tuple[int, int], kernel: int = 5) -> None:
        super().__init__()
        self.frames, self.grid = frames, grid
        self.convs = nn.ModuleList(
            nn.Conv2d(dim, dim, kernel, padding=kernel // 2, groups=dim, bias=False) for _ in range(frames)
        )
        self.mix = nn.Linear(dim, dim)
        nn.init.zeros_(self.mix.weight)
        nn.init.zeros_(self.mix.bias)

    def forward(self, embedded: Tensor) -> Tensor:
        """Token embeddings [B, T, N, D] of consecutive frames -> each frame's input from its past [B, T, N, D]
        (frames before the first count as empty)."""
        B, T = embedded.shape[:2]
        h, w = self.grid
        grids = rearrange(embedded, "b t (h w) d -> b t d h w", h=h, w=w)
        total = torch.zeros_like(grids)
        for lag, conv in enumerate(self.convs, start=1):
            if lag >= T:
                break
            past = rearrange(grids[:, : T - lag], "b t d h w -> (b t) d h w")
            shifted = rearrange(conv(past), "(b t) d h w -> b t d h w", b=B)
            total = total + F.pad(shifted, (0, 0, 0, 0, 0, 0, lag, 0))
        return self.mix(rearrange(total, "b t d h w -> b t (h w) d"))
