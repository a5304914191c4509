"""Clips of consecutive frames for training: random access, never crossing an episode boundary.

Axis letters: T clip length, H rows, W columns. Frames come out uint8 channels-first [T, 3, H, W]
(convert on the device with `genie.data.frames.to_float`); nothing is read until an item is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from genie.data.store import EpisodeStore
from genie.errors import GenieError


def evenly_spaced(n: int, k: int) -> list[int]:
    """Up to k of the indices 0..n-1, evenly spread, so that a fixed sample of clips or frames covers
    every episode of a split rather than its first few."""
    return np.unique(np.linspace(0, n - 1, min(n, k)).round().astype(np.int64)).tolist()


class ClipDataset(Dataset):
    """Every clip start s of a split's episodes with s + clip_len <= episode end, every `stride` frames.

    `episodes`, when given, keeps only those episodes of the split.
    Items: {"frames": uint8 [T, 3, H, W], "episode": int64 []} plus, when the dataset has them,
    {"actions": int64 [T-1]} (action i moved frame i to frame i+1) and {"identifiable": bool [T-1]}.
    The memmaps are reopened lazily in each DataLoader worker (and are never pickled).
    """

    def __init__(
        self,
        root: Path | EpisodeStore,
        split: str,
        clip_len: int,
        stride: int = 1,
        episodes: list[int] | None = None,
    ):
        self._store: EpisodeStore | None = (
            root if isinstance(root, EpisodeStore) else EpisodeStore.open(Path(root))
        )
        store = self._store
        self.root = store.root
        self.split = split
        self.clip_len = clip_len
        self.stride = stride
        if clip_len < 1 or stride < 1:
            raise GenieError(
                f"clip_len and stride must be positive, got clip_len={clip_len}, stride={stride}"
            )
        ids = store.split_episodes(split)
        if episodes is not None:  # a subset of the split (the LAM's labelled episodes)
            outside = sorted(set(episodes) - set(ids))
            if outside:
                raise GenieError(f"episodes {outside} of dataset {store.name} are not in its {split} split")
            ids = list(episodes)
        episodes = store.episodes[ids]
        lengths = episodes[:, 1] - episodes[:, 0]
        self.num_frames_in_split = int(lengths.sum())
        starts = [np.arange(s, e - clip_len + 1, stride) for s, e in episodes]
        self.starts = np.concatenate(starts).astype(np.int64) if starts else np.zeros(0, np.int64)
        self.episode_ids = np.repeat(np.asarray(ids, np.int64), [len(s) for s in starts])
        if len(self.starts) == 0:
            raise GenieError(
                f"dataset {store.name} has no {split} episode of at least {clip_len} frames (the clip "
                f"length); the longest has {int(lengths.max(initial=0))}: use shorter clips or longer ones"
            )
        self.has_actions = store.actions is not None
        self.has_identifiable = store.identifiable is not None

    @property
    def store(self) -> EpisodeStore:
        if self._store is None:  # first use in a DataLoader worker
            self._store = EpisodeStore.open(self.root)
        return self._store

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = int(self.starts[index])
        store, t = self.store, self.clip_len
        frames = np.ascontiguousarray(store.read_frames(s, s + t).transpose(0, 3, 1, 2))  # (T, 3, H, W)
        item = {"frames": torch.from_numpy(frames), "episode": torch.tensor(int(self.episode_ids[index]))}
        if store.actions is not None:
            item["actions"] = torch.from_numpy(np.array(store.actions[s : s + t - 1]))
        if store.identifiable is not None:
            item["identifiable"] = torch.from_numpy(np.array(store.identifiable[s : s + t - 1]))
        return item

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None  # a pickled memmap would copy the whole array into the worker
        return state
