"""The spatio-temporal (ST) transformer shared by the tokenizer, the LAM and the dynamics model.

Genie (Bruce et al., 2024, Sec. 2.1) factorises attention: each block attends among the patches of
one frame (spatial), then across frames at the same patch position (temporal, causal), then an MLP.
Cost is O(T·N² + N·T²) instead of O((T·N)²).

Axis letters: b batch, t time (frames), n patches per frame, d model width, h heads, p patch size.
Temporal positions are rotary (RoPE), so attention depends on frame *offsets* only: a sliding
window of cached past frames keeps valid positions during play.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from genie.config import TransformerConfig

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


def patchify(x: Tensor, p: int) -> Tensor:
    """[B, T, C, H, W] -> [B, T, N, C*p*p] with N = (H/p)*(W/p), row-major patches."""
    return rearrange(x, "b t c (nh p1) (nw p2) -> b t (nh nw) (c p1 p2)", p1=p, p2=p)


def unpatchify(x: Tensor, p: int, height: int, width: int) -> Tensor:
    """[B, T, N, C*p*p] -> [B, T, C, H, W]; the inverse of `patchify`."""
    return rearrange(x, "b t (nh nw) (c p1 p2) -> b t c (nh p1) (nw p2)", nh=height // p, p1=p, p2=p)


def rotary_cos_sin(positions: Tensor, head_dim: int) -> tuple[Tensor, Tensor]:
    """cos/sin tables [len(positions), head_dim] for RoPE over (possibly non-contiguous) positions; the sin
    table's first half is negated, which turns rotate-half into a roll (`apply_rotary`)."""
    inv_freq = 1.0 / (10000 ** (torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim))
    angles = positions.float()[:, None] * inv_freq[None, :]  # (t, hd/2)
    return torch.cat([angles, angles], dim=-1).cos(), torch.cat([-angles, angles], dim=-1).sin()


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate the last dim of x [..., t, hd] by the tables [t, hd] of `rotary_cos_sin`: each pair
    (x_i, x_{i+hd/2}) turns by its angle, x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (GPT-NeoX's half-split
    layout). The roll and the signed sin table do rotate-half's chunk, negation and concatenation in one
    copy (2-4% off a tiny stack's step, benchmarks/README.md)."""
    xf = x.float()
    return torch.addcmul(xf * cos, xf.roll(x.shape[-1] // 2, dims=-1), sin).to(x.dtype)


def window_mask(queries: Tensor, keys: Tensor, window: int) -> Tensor:
    """Bool [len(queries), len(keys)] over frame positions: True where a query frame may attend to a key
    frame, i.e. the key is the query itself or one of the `window` - 1 frames before it."""
    offset = queries[:, None] - keys[None, :]
    return (offset >= 0) & (offset < window)


class Attention(nn.Module):
    """Multi-head self-attention with optional QK-norm and rotary positions."""

    def __init__(self, dim: int, heads: int, *, qk_norm: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.proj = nn.Linear(dim, dim)
        self.q_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.dropout = dropout

    def project(
        self, x: Tensor, rotary: tuple[Tensor, Tensor] | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, L, D] -> q, k, v [B, h, L, hd], normed and rotated."""
        q, k, v = rearrange(self.qkv(x), "b l (three h d) -> three b h l d", three=3, h=self.heads)
        q, k = self.q_norm(q), self.k_norm(k)
        if rotary is not None:
            q, k = apply_rotary(q, *rotary), apply_rotary(k, *rotary)
        return q, k, v

    def attend(
        self, q: Tensor, k: Tensor, v: Tensor, *, causal: bool = False, mask: Tensor | None = None
    ) -> Tensor:
        """Heads q [B, h, Lq, hd], k/v [B, h, Lk, hd] -> [B, Lq, D]; mask [Lq, Lk] bool: True may attend."""
        drop = self.dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=drop)
        return self.proj(rearrange(out, "b h l d -> b l (h d)"))

    def forward(
        self,
        x: Tensor,
        *,
        causal: bool = False,
        rotary: tuple[Tensor, Tensor] | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """x [B, L, D] -> [B, L, D]; `rotary` = (cos, sin) tables of the L positions; `mask` [L, L] bool
        (True may attend) replaces `causal`."""
        return self.attend(*self.project(x, rotary), causal=causal and mask is None, mask=mask)


class MLP(nn.Sequential):
    def __init__(self, dim: int, hidden: int, activation: str, dropout: float) -> None:
        super().__init__(
            nn.Linear(dim, hidden), _ACTIVATIONS[activation](), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )


class STBlock(nn.Module):
    """Spatial attention within each frame, temporal attention across frames, then MLP (pre-norm).

    `conditioned`: each frame's condition [B, T, D] (the dynamics model's action) scales and shifts the
    three pre-norms of that frame (adaptive layer norm, as DiT), so the condition reaches every block
    instead of fading after the input. The modulation starts at zero: at init the block is the plain one.
    """

    def __init__(self, cfg: TransformerConfig, *, causal: bool, conditioned: bool = False) -> None:
        super().__init__()
        d = cfg.d_model
        self.causal = causal
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.spatial = Attention(d, cfg.num_heads, qk_norm=cfg.qk_normalization, dropout=cfg.dropout)
        self.temporal = Attention(d, cfg.num_heads, qk_norm=cfg.qk_normalization, dropout=cfg.dropout)
        self.mlp = MLP(d, cfg.dim_feedforward, cfg.activation, cfg.dropout)
        self.drop = nn.Dropout(cfg.dropout)
        self.modulation: nn.Module | None = None
        if conditioned:
            self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
            nn.init.zeros_(self.modulation[1].weight)
            nn.init.zeros_(self.modulation[1].bias)

    def _modulations(self, cond: Tensor | None) -> Tensor | None:
        """cond [B, T, D] -> [6, B, T, 1, D]: (scale, shift) of each pre-norm, per frame (None: plain)."""
        if cond is None or self.modulation is None:
            return None
        return rearrange(self.modulation(cond), "b t (k d) -> k b t 1 d", k=6)

    @staticmethod
    def _norm(norm: nn.LayerNorm, x: Tensor, mods: Tensor | None, i: int) -> Tensor:
        """Pre-norm i of x [B, T, N, D], scaled and shifted by its modulation."""
        return norm(x) if mods is None else norm(x) * (1 + mods[2 * i]) + mods[2 * i + 1]

    def forward(
        self,
        x: Tensor,
        rotary: tuple[Tensor, Tensor],
        mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> Tensor:
        """x [B, T, N, D] -> [B, T, N, D]; `mask` [T, T] bool: which frames each frame sees (None: causal
        or all, as built); `cond` [B, T, D] for a conditioned block."""
        B, mods = x.shape[0], self._modulations(cond)
        # --- spatial attention: patches of one frame ---
        h = rearrange(self._norm(self.norm1, x, mods, 0), "b t n d -> (b t) n d")
        x = x + self.drop(rearrange(self.spatial(h), "(b t) n d -> b t n d", b=B))
        # --- temporal attention: one patch position across frames ---
        h = rearrange(self._norm(self.norm2, x, mods, 1), "b t n d -> (b n) t d")
        h = self.temporal(h, causal=self.causal, rotary=rotary, mask=mask)
        x = x + self.drop(rearrange(h, "(b n) t d -> b t n d", b=B))
        # --- feedforward ---
        return x + self.drop(self.mlp(self._norm(self.norm3, x, mods, 2)))

    def forward_cached(
        self,
        x: Tensor,
        rotary: tuple[Tensor, Tensor],
        past: tuple[Tensor, Tensor] | None,
        mask: Tensor | None = None,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """New frames x [B, T, N, D] against cached past keys/values [(B N), h, P, hd]; `mask` [T, P+T]
        says which keys each new frame sees (None: all, for one new frame); `cond` [B, T, D].

        Returns the block output and the new frames' own (k, v). Equals `forward` over the whole clip at
        its last frames (causal), at the cost of the new frames instead of all of them.
        """
        B, mods = x.shape[0], self._modulations(cond)
        h = rearrange(self._norm(self.norm1, x, mods, 0), "b t n d -> (b t) n d")
        x = x + rearrange(self.spatial(h), "(b t) n d -> b t n d", b=B)
        h = rearrange(self._norm(self.norm2, x, mods, 1), "b t n d -> (b n) t d")
        q, k, v = self.temporal.project(h, rotary)
        keys, values = (k, v) if past is None else (torch.cat([past[0], k], 2), torch.cat([past[1], v], 2))
        x = x + rearrange(self.temporal.attend(q, keys, values, mask=mask), "(b n) t d -> b t n d", b=B)
        return x + self.mlp(self._norm(self.norm3, x, mods, 2)), (k, v)


@dataclass
class FrameCache:
    """Temporal keys/values of past frames for each block, trimmed to a sliding window of frames."""

    window: int
    layers: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # per block: k, v [(B N), h, P, hd]
    position: int = 0  # temporal position of the next frame to join the cache
    # A generated frame not cached yet (tokens [B, N], action [B]): it joins in the next frame's first
    # pass, batched with it, which saves one pass of the network per generated frame.
    pending: tuple[Tensor, Tensor] | None = None

    @property
    def next_position(self) -> int:
        """Temporal position of the next frame to generate (after the pending one, if any)."""
        return self.position + (self.pending is not None)

    def append(self, new: list[tuple[Tensor, Tensor]]) -> None:
        """Add frames' (k, v) per block [(B N), h, t, hd]; keep the last window - 1 frames."""
        keep = self.window - 1
        if not self.layers:
            self.layers = [(k[:, :, -keep:], v[:, :, -keep:]) for k, v in new]
        else:
            self.layers = [
                (torch.cat([k, nk], 2)[:, :, -keep:], torch.cat([v, nv], 2)[:, :, -keep:])
                for (k, v), (nk, nv) in zip(self.layers, new, strict=True)
            ]
        self.position += new[0][0].shape[2]


class STTransformer(nn.Module):
    """A stack of `STBlock`s with a final norm; optional activation checkpointing per block."""

    def __init__(
        self, cfg: TransformerConfig, *, causal: bool, checkpointing: bool = False, conditioned: bool = False
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            STBlock(cfg, causal=causal, conditioned=conditioned) for _ in range(cfg.num_layers)
        )
        self.norm = nn.LayerNorm(cfg.d_model)
        self.head_dim = cfg.d_model // cfg.num_heads
        self.causal = causal
        self.checkpointing = checkpointing

    def forward(self, x: Tensor, window: int | None = None, cond: Tensor | None = None) -> Tensor:
        """x [B, T, N, D] -> [B, T, N, D]; `cond` [B, T, D]: each frame's condition (conditioned blocks).

        With `window` (a causal model's training clip length), a clip longer than it is run as a sliding
        window: each frame sees itself and the window - 1 frames before it, never temporal offsets that
        training did not show. The same as `forward_cached` with a cache of that window, frame by frame.
        """
        T = x.shape[1]
        rotary = rotary_cos_sin(torch.arange(T, device=x.device), self.head_dim)
        mask = None
        if window is not None and window < T:
            if not self.causal:
                raise ValueError("a sliding window needs a causal transformer")
            frames = torch.arange(T, device=x.device)
            mask = window_mask(frames, frames, window)
        for block in self.blocks:
            if self.checkpointing and self.training:
                x = checkpoint(block, x, rotary, mask, cond, use_reentrant=False)
            else:
                x = block(x, rotary, mask, cond)
        return self.norm(x)

    def forward_cached(
        self,
        x: Tensor,
        position: int | Tensor,
        past: list[tuple[Tensor, Tensor]] | None,
        window: int | None = None,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
        """New frames x [B, T, N, D] from temporal `position` on, given each block's cached past (k, v);
        `cond` [B, T, D] for conditioned blocks.

        Each new frame sees the cached frames and the new ones up to itself, at most `window` frames in
        all. Rotary positions make attention depend on offsets only, so a cache trimmed to a sliding
        window stays valid. `position` may also be one position per new frame [T] (non-decreasing, the
        first right after the cache): new frames sharing a position are alternatives of one frame
        (classifier-free guidance's two branches) and do not see each other.
        Returns [B, T, N, D] and the new frames' (k, v) for each block.
        """
        T, P = x.shape[1], (past[0][0].shape[2] if past else 0)
        if isinstance(position, int):
            position = torch.arange(position, position + T, device=x.device)
        first = int(position[0])
        rotary = rotary_cos_sin(position, self.head_dim)
        mask = None
        if T > 1 or (window is not None and window <= P):
            keys = torch.cat([torch.arange(first - P, first, device=x.device), position])
            mask = window_mask(position, keys, window if window is not None else P + T)
            alternatives = (position[:, None] == position[None, :]) & ~torch.eye(T, dtype=torch.bool)
            mask[:, P:] &= ~alternatives.to(x.device)
        new_kv = []
        for i, block in enumerate(self.blocks):
            x, kv = block.forward_cached(x, rotary, past[i] if past else None, mask, cond)
            new_kv.append(kv)
        return self.norm(x), new_kv
