"""Latent action model (Genie Sec. 2.2): infers one discrete action per frame transition, from pixels alone.

Encoder: a causal ST transformer over frames x_1..x_T with one learned action token per frame (as Jafar's
LAM); the token of frame t+1, which causally has seen x_1..x_{t+1}, becomes the latent action of the
transition t -> t+1 after quantisation to one of a handful of codes. Decoder: a causal ST transformer over
the last `decoder_context` frames up to x_t, with the action added to frame t's patch embeddings; it
predicts x_{t+1} as x_t plus a change, so copying the static court costs nothing and all capacity goes to
what moves. Frames whose rows or columns do not divide by the patch are padded and the output cropped.

Axis letters: b batch, t time (frames or transitions), n patches per frame, d model width, k window frames,
c channels, h rows, w columns.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn

from genie.config import LamModelConfig
from genie.errors import GenieError
from genie.models.quantizer import QuantizerOutput, VectorQuantizer
from genie.models.st_transformer import STTransformer, patchify, unpatchify


@dataclass
class LamOutput:
    prediction: Tensor  # [B, T-1, 3, H, W] frames 2..T, unclamped (B: the clips asked to reconstruct)
    actions: Tensor  # [B, T-1] int64, the latent action of each transition
    latents: Tensor  # [B, T-1, code dim], before quantisation
    similarity: Tensor  # [B, T-1, num codes] cosine of each latent to each code (the few-label mode's logits)
    vq: QuantizerOutput


class LatentActionModel(nn.Module):
    def __init__(self, cfg: LamModelConfig, *, height: int, width: int, checkpointing: bool = False) -> None:
        super().__init__()
        p, enc, dec, cb = cfg.patch_size, cfg.encoder, cfg.decoder, cfg.codebook
        self.patch_size, self.height, self.width = p, height, width
        self.padded_height, self.padded_width = height + (-height) % p, width + (-width) % p
        num_patches = (self.padded_height // p) * (self.padded_width // p)
        self.context = cfg.decoder_context
        self.num_actions = cb.num_codes

        # --- encoder: patches + one action token per frame ---
        self.patch_embed = nn.Linear(3 * p * p, enc.d_model)
        self.action_token = nn.Parameter(torch.randn(enc.d_model) * 0.02)
        self.enc_pos = nn.Parameter(torch.randn(num_patches + 1, enc.d_model) * 0.02)
        self.encoder = STTransformer(enc, causal=True, checkpointing=checkpointing)
        self.to_latent = nn.Linear(enc.d_model, cb.latent_dim)
        self.quantizer = VectorQuantizer(
            cb.num_codes, cb.latent_dim, decay=cb.decay, dead_threshold=cb.dead_threshold
        )
        # --- decoder: past frames + the action -> the change to the next frame ---
        self.dec_patch_embed = nn.Linear(3 * p * p, dec.d_model)
        self.dec_pos = nn.Parameter(torch.randn(num_patches, dec.d_model) * 0.02)
        self.action_embed = nn.Linear(cb.latent_dim, dec.d_model)
        self.decoder = STTransformer(dec, causal=True, checkpointing=checkpointing)
        self.to_pixels = nn.Linear(dec.d_model, 3 * p * p)
        nn.init.zeros_(self.to_pixels.weight)  # start as a copy of x_t, the baseline to improve on
        nn.init.zeros_(self.to_pixels.bias)

    def _check(self, frames: Tensor) -> None:
        if frames.ndim != 5 or frames.shape[2] != 3 or frames.shape[-2:] != (self.height, self.width):
            raise GenieError(
                f"the LAM expects frames [B, T, 3, {self.height}, {self.width}], got {list(frames.shape)}"
            )
        if frames.shape[1] < 2:
            raise GenieError(
                f"the LAM needs clips of at least 2 frames (one transition), got {frames.shape[1]}"
            )

    def _pad(self, frames: Tensor) -> Tensor:
        """[B, T, 3, H, W] -> [B, T, 3, H', W'] zero-padded at the bottom/right to multiples of the patch."""
        return F.pad(frames, (0, self.padded_width - self.width, 0, self.padded_height - self.height))

    def _encode(self, x: Tensor) -> Tensor:
        """Padded frames [B, T, 3, H', W'] -> pre-quantisation actions [B, T-1, code dim]."""
        B, T = x.shape[:2]
        patches = self.patch_embed(patchify(x, self.patch_size))  # (b, t, n, d)
        token = repeat(self.action_token, "d -> b t 1 d", b=B, t=T)
        h = self.encoder(torch.cat([token, patches], dim=2) + self.enc_pos)  # (b, t, 1 + n, d)
        return self.to_latent(h[:, 1:, 0] - h[:, :-1, 0])  # frame t+1's token minus frame t's

    def _decode(self, x: Tensor, codes: Tensor) -> Tensor:
        """Padded frames [B, T, 3, H', W'], codes [B, T-1, code dim] -> frames 2..T [B, T-1, 3, H, W]."""
        B, k, p = x.shape[0], self.context, self.patch_size
        past = x[:, :-1]  # (b, t-1, c, h, w): the frame before each transition
        # Each transition sees only its window of k frames ending at x_t; black frames stand in before x_1.
        windows = F.pad(past, (0, 0, 0, 0, 0, 0, k - 1, 0)).unfold(1, k, 1)  # (b, t-1, c, h, w, k)
        windows = rearrange(windows, "b t c h w k -> (b t) k c h w")
        h = self.dec_patch_embed(patchify(windows, p)) + self.dec_pos  # ((b t), k, n, d)
        action = rearrange(self.action_embed(codes.to(h.dtype)), "b t d -> (b t) 1 1 d")
        h = torch.cat([h[:, :-1], h[:, -1:] + action], dim=1)  # the action joins frame t's patches
        change = self.to_pixels(self.decoder(h)[:, -1])  # ((b t), n, c p p)
        change = rearrange(change, "(b t) n e -> b t n e", b=B)
        pred = past + unpatchify(change, p, self.padded_height, self.padded_width)
        return pred[..., : self.height, : self.width]

    def forward(self, frames: Tensor, reconstruct: int | None = None) -> LamOutput:
        """frames [B, T, 3, H, W] in [0, 1] -> predicted frames 2..T, one action per transition, VQ losses.

        reconstruct: decode only the first that many clips (the prediction is [reconstruct, T-1, ...]); the
        rest are only encoded. The few-label mode's labelled clips need only their actions, and the decoder,
        which sees two frames per transition, is ~2/3 of the model's work."""
        self._check(frames)
        if reconstruct is not None and not 0 < reconstruct <= len(frames):
            raise GenieError(f"reconstruct {reconstruct}: expected 1..{len(frames)} (the clips given)")
        x = self._pad(frames)
        z = self._encode(x)
        vq = self.quantizer(z)
        similarity = F.normalize(z.float(), dim=-1) @ self.quantizer.codes().t()
        n = len(x) if reconstruct is None else reconstruct
        return LamOutput(self._decode(x[:n], vq.quantized[:n]), vq.indices, z, similarity, vq)

    @torch.no_grad()
    def infer_actions(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] in [0, 1] -> latent actions [B, T-1] int64."""
        self._check(frames)
        return self.quantizer(self._encode(self._pad(frames))).indices

    @torch.no_grad()
    def decode(self, frames: Tensor, actions: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] in [0, 1], actions [B, T-1] int64 -> predicted frames 2..T, in [0, 1].

        Frame t+1 is predicted from frames up to t and actions[t] only (frame t+1 itself is not read),
        so any actions can be tried: the gain over random actions measures how much the decoder uses them.
        """
        self._check(frames)
        codes = self.quantizer.indices_to_codes(actions)
        return self._decode(self._pad(frames), codes).clamp(0, 1)
