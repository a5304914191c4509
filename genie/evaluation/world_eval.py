"""Evaluations of a trained world (`genie.inference.TrainedWorld`), shared by the dynamics stage's validation
and final report, `genie eval dynamics` and the experiments.

- `rollout_metrics`: teacher-forced token accuracy, and autoregressive rollouts from PROMPT_FRAMES real frames
  scored against the real frames: PSNR per horizon step and Genie's controllability ΔtPSNR (the inferred
  actions against uniformly random ones, over all pixels and over the moving ones), with standard errors.
- `long_rollouts`: LONG_ROLLOUTS rollouts of LONG_HORIZON frames with the inferred actions; which of the
  game's objects are still seen in their last frames.
- `long_play_counts`: 1,000 frames of play with held random keys; objects counted per frame (long_play).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor

from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import background_frame, to_float
from genie.evaluation.long_play import LONG_HORIZON, LONG_MEASURED, LONG_ROLLOUTS, long_play
from genie.evaluation.metrics import foreground_mask, masked_psnr, psnr, ssim, standard_error
from genie.evaluation.objects import game_objects, objects_seen
from genie.evaluation.video import side_by_side, to_rgb_uint8
from genie.inference import PROMPT_FRAMES, TrainedWorld
from genie.metric_keys import (
    DELTA_PSNR_AT,
    DELTA_PSNR_MOVING_AT,
    FOREGROUND_SHARE,
    LONG_SOURCES,
    ROLLOUT_PSNR,
    ROLLOUT_PSNR_AT,
    ROLLOUT_SSIM,
    SE,
    TOKEN_ACC,
    at_horizon,
    long_seen,
)
from genie.models.dynamics import sample_mask
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch

VAL_MASK_RATE = 0.75  # teacher-forced token accuracy is measured with this share of tokens masked
MOVING = 0.1  # a pixel "moves" when it differs from the last prompt frame by more than this


def has_standard_error(key: str) -> bool:
    """Metrics reported with their standard error over clips: ΔtPSNR (small and noisy) and the rollout
    PSNR that picks the best checkpoint (which must not follow noise)."""
    return key.startswith(DELTA_PSNR_AT) or key == ROLLOUT_PSNR


def clip_actions(world: TrainedWorld, batch: Batch) -> Tensor:
    """[B, T-1] action ids of a batch of clips (uint8 frames, and their true actions where recorded)."""
    return world.infer_actions(to_float(batch["frames"]), batch.get("actions"))


@torch.no_grad()
def rollouts(world: TrainedWorld, frames: Tensor, actions: Tensor, seed: int = 0) -> dict[str, Tensor]:
    """Generate frames PROMPT_FRAMES.. of clips [B, T, 3, H, W] (float) from their first frames.

    Returns decoded frames [B, T - PROMPT_FRAMES, 3, H, W] from the given actions ("inferred") and from
    uniformly random ones ("random"). Both rollouts draw the same sampling noise (common random numbers),
    so their difference, the ΔtPSNR, measures the actions and not two different draws of the sampler.
    """
    tokens = world.encode(frames)
    P, T = PROMPT_FRAMES, frames.shape[1]
    g = torch.Generator(device=frames.device).manual_seed(seed + 1)
    rand = torch.randint(0, world.dynamics.num_actions, actions.shape, generator=g, device=actions.device)
    rand[:, : P - 1] = actions[:, : P - 1]  # same prompt, random actions only where generating
    out = {}
    for name, acts in (("inferred", actions), ("random", rand)):
        g = torch.Generator(device=frames.device).manual_seed(seed)  # the same noise for both
        gen = world.sample(tokens[:, :P], acts[:, : T - 1], g)
        out[name] = world.decode(torch.cat([tokens[:, :P], gen], 1))[:, P:]
    return out


@torch.no_grad()
def rollout_metrics(
    world: TrainedWorld, batches: Iterable[Batch], rollouts_wanted: int, rt: Runtime = LOCAL
) -> dict[str, float]:
    """Token accuracy and rollout metrics as sums and counts, reduced over ranks (each rank rolls out its
    share of `rollouts_wanted` clips). Each ΔtPSNR and the rollout PSNR also get their standard error over
    clips (`..._se`): with a handful of rollouts it is as large as a ΔtPSNR."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    model = world.dynamics

    def add(key: str, value: Tensor) -> None:
        v = value[torch.isfinite(value)].double()
        sums[key] = sums.get(key, 0.0) + float(v.sum())
        counts[key] = counts.get(key, 0) + v.numel()
        if has_standard_error(key):
            sums[f"{key}_sq"] = sums.get(f"{key}_sq", 0.0) + float((v * v).sum())

    rolled = 0
    for batch in batches:
        x = to_float(batch["frames"])
        tokens = world.encode(x)
        actions = clip_actions(world, batch)
        mask = sample_mask(tokens.shape, VAL_MASK_RATE, VAL_MASK_RATE, batch["noise_seed"])
        logits = model(tokens.masked_fill(mask, model.mask_id), actions)
        add(TOKEN_ACC, (logits.argmax(-1) == tokens)[mask].float())
        if rolled >= -(-rollouts_wanted // rt.world_size):
            continue
        rolled += x.shape[0]
        out = rollouts(world, x, actions)
        real = x[:, PROMPT_FRAMES:]
        moving = (real - x[:, PROMPT_FRAMES - 1 : PROMPT_FRAMES]).abs().amax(2, keepdim=True) > MOVING
        p_inf, p_rand = psnr(out["inferred"], real), psnr(out["random"], real)
        m_inf, m_rand = masked_psnr(out["inferred"], real, moving), masked_psnr(out["random"], real, moving)
        add(ROLLOUT_PSNR, p_inf.mean(1))  # per clip: its standard error is over clips
        add(ROLLOUT_SSIM, ssim(out["inferred"], real))
        for h in range(real.shape[1]):
            add(at_horizon(ROLLOUT_PSNR_AT, h + 1), p_inf[:, h])
            add(at_horizon(DELTA_PSNR_AT, h + 1), p_inf[:, h] - p_rand[:, h])
            add(at_horizon(DELTA_PSNR_MOVING_AT, h + 1), m_inf[:, h] - m_rand[:, h])
    sums = rt.all_sum(sums)
    counts = rt.all_sum({k: float(v) for k, v in counts.items()})
    out = {k: sums[k] / counts[k] for k in counts if counts[k]}
    for k in [k for k in out if has_standard_error(k) and counts[k] >= 2]:  # one clip has no spread
        out[k + SE] = standard_error(out[k], sums[f"{k}_sq"] / counts[k], int(counts[k]))
    return out


@torch.no_grad()
def long_rollouts(world: TrainedWorld) -> tuple[np.ndarray | None, dict[str, float]]:
    """LONG_ROLLOUTS rollouts of LONG_HORIZON frames from starts spread over the validation episodes, with
    the actions inferred from the real frames: the video (real | generated) of the first, and how often each
    object the game is known to have is seen in the last LONG_MEASURED frames: generated
    (`long/<object>_seen`), in the tokenizer's reconstruction of the real frames (`..._seen_tokenizer`, the
    most the dynamics model can show) and in the real frames (`_seen_real`), with the share of pixels off the
    empty court in each (`long/foreground_share*`: junk is seen too)."""
    store, device = world.store, world.device
    length = PROMPT_FRAMES + LONG_HORIZON
    starts = [
        s
        for ep in store.split_episodes("val")
        for s in range(int(store.episodes[ep][0]), int(store.episodes[ep][1]) - length + 1, length)
    ]
    if not starts:
        return None, {}
    picks = evenly_spaced(len(starts), LONG_ROLLOUTS)
    real = np.stack([store.read_frames(starts[i], starts[i] + length) for i in picks])
    batch: Batch = {"frames": torch.from_numpy(real).permute(0, 1, 4, 2, 3).to(device)}
    if store.actions is not None:
        batch["actions"] = torch.from_numpy(
            np.stack([np.asarray(store.actions[starts[i] : starts[i] + length - 1]) for i in picks])
        ).to(device)
    actions = clip_actions(world, batch)
    x = to_float(batch["frames"])
    tokens = world.encode(x[:, :PROMPT_FRAMES])
    gen = world.sample(tokens, actions, torch.Generator(device=device).manual_seed(0))
    generated = world.decode(torch.cat([tokens, gen], 1))[:, PROMPT_FRAMES:]
    video = side_by_side(x[0, PROMPT_FRAMES:], generated[0])
    late = slice(PROMPT_FRAMES + LONG_HORIZON - LONG_MEASURED, None)
    objects = game_objects(store.manifest.get("game"), store.height, store.width)
    if not objects:
        return video, {}
    # the tokenizer's own reconstruction of the real frames: what the dynamics model could at best show
    recon = world.decode(world.encode(x))[:, late]
    background = background_frame(store, device)
    metrics = {}
    shown = (generated[:, late.start - PROMPT_FRAMES :], recon, x[:, late])
    for source, frames in zip(LONG_SOURCES, shown, strict=True):
        for name, seen in objects_seen(to_rgb_uint8(frames), objects).items():
            metrics[long_seen(name, source)] = float(seen.mean())
        # scattered junk also 'shows' objects: the share of pixels off the empty court tells it apart
        metrics[long_seen(FOREGROUND_SHARE, source)] = float(
            foreground_mask(frames, background).float().mean()
        )
    return video, metrics


@torch.no_grad()
def long_play_counts(world: TrainedWorld, frames: int, prompts: int) -> dict[str, float]:
    """`frames` frames of play with held random actions from `prompts` held-out prompts spread over the
    validation split: object counts per window (genie.evaluation.long_play)."""
    val = ClipDataset(world.store, "val", PROMPT_FRAMES, stride=PROMPT_FRAMES)
    picks = evenly_spaced(len(val), prompts)
    batch = {k: torch.stack([val[i][k] for i in picks]).to(world.device) for k in val[0]}
    return long_play(
        world.dynamics,
        world.tokenizer,
        world.store,
        to_float(batch["frames"]),
        clip_actions(world, batch),
        world.sampling,
        window=world.window,
        horizon=frames,
    )
