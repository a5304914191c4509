"""ALE collection: determinism, true actions that line up with frames, identifiability, Pong facts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genie.cli import main
from genie.data.actions import class_ids, movement_class
from genie.data.collect import AleGame, collect, ensure_dataset, is_identifiable, probe_next_screens
from genie.data.games import KNOWN_GAMES, resolve_game
from genie.data.policy import HoldPolicy
from genie.data.resize import resize_frame
from genie.data.store import EpisodeStore
from genie.errors import GenieError

PONG_FRAMES, PONG_EPISODE_FRAMES = 600, 150  # as in the pong_dataset fixture (tests/conftest.py)

PONG = KNOWN_GAMES["pong"].paddle
RIGHT, LEFT, NOOP = 2, 3, 0  # Pong's minimal action set: NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE


def paddle_centre(frame: np.ndarray) -> float | None:
    """Row centre of the agent's green paddle in a 72x128 frame, or None when it is not visible.

    The right paddle sits in columns 112-114; green (G far above R) tells it from the court,
    the white ball and walls. Rows 12..66 are the court (the score above is green too).
    """
    patch = frame[12:67, 111:116].astype(int)
    rows = np.nonzero(((patch[..., 1] - patch[..., 0]) > 40).any(axis=1))[0]
    return float(rows.mean()) + 12 if len(rows) else None


def test_manifest_describes_the_recording(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    m = store.manifest
    assert (m["source"], m["game"], m["frameskip"], m["repeat_action_probability"]) == ("ale", "pong", 4, 0.0)
    assert (store.height, store.width, m["num_frames"], m["num_episodes"]) == (72, 128, PONG_FRAMES, 4)
    assert store.action_meanings == ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
    assert store.movement_classes == ["NOOP", "NOOP", "RIGHT", "LEFT", "RIGHT", "LEFT"]
    assert store.movement_names == {"NOOP": "stay", "RIGHT": "up", "LEFT": "down"}
    assert m["behaviour_policy"]["wall_guard"]["ram_index"] == 51
    assert np.array_equal(store.episodes[:, 1] - store.episodes[:, 0], [PONG_EPISODE_FRAMES] * 4)
    assert store.frames.dtype == np.uint8 and store.frames.shape == (PONG_FRAMES, 72, 128, 3)


def test_split_is_by_episode(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    train, val = store.split_episodes("train"), store.split_episodes("val")
    assert train and val and not set(train) & set(val)
    assert sorted(train + val) == list(range(len(store.episodes)))


def test_actions_follow_the_convention(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    last = store.episodes[:, 1] - 1
    assert np.all(store.actions[last] == -1) and not store.identifiable[last].any()
    inner = np.setdiff1d(np.arange(len(store.actions)), last)
    assert np.all((store.actions[inner] >= 0) & (store.actions[inner] < 6))
    assert set(np.unique(store.actions[inner])) == set(range(6)), "the policy visits every action"


def test_same_seed_same_bytes_and_the_probe_changes_nothing(pong_dataset: Path, tmp_path: Path) -> None:
    kwargs = dict(frames=PONG_FRAMES, episode_frames=PONG_EPISODE_FRAMES, seed=0, progress=False)
    again = collect("pong", tmp_path, dataset="again", **kwargs)
    unprobed = collect("pong", tmp_path, dataset="unprobed", probe=False, **kwargs)
    for name in ("frames.npy", "actions.npy", "rewards.npy", "identifiable.npy", "episodes.npy"):
        assert (pong_dataset / name).read_bytes() == (again / name).read_bytes(), name
    for name in ("frames.npy", "actions.npy", "rewards.npy"):  # cloning/restoring leaves the trajectory alone
        assert (pong_dataset / name).read_bytes() == (unprobed / name).read_bytes(), name
    assert not (unprobed / "identifiable.npy").exists()
    other = collect("pong", tmp_path, dataset="seed1", **{**kwargs, "seed": 1})
    assert (pong_dataset / "actions.npy").read_bytes() != (other / "actions.npy").read_bytes()


def test_up_actions_move_the_paddle_up_in_the_stored_frames(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    classes = class_ids(store.actions, store.movement_classes)  # 0 NOOP, 1 RIGHT (up), 2 LEFT (down)
    moved = {1: [], 2: []}
    for start, end in store.episodes:
        i = start
        while i < end - 1:
            j = i
            while j < end - 1 and classes[j] == classes[i]:
                j += 1  # steps i..j-1 share a class; frame j is after the run
            before, after = paddle_centre(store.frames[i]), paddle_centre(store.frames[j])
            if classes[i] in moved and j - i >= 3 and before is not None and after is not None:
                moved[int(classes[i])].append(after - before)
            i = j
    up, down = np.array(moved[1]), np.array(moved[2])
    assert len(up) >= 5 and len(down) >= 5
    assert np.mean(up < 0) >= 0.9, f"UP runs moved the paddle by {up}"
    assert np.mean(down > 0) >= 0.9, f"DOWN runs moved the paddle by {down}"


def test_replaying_the_actions_reproduces_the_frames(pong_dataset: Path) -> None:
    """actions[i] applied to frame i gives frame i+1: the sharpest check that actions line up."""
    store = EpisodeStore.open(pong_dataset)
    game = AleGame(resolve_game("pong")[1], seed=0)
    for e, (start, end) in enumerate(store.episodes):
        if e:
            game.reset()
        for i in range(start, end):
            assert np.array_equal(resize_frame(game.screen(), 72, 128), store.frames[i]), f"frame {i}"
            if i < end - 1:
                game.step(int(store.actions[i]))
    game.close()


def test_no_episode_starts_on_the_reset_screen(pong_dataset: Path) -> None:
    """ALE's post-reset screen (another palette: every pixel off the court) is skipped, not recorded."""
    from genie.data.frames import median_background

    store = EpisodeStore.open(pong_dataset)
    background = median_background(store).astype(int)
    for start, end in store.episodes:
        for i in (start, start + 1, end - 1):
            off_court = (np.abs(store.frames[i].astype(int) - background).max(-1) > 25).mean()
            assert off_court < 0.05, (start, i, off_court)


