"""Dynamics model: MaskGIT over tokenizer tokens, conditioned on latent actions (Genie Sec. 2.1).

tokens [B, T, N] (a frame is N tokens; `mask_id` marks unknown ones) and actions [B, T-1] ->
logits [B, T, N, V] for every token. Action a_t (what happened between frames t and t+1) is an
embedding added to every token of frame t+1, so with causal temporal attention it can change
frame t+1 and later, never frame t or earlier. Frame 0 gets a learned "no action" embedding.

Generation runs one frame at a time: MaskGIT starts from an all-masked frame and, over `steps`
rounds, keeps the most confident sampled tokens (cosine schedule). Past frames are cached as
per-layer temporal keys/values (`FrameCache`), so each round runs the network over the new frame only.
The cache keeps the last `window` - 1 frames (the training clip length): rotary positions make
attention depend on frame offsets only, so offsets stay within what training saw. Deeper layers'
cached keys still carry what those frames saw before the window, as in sliding-window attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genie.config import TransformerConfig
from genie.models.st_transformer import FrameCache, STTransformer


@dataclass
class SamplingConfig:
    steps: int = 25  # MaskGIT rounds per frame (Genie: 25); 1 = one-step
    temperature: float = 1.0  # 0 = greedy (argmax)
    schedule: str = "cosine"  # share of tokens still masked after round s: cosine | linear

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"maskgit steps {self.steps}: expected at least 1")
        if not self.temperature >= 0:
            raise ValueError(f"temperature {self.temperature}: expected a number >= 0")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule {self.schedule!r}: expected cosine or linear")

    def masked_after(self, s: int, n: int) -> int:
        """Tokens left masked after round s (0-based) of `steps`, out of n."""
        r = (s + 1) / self.steps
        share = math.cos(math.pi / 2 * r) if self.schedule == "cosine" else 1 - r
        return min(n - 1, int(n * share)) if s + 1 < self.steps else 0


class DynamicsModel(nn.Module):
    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        vocab_size: int,
        num_actions: int,
        num_patches: int,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        d = cfg.d_model
        self.vocab_size, self.num_actions, self.num_patches = vocab_size, num_actions, num_patches
        self.mask_id = vocab_size  # one extra embedding row for "unknown token"
        self.token_embed = nn.Embedding(vocab_size + 1, d)
        self.action_embed = nn.Embedding(num_actions + 1, d)  # last row: "no action" for frame 0
        self.pos = nn.Parameter(torch.randn(num_patches, d) * 0.02)
        self.transformer = STTransformer(cfg, causal=True, checkpointing=checkpointing)
        self.head = nn.Linear(d, vocab_size)

    def _embed(self, tokens: Tensor, frame_actions: Tensor) -> Tensor:
        """tokens [B, T, N], frame_actions [B, T] (the action that led to each frame) -> [B, T, N, D]."""
        return self.token_embed(tokens) + self.pos + self.action_embed(frame_actions)[:, :, None]

    def forward(self, tokens: Tensor, actions: Tensor) -> Tensor:
        """tokens [B, T, N] (may hold mask_id), actions [B, T-1] -> logits [B, T, N, V]."""
        B = tokens.shape[0]
        start = torch.full((B, 1), self.num_actions, dtype=actions.dtype, device=actions.device)
        x = self._embed(tokens, torch.cat([start, actions], dim=1))
        return self.head(self.transformer(x))

    # --- generation ---

    def _frame_logits(self, tokens: Tensor, action: Tensor, cache: FrameCache) -> tuple[Tensor, list]:
        """One frame tokens [B, N] led to by action [B] -> logits [B, N, V] and its (k, v) per block.

        A pending frame of the cache (generated, not cached yet) rides along in the same pass, ahead of
        this one, and joins the cache: the same result as caching it first, one pass fewer.
        """
        x = self._embed(tokens[:, None], action[:, None])
        pending, cache.pending = cache.pending, None
        if pending is not None:
            x = torch.cat([self._embed(pending[0][:, None], pending[1][:, None]), x], dim=1)
        h, kv = self.transformer.forward_cached(x, cache.position, cache.layers or None, cache.window)
        if pending is not None:
            cache.append([(k[:, :, :1], v[:, :, :1]) for k, v in kv])
            kv = [(k[:, :, 1:], v[:, :, 1:]) for k, v in kv]
        return self.head(h[:, -1]), kv

    @torch.no_grad()
    def observe(self, tokens: Tensor, action: Tensor, cache: FrameCache) -> None:
        """Add a known frame tokens [B, N], led to by action [B] (num_actions for none), to the cache."""
        cache.append(self._frame_logits(tokens, action, cache)[1])

    @torch.no_grad()
    def sample_next(
        self,
        action: Tensor,
        cache: FrameCache,
        sampling: SamplingConfig,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """MaskGIT: the next frame's tokens [B, N] after action [B], given the cached past. It joins the cache
        (as its pending frame) for the frame after."""
        B, N = action.shape[0], self.num_patches
        tokens = torch.full((B, N), self.mask_id, dtype=torch.long, device=action.device)
        masked = torch.ones(B, N, dtype=torch.bool, device=action.device)
        for s in range(sampling.steps):
            logits = self._frame_logits(tokens, action, cache)[0].float()
            if sampling.temperature > 0:
                logits = logits / sampling.temperature
                # Gumbel-max: argmax(logits + Gumbel noise) is a sample of softmax(logits), 3x faster here
                # than torch.multinomial at 144 tokens x 512 codes (measured: 0.7 vs 2.1 ms a round).
                u = torch.rand(logits.shape, generator=generator, device=logits.device)
                sampled = (logits - u.clamp_min_(1e-20).log_().neg_().log_()).argmax(-1)
            else:
                sampled = logits.argmax(-1)
            probs = torch.softmax(logits, dim=-1)
            confidence = probs.gather(-1, sampled[..., None])[..., 0]
            tokens = torch.where(masked, sampled, tokens)
            confidence = torch.where(masked, confidence, torch.full_like(confidence, math.inf))
            keep_masked = sampling.masked_after(s, N)
            masked = torch.zeros_like(masked)
            if keep_masked:
                masked.scatter_(1, confidence.argsort(dim=-1)[:, :keep_masked], True)
                tokens = tokens.masked_fill(masked, self.mask_id)
        cache.pending = (tokens, action)  # cached by the next pass (see _frame_logits)
        return tokens

    @torch.no_grad()
    def rollout(
        self,
        prompt: Tensor,
        actions: Tensor,
        sampling: SamplingConfig,
        *,
        window: int,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """prompt tokens [B, P, N] and actions [B, P-1+H] -> generated tokens [B, H, N].

        actions[:, t] leads from frame t to t+1, as in training; the first P-1 belong to the prompt.
        """
        B, P, _ = prompt.shape
        H = actions.shape[1] - (P - 1)
        cache = FrameCache(window)
        none = torch.full((B,), self.num_actions, dtype=torch.long, device=prompt.device)
        for t in range(P):
            self.observe(prompt[:, t], none if t == 0 else actions[:, t - 1], cache)
        frames = [self.sample_next(actions[:, P - 1 + h], cache, sampling, generator) for h in range(H)]
        return torch.stack(frames, dim=1)
