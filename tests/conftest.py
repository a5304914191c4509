"""Shared fixtures: one small real Pong dataset for the whole session."""

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


def _data_args(dataset: Path) -> list[str]:
    return ["--data_dir", str(dataset.parent), "--dataset", dataset.name, "--quiet"]


@pytest.fixture(scope="session")
def upstream(pong_dataset, tmp_path_factory) -> dict[str, Path]:
    """Tiny tokenizer and LAM runs (2 steps each, no eval) on the real Pong fixture."""
    from tiny_runs import LAM, TOKENIZER, write

    from genie.cli import main

    tmp = tmp_path_factory.mktemp("upstream")
    runs = {}
    for stage, cfg in (("tokenizer", TOKENIZER), ("lam", LAM)):
        config = write(tmp / f"{stage}.yaml", cfg)
        args = ["train", stage, "--config", str(config), "--output_dir", str(tmp / "ck"), "--no_eval"]
        assert main([*args, *_data_args(pong_dataset)]) == 0
        (runs[stage],) = (tmp / "ck" / stage).iterdir()
    runs["lam_config"] = tmp / "lam.yaml"
    return runs


@pytest.fixture(scope="session")
def dynamics_run(pong_dataset, upstream, tmp_path_factory) -> Path:
    """A tiny dynamics run (2 steps, no eval) on the tiny tokenizer and LAM: a playable, untrained world."""
    from tiny_runs import DYNAMICS, write

    from genie.cli import main

    tmp = tmp_path_factory.mktemp("dynamics")
    config = write(tmp / "dynamics.yaml", DYNAMICS)
    args = ["train", "dynamics", "--config", str(config), "--output_dir", str(tmp / "ck"), "--no_eval"]
    args += ["--tokenizer_path", str(upstream["tokenizer"]), "--lam_path", str(upstream["lam"])]
    assert main([*args, *_data_args(pong_dataset)]) == 0
    (run,) = (tmp / "ck" / "dynamics").iterdir()
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
