"""Stage name -> stage class, and rebuilding a stage from its checkpoint (for eval and for resuming)."""

from __future__ import annotations

from pathlib import Path

import torch

from genie.config import config_from_dict
from genie.errors import GenieError
from genie.inference import check_upstream, store_of, upstream_paths
from genie.outputs import STAGES
from genie.stages.dynamics import DynamicsStage
from genie.stages.lam import LamStage
from genie.stages.tokenizer import TokenizerStage
from genie.training.checkpoint import load_checkpoint, load_model_state

_CLASSES = dict(zip(STAGES, (TokenizerStage, LamStage, DynamicsStage), strict=True))


def stage_class(name: str) -> type:
    if name not in _CLASSES:
        raise GenieError(f"the {name} stage is not implemented yet (available: {', '.join(STAGES)})")
    return _CLASSES[name]


def stage_from_checkpoint(
    name: str, path: Path, device: torch.device, *, data_dir: Path | None = None, dataset: str | None = None
) -> tuple[object, torch.nn.Module, dict]:
    """Load a checkpoint (file or run dir -> best), rebuild its stage and model, on `device`, in eval mode."""
    ckpt = load_checkpoint(path, stage=name)
    cls = stage_class(name)
    config = config_from_dict(cls.config_cls, ckpt["config"], f"{ckpt['path']} (config)")
    store = store_of(ckpt, config, data_dir=data_dir, dataset=dataset)
    extra = {"upstream": upstream_paths(ckpt["upstream"], Path(ckpt["path"]))} if "upstream" in ckpt else {}
    stage = cls(config, store, device, **extra)
    if "upstream" in ckpt:
        check_upstream(stage.upstream, ckpt["upstream"], ckpt["path"])
    model = stage.build()
    load_model_state(model, ckpt["model"], ckpt["path"])
    return stage, model.to(device).eval(), ckpt
