"""What a stage plugs into the one training loop. The loop never names a model."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor, nn

Batch = dict[str, Tensor]


class Stage(Protocol):
    name: str  # -> checkpoints/<name>/run_*
    best_metric: str  # validation key that picks best.json; higher is better

    def build(self) -> nn.Module:
        """The model, on CPU, in fp32."""
        ...

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar loss to minimise and named parts to log (tensors; read with .item() at log time)."""
        ...

    def after_step(self, model: nn.Module) -> dict[str, float]:
        """Work after each optimizer step (e.g. dead-code restarts); returns numbers worth logging."""
        ...

    def evaluate(self, model: nn.Module, batches: Iterable[Batch]) -> dict[str, float]:
        """Validation metrics (keys like 'val/psnr') averaged over the batches."""
        ...

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """End-of-training / `genie eval` outputs: videos and a JSON of metrics; returns the metrics."""
        ...

    def checkpoint_extras(self) -> dict[str, Any]:
        """Stage facts saved in each checkpoint (dataset, upstream checkpoints, ...)."""
        ...
