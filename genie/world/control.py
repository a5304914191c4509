"""Control you can see: does holding "up" move the agent's paddle up in the generated frames?

For games whose agent paddle we know (`genie.data.games`: Pong), the paddle is found in each frame by
its colour inside its column band (centre row = mean row of matching pixels). From each of many
held-out prompts the world is played twice from the same seeded start, once holding the key mapped to
"up" and once "down", for a few frames; a step counts when the paddle is seen before and after it and
is free to move (not within `margin` rows of either wall). The rate is the share of those steps in
which the paddle moved the way of the key. The same measure on the real frames with the true actions
is the reference (momentum makes it < 100%).
"""

from __future__ import annotations

import numpy as np

from genie.data.actions import class_ids
from genie.data.games import KNOWN_GAMES, Paddle
from genie.data.store import EpisodeStore
from genie.progress import progress_bar
from genie.world.world import World, WorldModels

MIN_PIXELS = 2  # fewer matching pixels: no paddle seen
MOVED = 0.5  # rows: a smaller change of the centre is "did not move"


def paddle_of(store: EpisodeStore) -> Paddle | None:
    facts = KNOWN_GAMES.get(str(store.manifest.get("game", "")))
    return facts.paddle if facts is not None and facts.paddle is not None else None


def paddle_row(frame: np.ndarray, paddle: Paddle) -> float | None:
    """The centre row of the agent's paddle in frame uint8 [H, W, 3], or None if it is not seen."""
    h, w = frame.shape[:2]
    band = frame[:, int(paddle.columns[0] * w) : int(np.ceil(paddle.columns[1] * w))].astype(np.int32)
    match = np.abs(band - np.array(paddle.colour)).sum(-1) < 60
    rows = np.nonzero(match)[0]
    top, bottom = paddle.centre_rows[0] * h - 4, paddle.centre_rows[1] * h + 4
    rows = rows[(rows >= top) & (rows <= bottom)]
    return float(rows.mean()) if len(rows) >= MIN_PIXELS else None


def _free(row: float, paddle: Paddle, h: int, margin: float) -> bool:
    return paddle.centre_rows[0] * h + margin < row < paddle.centre_rows[1] * h - margin


def _score(rows: list[float | None], sign: int, paddle: Paddle, h: int, margin: float) -> tuple[int, int]:
    """(steps moving the way of `sign`, steps that count) along a sequence of paddle rows."""
    right = counted = 0
    for a, b in zip(rows[:-1], rows[1:], strict=True):
        if a is None or b is None or not _free(a, paddle, h, margin):
            continue
        counted += 1
        right += sign * (b - a) >= MOVED
    return right, counted


def control_rate(
    models: WorldModels, *, prompts: int = 64, horizon: int = 4, margin: float = 4.0, seed: int = 0
) -> dict | None:
    """Rates for the generated world and for the real data; None when the game's paddle is unknown."""
    store = models.store
    paddle = paddle_of(store)
    keys = models.actions.keys
    if paddle is None or "up" not in keys or "down" not in keys:
        return None
    h = store.height
    out: dict = {"prompts": prompts, "horizon": horizon, "margin_rows": margin}
    seen = total = 0
    bar = progress_bar(
        total=2 * prompts, desc="measuring control (up/down from held-out prompts)", unit="run"
    )
    for label, sign in (("up", -1), ("down", 1)):
        right = counted = 0
        for p in range(prompts):
            bar.update(1)
            world = World(models, seed=seed + p)  # the same start for both keys
            rows = [paddle_row(world.reset(), paddle)]
            rows += [paddle_row(world.step(keys[label]), paddle) for _ in range(horizon)]
            r, c = _score(rows, sign, paddle, h, margin)
            right, counted = right + r, counted + c
            seen += sum(row is not None for row in rows[1:])
            total += horizon
        out[f"{label}_rate"] = right / counted if counted else float("nan")
        out[f"{label}_steps"] = counted
    bar.close()
    out["paddle_seen"] = seen / total
    out["real"] = real_rate(store, paddle, margin)
    return out


def real_rate(store: EpisodeStore, paddle: Paddle, margin: float, max_steps: int = 4000) -> dict | None:
    """The same measure on held-out real frames, with the true actions held at each step."""
    if store.actions is None or not store.movement_classes:
        return None
    names = store.movement_labels()
    rates: dict = {}
    for label, sign in (("up", -1), ("down", 1)):
        if label not in names:
            continue
        want, right, counted = names.index(label), 0, 0
        for ep in store.split_episodes("val"):
            start, end = (int(v) for v in store.episodes[ep])
            classes = class_ids(np.asarray(store.actions[start:end]), store.movement_classes)
            for t in np.nonzero(classes[:-1] == want)[0]:
                if counted >= max_steps:
                    break
                rows = [paddle_row(np.asarray(store.frames[start + t + i]), paddle) for i in (0, 1)]
                r, c = _score(rows, sign, paddle, store.height, margin)
                right, counted = right + r, counted + c
        rates[f"{label}_rate"] = right / counted if counted else float("nan")
    return rates
