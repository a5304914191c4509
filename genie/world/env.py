"""The learned world as a Gymnasium environment, so agents can be trained inside it.

    import gymnasium, genie.world
    env = gymnasium.make("genie/World-v0", checkpoint="checkpoints/dynamics/run_X")

Actions are the mapped latent actions (`env.unwrapped.action_labels`, e.g. stay / up / down), observations
the generated RGB frames. The world has no reward or end of its own: reward is 0 and episodes end by
truncation after `max_steps`. `reset(seed=...)` fixes both the prompt and the sampling, so a seeded episode
replays exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from genie.world.world import World, WorldModels


class WorldEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        checkpoint: str | Path | None = None,
        *,
        models: WorldModels | None = None,
        device: str = "cpu",
        data_dir: str | Path | None = None,
        max_steps: int = 1000,
        render_mode: str | None = "rgb_array",
        steps: int | None = None,
        temperature: float | None = None,
    ) -> None:
        if models is None:
            if checkpoint is None:
                raise ValueError("WorldEnv needs checkpoint= (a dynamics checkpoint or run directory)")
            data = Path(data_dir) if data_dir is not None else None
            models = WorldModels.load(
                checkpoint, device=device, data_dir=data, steps=steps, temperature=temperature
            )
        self.world = World(models)
        keys = models.actions.keys  # label -> code, one code per label
        self.action_labels = list(keys)
        self._codes = list(keys.values())
        store = models.store
        self.action_space = spaces.Discrete(len(self._codes))
        self.observation_space = spaces.Box(0, 255, (store.height, store.width, 3), np.uint8)
        self.max_steps = max_steps
        self.render_mode = render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.world.seed(int(self.np_random.integers(2**31)))
        prompt = (options or {}).get("prompt")
        frame = self.world.reset(prompt)
        return frame.copy(), {"step": 0}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action {action!r} is not in {self.action_space}")
        code = self._codes[int(action)]
        frame = self.world.step(code)
        info = {"step": self.world.steps, "latent_action": code, "label": self.action_labels[int(action)]}
        return frame.copy(), 0.0, False, self.world.steps >= self.max_steps, info

    def render(self):
        return None if self.world.frame is None else self.world.frame.copy()


def register() -> None:
    if "genie/World-v0" not in gym.registry:
        gym.register(id="genie/World-v0", entry_point="genie.world.env:WorldEnv")
