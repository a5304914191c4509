"""The tokenizer's validation numbers, shared by its periodic validation and its final evaluation.

Ball and paddles are under 1% of a Pong frame, so PSNR alone rewards a blurred court: the numbers put it
beside the per-pixel median frame's PSNR (the reconstruction to beat) and the share of foreground pixels
reconstructed (object recall), with the codebook's usage.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import Tensor

from genie import metric_keys as mk
from genie.data.frames import to_float
from genie.evaluation.metrics import codebook_usage, foreground_mask, object_recall, psnr, ssim
from genie.models.tokenizer import VideoTokenizer
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch


def measure_tokenizer(
    model: VideoTokenizer, batches: Iterable[Batch], background: Tensor, rt: Runtime = LOCAL
) -> dict[str, float]:
    """Validation numbers over `batches` (`background` [3, H, W]: the dataset's median frame). Sums and codes
    over this rank's batches, reduced over ranks before any ratio is taken."""
    sums = {"psnr": 0.0, "ssim": 0.0, "background_psnr": 0.0, "frames": 0.0, "fg_hits": 0.0, "fg": 0.0}
    indices = []
    for batch in batches:
        x = to_float(batch["frames"])
        out = model(x)
        recon = out.reconstruction.float().clamp(0, 1)
        sums["psnr"] += float(psnr(recon, x).sum())
        sums["ssim"] += float(ssim(recon, x).sum())
        sums["background_psnr"] += float(psnr(background.expand_as(x), x).sum())
        sums["frames"] += x.shape[0] * x.shape[1]
        fg = foreground_mask(x, background)
        sums["fg"] += float(fg.sum())
        sums["fg_hits"] += float(object_recall(recon, x, background) * fg.sum()) if fg.any() else 0.0
        indices.append(out.indices.flatten().cpu())
    sums = rt.all_sum(sums)
    codes = rt.cat(indices)
    if sums["frames"] == 0:
        return {}
    names = {mk.PSNR: "psnr", mk.SSIM: "ssim", mk.BACKGROUND_PSNR: "background_psnr"}
    metrics = {key: sums[name] / sums["frames"] for key, name in names.items()}
    metrics[mk.OBJECT_RECALL] = sums["fg_hits"] / sums["fg"] if sums["fg"] else float("nan")
    usage = codebook_usage(codes.long(), model.quantizer.num_codes)
    metrics[mk.PERPLEXITY] = usage["perplexity"]
    metrics[mk.CODES_USED] = float(usage["codes_used"])
    metrics[mk.DEAD_CODES] = float(model.quantizer.dead_codes().sum())
    return metrics
