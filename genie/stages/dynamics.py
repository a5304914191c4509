"""Dynamics stage: MaskGIT over frozen tokenizer tokens and frozen latent actions (Genie Sec. 2.1).

The tokenizer and the LAM are loaded from their checkpoints (a run directory means its best one),
frozen, and checked against this config by `genie.inference.load_upstream`: vocabulary, action count
and resolution must fit. With
`actions: true` the same model trains on the dataset's true movement classes instead of the LAM's
codes: an oracle that shows how much control the LAM loses.

Validation reports teacher-forced token accuracy and, what matters, autoregressive rollouts:
PSNR per horizon step against the real frames, and Genie's controllability ΔtPSNR (inferred vs
random actions), over all pixels and over the moving ones (only the paddles answer actions).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genie import metric_keys as mk
from genie.config import DynamicsConfig
from genie.data.frames import to_float
from genie.data.store import EpisodeStore
from genie.evaluation.dynamics_report import dynamics_report
from genie.evaluation.world_eval import rollout_metrics
from genie.inference import TrainedWorld, build_dynamics, load_upstream, sampling_of
from genie.models.dynamics import DynamicsModel, sample_mask
from genie.outputs import eval_files, eval_stem
from genie.stages.common import REPORT_CLIPS, dataset_record, keep_per_run, report_batch_size
from genie.stages.dynamics_loss import corrupt_context, drop_actions, masked_loss, motion_weights
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch


class DynamicsStage:
    name = "dynamics"
    best_metric = mk.ROLLOUT_PSNR
    config_cls = DynamicsConfig

    def __init__(
        self, config: DynamicsConfig, store: EpisodeStore, device: torch.device, *, upstream: dict[str, Any]
    ) -> None:
        self.config, self.store, self.device = config, store, device
        up = load_upstream(config, store, device, upstream)
        self.tokenizer, self.actions, self.upstream = up.tokenizer, up.actions, up.records
        self.tokenizer_window = up.tokenizer_window
        self.sampling = sampling_of(config)

    def build(self) -> DynamicsModel:
        return build_dynamics(self.config, self.tokenizer.num_patches)

    # --- inputs ---

    @torch.no_grad()
    def actions_of(self, batch: Batch) -> Tensor:
        """[B, T-1] action ids: the LAM's codes of the clip (read in windows of its clip length), or the true
        movement classes (oracle)."""
        return self.actions.of_clip(to_float(batch["frames"]), batch.get("actions"))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.config.training
        with torch.no_grad():
            tokens = self.tokenizer.encode(to_float(batch["frames"]))  # (b, t, n)
            actions = self.actions_of(batch)
        seeds, vocab = batch["noise_seed"], self.config.model.token_embedding.vocab_size
        mask = sample_mask(tokens.shape, t.min_mask_prob, t.max_mask_prob, seeds, t.clean_prefix)
        inputs = corrupt_context(tokens, mask, t.context_noise, vocab, seeds, t.context_noise_kind)
        inputs = inputs.masked_fill(mask, vocab)
        null = self.config.model.action_embedding.num_actions  # the model's "no action"
        logits = model(inputs, drop_actions(actions, t.action_dropout, null, seeds), where=mask)  # (m, v)
        grid = self.tokenizer.grid
        weights = None if t.motion_weight == 1 else motion_weights(tokens, grid, t.motion_weight)
        loss, acc = masked_loss(logits, tokens, mask, weights)
        return loss, {"token_acc": acc, "mask_rate": mask[:, 1:].float().mean()}

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        return {}

    # --- evaluation (genie.evaluation.world_eval, dynamics_report, over the world this model makes) ---

    def world_of(self, model: nn.Module) -> TrainedWorld:
        return TrainedWorld(
            self.config,
            self.store,
            self.tokenizer,
            self.tokenizer_window,
            self.actions,
            model,
            self.sampling,
            "(in training)",
            self.device,
        )

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL, rollouts: int | None = None
    ) -> dict[str, float]:
        """Token accuracy and rollout metrics, reduced over ranks; `rollouts` clips rolled out (by default
        `eval_rollouts`)."""
        wanted = self.config.training.eval_rollouts if rollouts is None else rollouts
        return rollout_metrics(self.world_of(model), batches, wanted, rt)

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """dynamics_comparison_step_N.mp4 (real | generated), long_video/ (a 64+ frame rollout), JSON
        (genie.evaluation.dynamics_report), and their per-run copies."""
        step = int(checkpoint["step"])
        files = eval_files("dynamics", Path(eval_dir) / "dynamics", eval_stem("dynamics", step))
        report = dynamics_report(
            self.world_of(model),
            files,
            checkpoint=checkpoint.get("path"),
            step=step,
            upstream=self.upstream,
            clips=REPORT_CLIPS["dynamics"],
            batch_size=report_batch_size(checkpoint, self.config.data),
        )
        keep_per_run(files.all(), checkpoint)
        return report.record()

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "dataset": dataset_record(self.store, self.config.data),
            "upstream": self.upstream,
        }
