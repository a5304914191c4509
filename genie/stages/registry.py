"""Stage name -> stage class, and building a stage from a checkpoint (for eval and for later stages)."""

from __future__ import annotations

from pathlib import Path

import torch

from genie.config import config_from_dict
from genie.data.store import EpisodeStore, ensure_dataset
from genie.errors import GenieError
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


def open_dataset_for(config, data_dir: Path, dataset: str) -> EpisodeStore:
    root = ensure_dataset(Path(data_dir), dataset, height=config.data.height, width=config.data.width)
    return EpisodeStore.open(root)


def stage_from_checkpoint(
    name: str, path: Path, device: torch.device, *, data_dir: Path | None = None, dataset: str | None = None
) -> tuple[object, torch.nn.Module, dict]:
    """Load a checkpoint (file or run dir -> best), rebuild its stage and model, on `device`, in eval mode."""
    ckpt = load_checkpoint(path, stage=name)
    cls = stage_class(name)
    config = config_from_dict(cls.config_cls, ckpt["config"], f"{ckpt['path']} (config)")
    if dataset is not None:
        store = open_dataset_for(config, data_dir or Path("data"), dataset)
    else:
        info = ckpt.get("dataset", {})
        root = Path(info.get("root", ""))
        if not (root / "manifest.json").is_file():
            root = Path(data_dir or "data") / info.get("name", "")
        store = EpisodeStore.open(root)
    extra = {"upstream": upstream_paths(ckpt["upstream"], Path(ckpt["path"]))} if "upstream" in ckpt else {}
    stage = cls(config, store, device, **extra)
    if "upstream" in ckpt:
        check_upstream(stage.upstream, ckpt["upstream"], ckpt["path"])
    model = stage.build()
    load_model_state(model, ckpt["model"], ckpt["path"])
    return stage, model.to(device).eval(), ckpt


def upstream_paths(recorded: dict, checkpoint: Path) -> dict:
    """The {tokenizer, lam, actions} paths a dynamics checkpoint was trained with, from its records.

    A relative path was relative to where training ran; when it does not exist from here, it is looked
    up from the checkpoint's own project (ROOT/checkpoints/dynamics/run_X/ckpt.pt -> ROOT), so a
    world loads from any working directory.
    """
    paths = {}
    for key, value in recorded.items():
        path = value["path"] if isinstance(value, dict) else value
        parents = checkpoint.resolve().parents
        if isinstance(value, dict) and not Path(path).exists() and not Path(path).is_absolute():
            beside = parents[3] / path if len(parents) > 3 else Path(path)
            path = str(beside) if beside.exists() else path
        paths[key] = path
    return paths


def check_upstream(loaded: dict, recorded: dict, checkpoint: str) -> None:
    """The upstream files a dynamics checkpoint loads must be the ones it was trained on (by sha256): a
    retrained or swapped tokenizer would decode its tokens into other pictures, silently."""
    for key, record in recorded.items():
        if not isinstance(record, dict) or "sha256" not in record or key not in loaded:
            continue
        now = loaded[key]["sha256"]
        if now != record["sha256"]:
            raise GenieError(
                f"{checkpoint} was trained on the {key} {loaded[key]['path']} with sha256 "
                f"{record['sha256'][:12]}…, but that file now has {now[:12]}… (retrained or replaced?): "
                f"restore the {key} it was trained on"
            )


def model_from_checkpoint(name: str, path: Path, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """Just the model of a tokenizer or LAM checkpoint (no dataset needed), in eval mode."""
    ckpt = load_checkpoint(path, stage=name)
    cls = stage_class(name)
    config = config_from_dict(cls.config_cls, ckpt["config"], f"{ckpt['path']} (config)")
    model = cls.build_model(config)
    load_model_state(model, ckpt["model"], ckpt["path"])
    return model.to(device).eval(), ckpt
