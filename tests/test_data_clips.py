"""Clip sampling: inside one episode, aligned actions, worker-safe; the uint8/float boundary."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import median_background, to_float, to_uint8
from genie.data.store import EpisodeStore
from genie.errors import GenieError


def test_clips_never_cross_episodes(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    for split in ("train", "val"):
        ds = ClipDataset(store, split, clip_len=16, stride=3)
        episodes = store.episodes[store.split_episodes(split)]
        assert len(ds) == sum(len(range(s, e - 15, 3)) for s, e in episodes)
        assert ds.num_frames_in_split == int((episodes[:, 1] - episodes[:, 0]).sum())
        for s in ds.starts:
            assert any(a <= s and s + 16 <= b for a, b in episodes)


def test_items_match_the_store(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    ds = ClipDataset(pong_dataset, "train", clip_len=8)
    for index in (0, len(ds) // 2, len(ds) - 1):
        item, s = ds[index], int(ds.starts[index])
        assert item["frames"].dtype == torch.uint8 and item["frames"].shape == (8, 3, 72, 128)
        assert item["frames"].is_contiguous()
        assert np.array_equal(item["frames"].permute(0, 2, 3, 1).numpy(), store.frames[s : s + 8])
        assert (
            item["actions"].dtype == torch.int64
            and item["actions"].tolist() == store.actions[s : s + 7].tolist()
        )
        assert (item["actions"] >= 0).all()  # -1 only marks an episode's last frame, never inside a clip
        assert item["identifiable"].dtype == torch.bool and item["identifiable"].shape == (7,)


def test_dataloader_workers_reopen_the_memmap(pong_dataset: Path) -> None:
    ds = ClipDataset(pong_dataset, "val", clip_len=4, stride=8)
    assert len(pickle.dumps(ds)) < 100_000  # no frames travel to workers
    loader = DataLoader(ds, batch_size=4, num_workers=2)
    batches = list(loader)
    assert sum(len(b["frames"]) for b in batches) == len(ds)
    assert torch.equal(batches[0]["frames"][1], ds[1]["frames"])


def test_clip_longer_than_every_episode(pong_dataset: Path) -> None:
    with pytest.raises(
        GenieError, match=r"dataset pong has no train episode of at least 151 frames.*longest has 150"
    ):
        ClipDataset(pong_dataset, "train", clip_len=151)
    with pytest.raises(GenieError, match="no split 'test'"):
        ClipDataset(pong_dataset, "test", clip_len=4)


def test_video_datasets_have_frames_only(tmp_path: Path) -> None:
    from genie.data.writer import DatasetWriter

    with DatasetWriter(tmp_path, "v", height=4, width=4, with_actions=False, val_fraction=0.5) as w:
        for _ in range(2):
            w.append(np.zeros((5, 4, 4, 3), np.uint8))
            w.end_episode()
        root = w.commit({"source": "video"})
    assert set(ClipDataset(root, "train", clip_len=5)[0]) == {"frames", "episode"}


def test_float_boundary_round_trips() -> None:
    frames = torch.randint(0, 256, (2, 3, 3, 4, 5), dtype=torch.uint8)
    x = to_float(frames)
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    assert torch.equal(to_uint8(x), frames)
    assert torch.equal(
        to_uint8(torch.tensor([-0.5, 0.5, 2.0])), torch.tensor([0, 128, 255], dtype=torch.uint8)
    )
    with pytest.raises(TypeError):
        to_float(x)


def test_median_background_is_the_empty_court(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    background = median_background(store, max_frames=200)
    assert background.shape == (72, 128, 3) and background.dtype == np.uint8
    assert (background[40, 64] == [144, 72, 17]).all()  # Pong's brown court
    share_equal = (store.frames[:50] == background).all(-1).mean()
    assert share_equal > 0.97  # ball and paddles are a few % of a frame


def test_evenly_spaced_covers_both_ends_without_repeats() -> None:
    assert evenly_spaced(10, 4) == [0, 3, 6, 9]
    assert evenly_spaced(3, 8) == [0, 1, 2]  # asking for more than there are gives each once
    assert evenly_spaced(1000, 7)[0] == 0 and evenly_spaced(1000, 7)[-1] == 999
    assert evenly_spaced(0, 5) == []
