"""Are the game's objects still there, once each? Presence and count of each known object (Pong: both
paddles, the ball) in frames, by colour inside the object's box.

A world model that drifts loses small objects first: a ball that is sampled away in one frame has no
history to come back from. PSNR barely notices (the ball is 2 of 9,216 pixels); counting the frames in
which each object is seen, generated against real at the same time steps, does. A drifting world also
duplicates objects (two agent paddles, smeared ghosts), which presence cannot see: `objects_counted`
counts the separate blobs of each object's colour.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

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
    return {name: _matches(frames, look).sum((-2, -1)) >= look.min_pixels for name, look in objects.items()}


def _matches(frames: np.ndarray, look: ObjectLook) -> np.ndarray:
    """frames uint8 [..., H, W, 3] -> bool [..., h, w]: pixels of the object's colour inside its box."""
    h, w = frames.shape[-3:-1]
    rows, cols = box(look, h, w)
    return (
        np.abs(frames[..., rows, cols, :].astype(np.int32) - np.array(look.colour)).sum(-1) < look.tolerance
    )


def objects_counted(frames: np.ndarray, objects: dict[str, ObjectLook]) -> dict[str, np.ndarray]:
    """frames uint8 [..., H, W, 3] -> for each object, int [...]: how many separate blobs of its colour
    (8-connected, each of at least `min_pixels`) its box holds. Real Pong frames: one agent paddle in
    every frame, no frame with two of anything in 4,000 but two opponent blobs (0.05%)."""
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:])
    counts = {}
    for name, look in objects.items():
        out = np.zeros(len(flat), np.int64)
        for i, match in enumerate(_matches(flat, look)):
            labels, n = ndimage.label(match, structure=np.ones((3, 3)))
            if n:
                out[i] = int((np.bincount(labels.ravel())[1:] >= look.min_pixels).sum())
        counts[name] = out.reshape(lead)
    return counts


def object_pixels(frames: np.ndarray, objects: dict[str, ObjectLook]) -> dict[str, np.ndarray]:
    """frames uint8 [..., H, W, 3] -> for each object, bool [..., H, W]: its colour's pixels inside its box,
    in frame coordinates (where in the frame, or on which tokens, an object is)."""
    h, w = frames.shape[-3:-1]
    out = {}
    for name, look in objects.items():
        mask = np.zeros(frames.shape[:-1], bool)
        rows, cols = box(look, h, w)
        mask[..., rows, cols] = _matches(frames, look)
        out[name] = mask
    return out
