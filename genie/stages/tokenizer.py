"""Tokenizer stage: VQ-VAE reconstruction with foreground-weighted pixel loss.

Ball and paddles are under 1% of a Pong frame: a plain MSE learns the static background and drops
them (measured: below the background-only baseline). Pixels that differ from the dataset's median
background get `foreground_weight` extra weight, which is what makes the objects survive.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genie import metric_keys as mk
from genie.config import TokenizerConfig
from genie.data.frames import background_frame, to_float
from genie.data.store import EpisodeStore
from genie.evaluation.metrics import foreground_mask
from genie.evaluation.tokenizer_measures import measure_tokenizer
from genie.evaluation.tokenizer_report import tokenizer_report
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

    # --- evaluation (genie.evaluation.tokenizer_measures, tokenizer_report) ---

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL) -> dict[str, float]:
        return measure_tokenizer(model, batches, self.background, rt)

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """comparison_checkpoint_step_N.mp4, ..._long_7seq.mp4 and a JSON of validation metrics, and their
        per-run copies."""
        d, step = self.config.data, int(checkpoint["step"])
        files = eval_files("tokenizer", Path(eval_dir) / "tokenizer", eval_stem("tokenizer", step))
        report = tokenizer_report(
            model,
            self.store,
            files,
            background=self.background,
            clip_length=d.sequence_length,
            clips=REPORT_CLIPS["tokenizer"],
            batch_size=report_batch_size(checkpoint, d),
            fps=d.fps,
            checkpoint=checkpoint.get("path"),
            step=step,
            device=self.device,
        )
        keep_per_run(files.all(), checkpoint)
        return report.record()

    def checkpoint_extras(self) -> dict[str, Any]:
        return {"dataset": dataset_record(self.store, self.config.data)}
