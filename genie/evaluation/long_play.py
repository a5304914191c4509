"""Long play: does the world stay the game for 1,000 generated frames?

From held-out prompts the world is played with held random actions (a uniform action held for 1..8
steps, like the data's behaviour policy, so no real future is needed), and each generated frame's known
objects are counted (`objects_counted`): a drifting world duplicates the agent's paddle, smears ghosts of
the opponent's or loses the ball, which PSNR and presence cannot see. The shares of frames with exactly
one, and with two or more, of each object are reported per window of the rollout (frames 1-64, 65-256,
257-1,000) beside the same shares in the real validation frames.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from genie.data.store import EpisodeStore
from genie.evaluation.objects import game_objects, objects_counted
from genie.evaluation.video import to_rgb_uint8
from genie.metric_keys import PLAY_HORIZON, PLAY_ROLLOUTS, REAL, play_share
from genie.models.dynamics import DynamicsModel, SamplingConfig
from genie.models.tokenizer import VideoTokenizer

WINDOWS = ((1, 64), (65, 256), (257, 1000))  # generated frames, 1-based, inclusive
MAX_HOLD = 8  # the longest an action is held, as the data's behaviour policy
DECODE_CHUNK = 64  # frames decoded at once
# The long rollouts beside long play (the dynamics evaluation): LONG_ROLLOUTS rollouts of LONG_HORIZON frames
# from starts spread over the validation episodes, actions inferred from the real frames, objects looked
# for in their last LONG_MEASURED frames.
LONG_HORIZON = 64
LONG_ROLLOUTS = 8
LONG_MEASURED = LONG_HORIZON // 4


def held_random_actions(num_actions: int, batch: int, length: int, generator: torch.Generator) -> Tensor:
    """[batch, length] action ids: each a uniform action held for a uniform 1..MAX_HOLD steps."""
    out = torch.empty(batch, length, dtype=torch.long)
    for b in range(batch):
        t = 0
        while t < length:
            hold = int(torch.randint(1, MAX_HOLD + 1, (), generator=generator))
            out[b, t : t + hold] = int(torch.randint(0, num_actions, (), generator=generator))
            t += hold
    return out


@torch.no_grad()
def decode_long(tokenizer: VideoTokenizer, tokens: Tensor) -> np.ndarray:
    """tokens [B, T, N] -> frames uint8 [B, T, H, W, 3], decoded in chunks. Each chunk brings the frames
    its sliding window reaches through every decoder layer, so the result equals one pass over all T."""
    context = (tokenizer.window - 1) * len(tokenizer.decoder.blocks) if tokenizer.window else tokens.shape[1]
    parts = []
    for start in range(0, tokens.shape[1], DECODE_CHUNK):
        begin = max(0, start - context)
        frames = tokenizer.decode(tokens[:, begin : start + DECODE_CHUNK])[:, start - begin :]
        parts.append(to_rgb_uint8(frames))
    return np.concatenate(parts, axis=1)


def count_shares(counts: dict[str, np.ndarray], window: int | str) -> dict[str, float]:
    """Per object, the share of frames holding exactly one of it and the share holding two or more (in the
    window of played frames ending at `window`, or in the REAL frames)."""
    out = {}
    for name, c in counts.items():
        out[play_share(name, "one", window)] = float((c == 1).mean())
        out[play_share(name, "many", window)] = float((c >= 2).mean())
    return out


@torch.no_grad()
def played_frames(
    model: DynamicsModel,
    tokenizer: VideoTokenizer,
    prompt: Tensor,
    prompt_actions: Tensor,
    sampling: SamplingConfig,
    window: int,
    horizon: int,
    seed: int = 0,
) -> np.ndarray:
    """prompt frames [B, P, 3, H, W] in [0, 1] and the actions between them [B, P-1] -> `horizon` frames
    played from them with held random actions, uint8 [B, horizon, H, W, 3]."""
    g = torch.Generator().manual_seed(seed)
    actions = held_random_actions(model.num_actions, prompt.shape[0], horizon, g).to(prompt.device)
    tokens = tokenizer.encode(prompt)
    g = torch.Generator(device=prompt.device).manual_seed(seed)
    generated = model.rollout(
        tokens, torch.cat([prompt_actions, actions], 1), sampling, window=window, generator=g
    )
    return decode_long(tokenizer, torch.cat([tokens, generated], 1))[:, tokens.shape[1] :]


@torch.no_grad()
def long_play(
    model: DynamicsModel,
    tokenizer: VideoTokenizer,
    store: EpisodeStore,
    prompt: Tensor,
    prompt_actions: Tensor,
    sampling: SamplingConfig,
    *,
    window: int,
    horizon: int = WINDOWS[-1][1],
    seed: int = 0,
) -> dict[str, float]:
    """prompt frames [B, P, 3, H, W] in [0, 1] and the actions between them [B, P-1] -> object-count shares
    of `horizon` generated frames per window (`play/<object>_one_t64`, ...) and of the real validation
    frames (`..._real`); {} for a game whose objects are not known."""
    objects = game_objects(store.manifest.get("game"), store.height, store.width)
    if not objects:
        return {}
    frames = played_frames(model, tokenizer, prompt, prompt_actions, sampling, window, horizon, seed)
    counts = objects_counted(frames, objects)
    metrics = {PLAY_HORIZON: float(horizon), PLAY_ROLLOUTS: float(prompt.shape[0])}
    for first, last in WINDOWS:
        if first <= horizon:
            metrics.update(count_shares({k: v[:, first - 1 : last] for k, v in counts.items()}, last))
    real = np.concatenate(
        [store.read_frames(int(s), int(e)) for s, e in store.episodes[store.split_episodes("val")]]
    )
    metrics.update(count_shares(objects_counted(real, objects), REAL))
    return metrics
