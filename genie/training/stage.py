"""What a stage plugs into the one training loop. The loop never names a model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from torch import Generator, Tensor, nn

from genie.training.runtime import Runtime

Batch = dict[str, Tensor]


class Stage(Protocol):
    name: str  # -> checkpoints/<name>/run_*
    best_metric: str  # validation key that picks best.json; higher is better

    def build(self) -> nn.Module:
        """The model, on CPU, in fp32."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss to minimise and named parts to log (tensors; read with .item() at log time).

        The loss must be a mean of per-clip losses, so that micro-batches and ranks add up to the
        single-process loss; per-clip randomness comes from `batch["noise_seed"]`."""
        ...

    def after_step(self, model: nn.Module, rt: Runtime, rng: Generator) -> dict[str, float]:
        """Work after each optimizer step (e.g. dead-code restarts), the same on every rank: use `rt` to see
        the whole global batch and `rng` (seeded by the step) for any draw. Returns numbers worth logging."""
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], rt: Runtime) -> dict[str, float]:
        """Validation metrics (keys like 'val/psnr') over this rank's batches, reduced over ranks with `rt`
        before any ratio is taken, so every rank returns the metrics of the whole validation set."""
        ...

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """End-of-training / `genie eval` outputs: videos and a JSON of metrics; returns the metrics."""
        ...

    def checkpoint_extras(self) -> dict[str, Any]:
        """Stage facts saved in each checkpoint (dataset, upstream checkpoints, ...)."""
        ...
