"""The episode store: one dataset on disk, opened without reading it into RAM.

Layout of DATA_DIR/<name>/ (all arrays concatenate every episode along the first axis):

    frames.npy        uint8  [N, H, W, 3]  RGB
    actions.npy       int64  [N]  actions[i] moved frame i to frame i+1; -1 on an episode's last frame
    rewards.npy       float32 [N] reward of that same step (0 on an episode's last frame)
    identifiable.npy  bool   [N]  the step's next frame differs from every other movement class's
    episodes.npy      int64  [E, 2] (start, end exclusive)
    manifest.json     source, resolution, counts, action meanings, policy, seed, split by episode

actions, rewards and identifiable exist only for sources that have them (ALE, not video).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genie.data.actions import class_representatives
from genie.errors import GenieError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS = ("format_version", "source", "height", "width", "num_frames", "num_episodes", "split")


def _load_npy(path: Path, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise GenieError(f"dataset file {path} is unreadable ({e}): re-create the dataset") from None
    if array.shape != shape or array.dtype != np.dtype(dtype):
        raise GenieError(
            f"dataset file {path} holds {list(array.shape)} {array.dtype}, the manifest says "
            f"{list(shape)} {np.dtype(dtype)}: re-create the dataset"
        )
    return array


@dataclass
class EpisodeStore:
    """An opened dataset; arrays are read-only memmaps (episodes is a small in-memory array)."""

    root: Path
    manifest: dict[str, Any]
    frames: np.memmap  # uint8 [N, H, W, 3]
    episodes: np.ndarray  # int64 [E, 2]
    actions: np.ndarray | None = None  # int64 [N]
    rewards: np.ndarray | None = None  # float32 [N]
    identifiable: np.ndarray | None = None  # bool [N]
    height: int = field(init=False)
    width: int = field(init=False)

    def __post_init__(self) -> None:
        self.height = int(self.manifest["height"])
        self.width = int(self.manifest["width"])

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def action_meanings(self) -> list[str] | None:
        return self.manifest.get("action_meanings")

    @property
    def movement_classes(self) -> list[str] | None:
        """The movement class of each action (see genie.data.actions), or None without actions."""
        return self.manifest.get("movement_classes")

    @property
    def movement_names(self) -> dict[str, str] | None:
        """What a person calls each movement class (Pong: up/down/stay), when known."""
        return self.manifest.get("movement_names")

    def movement_labels(self) -> list[str]:
        """What a person calls each movement class, in class-id order (Pong: stay, up, down); a class
        without a known name is called by itself, in lower case."""
        said = self.movement_names or {}
        return [said.get(c, c.lower()) for c in class_representatives(self.movement_classes or [])]

    def read_frames(self, start: int, stop: int) -> np.ndarray:
        """Frames [start, stop) as a new writable array [stop - start, H, W, 3], read from the file rather
        than through the memmap: a memmap's pages count in this process's RSS once touched, so training,
        which reads clips from all over the dataset, grew to the whole file's size (1.1 GB on the demo's
        data by step 2,000); read like this, they stay in the OS's file cache, shared and dropped at will."""
        if not 0 <= start <= stop <= len(self.frames):
            raise IndexError(f"frames [{start}, {stop}) outside the dataset's {len(self.frames)}")
        frame_bytes = self.height * self.width * 3
        with open(self.frames.filename, "rb") as f:
            data = np.fromfile(
                f, np.uint8, (stop - start) * frame_bytes, offset=self.frames.offset + start * frame_bytes
            )
        if data.size != (stop - start) * frame_bytes:  # the file was cut short after it was opened
            raise GenieError(f"{self.frames.filename} ends before frame {stop}: the dataset changed on disk")
        return data.reshape(stop - start, self.height, self.width, 3)

    def split_episodes(self, split: str) -> list[int]:
        if split not in self.manifest["split"]:
            raise GenieError(
                f"dataset {self.root} has no split {split!r} (expected one of {list(self.manifest['split'])})"
            )
        return list(self.manifest["split"][split])

    def first_long_episode(self, split: str, length: int) -> tuple[int, int] | None:
        """(start, end) frame indices of the split's first episode of at least `length` frames, or None: where
        the evaluations take their consecutive frames."""
        for ep in self.split_episodes(split):
            start, end = (int(v) for v in self.episodes[ep])
            if end - start >= length:
                return start, end
        return None

    @classmethod
    def open(cls, root: Path) -> EpisodeStore:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise GenieError(
                f"{root} is not a dataset: {MANIFEST} is missing (create one with genie collect/ingest)"
            )
        try:
            manifest = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise GenieError(f"{path} is not valid JSON ({e}): re-create the dataset") from None
        missing = [k for k in REQUIRED_KEYS if not isinstance(manifest, dict) or k not in manifest]
        if missing:
            raise GenieError(f"{path} lacks {', '.join(missing)}: re-create the dataset")
        if manifest["format_version"] != FORMAT_VERSION:
            raise GenieError(
                f"{path} has format_version {manifest['format_version']}, expected {FORMAT_VERSION}"
            )
        _check_types(manifest, path)
        n, e = int(manifest["num_frames"]), int(manifest["num_episodes"])
        frames = _load_npy(root / "frames.npy", (n, manifest["height"], manifest["width"], 3), np.uint8)
        episodes = np.array(_load_npy(root / "episodes.npy", (e, 2), np.int64))
        if e and (episodes[0, 0] != 0 or episodes[-1, 1] != n or np.any(episodes[1:, 0] != episodes[:-1, 1])):
            raise GenieError(f"{root / 'episodes.npy'} does not tile the {n} frames: re-create the dataset")
        split_ids = [i for ids in manifest["split"].values() for i in ids]
        if any(not 0 <= i < e for i in split_ids) or len(split_ids) != len(set(split_ids)):
            raise GenieError(
                f"{path}: the split names episodes outside 0..{e - 1} or twice: re-create the dataset"
            )
        optional = {}
        for key, dtype in (("actions", np.int64), ("rewards", np.float32), ("identifiable", np.bool_)):
            if (root / f"{key}.npy").exists():
                optional[key] = _load_npy(root / f"{key}.npy", (n,), dtype)
        return cls(root=root, manifest=manifest, frames=frames, episodes=episodes, **optional)


