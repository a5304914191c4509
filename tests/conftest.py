"""Shared fixtures: one small real Pong dataset for the whole session."""

from __future__ import annotations

from pathlib import Path

import pytest

PONG_FRAMES = 600
PONG_EPISODE_FRAMES = 150  # -> 4 episodes, enough for a train/val split


@pytest.fixture(scope="session")
def pong_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real Pong dataset (600 frames, 4 episodes of 150, seed 0, 72x128) collected from ALE; its folder."""
    from genie.data.collect import collect

    data_dir = tmp_path_factory.mktemp("data")
    return collect(
        "pong", data_dir, frames=PONG_FRAMES, episode_frames=PONG_EPISODE_FRAMES, seed=0, progress=False
    )
