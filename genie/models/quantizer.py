"""Vector quantiser shared by the tokenizer (512 codes) and the LAM (a handful of action codes).

Codes and inputs are l2-normalised before the nearest-code search (cosine similarity, as in
ViT-VQGAN / Improved VQGAN, Yu et al. 2022): all codes live on the unit sphere, so no code drifts
out of reach, which keeps usage high. The codebook is learned by gradient (codebook + commitment
loss, van den Oord et al. 2017), not EMA, so it needs no cross-process statistics under DDP.
Dead codes — used less than `dead_threshold` of their uniform share, tracked as an EMA of each
training step's counts (`update_usage_`) — are restarted from encoder outputs by
`restart_dead_codes_`, the usual cure for codebook collapse; usage starts at zero, so the first
restart also initialises the codebook from data.
Distances run in fp32 whatever the autocast dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ShardedRows(Protocol):
    """Items (one row each) spread over processes, seen as one list in process order."""

    def gather(self, values: Tensor) -> Tensor:
        """This process's per-item values [n] -> every process's, concatenated."""
        ...

    def rows(self, picks: Tensor, local: Tensor) -> Tensor:
        """Indices into the whole list -> those rows, given this process's rows `local` [n, D]."""
        ...


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [..., D] codes with straight-through gradients to the input
    indices: Tensor  # [...] int64
    codebook_loss: Tensor  # moves codes toward inputs
    commitment_loss: Tensor  # keeps inputs near their codes
    perplexity: Tensor  # exp(entropy) of this batch's code usage; num_codes when uniform


class VectorQuantizer(nn.Module):
    def __init__(
        self,
        num_codes: int,
        dim: int,
        *,
        decay: float = 0.99,
        dead_threshold: float = 0.03,
    ) -> None:
        super().__init__()
        self.num_codes, self.dim = num_codes, dim
        self.decay, self.dead_threshold = decay, dead_threshold
        self.codebook = nn.Parameter(F.normalize(torch.randn(num_codes, dim), dim=-1))
        # EMA of usage shares. Starting at zero makes every code "dead" at the first training step, so the
        # first restart places the whole codebook on real encoder outputs (a data-dependent init).
        self.register_buffer("usage", torch.zeros(num_codes))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))  # total, for logging

    def codes(self) -> Tensor:
        return F.normalize(self.codebook.float(), dim=-1)

    def indices_to_codes(self, indices: Tensor) -> Tensor:
        """[...] int64 -> [..., D]: the inverse of quantisation."""
        return self.codes()[indices]

    def forward(self, z: Tensor) -> QuantizerOutput:
        """z [..., D] -> QuantizerOutput; distances and losses in fp32."""
        z = F.normalize(z.float(), dim=-1)
        codes = self.codes()
        flat = z.reshape(-1, self.dim)
        indices = (flat @ codes.t()).argmax(dim=-1)  # max cosine == min distance on the sphere
        q = codes[indices].view_as(z)
        counts = torch.bincount(indices, minlength=self.num_codes).float()
        share = counts / counts.sum()
        perplexity = torch.exp(-(share * torch.log(share.clamp_min(1e-10))).sum())
        return QuantizerOutput(
            quantized=z + (q - z).detach(),  # straight-through estimator
            indices=indices.view(z.shape[:-1]),
            codebook_loss=F.mse_loss(q, z.detach()),
            commitment_loss=F.mse_loss(z, q.detach()),
            perplexity=perplexity,
        )

    @torch.no_grad()
    def update_usage_(self, counts: Tensor) -> None:
        """Fold one training step's code counts [num_codes] (over the whole global batch) into the usage EMA.
        Called once per optimizer step, not in forward, so micro-batches and ranks all count as one batch."""
        share = counts.float() / counts.sum().clamp_min(1)
        self.usage.mul_(self.decay).add_(share.to(self.usage.device), alpha=1 - self.decay)

    def dead_codes(self) -> Tensor:
        """Bool [num_codes]: codes whose usage EMA fell below `dead_threshold` of the uniform share."""
        return self.usage < self.dead_threshold / self.num_codes

    @torch.no_grad()
    def restart_dead_codes_(
        self,
        z: Tensor,
        generator: torch.Generator | None = None,
        codebook: Tensor | None = None,
        shards: ShardedRows | None = None,
    ) -> int:
        """Move dead codes onto encoder outputs z [..., D]; returns how many were restarted.

        Targets are drawn in proportion to their quantisation error (as k-means++ seeds): in Pong
        most patches are the same background, so uniform draws would land on it again, while the
        error-weighted draw puts spare codes on the ball and paddles the codebook still misses.
        `codebook` is the full tensor to read and edit (FSDP hands one over); by default this module's.
        `shards`, when z is one rank's share of a global batch, draws over all ranks' outputs while
        moving only their errors and the chosen rows.
        """
        dead = self.dead_codes().nonzero().flatten()
        if dead.numel() == 0:
            return 0
        book = self.codebook.data if codebook is None else codebook
        flat = F.normalize(z.detach().float().reshape(-1, self.dim), dim=-1)
        codes = F.normalize(book.float(), dim=-1)
        error = (1 - (flat @ codes.t()).amax(dim=-1)).clamp_min(0).cpu().double() + 1e-12
        if shards is not None:
            error = shards.gather(error)
        replace = error.numel() < dead.numel()
        pick = torch.multinomial(error, dead.numel(), replacement=replace, generator=generator)
        chosen = flat[pick.to(flat.device)] if shards is None else shards.rows(pick, flat)
        noise = 0.01 * torch.randn(dead.numel(), self.dim, generator=generator)
        targets = F.normalize(chosen + noise.to(flat.device), dim=-1)
        book[dead.to(book.device)] = targets.to(book.dtype)
        self.usage[dead] = 4 * self.dead_threshold / self.num_codes  # ~140 steps of grace at decay 0.99
        self.restarts += dead.numel()
        return int(dead.numel())