def _check_types(manifest: dict, path: Path) -> None:
    """A hand-edited or foreign manifest with the right keys but wrong values: one line, not a traceback."""
    for key in ("height", "width", "num_frames", "num_episodes"):
        value = manifest[key]
        if (
            not isinstance(value, int)
            or isinstance(value, bool)
            or value < (1 if key != "num_episodes" else 0)
        ):
            raise GenieError(
                f"{path}: {key} is {value!r}, expected a positive integer: re-create the dataset"
            )
    split = manifest["split"]
    if not isinstance(split, dict) or not all(
        isinstance(ids, list) and all(isinstance(i, int) and not isinstance(i, bool) for i in ids)
        for ids in split.values()
    ):
        raise GenieError(
            f"{path}: split is {split!r:.80}, expected {{name: [episode ids]}}: re-create the dataset"
        )


def dataset_root(data_dir: Path, dataset: str, *, height: int = 72, width: int = 128) -> Path:
    """The folder of the dataset DATA_DIR/<dataset>, checked: it exists and has the asked resolution.

    Opening never records anything: a missing dataset is one line saying how to make one. The commands
    that promise to collect a missing ALE game call genie.data.collect.ensure_dataset instead.
    """
    root = Path(data_dir) / dataset
    if (root / MANIFEST).is_file():
        manifest = EpisodeStore.open(root).manifest
        if (manifest["height"], manifest["width"]) != (height, width):
            raise GenieError(
                f"dataset {root} has {manifest['height']} rows x {manifest['width']} columns, not the "
                f"{height} x {width} asked for: collect another with `genie collect GAME --dataset "
                f"{dataset}_{width}x{height} --height {height} --width {width}` (or ingest with the same "
                f"flags) and pass that --dataset"
            )
        return root
    if root.exists():
        raise GenieError(
            f"{root} exists but is not a dataset ({MANIFEST} missing): remove it or pick another --dataset"
        )
    raise GenieError(
        f"dataset {dataset!r} not found in {data_dir}/: record an ALE game with `genie collect GAME` or "
        f"import video with `genie ingest PATH --dataset {dataset}`"
    )
