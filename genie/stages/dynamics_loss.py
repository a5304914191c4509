"""What the dynamics stage trains on, apart from the stage: the masked tokens' loss and the inputs it
sees, each drawn from the clip's own noise seed so that a clip's draws do not depend on how the batch is
split over ranks or micro-batches.

- `drop_actions`: classifier-free guidance's unconditional branch (transitions given "no action").
- `corrupt_context`: visible tokens replaced, so the model learns to read the errors play makes.
- `motion_weights`: extra loss weight near what moves (the paddles and the ball, a few tokens a frame).
- `masked_loss`: cross-entropy and accuracy on the masked tokens, a mean of per-clip means.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor


def _clip_rng(seed: int, purpose: int) -> np.random.Generator:
    """An independent stream per (clip noise seed, purpose): the masks, the dropped actions and the
    corrupted context of one clip never share draws."""
    return np.random.default_rng([seed, purpose])


def drop_actions(actions: Tensor, share: float, null: int, seeds: Tensor) -> Tensor:
    """actions [B, T-1] with each transition's action replaced by `null` with probability `share`, drawn
    from each clip's own seed (classifier-free guidance's unconditional branch)."""
    if share == 0:
        return actions
    drop = np.stack([_clip_rng(s, 1).random(actions.shape[1]) < share for s in seeds.tolist()])
    return actions.masked_fill(torch.from_numpy(drop).to(actions.device), null)


def corrupt_context(
    inputs: Tensor, mask: Tensor, share: float, vocab: int, seeds: Tensor, kind: str = "random"
) -> Tensor:
    """inputs [B, T, N] with up to `share` of each clip's visible tokens (where `mask` is False) replaced,
    the clip's rate ~ U(0, share): by uniform random tokens (`random`), or by the token at the same place
    in another frame of the clip (`other_frame`): where an object moved, that leaves a ghost where it
    was and a hole where it is, the errors play makes; elsewhere it changes nothing. Masked tokens, the
    ones scored, are untouched."""
    if share == 0:
        return inputs
    B, T, N = inputs.shape
    out = inputs.clone()
    for b, seed in enumerate(seeds.tolist()):
        rng = _clip_rng(seed, 2)
        hit = torch.from_numpy(rng.random((T, N)) < rng.random() * share).to(inputs.device)
        hit &= ~mask[b]
        if kind == "random":
            source = torch.from_numpy(rng.integers(0, vocab, (T, N))).to(inputs.device)
        else:  # frame t reads frame (t + k) mod T, k uniform in 1..T-1: any other frame
            shift = torch.from_numpy(rng.integers(1, T, (T, N))).to(inputs.device)
            frame = (torch.arange(T, device=inputs.device)[:, None] + shift) % T
            source = inputs[b].gather(0, frame)
        out[b] = torch.where(hit, source, out[b])
    return out


def motion_weights(tokens: Tensor, grid: tuple[int, int], weight: float) -> Tensor:
    """tokens [B, T, N] (N = rows x columns of `grid`) -> loss weights [B, T, N]: `weight` within one patch
    (8-neighbourhood) of a token that differs from the previous frame's at its place, 1 elsewhere and in
    frame 0. The neighbourhood covers where a moving object was and where it could go, so the weight does
    not favour "moved" over "stayed" near it."""
    changed = torch.zeros_like(tokens, dtype=torch.bool)
    changed[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    near = rearrange(changed.float(), "b t (h w) -> (b t) 1 h w", h=grid[0], w=grid[1])
    near = F.max_pool2d(near, 3, stride=1, padding=1) > 0
    near = rearrange(near, "(b t) 1 h w -> b t (h w)", b=tokens.shape[0])
    return torch.where(near, weight, 1.0).to(torch.float32)


def masked_loss(
    logits: Tensor, tokens: Tensor, mask: Tensor, weights: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Cross-entropy and accuracy on the masked tokens (`logits` [M, V]: the masked tokens' only, in
    row-major order), averaged per clip and then over clips: a mean of per-sample losses, so ranks and
    micro-batches add up to the single-process loss whatever their mask rates. `weights` [B, T, N] make
    the loss a weighted mean within each clip (accuracy stays the plain share)."""
    targets, clip = tokens[mask], mask.nonzero()[:, 0]
    per_clip = mask.flatten(1).sum(1).clamp_min(1)

    def clip_mean(x: Tensor, total: Tensor = per_clip) -> Tensor:
        return (x.new_zeros(len(per_clip)).index_add(0, clip, x) / total).mean()

    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    if weights is None:
        loss = clip_mean(ce)
    else:  # a clip without masked tokens adds 0, as in the plain mean
        w = weights[mask]
        loss = clip_mean(ce * w, w.new_zeros(len(per_clip)).index_add(0, clip, w).clamp_min(1e-12))
    with torch.no_grad():
        acc = clip_mean((logits.argmax(-1) == targets).float())
    return loss, acc
