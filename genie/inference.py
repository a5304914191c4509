"""A trained world, apart from how it was trained: the frozen tokenizer, where the actions come from (the
LAM, or the dataset's true actions for an oracle model), the dynamics model and its sampling settings.

Play (genie.world), the evaluation apps and the report build on `TrainedWorld`, never on a training
stage; the dynamics stage loads its frozen upstream models with the same loaders (`load_upstream`).
Checkpoints are read as data (`load_checkpoint`: weights only), their models rebuilt from their configs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from genie.config import DynamicsConfig, LamConfig, TokenizerConfig, config_from_dict, load_config
from genie.data.actions import class_ids
from genie.data.store import EpisodeStore, dataset_root
from genie.errors import GenieError
from genie.models.dynamics import DynamicsModel, SamplingConfig
from genie.models.lam import LatentActionModel
from genie.models.tokenizer import VideoTokenizer
from genie.training.checkpoint import load_checkpoint, load_model_state

PROMPT_FRAMES = 2  # real frames given before generation: two frames fix the ball's velocity


# --- models from their configs and checkpoints ---


def build_tokenizer(config: TokenizerConfig) -> VideoTokenizer:
    d = config.data
    return VideoTokenizer(
        config.model,
        height=d.height,
        width=d.width,
        window=d.sequence_length,
        checkpointing=config.training.gradient_checkpointing,
    )


def build_lam(config: LamConfig) -> LatentActionModel:
    d = config.data
    return LatentActionModel(
        config.model, height=d.height, width=d.width, checkpointing=config.training.gradient_checkpointing
    )


def build_dynamics(config: DynamicsConfig, num_patches: int) -> DynamicsModel:
    m = config.model
    return DynamicsModel(
        m.architecture,
        vocab_size=m.token_embedding.vocab_size,
        num_actions=m.action_embedding.num_actions,
        num_patches=num_patches,
        action_every_block=m.action_conditioning == "every_block",
        checkpointing=config.training.gradient_checkpointing,
    )


_UPSTREAM: dict[str, tuple[type, Callable[[Any], torch.nn.Module]]] = {
    "tokenizer": (TokenizerConfig, build_tokenizer),
    "lam": (LamConfig, build_lam),
}


def load_model(kind: str, path: Path | str, device: torch.device) -> tuple[torch.nn.Module, dict]:
    """The model of a tokenizer or LAM checkpoint (a run directory means its best), in eval mode, and the
    checkpoint. No dataset needed."""
    ckpt = load_checkpoint(Path(path), stage=kind)
    config_cls, build = _UPSTREAM[kind]
    model = build(config_from_dict(config_cls, ckpt["config"], f"{ckpt['path']} (config)"))
    load_model_state(model, ckpt["model"], ckpt["path"])
    return model.to(device).eval(), ckpt


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_frozen(kind: str, path: Path | str, device: torch.device) -> tuple[torch.nn.Module, dict, dict]:
    """A frozen upstream model, its config (dict) and a record {path, sha256, step} of its file."""
    model, ckpt = load_model(kind, path, device)
    for p in model.parameters():
        p.requires_grad_(False)
    record = {"path": ckpt["path"], "sha256": file_sha256(Path(ckpt["path"])), "step": int(ckpt["step"])}
    return model, ckpt["config"], record


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


def store_of(ckpt: dict, config: Any, *, data_dir: Path | None, dataset: str | None) -> EpisodeStore:
    """The dataset a checkpoint was trained on (its recorded root, else DATA_DIR/<its name>), or `dataset`
    at the checkpoint's resolution. Only opened: evaluating or playing never collects a dataset."""
    if dataset is not None:
        d = config.data
        return EpisodeStore.open(
            dataset_root(data_dir or Path("data"), dataset, height=d.height, width=d.width)
        )
    info = ckpt.get("dataset", {})
    root = Path(info.get("root", ""))
    if not (root / "manifest.json").is_file():
        root = Path(data_dir or "data") / info.get("name", "")
    return EpisodeStore.open(root)


# --- where a world's actions come from ---


