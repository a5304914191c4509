"""Tokenizer stage: VQ-VAE reconstruction with foreground-weighted pixel loss.

Ball and paddles are under 1% of a Pong frame: a plain MSE learns the static background and drops
them (measured: below the background-only baseline). Pixels that differ from the dataset's median
background get `foreground_weight` extra weight, which is what makes the objects survive.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from genie import metric_keys as mk
from genie.config import TokenizerConfig
from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import background_frame, to_float
from genie.data.store import EpisodeStore
from genie.evaluation.metrics import codebook_usage, foreground_mask, object_recall, psnr, ssim
from genie.evaluation.video import side_by_side, write_mp4
from genie.inference import build_tokenizer
from genie.models.tokenizer import VideoTokenizer
from genie.outputs import eval_files, eval_stem
from genie.stages.common import (
    REPORT_CLIPS,
    CodeRestarts,
    dataset_record,
    keep_per_run,
    report_batch_size,
    vq_objective,
)
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch


class TokenizerStage:
    name = "tokenizer"
    best_metric = mk.PSNR
    config_cls = TokenizerConfig

    def __init__(self, config: TokenizerConfig, store: EpisodeStore, device: torch.device) -> None:
        self.config, self.store, self.device = config, store, device
        self.background = background_frame(store, device)  # [3, H, W]
        self.restarts = CodeRestarts()

    def build(self) -> VideoTokenizer:
        return build_tokenizer(self.config)

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.config.training
        x = to_float(batch["frames"])
        out = model(x)
        weight = 1.0 + t.foreground_weight * foreground_mask(x, self.background).float()
        loss, parts = vq_objective(t, out.reconstruction, x, weight, out.vq)
        self.restarts.record(out.latents, out.vq.indices, self.config.model.codebook.num_codes)
        return loss, parts

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        return self.restarts.after_step(model, rt, rng)

    # --- evaluation ---

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL) -> dict[str, float]:
        """Sums and codes over this rank's batches, reduced over ranks before any ratio is taken."""
        sums = {"psnr": 0.0, "ssim": 0.0, "background_psnr": 0.0, "frames": 0.0, "fg_hits": 0.0, "fg": 0.0}
        indices = []
        for batch in batches:
            x = to_float(batch["frames"])
            out = model(x)
            recon = out.reconstruction.float().clamp(0, 1)
            sums["psnr"] += float(psnr(recon, x).sum())
            sums["ssim"] += float(ssim(recon, x).sum())
            sums["background_psnr"] += float(psnr(self.background.expand_as(x), x).sum())
            sums["frames"] += x.shape[0] * x.shape[1]
            fg = foreground_mask(x, self.background)
            sums["fg"] += float(fg.sum())
            sums["fg_hits"] += float(object_recall(recon, x, self.background) * fg.sum()) if fg.any() else 0.0
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

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """comparison_checkpoint_step_N.mp4, ..._long_7seq.mp4 and a JSON of validation metrics."""
        model.eval()
        d = self.config.data
        T, step = d.sequence_length, int(checkpoint["step"])
        files = eval_files("tokenizer", Path(eval_dir) / "tokenizer", eval_stem("tokenizer", step))
        val = ClipDataset(self.store, "val", T, stride=T)
        picks = evenly_spaced(len(val), REPORT_CLIPS["tokenizer"])
        loader = DataLoader(Subset(val, picks), batch_size=report_batch_size(checkpoint, d))
        with torch.no_grad():
            metrics = self.evaluate(model, ({k: v.to(self.device) for k, v in b.items()} for b in loader))
            shown = torch.stack([val[i]["frames"] for i in picks[:: max(1, len(picks) // 4)][:4]])
            video = self._comparison(model, shown)
            write_mp4(files.video, video, fps=d.fps)
            long = self._consecutive_clips(7 * T)
            if long is not None:
                video = self._comparison(model, long.reshape(7, T, *long.shape[1:]))
                write_mp4(files.extra, video, fps=d.fps)
        result = {
            "stage": "tokenizer",
            "checkpoint": checkpoint.get("path"),
            "step": step,
            "dataset": self.store.name,
            "clips": len(picks),
            "clip_length": T,
            "metrics": metrics,
            "note": "background_psnr scores the per-pixel median frame; object_recall is the share of "
            "foreground pixels reconstructed within 0.1",
        }
        files.json.write_text(json.dumps(result, indent=2) + "\n")
        keep_per_run(files.all(), checkpoint)
        return result

    def _comparison(self, model: nn.Module, clips: Tensor) -> np.ndarray:
        """uint8 clips [K, T, 3, H, W] -> original | reconstruction video, the K clips one after another."""
        x = to_float(clips.to(self.device))
        recon = model(x).reconstruction.clamp(0, 1)
        return side_by_side(x.flatten(0, 1), recon.flatten(0, 1))

    def _consecutive_clips(self, length: int) -> Tensor | None:
        """uint8 [length, 3, H, W] from the first validation episode long enough, else None."""
        for ep in self.store.split_episodes("val"):
            start, end = (int(v) for v in self.store.episodes[ep])
            if end - start >= length:
                frames = np.array(self.store.frames[start : start + length])  # a writable copy
                return torch.from_numpy(frames).permute(0, 3, 1, 2)
        return None

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": dataset_record(self.store, self.config.data)}
