"""Pieces the VQ stages (tokenizer, LAM) and all stages share: the weighted pixel loss with the VQ
terms, dead-code restarts after each step, and the dataset record kept in every checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from genie.data.store import EpisodeStore
from genie.models.quantizer import QuantizerOutput


def weighted_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Mean of weight * squared error, normalised by the weights ([B, T, 1, H, W] broadcast over C)."""
    err = (pred.float() - target.float()).pow(2).mean(dim=-3, keepdim=True)
    return (weight * err).sum() / weight.sum()


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


def restart_dead_codes(model: nn.Module, latents: Tensor | None) -> dict[str, float]:
    """After an optimizer step: move the quantiser's dead codes onto the last batch's encoder outputs."""
    if latents is not None:
        model.quantizer.restart_dead_codes_(latents)
    return {"vq/restarted_total": float(model.quantizer.restarts)}


def dataset_record(store: EpisodeStore, data: Any) -> dict[str, Any]:
    """What a checkpoint says about the data it was trained on."""
    return {
        "name": store.name,
        "root": str(store.root),
        "num_frames": int(store.frames.shape[0]),
        "height": data.height,
        "width": data.width,
    }


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
