"""Pieces the VQ stages (tokenizer, LAM) and all stages share: the weighted pixel loss with the VQ
terms, dead-code restarts after each step, the dataset record kept in every checkpoint, and what each
stage's final evaluation (`report`) shares: how many clips it scores, their batch, per-run copies."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from genie.data.store import EpisodeStore
from genie.models.quantizer import QuantizerOutput
from genie.training.runtime import Runtime

# validation clips each stage's final evaluation (`report`) scores, spread evenly over the split (the
# periodic validation uses training.eval_batches); 256 rollouts halve ΔtPSNR's standard error against 64
REPORT_CLIPS = {"tokenizer": 64, "lam": 256, "dynamics": 256}


def weighted_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Weighted mean squared error ([B, T, 1, H, W] weights broadcast over C), normalised per clip and
    then averaged over clips: a mean of per-sample losses, so split over ranks or micro-batches it adds up
    to exactly the single-process loss (a batch-wide normaliser would not)."""
    err = (pred.float() - target.float()).pow(2).mean(dim=-3, keepdim=True)
    weight = weight.expand_as(err)
    return ((weight * err).flatten(1).sum(1) / weight.flatten(1).sum(1)).mean()


def vq_objective(
    training: Any, pred: Tensor, target: Tensor, weight: Tensor, vq: QuantizerOutput
) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted reconstruction plus the codebook and commitment terms; the parts are logged detached."""
    recon = weighted_mse(pred, target, weight)
    loss = (
        training.reconstruction_weight * recon
        + training.codebook_weight * vq.codebook_loss
        + training.commitment_weight * vq.commitment_loss
    )
    parts = {
        "recon": recon.detach(),
        "mse": (pred.detach().float() - target).pow(2).mean(),
        "codebook": vq.codebook_loss.detach(),
        "commitment": vq.commitment_loss.detach(),
        "perplexity": vq.perplexity.detach(),
    }
    return loss, parts


class CodeRestarts:
    """Dead-code restarts for a VQ stage, over the whole global batch.

    `record` keeps each micro-batch's encoder outputs and code counts; `after_step` folds the counts of all
    micro-batches and ranks into the usage EMA, then restarts dead codes onto latents drawn from every
    rank's in single-process order (only their errors and the chosen rows move), with the step's
    generator: every rank makes the same edit, and a 2-rank or accumulated run restarts exactly as one
    process with the same global batch would.
    """

    def __init__(self) -> None:
        self.latents: list[Tensor] = []
        self.counts: Tensor | None = None

    def record(self, latents: Tensor, indices: Tensor, num_codes: int) -> None:
        self.latents.append(latents.detach().flatten(0, -2))
        counts = torch.bincount(indices.flatten(), minlength=num_codes)
        self.counts = counts if self.counts is None else self.counts + counts

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        q = model.quantizer
        if self.counts is not None:
            q.update_usage_(rt.sum_tensor(self.counts))
            if q.dead_codes().any():
                with rt.full_param(q.codebook) as codebook:
                    q.restart_dead_codes_(torch.cat(self.latents), rng, codebook, rt.sharded_rows())
        self.latents, self.counts = [], None
        return {"vq/restarted_total": float(q.restarts)}


def dataset_record(store: EpisodeStore, data: Any) -> dict[str, Any]:
    """What a checkpoint says about the data it was trained on."""
    return {
        "name": store.name,
        "root": str(store.root),
        "num_frames": int(store.frames.shape[0]),
        "height": data.height,
        "width": data.width,
    }


def report_batch_size(checkpoint: dict[str, Any], data: Any) -> int:
    """Clips per forward pass for `report`: the run's training micro-batch (it fit on one device), not the
    global batch, which a multi-GPU or accumulated run spread over several passes."""
    return int(checkpoint.get("micro_batch", data.batch_size))


def keep_per_run(paths: list[Path], checkpoint: dict[str, Any]) -> None:
    """Copy eval outputs to <their folder>/runs/<run name>/ as well. The user's file names carry the step
    but not the run, so a second run evaluated at the same step (say the --actions true oracle beside the
    LAM's run) replaces them; this copy keeps every run's outputs for comparison and `genie report`."""
    run = Path(str(checkpoint.get("path", ""))).parent.name or "run"
    root = paths[0].parent  # the stage's eval folder; the other paths lie in it or below
    for path in paths:
        if path.is_file():
            dst = root / "runs" / run / path.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, dst)