@dataclass
class ActionSource:
    """The actions between frames, as the dynamics model knows them: the frozen LAM's codes read off the
    frames, or (an oracle model) the dataset's true movement classes."""

    num_actions: int
    lam: LatentActionModel | None = None
    lam_clip: int = 0  # the LAM's clip length: longer clips are read in overlapping windows of it
    classes: list[str] | None = None  # the dataset's movement class of each raw action (oracle)

    @property
    def oracle(self) -> bool:
        """A model trained on the true movement classes: play maps keys to them directly, prompts bring
        their true actions, and no LAM reads frames."""
        return self.lam is None

    def describe(self) -> str:
        return "true actions (oracle)" if self.oracle else "latent actions from the LAM"

    def true_ids(self, actions: np.ndarray) -> np.ndarray:
        """Raw dataset actions -> the oracle model's action ids."""
        assert self.classes is not None, "true action ids need the dataset's movement classes"
        return class_ids(np.asarray(actions), self.classes)

    @torch.no_grad()
    def of_clip(self, frames: Tensor, true: Tensor | None = None) -> Tensor:
        """[B, T-1] action ids of clips: frames [B, T, 3, H, W] (float in [0, 1]) for the LAM, the
        raw true actions [B, T-1] for the oracle. A clip longer than the LAM's is read in overlapping
        windows of its length (the last one ends at the clip's end, full length)."""
        if self.lam is None:
            if true is None:
                raise GenieError("an oracle world needs the true actions of its clips")
            return torch.from_numpy(self.true_ids(true.cpu().numpy())).to(frames.device)
        x, n = frames, frames.shape[1]
        if n <= self.lam_clip:
            return self.lam.infer_actions(x)
        parts, t = [], 0
        while t < n - 1:
            end = min(t + self.lam_clip, n)
            begin = max(0, end - self.lam_clip)
            parts.append(self.lam.infer_actions(x[:, begin:end])[:, t - begin :])
            t = end - 1
        return torch.cat(parts, 1)


# --- the frozen inputs of a dynamics model ---


@dataclass
class Upstream:
    tokenizer: VideoTokenizer
    tokenizer_window: int  # its decoder's temporal window (its training clip length)
    actions: ActionSource
    records: dict[str, Any]  # {"actions": "lam" | "true", "tokenizer": {path, sha256, step}, "lam": ...}


def load_upstream(config: DynamicsConfig, store: EpisodeStore, device: torch.device, paths: dict) -> Upstream:
    """The frozen tokenizer and action source named by `paths` ({tokenizer, lam, lam_config, actions}),
    checked against the dynamics config and the dataset. The vocabulary and the number of actions are
    theirs: the config's left-out (0) `vocab_size` / `num_actions` are filled in, stated ones must agree."""
    m, d = config.model, config.data
    source = paths.get("actions", "lam")
    tokenizer, tok_cfg, tok_rec = load_frozen("tokenizer", paths["tokenizer"], device)
    vocab = tok_cfg["model"]["codebook"]["num_codes"]
    if m.token_embedding.vocab_size not in (0, vocab):
        raise GenieError(
            f"tokenizer {tok_rec['path']} has {vocab} codes but model.token_embedding.vocab_size is "
            f"{m.token_embedding.vocab_size}: they must match (or leave the key out)"
        )
    m.token_embedding.vocab_size = vocab
    tok_res = (tok_cfg["data"]["height"], tok_cfg["data"]["width"])
    if tok_res != (d.height, d.width) or tok_res != (store.height, store.width):
        raise GenieError(
            f"resolution mismatch: tokenizer {tok_res[0]}x{tok_res[1]}, config {d.height}x{d.width}, "
            f"dataset {store.height}x{store.width} (rows x columns)"
        )
    records: dict[str, Any] = {"actions": source, "tokenizer": tok_rec}
    if source == "lam":
        if not paths.get("lam"):
            raise GenieError("the dynamics stage needs --lam_path (or --actions true for the oracle)")
        lam, lam_cfg, lam_rec = load_frozen("lam", paths["lam"], device)
        codes = lam_cfg["model"]["codebook"]["num_codes"]
        if paths.get("lam_config"):
            stated = load_config(LamConfig, Path(paths["lam_config"])).model.codebook.num_codes
            if stated != codes:
                raise GenieError(
                    f"--lam_config {paths['lam_config']} says {stated} codes but the LAM checkpoint "
                    f"{lam_rec['path']} has {codes}"
                )
        records["lam"] = lam_rec
        actions = ActionSource(codes, lam=lam, lam_clip=int(lam_cfg["data"]["sequence_length"]))
    elif source == "true":
        if store.actions is None or not store.movement_classes:
            raise GenieError(f"--actions true: dataset {store.name} has no true actions (ALE data does)")
        codes = len(dict.fromkeys(store.movement_classes))
        actions = ActionSource(codes, classes=store.movement_classes)
    else:
        raise GenieError(f"--actions {source!r}: expected lam or true")
    if m.action_embedding.num_actions not in (0, codes):
        what = "the LAM" if source == "lam" else f"dataset {store.name}'s movement classes"
        raise GenieError(
            f"{what} has {codes} actions but model.action_embedding.num_actions is "
            f"{m.action_embedding.num_actions}: they must match (or leave the key out)"
        )
    m.action_embedding.num_actions = codes
    return Upstream(tokenizer, int(tok_cfg["data"]["sequence_length"]), actions, records)


