"""Attention at the tiny dynamics preset's shapes: which kernel is fastest, and how far from the matmul peak.

    .venv/bin/python benchmarks/attention_kernels.py [--rounds 5] [--reps 10]

The dynamics step spends ~27% of its time in attention (`step_profile.py dynamics`) for ~2% of its FLOPs:
the spatial part is 144 patches long, the temporal part only 8 frames, over 1,152 (batch x patch) rows.
Forward and backward of one attention call, per variant: SDPA as the model calls it (the CPU flash kernel),
SDPA forced to its math backend, attention written out (matmul, mask, softmax, matmul), and, for the
temporal part, G rows packed into one sequence of G x 8 frames with a block-diagonal causal mask (G times the
FLOPs, fewer and larger problems); and SDPA with the same width in fewer, wider heads. Variants alternate
within each round; the median over rounds is kept. GFLOP/s counts QK^T and AV in full (causal too), forward
+ backward = 3x forward, as `mfu.py`. Writes benchmarks/results/attention_kernels.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine, save
from torch import Tensor
from torch.nn.attention import SDPBackend, sdpa_kernel

from genie.config import DynamicsConfig, TokenizerConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "attention_kernels.json"
Attend = Callable[[Tensor, Tensor, Tensor, Tensor | None, bool], Tensor]


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and mask is None)


def sdpa_math(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    with sdpa_kernel(SDPBackend.MATH):
        return sdpa(q, k, v, mask, causal)


def written_out(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, causal: bool) -> Tensor:
    scores = q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5
    if causal and mask is None:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1) @ v


def packed_mask(groups: int, frames: int) -> Tensor:
    """Bool [G*T, G*T]: causal within each of the G packed rows' T frames, nothing across rows."""
    row, frame = torch.arange(groups * frames) // frames, torch.arange(groups * frames)
    return (row[:, None] == row[None, :]) & (frame[:, None] >= frame[None, :])


def time_call(attend: Attend, shape: tuple[int, ...], mask: Tensor | None, causal: bool, reps: int) -> float:
    """Seconds for one forward + backward, averaged over `reps` after two warm-up calls."""
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    for _ in range(2):
        attend(q, k, v, mask, causal).sum().backward()
    start = time.perf_counter()
    for _ in range(reps):
        attend(q, k, v, mask, causal).sum().backward()
    return (time.perf_counter() - start) / reps


def shapes() -> tuple[int, int, int, int, int]:
    """(batch, frames, patches, heads, head size) of the tiny dynamics preset."""
    dyn = load_config(DynamicsConfig, ROOT / "configs/tiny/dynamics.yaml")
    tok = load_config(TokenizerConfig, ROOT / "configs/tiny/tokenizer.yaml")
    arch, d = dyn.model.architecture, dyn.data
    patches = (d.height // tok.model.patch_size) * (d.width // tok.model.patch_size)
    return d.batch_size, d.sequence_length, patches, arch.num_heads, arch.d_model // arch.num_heads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds; the median is kept")
    parser.add_argument("--reps", type=int, default=10, help="calls timed per variant and round")
    a = parser.parse_args()
    B, T, N, H, hd = shapes()
    cases: dict[str, tuple[Attend, tuple[int, ...], Tensor | None, bool]] = {
        "spatial sdpa (the model's)": (sdpa, (B * T, H, N, hd), None, False),
        "spatial sdpa math": (sdpa_math, (B * T, H, N, hd), None, False),
        "spatial written out": (written_out, (B * T, H, N, hd), None, False),
        "temporal sdpa (the model's)": (sdpa, (B * N, H, T, hd), None, True),
        "temporal sdpa math": (sdpa_math, (B * N, H, T, hd), None, True),
        "temporal written out": (written_out, (B * N, H, T, hd), None, True),
    }
    for g in (2, 4, 8):
        cases[f"temporal packed x{g}"] = (sdpa, (B * N // g, H, g * T, hd), packed_mask(g, T), False)
    for heads in (H // 2, H // 4):  # the same width in fewer, wider heads (a different model)
        size = hd * H // heads
        cases[f"spatial sdpa, {heads} heads of {size}"] = (sdpa, (B * T, heads, N, size), None, False)
        cases[f"temporal sdpa, {heads} heads of {size}"] = (sdpa, (B * N, heads, T, size), None, True)
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(a.rounds):
        for name, (attend, shape, mask, causal) in cases.items():
            seconds[name].append(time_call(attend, shape, mask, causal, a.reps))
    results: dict = {**machine("attention_kernels", "cpu"), "shape_btnhd": [B, T, N, H, hd]}
    for name, (_, shape, _, _) in cases.items():
        rows, heads, length, size = shape
        flops = 3 * 4 * rows * heads * length * length * size  # QK^T and AV, forward + backward
        ms = statistics.median(seconds[name]) * 1e3
        results[f"{name}: ms"] = ms
        results[f"{name}: GFLOP/s"] = flops / ms / 1e6
    save(results, RESULTS, width=40, digits=2)


if __name__ == "__main__":
    main()
