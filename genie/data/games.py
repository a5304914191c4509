"""ALE games: turning a user's game id into a gymnasium env id, and what we know about Pong.

The Pong facts were measured with ale-py 0.12 (see tests/test_data_collect.py, which re-checks them on
stored frames): the agent is the right-hand green paddle; RAM byte 51 holds its vertical position,
38 when pinned at the top wall and 203 at the bottom; RIGHT moves it up, LEFT moves it down, and a
change of direction shows up one step late (the paddle has momentum).
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass

from genie.errors import GenieError


@dataclass(frozen=True)
class Paddle:
    """Where the agent's paddle lives in RAM and in the picture, and which movement classes move it."""

    ram_index: int
    top: int  # RAM value when the paddle touches the top wall
    bottom: int  # ... and the bottom wall
    up_class: str
    down_class: str
    colour: tuple[int, int, int] = (0, 0, 0)  # RGB of the paddle in frames
    # Where it moves, as fractions of the frame (measured at 72 x 128, so they scale to other sizes):
    # the column band it occupies, and the range of its centre row from one wall to the other.
    columns: tuple[float, float] = (0.0, 1.0)
    centre_rows: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class ObjectLook:
    """How to tell that an object is in a frame: a pixel of its colour (within `tolerance`, the sum of
    absolute RGB differences) inside its box, given as fractions of the frame (measured at 72 x 128)."""

    colour: tuple[int, int, int]
    rows: tuple[float, float]
    columns: tuple[float, float]
    tolerance: int = 60
    min_pixels: int = 1


@dataclass(frozen=True)
class GameFacts:
    paddle: Paddle | None = None
    movement_names: dict[str, str] | None = None  # movement class -> what a person calls it
    objects: dict[str, ObjectLook] | None = None  # the things a generated frame should still show


_PONG_PADDLE = Paddle(
    ram_index=51,
    top=38,
    bottom=203,
    up_class="RIGHT",
    down_class="LEFT",
    colour=(92, 186, 92),
    columns=(111 / 128, 116 / 128),  # the score digits share the colour further left
    centre_rows=(15 / 72, 64.5 / 72),  # measured over 4,000 frames at 72 rows
)


KNOWN_GAMES: dict[str, GameFacts] = {
    "pong": GameFacts(
        paddle=_PONG_PADDLE,
        movement_names={"NOOP": "stay", "RIGHT": "up", "LEFT": "down"},
        # Measured on 800 frames of the default dataset: the agent's paddle is seen in 100% of them, the
        # opponent's in 86% (it hides behind the top wall now and then), the ball in 41% (it is off the
        # court between points, which a random player loses quickly). The ball is blended by the resize:
        # its brightest pixel stays within 150 of white; walls and score sit outside its box.
        objects={
            "agent_paddle": ObjectLook(
                _PONG_PADDLE.colour, (12 / 72, 67 / 72), _PONG_PADDLE.columns, min_pixels=2
            ),
            "opponent_paddle": ObjectLook(
                (213, 130, 74), (14 / 72, 65 / 72), (12 / 128, 18 / 128), min_pixels=2
            ),
            "ball": ObjectLook((236, 236, 236), (13 / 72, 65 / 72), (18 / 128, 110 / 128), tolerance=150),
        },
    ),
}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


@functools.cache
def ale_env_ids() -> dict[str, str]:
    """ALE game id (e.g. 'space_invaders') -> gymnasium id ('ALE/SpaceInvaders-v5')."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    ids = {}
    for env_id, spec in gym.registry.items():
        if env_id.startswith("ALE/") and env_id.endswith("-v5") and "game" in spec.kwargs:
            ids[spec.kwargs["game"]] = env_id
    return ids


def find_game(name: str) -> str | None:
    """The ALE game id a user means by `name` ('Pong', 'space-invaders', 'SpaceInvaders'), or None."""
    wanted = _key(name.removeprefix("ALE/").split("-v")[0])
    for game in ale_env_ids():
        if _key(game) == wanted:
            return game
    return None


def resolve_game(name: str) -> tuple[str, str]:
    """(game id, gymnasium env id); an unknown game is a GenieError with near matches."""
    game = find_game(name)
    if game is None:
        close = difflib.get_close_matches(_key(name), list(ale_env_ids()), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise GenieError(
            f"unknown ALE game {name!r}: {hint}valid ids are ALE ROM ids such as pong, breakout, "
            f'space_invaders (list them: python -c "import ale_py.roms as r; print(r.get_all_rom_ids())")'
        )
    return game, ale_env_ids()[game]
