"""Are the game's objects still there? Presence of each known object (Pong: both paddles, the ball) in
frames, by colour inside the object's box.

A world model that drifts loses small objects first: a ball that is sampled away in one frame has no
history to come back from. PSNR barely notices (the ball is 2 of 9,216 pixels); counting the frames in
which each object is seen, generated against real at the same time steps, does.
"""

from __future__ import annotations

import numpy as np

from genie.data.games import KNOWN_GAMES, ObjectLook


def game_objects(game: str | None) -> dict[str, ObjectLook]:
    """The objects we know how to find in this ALE game's frames ({} for any other dataset)."""
    facts = KNOWN_GAMES.get(str(game or ""))
    return dict(facts.objects or {}) if facts is not None else {}


def objects_seen(frames: np.ndarray, objects: dict[str, ObjectLook]) -> dict[str, np.ndarray]:
    """frames uint8 [..., H, W, 3] -> for each object, bool [...]: is it seen in that frame."""
    h, w = frames.shape[-3:-1]
    seen = {}
    for name, look in objects.items():
        r0, r1 = int(look.rows[0] * h), int(np.ceil(look.rows[1] * h))
        c0, c1 = int(look.columns[0] * w), int(np.ceil(look.columns[1] * w))
        box = frames[..., r0:r1, c0:c1, :].astype(np.int32)
        match = np.abs(box - np.array(look.colour)).sum(-1) < look.tolerance
        seen[name] = match.sum((-2, -1)) >= look.min_pixels
    return seen