def check_guidance(guidance: float, config: DynamicsConfig, what: str) -> None:
    """Guidance other than 1 needs the no-action branch, which only `action_dropout` > 0 trains."""
    if guidance != 1.0 and config.training.action_dropout == 0:
        raise GenieError(
            f"{what} {guidance} needs a model trained with training.action_dropout > 0 (its no-action "
            "branch); set guidance to 1 or train with action_dropout (e.g. 0.1)"
        )


def sampling_of(config: DynamicsConfig) -> SamplingConfig:
    """The config's inference settings as the sampler's."""
    inf = config.inference
    check_guidance(inf.guidance, config, "inference.guidance")
    temperature = 0.0 if inf.sampling == "greedy" else inf.temperature
    return SamplingConfig(inf.maskgit_steps, temperature, inf.schedule, inf.guidance, inf.top_p)


# --- the trained world ---


@dataclass
class TrainedWorld:
    """A dynamics checkpoint with everything it needs to run: `encode` frames, `infer_actions`, `sample`
    new frames' tokens, `decode` them."""

    config: DynamicsConfig
    store: EpisodeStore  # the dataset it was trained on: prompts, true actions, the game's facts
    tokenizer: VideoTokenizer
    tokenizer_window: int
    actions: ActionSource
    dynamics: DynamicsModel
    sampling: SamplingConfig
    checkpoint: str
    device: torch.device

    @classmethod
    def load(
        cls,
        checkpoint: Path | str,
        device: torch.device | str = "cpu",
        *,
        data_dir: Path | None = None,
        dataset: str | None = None,
    ) -> TrainedWorld:
        """A dynamics checkpoint (or run directory: its best) and the upstream checkpoints it records,
        which must be the files it was trained on (sha256)."""
        device = torch.device(device)
        ckpt = load_checkpoint(Path(checkpoint), stage="dynamics")
        config = config_from_dict(DynamicsConfig, ckpt["config"], f"{ckpt['path']} (config)")
        store = store_of(ckpt, config, data_dir=data_dir, dataset=dataset)
        up = load_upstream(config, store, device, upstream_paths(ckpt["upstream"], Path(ckpt["path"])))
        check_upstream(up.records, ckpt["upstream"], ckpt["path"])
        model = build_dynamics(config, up.tokenizer.num_patches)
        load_model_state(model, ckpt["model"], ckpt["path"])
        return cls(
            config,
            store,
            up.tokenizer,
            up.tokenizer_window,
            up.actions,
            model.to(device).eval(),
            sampling_of(config),
            str(ckpt["path"]),
            device,
        )

    @property
    def window(self) -> int:
        """Frames the dynamics model sees at once (its training clip length)."""
        return self.config.data.sequence_length

    @property
    def fps(self) -> int:
        return self.config.data.fps

    @torch.no_grad()
    def encode(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] float in [0, 1] -> tokens [B, T, N]."""
        return self.tokenizer.encode(frames)

    @torch.no_grad()
    def decode(self, tokens: Tensor) -> Tensor:
        """tokens [B, T, N] -> frames [B, T, 3, H, W], float, unclamped."""
        return self.tokenizer.decode(tokens)

    def infer_actions(self, frames: Tensor, true: Tensor | None = None) -> Tensor:
        """[B, T-1] action ids of clips (see `ActionSource.of_clip`)."""
        return self.actions.of_clip(frames, true)

    @torch.no_grad()
    def sample(
        self,
        tokens: Tensor,
        actions: Tensor,
        generator: torch.Generator | None = None,
        sampling: SamplingConfig | None = None,
    ) -> Tensor:
        """Prompt tokens [B, P, N] and the actions [B, P-1+H] from the prompt's first frame on -> the H
        generated frames' tokens [B, H, N]."""
        return self.dynamics.rollout(
            tokens, actions, sampling or self.sampling, window=self.window, generator=generator
        )
