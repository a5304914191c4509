"""Are the game's objects still there? Presence of each known object (Pong: both paddles, the ball) in
frames, by colour inside the object's box.

A world model that drifts loses small objects first: a ball that is sampled away in one frame has no
history to come back from. PSNR barely notices (the ball is 2 of 9,216 pixels); counting the frames in
which each object is seen, generated against real at the same time steps, does.
"""

from __future__ import annotations

import numpy as np

from genie.data.games import KNOWN_GAMES, ObjectLook

MEASURED_AT = (72, 128)  # the looks' colours survive the resize at this size; elsewhere they are not used


def game_objects(game: str | None, height: int, width: int) -> dict[str, ObjectLook]:
    """The objects we know how to find in this ALE game's frames at this size ({} otherwise: a blended
    ball at another resolution may never match its colour, and a metric that cannot see is no metric)."""
    facts = KNOWN_GAMES.get(str(game or ""))
    if facts is None or (height, width) != MEASURED_AT:
        return {}
    return dict(facts.objects or {})


def box(look: ObjectLook, height: int, width: int) -> tuple[slice, slice]:
    """The rows and columns of a frame of this size where the object is looked for."""
    rows = slice(int(look.rows[0] * height), int(np.ceil(look.rows[1] * height)))
    return rows, slice(int(look.columns[0] * width), int(np.ceil(look.columns[1] * width)))


def objects_seen(frames: np.ndarray, objects: dict[str, ObjectLook]) -> dict[str, np.ndarray]:
    """frames uint8 [..., H, W, 3] -> for each object, bool [...]: is it seen in that frame."""
    h, w = frames.shape[-3:-1]
    seen = {}
    for name, look in objects.items():
        rows, cols = box(look, h, w)
        match = (
            np.abs(frames[..., rows, cols, :].astype(np.int32) - np.array(look.colour)).sum(-1)
            < look.tolerance
        )
        seen[name] = match.sum((-2, -1)) >= look.min_pixels
    return seen
