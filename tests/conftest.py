"""Shared fixtures: one small real Pong dataset for the whole session, opened once per test module, and tiny
trained runs of the three stages on it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from genie.world import WorldModels

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


@pytest.fixture(scope="module")
def store(pong_dataset: Path):
    """The Pong dataset opened (an EpisodeStore), once per test module."""
    from genie.data.store import EpisodeStore

    return EpisodeStore.open(pong_dataset)


@pytest.fixture(scope="session")
def upstream(pong_dataset, tmp_path_factory) -> dict[str, Path]:
    """Tiny tokenizer and LAM runs (2 steps each, no eval) on the real Pong fixture."""
    from tiny_runs import LAM, TOKENIZER, train_by_cli

    tmp = tmp_path_factory.mktemp("upstream")
    runs = {}
    for stage, cfg in (("tokenizer", TOKENIZER), ("lam", LAM)):
        runs[stage], _ = train_by_cli(stage, cfg, pong_dataset, tmp, "--no_eval")
    runs["lam_config"] = tmp / "lam.yaml"  # written by train_by_cli
    return runs


@pytest.fixture(scope="session")
def dynamics_run(pong_dataset, upstream, tmp_path_factory) -> Path:
    """A tiny dynamics run (2 steps, no eval) on the tiny tokenizer and LAM: a playable, untrained world."""
    from tiny_runs import DYNAMICS, train_by_cli

    paths = ["--tokenizer_path", str(upstream["tokenizer"]), "--lam_path", str(upstream["lam"])]
    run, _ = train_by_cli(
        "dynamics", DYNAMICS, pong_dataset, tmp_path_factory.mktemp("dynamics"), *paths, "--no_eval"
    )
    return run


@pytest.fixture(scope="module")
def models(dynamics_run: Path) -> WorldModels:
    """The tiny dynamics run loaded for play, sampling greedily (the same frames every time)."""
    from genie.world import WorldModels

    return WorldModels.load(dynamics_run, temperature=0.0)


@pytest.fixture(scope="module")
def keyed(models: WorldModels) -> WorldModels:
    """The same world with a known key map (a 2-step LAM's own map may give every code one label)."""
    from dataclasses import replace

    from genie.world.action_map import ActionMap

    return replace(models, actions=ActionMap(["up", "down", "stay"], [1.0] * 3, [10] * 3, "test"))
