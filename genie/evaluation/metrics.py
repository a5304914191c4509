"""Image metrics on float frames in [0, 1], shaped [..., 3, H, W].

PSNR alone flatters a model that draws only Pong's static background (~33.8 dB), so every
reconstruction is also scored by object recall: the share of foreground pixels (differing from the
median background by more than 0.1 in some channel) that the reconstruction gets within 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

OBJECT_TOLERANCE = 0.1


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-image PSNR in dB, shape [...] (the leading dims of [..., 3, H, W])."""
    mse = (pred.float() - target.float()).pow(2).mean(dim=(-3, -2, -1))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def ssim(pred: Tensor, target: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-image SSIM (Wang et al. 2004, Gaussian window), shape [...]."""
    lead = pred.shape[:-3]
    x = pred.float().reshape(-1, *pred.shape[-3:])
    y = target.float().reshape(-1, *target.shape[-3:])
    c = x.shape[1]
    g = torch.exp(-((torch.arange(window, device=x.device) - window // 2) ** 2) / (2 * sigma**2))
    g = g / g.sum()
    kernel = (g[:, None] * g[None, :]).expand(c, 1, window, window).contiguous()
    blur = lambda t: F.conv2d(t, kernel, groups=c)  # noqa: E731  valid conv, no padding artefacts
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.mean(dim=(-3, -2, -1)).reshape(lead)


def foreground_mask(frames: Tensor, background: Tensor, tol: float = OBJECT_TOLERANCE) -> Tensor:
    """Bool [..., 1, H, W]: pixels that differ from the background image [3, H, W] by more than tol."""
    return (frames - background).abs().amax(dim=-3, keepdim=True) > tol


def object_recall(pred: Tensor, target: Tensor, background: Tensor, tol: float = OBJECT_TOLERANCE) -> Tensor:
    """Share of the target's foreground pixels that pred reproduces within tol (scalar; NaN if none)."""
    fg = foreground_mask(target, background, tol)
    hit = (pred - target).abs().amax(dim=-3, keepdim=True) <= tol
    return (hit & fg).sum() / fg.sum() if fg.any() else torch.tensor(float("nan"))


def codebook_usage(indices: Tensor, num_codes: int) -> dict[str, float]:
    """Perplexity (exp entropy) and count of codes used at least once among the given tokens."""
    counts = torch.bincount(indices.flatten().cpu(), minlength=num_codes).double()
    share = counts / counts.sum()
    entropy = -(share[share > 0] * share[share > 0].log()).sum()
    return {"perplexity": float(entropy.exp()), "codes_used": int((counts > 0).sum())}


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """PSNR over the pixels where mask [..., 1, H, W] is true, per image (NaN where none are)."""
    err = (pred.float() - target.float()).pow(2).mean(dim=-3, keepdim=True)
    m = mask.float()
    mse = (err * m).sum(dim=(-3, -2, -1)) / m.sum(dim=(-3, -2, -1))
    return 10 * torch.log10(1.0 / mse.clamp_min(1e-10))


def delta_psnr(target: Tensor, from_inferred: Tensor, from_random: Tensor) -> Tensor:
    """Genie's controllability: PSNR(x, x_hat) - PSNR(x, x_hat') with x_hat from the inferred actions and
    x_hat' from random ones. Positive when the actions matter the way the data says they do."""
    return psnr(from_inferred, target) - psnr(from_random, target)


def standard_error(mean: float, mean_of_squares: float, n: int) -> float:
    """Standard error of a mean from its running moments (what sums reduced over ranks give): the sample
    standard deviation / sqrt(n). NaN below 2 samples."""
    if n < 2:
        return float("nan")
    return math.sqrt(max(mean_of_squares - mean * mean, 0.0) / (n - 1))
