"""Writing a dataset so that it is either complete or absent.

Everything is written into a hidden temp dir beside the target (`.<name>.tmp-XXXX`) and moved into
place with one rename at `commit()`. An error or Ctrl-C inside the `with` block removes the temp dir;
even a killed process leaves only a hidden temp dir, never a dataset that looks complete.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from genie.data.npy_stream import NpyAppender
from genie.data.store import FORMAT_VERSION, MANIFEST
from genie.errors import GenieError


def check_dataset_name(name: str) -> None:
    if not name or name.startswith(".") or "/" in name or "\\" in name or name != name.strip():
        raise GenieError(f"dataset name {name!r} is not a plain folder name (expected e.g. 'pong')")


def _fresh_dir(parent: Path, prefix: str) -> Path:
    """A new uniquely named folder with the usual permissions (mkdtemp's would be owner-only)."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def _check_val_fraction(val_fraction: float) -> None:
    if not 0.0 < val_fraction < 1.0:
        raise GenieError(f"val_fraction must be in (0, 1), got {val_fraction}")


def make_split(num_episodes: int, val_fraction: float, seed: int) -> dict[str, list[int]]:
    """Episodes -> {"train": ids, "val": ids}, fixed by the seed; at least one episode in each."""
    if num_episodes < 2:
        raise GenieError(
            f"a train/validation split needs at least 2 episodes, this data has {num_episodes}: "
            "give more files, or cut them into episodes with --episode_frames"
        )
    _check_val_fraction(val_fraction)
    n_val = min(num_episodes - 1, max(1, round(num_episodes * val_fraction)))
    order = np.random.default_rng(seed).permutation(num_episodes)
    return {"train": sorted(int(e) for e in order[n_val:]), "val": sorted(int(e) for e in order[:n_val])}


class DatasetWriter:
    """Streams episodes into DATA_DIR/<name>/ (see genie.data.store for the layout).

    Use as a context manager: `append` frames (and per-frame actions, rewards, identifiable flags
    when the source has them), `end_episode` after each episode, then `commit(manifest)`.
    The split by episode is drawn at commit from `seed` and `val_fraction`.
    """

    def __init__(
        self,
        data_dir: Path,
        name: str,
        *,
        height: int,
        width: int,
        with_actions: bool,
        with_identifiable: bool = False,
        seed: int = 0,
        val_fraction: float = 0.1,
        overwrite: bool = False,
    ):
        check_dataset_name(name)
        _check_val_fraction(val_fraction)  # now, not after an hour of recording
        self.seed, self.val_fraction = seed, val_fraction
        self.target = Path(data_dir) / name
        self.overwrite = overwrite
        self._check_target()
        self.height, self.width = height, width
        self.with_actions = with_actions
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _fresh_dir(self.target.parent, f".{name}.tmp-")
        self._arrays: dict[str, NpyAppender] = {
            "frames": NpyAppender(self.tmp / "frames.npy", (height, width, 3), np.uint8)
        }
        if with_actions:
            self._arrays["actions"] = NpyAppender(self.tmp / "actions.npy", (), np.int64)
            self._arrays["rewards"] = NpyAppender(self.tmp / "rewards.npy", (), np.float32)
        if with_identifiable:
            self._arrays["identifiable"] = NpyAppender(self.tmp / "identifiable.npy", (), np.bool_)
        self.episodes: list[tuple[int, int]] = []
        self._episode_start = 0

    @property
    def num_frames(self) -> int:
        return self._arrays["frames"].rows

    def _check_target(self) -> None:
        if self.target.exists() and not self.overwrite:
            raise GenieError(f"dataset {self.target} already exists: pass --overwrite to replace it")

    def append(self, frames: np.ndarray, **per_frame: np.ndarray) -> None:
        """Add frames [n, H, W, 3] uint8 and, by name, the per-frame arrays [n] this dataset keeps."""
        if set(per_frame) != set(self._arrays) - {"frames"}:
            raise ValueError(f"expected per-frame arrays {sorted(set(self._arrays) - {'frames'})}")
        if frames.dtype != np.uint8 or frames.shape[1:] != (self.height, self.width, 3):
            raise ValueError(
                f"frames {frames.shape} {frames.dtype}, expected [n, {self.height}, {self.width}, 3] uint8"
            )
        for key, values in per_frame.items():
            if len(values) != len(frames):
                raise ValueError(f"{key}: {len(values)} values for {len(frames)} frames")
            self._arrays[key].append(values)
        self._arrays["frames"].append(frames)

    def end_episode(self) -> None:
        if self.num_frames > self._episode_start:
            self.episodes.append((self._episode_start, self.num_frames))
        self._episode_start = self.num_frames

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Finish the arrays, write episodes and manifest (plus counts and split), move it into place."""
        self.end_episode()
        split = make_split(len(self.episodes), self.val_fraction, self.seed)
        for appender in self._arrays.values():
            appender.close()
        np.save(self.tmp / "episodes.npy", np.array(self.episodes, dtype=np.int64).reshape(-1, 2))
        full = {
            "format_version": FORMAT_VERSION,
            **manifest,
            "height": self.height,
            "width": self.width,
            "num_frames": self.num_frames,
            "num_episodes": len(self.episodes),
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "split": split,
        }
        (self.tmp / MANIFEST).write_text(json.dumps(full, indent=2) + "\n")
        self._check_target()
        old = None
        if self.target.exists():
            old = _fresh_dir(self.target.parent, f".{self.target.name}.old-")
            os.replace(self.target, old / self.target.name)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old)
        return self.target

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.tmp.exists():  # not committed: an error, Ctrl-C, or a missing commit()
            for appender in self._arrays.values():
                appender.abort()
            shutil.rmtree(self.tmp, ignore_errors=True)
