"""The episode store: atomic writes, strict opening, the split, finding a dataset by name."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from genie.data.store import EpisodeStore, dataset_root
from genie.data.writer import DatasetWriter, make_split
from genie.errors import GenieError


def write_tiny(
    data_dir: Path, name: str = "tiny", episodes: tuple[int, ...] = (5, 7, 4), **kw: object
) -> Path:
    kw = {"height": 6, "width": 8, "with_actions": False, "val_fraction": 0.3, **kw}
    with DatasetWriter(data_dir, name, **kw) as writer:
        for e, length in enumerate(episodes):
            writer.append(np.full((length, 6, 8, 3), e, np.uint8))
            writer.end_episode()
        return writer.commit({"source": "video"})


def test_written_dataset_opens_as_memmaps(tmp_path: Path) -> None:
    store = EpisodeStore.open(write_tiny(tmp_path))
    assert isinstance(store.frames, np.memmap) and store.frames.shape == (16, 6, 8, 3)
    assert store.episodes.tolist() == [[0, 5], [5, 12], [12, 16]]
    assert store.actions is None and store.rewards is None and store.action_meanings is None
    assert store.frames[5:12].min() == store.frames[5:12].max() == 1
    assert sorted(store.split_episodes("train") + store.split_episodes("val")) == [0, 1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]  # no temp dir left beside it
    umask = os.umask(0)
    os.umask(umask)
    assert store.root.stat().st_mode & 0o777 == 0o777 & ~umask  # readable like any folder, not owner-only


def test_first_long_episode_skips_short_ones(tmp_path: Path) -> None:
    store = EpisodeStore.open(write_tiny(tmp_path, episodes=(2, 7, 4, 6, 3), val_fraction=0.99))
    val = store.split_episodes("val")
    spans = [tuple(int(v) for v in store.episodes[e]) for e in val]
    assert store.first_long_episode("val", 5) == next(s for s in spans if s[1] - s[0] >= 5)
    assert store.first_long_episode("val", 8) is None


def test_read_frames_equals_the_memmap_without_touching_it(tmp_path: Path) -> None:
    """Training reads clips with read_frames (a file read: the pages stay out of the process's RSS)."""
    root = write_tiny(tmp_path)
    store = EpisodeStore.open(root)
    frames = np.random.default_rng(0).integers(0, 256, store.frames.shape, dtype=np.uint8)
    np.lib.format.open_memmap(root / "frames.npy", mode="r+")[:] = frames  # distinct bytes in every frame
    for start, stop in ((0, 16), (3, 9), (15, 16), (7, 7)):
        read = store.read_frames(start, stop)
        assert read.shape == (stop - start, 6, 8, 3) and read.flags.writeable
        np.testing.assert_array_equal(read, frames[start:stop])
    for start, stop in ((-1, 2), (10, 17), (5, 4)):
        with pytest.raises(IndexError, match="outside the dataset's 16"):
            store.read_frames(start, stop)
    with open(root / "frames.npy", "r+b") as f:  # cut short under an open store: one clear error, not a crash
        f.truncate(f.seek(0, os.SEEK_END) - 6 * 8 * 3)
    with pytest.raises(GenieError, match="ends before frame 16: the dataset changed on disk"):
        store.read_frames(10, 16)


def test_interrupted_write_leaves_no_dataset(tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError),
        DatasetWriter(tmp_path, "tiny", height=6, width=8, with_actions=False) as w,
    ):
        w.append(np.zeros((3, 6, 8, 3), np.uint8))
        assert any(p.name.startswith(".tiny.tmp-") for p in tmp_path.iterdir())
        raise RuntimeError("power cut")
    assert list(tmp_path.iterdir()) == []


def test_overwrite_replaces_and_refuses_without_it(tmp_path: Path) -> None:
    write_tiny(tmp_path)
    with pytest.raises(GenieError, match="already exists"):
        write_tiny(tmp_path)
    write_tiny(tmp_path, episodes=(3, 3), overwrite=True)
    assert EpisodeStore.open(tmp_path / "tiny").manifest["num_frames"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_one_episode_cannot_be_split(tmp_path: Path) -> None:
    with pytest.raises(GenieError, match="at least 2 episodes"):
        write_tiny(tmp_path, episodes=(10,))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("episodes", [2, 3, 10, 41])
def test_split_is_seeded_disjoint_and_nonempty(episodes: int) -> None:
    split = make_split(episodes, 0.1, seed=3)
    assert split == make_split(episodes, 0.1, seed=3)
    assert split["train"] and split["val"] and not set(split["train"]) & set(split["val"])
    assert sorted(split["train"] + split["val"]) == list(range(episodes))


def test_bad_dataset_folders_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(GenieError, match="manifest.json is missing"):
        EpisodeStore.open(tmp_path)
    root = write_tiny(tmp_path)
    manifest = json.loads((root / "manifest.json").read_text())
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(GenieError, match=f"{root}.*not valid JSON"):
        EpisodeStore.open(root)
    (root / "manifest.json").write_text(json.dumps({**manifest, "num_frames": 17}))
    with pytest.raises(GenieError, match=r"frames.npy holds \[16, 6, 8, 3\] uint8, the manifest says \[17"):
        EpisodeStore.open(root)
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "frames.npy").write_bytes(b"garbage")
    with pytest.raises(GenieError, match="frames.npy is unreadable"):
        EpisodeStore.open(root)


def test_dataset_root(tmp_path: Path) -> None:
    root = write_tiny(tmp_path)
    assert dataset_root(tmp_path, "tiny", height=6, width=8) == root
    with pytest.raises(GenieError, match="has 6 rows x 8 columns, not the 72 x 128"):
        dataset_root(tmp_path, "tiny")
    with pytest.raises(GenieError, match="not found.*genie collect GAME.*genie ingest PATH --dataset mine"):
        dataset_root(tmp_path, "mine")
    with pytest.raises(GenieError, match="'pong' not found"):  # opening never collects, even a game
        dataset_root(tmp_path, "pong")
    assert not (tmp_path / "pong").exists()
    (tmp_path / "stray").mkdir()
    with pytest.raises(GenieError, match="stray exists but is not a dataset"):
        dataset_root(tmp_path, "stray")


def test_pong_fixture_opens(pong_dataset: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(pong_dataset, tmp_path / "pong")
    assert dataset_root(tmp_path, "pong") == copy
