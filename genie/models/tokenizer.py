"""Video tokenizer: an ST-ViViT VQ-VAE (Genie Sec. 2.1) that turns clips into discrete tokens.

frames [B, T, 3, H, W] in [0, 1] -> patches -> causal ST encoder -> VQ (one token per patch per frame)
-> causal ST decoder -> pixels. Causal in time, so frame t's tokens depend only on frames <= t,
which is what the dynamics model needs when it generates one frame at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from genie.config import TokenizerModelConfig
from genie.models.quantizer import QuantizerOutput, VectorQuantizer
from genie.models.st_transformer import FrameCache, STTransformer, patchify, unpatchify


@dataclass
class TokenizerOutput:
    reconstruction: Tensor  # [B, T, 3, H, W], unclamped
    indices: Tensor  # [B, T, N]
    latents: Tensor  # [B, T, N, code dim], before quantisation
    vq: QuantizerOutput


class VideoTokenizer(nn.Module):
    def __init__(
        self,
        cfg: TokenizerModelConfig,
        *,
        height: int,
        width: int,
        window: int | None = None,
        checkpointing: bool = False,
    ) -> None:
        """`window`: the training clip length; longer clips are encoded and decoded as a sliding window of
        it (measured: decoded all at once, 64 frames lost the ball in 9 of 10 frames that showed it)."""
        super().__init__()
        p, enc, dec, cb = cfg.patch_size, cfg.encoder, cfg.decoder, cfg.codebook
        self.patch_size, self.height, self.width, self.window = p, height, width, window
        self.grid = (height // p, width // p)  # patches a column, a row: tokens are this grid, row-major
        self.num_patches = self.grid[0] * self.grid[1]
        self.vocab_size = cb.num_codes

        self.patch_embed = nn.Linear(3 * p * p, enc.d_model)
        self.enc_pos = nn.Parameter(torch.randn(self.num_patches, enc.d_model) * 0.02)
        self.encoder = STTransformer(enc, causal=True, checkpointing=checkpointing)
        self.to_latent = nn.Linear(enc.d_model, cb.latent_dim)
        self.quantizer = VectorQuantizer(
            cb.num_codes,
            cb.latent_dim,
            decay=cb.decay,
            dead_threshold=cb.dead_threshold,
        )
        self.from_latent = nn.Linear(cb.latent_dim, dec.d_model)
        self.dec_pos = nn.Parameter(torch.randn(self.num_patches, dec.d_model) * 0.02)
        self.decoder = STTransformer(dec, causal=True, checkpointing=checkpointing)
        self.to_pixels = nn.Linear(dec.d_model, 3 * p * p)

    def _encode(self, frames: Tensor) -> tuple[Tensor, QuantizerOutput]:
        x = self.patch_embed(patchify(frames, self.patch_size)) + self.enc_pos  # (b, t, n, d)
        z = self.to_latent(self.encoder(x, self.window))  # (b, t, n, code dim)
        return z, self.quantizer(z)

    def _decode(self, codes: Tensor) -> Tensor:
        x = self.from_latent(codes.to(self.from_latent.weight.dtype)) + self.dec_pos
        return unpatchify(
            self.to_pixels(self.decoder(x, self.window)), self.patch_size, self.height, self.width
        )

    def forward(self, frames: Tensor) -> TokenizerOutput:
        """frames [B, T, 3, H, W] in [0, 1] -> reconstruction, tokens and VQ losses."""
        z, vq = self._encode(frames)
        return TokenizerOutput(self._decode(vq.quantized), vq.indices, z, vq)

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] in [0, 1] -> tokens [B, T, N] int64."""
        return self._encode(frames)[1].indices

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """tokens [B, T, N] int64 -> frames [B, T, 3, H, W] in [0, 1]."""
        return self._decode(self.quantizer.indices_to_codes(tokens)).clamp(0, 1)

    @torch.no_grad()
    def decode_next(self, tokens: Tensor, cache: FrameCache) -> Tensor:
        """One frame's tokens [B, N] -> its frame [B, 3, H, W] in [0, 1], given the decoder's cache of the
        frames before it (which it then joins). The decoder is causal, so this equals `decode` over the
        whole clip at its last frame while running the network over one frame only (for play)."""
        codes = self.quantizer.indices_to_codes(tokens[:, None])
        x = self.from_latent(codes.to(self.from_latent.weight.dtype)) + self.dec_pos
        h, kv = self.decoder.forward_cached(x, cache.position, cache.layers or None)
        cache.append(kv)
        return unpatchify(self.to_pixels(h), self.patch_size, self.height, self.width)[:, 0].clamp(0, 1)
