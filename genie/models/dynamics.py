"""Dynamics model: MaskGIT over tokenizer tokens, conditioned on latent actions (Genie Sec. 2.1).

tokens [B, T, N] (a frame is N tokens; `mask_id` marks unknown ones) and actions [B, T-1] ->
logits [B, T, N, V] for every token. Action a_t (what happened between frames t and t+1) is an
embedding added to every token of frame t+1 and, with `action_every_block`, it also scales and shifts
every block's norms for that frame (adaptive layer norm), so the action cannot fade in a deep stack.
With causal temporal attention it can change frame t+1 and later, never frame t or earlier. Frame 0,
and any transition whose action is unknown, gets a learned "no action" embedding; trained with actions
dropped to it now and then, the model predicts without the action too, which classifier-free guidance
uses at sampling: logits = uncond + w * (cond - uncond), both branches in one pass over the cache.

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


def sample_mask(
    shape: torch.Size, low: float, high: float, seeds: Tensor, prefix_share: float = 0.0
) -> Tensor:
    """MaskGIT training mask [B, T, N]: each clip draws its own rate from U(low, high) (Genie), then masks
    each token of frames 1.. with that probability; frame 0 is always context. Clip b's draws come from its
    own seed (`seeds[b]`, from the sampler), so a clip gets the same mask on any rank or micro-batch.

    With `prefix_share`, that share of clips also keeps the frames before a random cut frame c (uniform in
    1..T-1) unmasked: play predicts a frame from a whole clean past, which the all-frames mask never shows
    beyond frame 1."""
    B, T, N = shape
    masks = []
    for seed in seeds.tolist():
        g = torch.Generator().manual_seed(seed)
        rate = torch.rand((), generator=g) * (high - low) + low
        mask = torch.rand(T, N, generator=g) < rate
        if prefix_share and torch.rand((), generator=g) < prefix_share:
            mask[: int(torch.randint(1, T, (), generator=g))] = False
        masks.append(mask)
    mask = torch.stack(masks).to(seeds.device)
    mask[:, 0] = False
    return mask


@dataclass
class SamplingConfig:
    steps: int = 25  # MaskGIT rounds per frame (Genie: 25); 1 = one-step
    temperature: float = 1.0  # 0 = greedy (argmax)
    schedule: str = "cosine"  # share of tokens still masked after round s: cosine | linear
    guidance: float = 1.0  # classifier-free guidance weight on the action; 1 = off (one branch)
    top_p: float = 1.0  # nucleus: sample each token among its likeliest tokens holding this mass; 1 = off

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"maskgit steps {self.steps}: expected at least 1")
        if not 0 <= self.temperature < math.inf:
            raise ValueError(f"temperature {self.temperature}: expected a finite number >= 0")
        if not 0 <= self.guidance < math.inf:
            raise ValueError(f"guidance {self.guidance}: expected a finite number >= 0 (1 = off)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p {self.top_p}: expected a number in (0, 1] (1 = off)")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule {self.schedule!r}: expected cosine or linear")

    def masked_after(self, s: int, n: int) -> int:
        """Tokens left masked after round s (0-based) of `steps`, out of n."""
        r = (s + 1) / self.steps
        share = math.cos(math.pi / 2 * r) if self.schedule == "cosine" else 1 - r
        return min(n - 1, int(n * share)) if s + 1 < self.steps else 0


def nucleus(logits: Tensor, top_p: float) -> Tensor:
    """logits [..., V] with every token outside the smallest set of likeliest tokens whose probability
    reaches `top_p` set to -inf (Holtzman et al., 2020): each token's rare alternatives, drawn
    independently over a frame's 144 tokens, are where spurious objects come from."""
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    outside = probs.cumsum(dim=-1) - probs >= top_p  # the mass before this token already reached top_p
    return logits.masked_fill(torch.zeros_like(outside).scatter(-1, order, outside), -math.inf)


