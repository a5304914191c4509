"""A learned world you can step: prompt frames in, then one generated frame per action.

`WorldModels` holds what every player shares (the frozen tokenizer, LAM and dynamics model, the dataset
for prompts, the key map); a `World` is one player's state on top of them: the past frames' temporal
keys and values, cached per layer for the dynamics model and for the tokenizer's decoder. Each step runs
MaskGIT over the new frame only and decodes only that frame, so its cost does not grow with the history.
Inference is fp32: bf16 at batch 1 was 2x slower on this CPU.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from genie.data.actions import class_ids
from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import to_float, to_uint8
from genie.data.readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, read_images, read_video
from genie.data.resize import resize_frames
from genie.data.store import EpisodeStore
from genie.errors import GenieError
from genie.inference import PROMPT_FRAMES, TrainedWorld, check_guidance
from genie.models.dynamics import DynamicsModel, SamplingConfig
from genie.models.st_transformer import FrameCache
from genie.world.action_map import STAY, ActionMap, map_from_frames, map_from_labels

MAP_CLIPS = 64  # validation clips read to map latent codes to keys


@dataclass
class WorldModels:
    """A trained world (genie.inference) with what play adds: the sampling settings asked for and the map
    from latent codes to keys."""

    trained: TrainedWorld
    sampling: SamplingConfig
    actions: ActionMap

    @classmethod
    def load(
        cls,
        checkpoint: Path | str,
        *,
        device: str | torch.device = "cpu",
        data_dir: Path | None = None,
        steps: int | None = None,
        temperature: float | None = None,
        guidance: float | None = None,
        top_p: float | None = None,
    ) -> WorldModels:
        """A dynamics checkpoint (or run directory: its best) and the upstream checkpoints it records."""
        trained = TrainedWorld.load(checkpoint, device, data_dir=data_dir)
        s = trained.sampling
        if guidance is not None:
            check_guidance(guidance, trained.config, f"guidance (for {trained.checkpoint})")
        sampling = SamplingConfig(
            s.steps if steps is None else steps,
            s.temperature if temperature is None else temperature,
            s.schedule,
            s.guidance if guidance is None else guidance,
            s.top_p if top_p is None else top_p,
        )
        return cls(trained, sampling, action_map(trained))

    @property
    def dynamics(self) -> DynamicsModel:
        return self.trained.dynamics

    @property
    def store(self) -> EpisodeStore:
        return self.trained.store

    @property
    def device(self) -> torch.device:
        return self.trained.device

    @property
    def checkpoint(self) -> str:
        return self.trained.checkpoint


@torch.no_grad()
def action_map(trained: TrainedWorld) -> ActionMap:
    """Latent code -> key label, from the validation episodes (see genie.world.action_map)."""
    store, source = trained.store, trained.actions
    names = store.movement_labels()
    if source.oracle:  # the model was trained on the movement classes themselves
        return ActionMap(names, [1.0] * len(names), [0] * len(names), "true actions (oracle model)")
    val = ClipDataset(store, "val", source.lam_clip, stride=source.lam_clip)
    picks = evenly_spaced(len(val), MAP_CLIPS)
    clips = [val[i] for i in picks]
    frames = to_float(torch.stack([c["frames"] for c in clips]).to(trained.device))
    if store.actions is None or not store.movement_classes:
        return map_from_frames(source.lam, frames)
    codes = source.of_clip(frames).cpu().numpy().ravel()
    truth = class_ids(torch.stack([c["actions"] for c in clips]).numpy(), store.movement_classes).ravel()
    keep = truth >= 0
    if store.identifiable is not None:
        keep &= torch.stack([c["identifiable"] for c in clips]).numpy().ravel()
    return map_from_labels(
        codes[keep], truth[keep], names, source.num_actions, "agreement with true actions (validation)"
    )


class World:
    """One player's world: `reset` from prompt frames, then `step(code)` -> the next frame."""

    def __init__(self, models: WorldModels, seed: int = 0) -> None:
        self.models = models
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=models.device).manual_seed(seed)
        self.frame: np.ndarray | None = None  # the last frame shown, uint8 [H, W, 3]
        self.steps = 0
        self.latency_ms = 0.0  # model time of the last step

    @property
    def num_actions(self) -> int:
        return self.models.dynamics.num_actions

    def seed(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.generator.manual_seed(seed)

    def reset(self, prompt: np.ndarray | Path | str | None = None) -> np.ndarray:
        """Start from prompt frames: uint8 [P, H, W, 3] (any size: resized), an image or video file, or None
        for a random moment of a held-out episode. Returns the last prompt frame."""
        m = self.models
        frames, actions = self._prompt(prompt)
        x = to_float(torch.from_numpy(frames).permute(0, 3, 1, 2)[None].to(m.device))
        if actions is None:
            actions = self._actions_between(x)
        w = m.trained
        tokens = w.encode(x)  # (1, p, n)
        self.cache = FrameCache(w.window)
        self.decoder_cache = FrameCache(w.tokenizer_window)
        none = torch.tensor([m.dynamics.null_action], device=m.device)
        for t in range(tokens.shape[1]):
            m.dynamics.observe(tokens[:, t], none if t == 0 else actions[:, t - 1], self.cache)
            w.tokenizer.decode_next(tokens[:, t], self.decoder_cache)
        self.frame, self.steps = frames[-1], 0
        return self.frame

    @torch.no_grad()
    def step(self, action: int) -> np.ndarray:
        """Latent action `action` -> the next frame, uint8 [H, W, 3]."""
        if self.frame is None:
            raise GenieError("call reset() before step()")
        if not 0 <= int(action) < self.num_actions:
            raise GenieError(f"action {action}: expected 0..{self.num_actions - 1}")
        m = self.models
        start = time.perf_counter()
        a = torch.tensor([int(action)], device=m.device)
        tokens = m.dynamics.sample_next(a, self.cache, m.sampling, self.generator)
        frame = m.trained.tokenizer.decode_next(tokens, self.decoder_cache)[0]
        self.frame = to_uint8(frame).permute(1, 2, 0).cpu().numpy()
        self.latency_ms = (time.perf_counter() - start) * 1000
        self.steps += 1
        return self.frame

    # --- prompts ---

    def _prompt(self, prompt: np.ndarray | Path | str | None) -> tuple[np.ndarray, torch.Tensor | None]:
        """Prompt frames uint8 [P, H, W, 3] and the true actions between them [1, P-1] where the model
        was trained on those (None: read them from the frames, `_actions_between`)."""
        m, store = self.models, self.models.store
        if prompt is None:
            episodes = [
                e for e in store.split_episodes("val") if np.diff(store.episodes[e])[0] >= PROMPT_FRAMES
            ]
            if not episodes:
                raise GenieError(f"dataset {store.root} has no validation episode of {PROMPT_FRAMES}+ frames")
            start, end = store.episodes[episodes[self.rng.integers(len(episodes))]]
            t = int(self.rng.integers(start, end - PROMPT_FRAMES + 1))
            frames = store.read_frames(t, t + PROMPT_FRAMES)
            if m.trained.actions.oracle:
                true = m.trained.actions.true_ids(store.actions[t : t + PROMPT_FRAMES - 1])
                return frames, torch.from_numpy(true)[None].to(m.device)
        elif isinstance(prompt, np.ndarray):
            frames = prompt
        else:
            frames = read_prompt_file(Path(prompt))
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise GenieError(
                f"prompt frames: expected uint8 [P, H, W, 3], got {frames.dtype} {list(frames.shape)}"
            )
        return resize_frames(frames[-PROMPT_FRAMES:], store.height, store.width), None

    def _actions_between(self, x: Tensor) -> Tensor:
        """The LAM's reading of the transitions of prompt x [1, P, 3, H, W] in [0, 1] (or "stay" for a
        true-action model): [1, P-1]."""
        m = self.models
        if x.shape[1] < 2:
            return torch.zeros(1, 0, dtype=torch.long, device=m.device)
        if m.trained.actions.lam is not None:
            return m.trained.actions.of_clip(x)
        stay = m.actions.code_for(STAY) or 0
        return torch.full((1, x.shape[1] - 1), stay, dtype=torch.long, device=m.device)


def read_prompt_file(path: Path) -> np.ndarray:
    """An image -> one prompt frame; a video -> its first PROMPT_FRAMES frames. uint8 [P, h, w, 3]."""
    if not path.is_file():
        raise GenieError(f"prompt {path} does not exist (expected an image or a video file)")
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return next(read_images([path]))
    if suffix in VIDEO_SUFFIXES:
        return next(read_video(path))[:PROMPT_FRAMES]
    known = ", ".join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)
    raise GenieError(f"prompt {path}: unsupported type {suffix or '(none)'} (expected {known})")
