"""LAM stage: learn one discrete action per transition by predicting the next frame, with no labels.

The failure to avoid is a collapsed LAM: constant action vectors and a decoder that predicts from history
alone (a prototype here did exactly that). Three things make the decoder need the action:
  - it sees only `decoder_context` frames (2: enough for the paddle's velocity, not for guessing a held
    action from a long history);
  - it predicts x_{t+1} as x_t plus a change, so its capacity goes to what moves, not to the court;
  - the pixel loss weights what moves: a paddle move changes ~44 of 9,216 pixels, so pixels that change
    between x_t and x_{t+1} or differ from the median background get `foreground_weight` extra weight.
Collapse is measured at every validation: the spread of the pre-quantisation action vectors, per-code usage,
and the action gain (next-frame PSNR on changed pixels with the inferred actions minus with them shuffled).
True actions, where the data has them, only measure the LAM; `best_metric` is label-free. The one exception
is the few-label mode (`supervision.label_fraction` > 0, genie/stages/few_labels.py): the true actions of
a recorded share of the training episodes, never of validation ones, join every batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from genie import metric_keys as mk
from genie.config import LamConfig
from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import background_frame, to_float
from genie.data.store import EpisodeStore
from genie.evaluation.lam_measures import measure_lam
from genie.evaluation.lam_report import NOTE, lam_report
from genie.evaluation.metrics import foreground_mask
from genie.inference import build_lam
from genie.models.lam import LatentActionModel
from genie.outputs import eval_files, eval_stem
from genie.stages.common import REPORT_CLIPS, CodeRestarts, dataset_record, report_batch_size, vq_objective
from genie.stages.few_labels import LabelledEpisodes, label_loss
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch


class LamStage:
    name = "lam"
    best_metric = mk.PSNR_CHANGED  # label-free: true actions measure, never select
    config_cls = LamConfig

    def __init__(self, config: LamConfig, store: EpisodeStore, device: torch.device) -> None:
        self.config, self.store, self.device = config, store, device
        self.background = background_frame(store, device)  # [3, H, W]
        self.restarts = CodeRestarts()
        s = config.supervision
        self.labels = (
            LabelledEpisodes(
                store,
                s.label_fraction,
                config.data.sequence_length,
                config.training.seed,
                config.model.codebook.num_codes,
            )
            if s.label_fraction > 0
            else None
        )
        self.notes = [] if self.labels is None else [self._labels_note()]

    def _labels_note(self) -> str:
        r = self.labels.record
        return (
            f"few-label mode: the true actions of {len(r['episodes'])} training episode(s) "
            f"{r['episodes']} ({r['labelled_frames']} frames, {r['share_of_train_frames']:.1%} of the "
            "training frames) join every batch; validation episodes are never labelled"
        )

    def build(self) -> LatentActionModel:
        return build_lam(self.config)

    def moving_mask(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] -> bool [B, T-1, 1, H, W]: pixels that change between x_t and x_{t+1}, or
        differ from the background in either (so a paddle that should have stayed still is weighted too)."""
        prev, target = frames[:, :-1], frames[:, 1:]
        return (
            foreground_mask(target, prev)
            | foreground_mask(target, self.background)
            | foreground_mask(prev, self.background)
        )

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.config.training
        x = to_float(batch["frames"])
        n = len(x)
        # each clip brings one labelled clip, only encoded: its actions are what the label term needs
        if self.labels is not None:
            frames, targets = self.labels.draw(batch["noise_seed"])
            x = torch.cat([x, to_float(frames.to(x.device))])
        out = model(x, reconstruct=n)
        target = x[:n, 1:]
        weight = 1.0 + t.foreground_weight * self.moving_mask(x[:n]).float()
        loss, parts = vq_objective(t, out.prediction, target, weight, out.vq)
        self.restarts.record(out.latents, out.vq.indices, self.config.model.codebook.num_codes)
        if self.labels is not None:
            s = self.config.supervision
            similarity, targets = out.similarity[n:], targets.to(x.device)
            labelled = label_loss(similarity, targets, s.logit_scale)
            loss = loss + s.weight * labelled
            valid = targets >= 0
            hits = (similarity.argmax(-1) == targets) & valid
            parts["label_ce"] = labelled.detach()
            parts["label_acc"] = hits.sum().float() / valid.sum().clamp_min(1)
        return loss, parts

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        return self.restarts.after_step(model, rt, rng)

    # --- evaluation (genie.evaluation.lam_measures, lam_report) ---

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL) -> dict[str, float]:
        return measure_lam(model, batches, self.store, rt).metrics

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """visual_eval_step_N_run_XXX.mp4 (true next frame | prediction, actions written on each), its JSON
        of validation numbers and confusion matrices, and a confusion-matrix PNG."""
        model.eval()
        d = self.config.data
        T, step = d.sequence_length, int(checkpoint["step"])
        path = Path(checkpoint.get("path", "checkpoint.pt"))
        run = path.parent.name if path.parent.name.startswith("run_") else path.stem
        files = eval_files("lam", Path(eval_dir) / "lam", f"{eval_stem('lam', step)}_{run}")
        val = ClipDataset(self.store, "val", T, stride=T)
        picks = evenly_spaced(len(val), REPORT_CLIPS["lam"])
        loader = DataLoader(Subset(val, picks), batch_size=report_batch_size(checkpoint, d))
        batches = ({k: v.to(self.device) for k, v in b.items()} for b in loader)
        title = f"LAM step {step} ({run})"
        out = lam_report(
            model, self.store, batches, files, clip_length=T, fps=d.fps, title=title, device=self.device
        )
        result = {
            "stage": "lam",
            "checkpoint": checkpoint.get("path"),
            "step": step,
            "dataset": self.store.name,
            "clips": len(picks),
            "clip_length": T,
            "metrics": out.metrics,
            "agreement": out.agreement,
            "supervision": self.labels.record if self.labels is not None else {"label_fraction": 0.0},
            "note": NOTE,
        }
        files.json.write_text(json.dumps(result, indent=2) + "\n")
        return result

    def checkpoint_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"dataset": dataset_record(self.store, self.config.data)}
        if self.labels is not None:
            extras["supervision"] = self.labels.record
        return extras