class DynamicsModel(nn.Module):
    def __init__(
        self,
        cfg: TransformerConfig,
        *,
        vocab_size: int,
        num_actions: int,
        num_patches: int,
        action_every_block: bool = False,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        d = cfg.d_model
        self.vocab_size, self.num_actions, self.num_patches = vocab_size, num_actions, num_patches
        self.mask_id = vocab_size  # one extra embedding row for "unknown token"
        self.null_action = num_actions  # the action embedding's last row: "no action"
        self.token_embed = nn.Embedding(vocab_size + 1, d)
        self.action_embed = nn.Embedding(num_actions + 1, d)
        self.pos = nn.Parameter(torch.randn(num_patches, d) * 0.02)
        self.action_every_block = action_every_block
        self.transformer = STTransformer(
            cfg, causal=True, checkpointing=checkpointing, conditioned=action_every_block
        )
        self.head = nn.Linear(d, vocab_size)

    def _embed(self, tokens: Tensor, frame_actions: Tensor) -> tuple[Tensor, Tensor | None]:
        """tokens [B, T, N], frame_actions [B, T] (the action that led to each frame) -> inputs [B, T, N, D]
        and the blocks' condition [B, T, D] (None when the action enters at the input only)."""
        action = self.action_embed(frame_actions)
        x = self.token_embed(tokens) + self.pos + action[:, :, None]
        return x, (action if self.action_every_block else None)

    def forward(self, tokens: Tensor, actions: Tensor, where: Tensor | None = None) -> Tensor:
        """tokens [B, T, N] (may hold mask_id), actions [B, T-1] (may hold null_action) -> logits
        [B, T, N, V]; with `where` (bool [B, T, N]) only the logits of those tokens, [M, V] in row-major
        order: training scores only the masked tokens, so the head and the softmax skip the rest."""
        B = tokens.shape[0]
        start = torch.full((B, 1), self.null_action, dtype=actions.dtype, device=actions.device)
        x, cond = self._embed(tokens, torch.cat([start, actions], dim=1))
        h = self.transformer(x, cond=cond)
        return self.head(h if where is None else h[where])

    # --- generation ---

    def _frame_logits(
        self, tokens: Tensor, action: Tensor, cache: FrameCache, null_branch: bool = False
    ) -> tuple[Tensor, list]:
        """One frame tokens [B, N] led to by action [B] -> logits [B, N, V] and its (k, v) per block.

        A pending frame of the cache (generated, not cached yet) rides along in the same pass, ahead of
        this one, and joins the cache: the same result as caching it first, one pass fewer. With
        `null_branch` the same frame led to by "no action" rides along too, at the same position (unseen
        by the first branch): logits [B, 2, N, V], the action's branch first (classifier-free guidance).
        """
        frames = [(tokens, action)]
        if null_branch:
            frames.append((tokens, torch.full_like(action, self.null_action)))
        pending, cache.pending = cache.pending, None
        if pending is not None:
            frames.insert(0, pending)
        x, cond = self._embed(torch.stack([f[0] for f in frames], 1), torch.stack([f[1] for f in frames], 1))
        position = cache.position + (pending is not None)
        positions = torch.tensor([cache.position] * (pending is not None) + [position] * (1 + null_branch))
        h, kv = self.transformer.forward_cached(
            x, positions.to(x.device), cache.layers or None, cache.window, cond
        )
        if pending is not None:
            cache.append([(k[:, :, :1], v[:, :, :1]) for k, v in kv])
            kv = [(k[:, :, 1:2], v[:, :, 1:2]) for k, v in kv]
        else:
            kv = [(k[:, :, :1], v[:, :, :1]) for k, v in kv]
        logits = self.head(h[:, -(1 + null_branch) :])
        return (logits if null_branch else logits[:, 0]), kv

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
        guided = sampling.guidance != 1.0
        for s in range(sampling.steps):
            logits = self._frame_logits(tokens, action, cache, null_branch=guided)[0].float()
            if guided:
                cond, uncond = logits.unbind(1)
                logits = uncond + sampling.guidance * (cond - uncond)
            if sampling.temperature > 0:
                logits = logits / sampling.temperature
                if sampling.top_p < 1:
                    logits = nucleus(logits, sampling.top_p)
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
        none = torch.full((B,), self.null_action, dtype=torch.long, device=prompt.device)
        for t in range(P):
            self.observe(prompt[:, t], none if t == 0 else actions[:, t - 1], cache)
        frames = [self.sample_next(actions[:, P - 1 + h], cache, sampling, generator) for h in range(H)]
        return torch.stack(frames, dim=1)
