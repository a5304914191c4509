"""Movement classes: the part of an action you can see in the next frame.

FIRE rarely changes the picture right away, so RIGHT and RIGHTFIRE are one class ("RIGHT") and NOOP
and FIRE are one class ("NOOP"). The LAM is scored against these classes, not raw ALE actions.
"""

from __future__ import annotations

import numpy as np


def movement_class(meaning: str) -> str:
    """'RIGHTFIRE' -> 'RIGHT', 'FIRE' -> 'NOOP', 'UPLEFT' -> 'UPLEFT'."""
    moved = meaning.upper().replace("FIRE", "")
    return moved or "NOOP"


def movement_classes(meanings: list[str]) -> list[str]:
    """The class of each action, in action order."""
    return [movement_class(m) for m in meanings]


def class_representatives(classes: list[str]) -> dict[str, int]:
    """The first action of each class, in order of first appearance."""
    reps: dict[str, int] = {}
    for action, cls in enumerate(classes):
        reps.setdefault(cls, action)
    return reps


def class_ids(actions: np.ndarray, classes: list[str]) -> np.ndarray:
    """Action indices -> class ids (order of `class_representatives`); -1 (no action) stays -1."""
    names = list(class_representatives(classes))
    lookup = np.array([names.index(c) for c in classes] + [-1], dtype=np.int64)  # lookup[-1] == -1
    return lookup[np.asarray(actions, dtype=np.int64)]