def test_identifiable_fraction_is_plausible(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    steps = store.actions >= 0
    fraction = store.identifiable[steps].mean()
    assert 0.2 < fraction < 0.95
    assert store.manifest["identifiable_fraction"] == pytest.approx(fraction, abs=1e-3)
    # a paddle pinned at a wall and pushed into it does what NOOP would: never identifiable
    classes = class_ids(store.actions, store.movement_classes)
    centres = [paddle_centre(f) for f in store.frames]
    top, bottom = min(c for c in centres if c is not None), max(c for c in centres if c is not None)
    pinned = [
        i
        for i in np.nonzero(steps)[0]
        if (centres[i] == centres[i + 1] == top and classes[i] == 1)
        or (centres[i] == centres[i + 1] == bottom and classes[i] == 2)
    ]
    assert len(pinned) >= 3 and not store.identifiable[pinned].any()


def test_pong_ram_facts_and_probe() -> None:
    """RAM[51] is the paddle: RIGHT takes it up to 38 (top wall), LEFT down to 203 (bottom wall);
    pinned at a wall, pushing into it looks exactly like standing still, so the step is not identifiable."""
    game = AleGame(resolve_game("pong")[1], seed=0)
    ram = lambda: int(game.ale.getRAM()[PONG.ram_index])
    for _ in range(15):
        game.step(RIGHT)
    assert ram() == PONG.top
    state, ram_before = game.ale.cloneState(include_rng=True), game.ale.getRAM().copy()
    screens = probe_next_screens(game, [NOOP, LEFT])
    assert np.array_equal(game.ale.getRAM(), ram_before)  # the probe left the emulator where it was
    game.step(RIGHT)
    small = resize_frame(game.screen(), 72, 128)
    assert not is_identifiable(game.screen(), screens, small)  # NOOP gives the same frame
    game.ale.restoreState(state)
    for _ in range(15):
        game.step(LEFT)
    assert ram() == PONG.bottom
    for _ in range(3):
        game.step(RIGHT)
    screens = probe_next_screens(game, [NOOP, LEFT])
    before = ram()
    game.step(RIGHT)
    assert ram() < before  # mid-court: RIGHT moves up, and visibly so
    assert is_identifiable(game.screen(), screens, resize_frame(game.screen(), 72, 128))
    game.close()


def test_max_hold_sets_how_long_actions_run() -> None:
    """max_hold 1 draws every step afresh (the action repeats 1 time in 6); the default holds runs."""
    ram = np.zeros(128, dtype=np.uint8)

    def repeat_share(max_hold: int) -> float:
        policy = HoldPolicy(6, seed=0, max_hold=max_hold)
        acts = np.array([policy.act(ram) for _ in range(6000)])
        return float(np.mean(acts[1:] == acts[:-1]))

    assert abs(repeat_share(1) - 1 / 6) < 0.03
    assert repeat_share(8) > 0.75


def test_max_hold_reaches_the_recording(tmp_path: Path) -> None:
    args = ["collect", "pong", "--data_dir", str(tmp_path), "--frames", "100", "--episode_frames", "50"]
    assert main([*args, "--max_hold", "1", "--no_probe"]) == 0
    store = EpisodeStore.open(tmp_path / "pong")
    assert store.manifest["behaviour_policy"]["max_hold"] == 1
    acts = store.actions[store.actions >= 0]
    assert np.mean(acts[1:] == acts[:-1]) < 0.5  # a fresh draw every step (the wall guard aside)


def test_movement_classes() -> None:
    assert [movement_class(m) for m in ("NOOP", "FIRE", "RIGHTFIRE", "UPLEFTFIRE")] == [
        "NOOP",
        "NOOP",
        "RIGHT",
        "UPLEFT",
    ]


def test_game_ids_and_bad_arguments(tmp_path: Path) -> None:
    assert resolve_game("Space-Invaders") == ("space_invaders", "ALE/SpaceInvaders-v5")
    with pytest.raises(GenieError, match="unknown ALE game 'pongg'.*did you mean pong"):
        collect("pongg", tmp_path)
    with pytest.raises(GenieError, match="2 or more"):
        collect("pong", tmp_path, frames=100, episode_frames=100)
    with pytest.raises(GenieError, match=r"val_fraction must be in \(0, 1\), got 1.5"):
        collect("pong", tmp_path, frames=100, episode_frames=50, val_fraction=1.5)  # before recording
    with pytest.raises(GenieError, match="max_hold must be a positive integer, got 0"):
        collect("pong", tmp_path, frames=100, episode_frames=50, max_hold=0)
    assert not any(tmp_path.iterdir())


def test_ensure_dataset_collects_only_a_missing_game(
    pong_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """A training command's --dataset: an existing one is used, a missing ALE game recorded, any other
    name is the store's one-line error."""
    assert ensure_dataset(pong_dataset.parent, pong_dataset.name) == pong_dataset
    calls = []
    monkeypatch.setattr("genie.data.collect.collect", lambda *a, **kw: calls.append((a, kw)) or pong_dataset)
    assert ensure_dataset(tmp_path, "pong") == pong_dataset
    assert calls == [(("pong", tmp_path), {"dataset": "pong", "height": 72, "width": 128})]
    assert "collecting it from ALE (40000 frames)" in capsys.readouterr().err
    with pytest.raises(GenieError, match="not found.*genie collect GAME.*genie ingest PATH --dataset mine"):
        ensure_dataset(tmp_path, "mine")
    assert len(calls) == 1


def test_existing_dataset_needs_overwrite(pong_dataset: Path) -> None:
    with pytest.raises(GenieError, match="already exists.*--overwrite"):
        collect("pong", pong_dataset.parent, frames=20, episode_frames=10, progress=False)
    assert EpisodeStore.open(pong_dataset).manifest["num_frames"] == PONG_FRAMES


def test_interrupted_collection_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = iter(range(1000))

    def interrupt(*args: object) -> bool:
        if next(calls) == 50:
            raise KeyboardInterrupt
        return True

    monkeypatch.setattr("genie.data.collect.is_identifiable", interrupt)
    with pytest.raises(KeyboardInterrupt):
        collect("pong", tmp_path, frames=200, episode_frames=100, progress=False)
    assert list(tmp_path.iterdir()) == []
