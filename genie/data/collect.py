"""Record an ALE game into a dataset: frames, the true action of every step, rewards, identifiability.

ALE is driven directly (`ale.act` `frameskip` times per step, as gymnasium's step does) with sticky
actions off, so the recorded action is the one that was applied. Episodes end at game over or after
`episode_frames` frames (default 1000), then the game is reset. The cut matters for the split by
episode: without it a long rally would be one huge episode; with it 40000 frames give ~45 episodes
(a Pong game under this policy lasts ~800 steps, so most episodes are whole games, score 0 to 21).

Identifiability probe: before each step the emulator state is cloned, one action of every *other*
movement class is stepped and its next frame kept, and the state restored; then the true action is
stepped. The step is identifiable when its next frame differs from all of those. In Pong many steps
are not (the paddle at a wall, or the one-step lag of a direction change), and a LAM cannot be blamed
for missing what no frame shows. Restoring the state leaves the recorded trajectory unchanged (a test
checks that frames are byte-identical with and without the probe).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from genie.data.actions import class_representatives, movement_classes
from genie.data.games import KNOWN_GAMES, find_game, resolve_game
from genie.data.policy import DEFAULT_MAX_HOLD, HoldPolicy, make_policy
from genie.data.resize import resize_frame
from genie.data.store import dataset_root
from genie.data.writer import DatasetWriter, check_dataset_name
from genie.errors import GenieError
from genie.progress import progress_bar

DEFAULT_ALE_FRAMES = 40_000
DEFAULT_EPISODE_FRAMES = 1000
FRAMESKIP = 4


class AleGame:
    """One ALE game stepped `frameskip` frames per action, with its minimal action set."""

    def __init__(self, env_id: str, seed: int, frameskip: int = FRAMESKIP):
        import ale_py
        import gymnasium as gym

        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on every load
        gym.register_envs(ale_py)
        self.env = gym.make(env_id, repeat_action_probability=0.0, frameskip=frameskip)
        self.env.reset(seed=seed)  # loads the ROM and seeds ALE
        self.ale = self.env.unwrapped.ale
        self.meanings: list[str] = list(self.env.unwrapped.get_action_meanings())
        self.action_set = list(self.ale.getMinimalActionSet())
        self.frameskip = frameskip
        self.skip_reset_screen()

    def reset(self) -> None:
        self.ale.reset_game()
        self.skip_reset_screen()

    def skip_reset_screen(self) -> None:
        """Step once, unrecorded: right after a reset ALE shows a screen in another palette (in Pong
        every pixel differs from the court) that is no frame of play. Kept, it was 0.1% of the frames
        but most of the 'foreground' the tokenizer was scored on."""
        self.step(0)  # action 0 of the minimal set is NOOP in every ALE game

    def step(self, action: int) -> float:
        ale_action = self.action_set[action]
        return float(sum(self.ale.act(ale_action) for _ in range(self.frameskip)))

    def screen(self) -> np.ndarray:
        return self.ale.getScreenRGB()  # [210, 160, 3] uint8 for every ALE game

    def close(self) -> None:
        self.env.close()


def probe_next_screens(game: AleGame, actions: list[int]) -> list[np.ndarray]:
    """The raw next screen under each action, leaving the emulator exactly where it was."""
    state = game.ale.cloneState(include_rng=True)
    screens = []
    for action in actions:
        game.step(action)
        screens.append(game.screen())
        game.ale.restoreState(state)
    return screens


def is_identifiable(true_next: np.ndarray, others: list[np.ndarray], true_small: np.ndarray) -> bool:
    """True iff the true next screen, resized (`true_small`), differs from every alternative resized."""
    height, width = true_small.shape[:2]
    for raw in others:
        if np.array_equal(raw, true_next):  # same screen -> same resized frame; skip the resize
            return False
        if np.array_equal(resize_frame(raw, height, width), true_small):
            return False
    return True


def collect(
    game: str,
    data_dir: Path,
    *,
    dataset: str | None = None,
    frames: int | None = None,
    seed: int = 0,
    height: int = 72,
    width: int = 128,
    episode_frames: int | None = None,
    val_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
    max_hold: int | None = None,
    probe: bool = True,
) -> Path:
    """Record `frames` frames of an ALE game into DATA_DIR/<dataset> (default: the game id); returns it.

    `probe=False` skips the identifiability probe (no identifiable.npy; about 3x faster).
    """
    game_id, env_id = resolve_game(game)
    dataset = dataset or game_id
    check_dataset_name(dataset)
    total = DEFAULT_ALE_FRAMES if frames is None else frames
    episode_frames = DEFAULT_EPISODE_FRAMES if episode_frames is None else episode_frames
    max_hold = DEFAULT_MAX_HOLD if max_hold is None else max_hold
    for name, value in (
        ("frames", total),
        ("episode_frames", episode_frames),
        ("height", height),
        ("width", width),
        ("max_hold", max_hold),
    ):
        if value < 1:
            raise GenieError(f"{name} must be a positive integer, got {value}")
    if episode_frames < 2:
        raise GenieError(
            f"episode_frames must be at least 2 (a frame and its successor), got {episode_frames}"
        )
    if total <= episode_frames:
        raise GenieError(
            f"{total} frames make one episode of at most {episode_frames} frames, but a train/validation "
            f"split needs 2 or more: raise --frames above {episode_frames} or lower --episode_frames"
        )

    facts = KNOWN_GAMES.get(game_id)
    with DatasetWriter(
        data_dir,
        dataset,
        height=height,
        width=width,
        with_actions=True,
        with_identifiable=probe,
        seed=seed,
        val_fraction=val_fraction,
        overwrite=overwrite,
    ) as writer:
        ale = AleGame(env_id, seed)
        try:
            classes = movement_classes(ale.meanings)
            policy = make_policy(facts.paddle if facts else None, classes, seed, max_hold=max_hold)
            stats = _record(ale, writer, policy, classes, total, episode_frames, probe, progress)
        finally:
            ale.close()
        manifest: dict[str, Any] = {
            "source": "ale",
            "game": game_id,
            "origin": env_id,
            "ale_py_version": _ale_version(),
            "frameskip": ale.frameskip,
            "repeat_action_probability": 0.0,
            "episode_frames": episode_frames,
            "raw_height": 210,
            "raw_width": 160,
            "resize": "area (PIL BOX)",
            "action_meanings": ale.meanings,
            "movement_classes": classes,
            "movement_names": facts.movement_names if facts else None,
            "behaviour_policy": policy.describe(),
            **stats,
        }
        return writer.commit(manifest)


def _record(
    game: AleGame,
    writer: DatasetWriter,
    policy: HoldPolicy,
    classes: list[str],
    total: int,
    episode_frames: int,
    probe: bool,
    progress: bool,
) -> dict[str, Any]:
    """The collection loop; returns statistics for the manifest."""
    reps = class_representatives(classes)
    h, w = writer.height, writer.width
    start, n_identifiable, n_steps, episode_len = time.perf_counter(), 0, 0, 0
    frame = resize_frame(game.screen(), h, w)
    bar = progress_bar(total=total, unit="frame", desc=f"collect {writer.target.name}", disable=not progress)
    for i in range(total):
        episode_len += 1
        if episode_len == episode_frames or i == total - 1 or game.ale.game_over():
            row = {"actions": np.array([-1]), "rewards": np.zeros(1), "identifiable": np.zeros(1, bool)}
            writer.append(frame[None], **{k: v for k, v in row.items() if probe or k != "identifiable"})
            writer.end_episode()
            game.reset()
            policy.reset()
            frame, episode_len = resize_frame(game.screen(), h, w), 0
        else:
            action = policy.act(game.ale.getRAM())
            others = [a for c, a in reps.items() if c != classes[action]]
            probed = probe_next_screens(game, others) if probe else []
            reward = game.step(action)
            screen = game.screen()
            next_frame = resize_frame(screen, h, w)
            row = {"actions": np.array([action]), "rewards": np.array([reward])}
            if probe:
                identifiable = is_identifiable(screen, probed, next_frame)
                n_identifiable += identifiable
                row["identifiable"] = np.array([identifiable])
            writer.append(frame[None], **row)
            frame, n_steps = next_frame, n_steps + 1
        bar.update(1)
    bar.close()
    seconds = time.perf_counter() - start
    return {
        "identifiable_fraction": round(n_identifiable / max(n_steps, 1), 4) if probe else None,
        "collect_seconds": round(seconds, 2),
        "frames_per_second": round(total / seconds, 1),
    }


def _ale_version() -> str:
    import ale_py

    return ale_py.__version__


def ensure_dataset(data_dir: Path, dataset: str, *, height: int = 72, width: int = 128) -> Path:
    """The dataset's folder; an ALE game that is not there yet is collected first (DEFAULT_ALE_FRAMES).

    Only the commands that promise it call this (training, the demo, benchmarks): a training command
    whose --dataset is missing collects it. Anything else is `dataset_root`'s checks and errors.
    """
    game = None if (Path(data_dir) / dataset).exists() else find_game(dataset)
    if game is None:
        return dataset_root(data_dir, dataset, height=height, width=width)
    print(
        f"dataset {dataset!r} not found in {data_dir}/: collecting it from ALE "
        f"({DEFAULT_ALE_FRAMES} frames)…",
        file=sys.stderr,
    )
    return collect(game, data_dir, dataset=dataset, height=height, width=width)
