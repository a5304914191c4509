"""The behaviour policy that plays the game while we record it.

It picks an action uniformly from all actions and holds it for a random number of steps (uniform in
1..max_hold): holding gives runs of the same movement, so the data shows the paddle travelling and
not only jittering, and uniform picks visit every action. In games with a paddle against walls (Pong)
a wall guard reads the paddle's RAM position: when the paddle is within `margin` of a wall and the
held action does not move away from it, with probability `prob` it switches to a random action that
does. Without it about half (52%, measured) of a random Pong player's steps are spent pinned at a
wall, where every action gives the same next frame, so latent actions cannot be learned from them;
with it about 7%, enough for the dynamics model to learn that walls stop the paddle. All randomness comes
from one numpy Generator seeded by the collection seed, so a seed fixes the whole recording.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from genie.data.games import Paddle

DEFAULT_MAX_HOLD = 8


@dataclass(frozen=True)
class WallGuard:
    paddle: Paddle
    up_actions: tuple[int, ...]  # actions of the paddle's up class
    down_actions: tuple[int, ...]
    margin: int = 4  # RAM units (the paddle moves up to ~24 per step at full speed)
    prob: float = 0.5  # per step: the paddle still rests at walls now and then, as in real play

    def away_actions(self, ram: np.ndarray, action: int) -> tuple[int, ...] | None:
        """Actions leading away from a wall the paddle is near, or None when `action` is fine."""
        y = int(ram[self.paddle.ram_index])
        if y <= self.paddle.top + self.margin and action not in self.down_actions:
            return self.down_actions
        if y >= self.paddle.bottom - self.margin and action not in self.up_actions:
            return self.up_actions
        return None


class HoldPolicy:
    """Uniform random actions held for 1..max_hold steps, with an optional wall guard."""

    def __init__(
        self, num_actions: int, seed: int, *, max_hold: int = DEFAULT_MAX_HOLD, guard: WallGuard | None = None
    ):
        self.num_actions = num_actions
        self.max_hold = max_hold
        self.guard = guard
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._action = 0
        self._left = 0  # steps the current action is still held

    def reset(self) -> None:
        """Start a fresh hold at an episode start (the RNG stream continues)."""
        self._left = 0

    def act(self, ram: np.ndarray) -> int:
        if self._left == 0:
            self._hold(int(self._rng.integers(self.num_actions)))
        if self.guard is not None:
            away = self.guard.away_actions(ram, self._action)
            if away is not None and self._rng.random() < self.guard.prob:
                self._hold(int(self._rng.choice(away)))
        self._left -= 1
        return self._action

    def _hold(self, action: int) -> None:
        self._action = action
        self._left = int(self._rng.integers(1, self.max_hold + 1))

    def describe(self) -> dict[str, Any]:
        """What the manifest records about how the data was played."""
        guard = None
        if self.guard is not None:
            guard = {
                **asdict(self.guard.paddle),
                "up_actions": list(self.guard.up_actions),
                "down_actions": list(self.guard.down_actions),
                "margin": self.guard.margin,
                "prob": self.guard.prob,
            }
        return {
            "name": "hold",
            "description": "uniform random action held for uniform 1..max_hold steps; near a wall the "
            "paddle switches (with probability prob) to an action moving away from it",
            "max_hold": self.max_hold,
            "seed": self.seed,
            "wall_guard": guard,
        }


def make_policy(
    paddle: Paddle | None, classes: list[str], seed: int, *, max_hold: int = DEFAULT_MAX_HOLD
) -> HoldPolicy:
    """The behaviour policy for a game with these movement classes (one per action)."""
    guard = None
    if paddle is not None:
        up = tuple(a for a, c in enumerate(classes) if c == paddle.up_class)
        down = tuple(a for a, c in enumerate(classes) if c == paddle.down_class)
        guard = WallGuard(paddle, up, down)
    return HoldPolicy(len(classes), seed, max_hold=max_hold, guard=guard)
