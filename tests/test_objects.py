"""Object presence (genie.evaluation.objects) on real Pong frames from ALE."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genie.data.store import EpisodeStore
from genie.evaluation.objects import box, game_objects, objects_seen


def test_pong_objects_are_found_and_missed_where_they_should_be(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    objects = game_objects("pong", store.height, store.width)
    frames = np.asarray(store.frames)
    seen = objects_seen(frames, objects)
    assert set(seen) == {"agent_paddle", "opponent_paddle", "ball"}
    assert seen["agent_paddle"].all() and seen["opponent_paddle"].mean() > 0.5
    assert 0.1 < seen["ball"].mean() < 1.0  # off the court between points

    # painting the court over the ball (the median frame has no ball) removes it and nothing else
    with_ball = frames[seen["ball"]][:20]
    court = np.median(frames, axis=0).astype(np.uint8)
    h, w = court.shape[:2]
    rows, cols = box(objects["ball"], h, w)
    without = with_ball.copy()
    without[:, rows, cols] = court[rows, cols]
    after = objects_seen(without, objects)
    assert not after["ball"].any() and after["agent_paddle"].all()

    # a black frame shows nothing; another game has no known objects
    blank = objects_seen(np.zeros((2, h, w, 3), np.uint8), objects)
    assert not any(v.any() for v in blank.values())
    assert game_objects("breakout", h, w) == {} and game_objects(None, h, w) == {}
    assert game_objects("pong", 2 * h, 2 * w) == {}  # the looks were measured at 72 x 128 only


def test_leading_dimensions_are_kept() -> None:
    frames = np.zeros((3, 5, 72, 128, 3), np.uint8)
    assert objects_seen(frames, game_objects("pong", 72, 128))["ball"].shape == (3, 5)
