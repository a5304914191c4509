"""Import unlabelled frames as a dataset: videos, image folders or arrays, one episode per source.

Accepted PATH:
  a video file (mp4, webm, avi, mkv, mov, gif, ...)        -> one episode
  an .npy / .npz / .h5 / .hdf5 file of [N, H, W, 3] uint8   -> one episode
  a folder of such files                                    -> one episode per file (sorted by name)
  a folder of PNG/JPG frames                                -> one episode (frames sorted by name)
  a folder of folders of PNG/JPG frames                     -> one episode per subfolder
`episode_frames` cuts long sources into several episodes (a single video then still gives a split).
Frames are resized with the same area interpolation as ALE collection. There are no actions.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from genie.data.readers import (
    ARRAY_SUFFIXES,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Chunks,
    natural_key,
    read_array,
    read_images,
    read_video,
)
from genie.data.resize import resize_frames
from genie.data.writer import DatasetWriter, check_dataset_name, make_split
from genie.errors import GenieError
from genie.progress import progress_bar

ACCEPTED = (
    "a video file, an .npy/.npz/.h5 array of [N, H, W, 3] uint8, or a folder of those or of PNG/JPG frames"
)


@dataclass(frozen=True)
class Source:
    """One episode's worth of input and how to read it."""

    name: str  # shown in the manifest, relative to the ingested path
    kind: str  # "video", "images" or "array"
    read: Callable[[], Chunks]


def _images(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted((p for p in files if not p.name.startswith(".")), key=natural_key)


def _file_source(path: Path, name: str) -> Source | None:
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        return Source(name, "video", lambda: read_video(path))
    if suffix in ARRAY_SUFFIXES:
        return Source(name, "array", lambda: read_array(path))
    return None


def find_sources(path: Path) -> list[Source]:
    """The episodes found at `path`, in name order; GenieError when there are none."""
    if not path.exists():
        raise GenieError(f"ingest path {path} does not exist (expected {ACCEPTED})")
    if path.is_file():
        source = _file_source(path, path.name)
        if source is None:
            raise GenieError(f"cannot ingest {path}: unknown file type {path.suffix!r} (expected {ACCEPTED})")
        return [source]
    entries = sorted((p for p in path.iterdir() if not p.name.startswith(".")), key=natural_key)
    sources = [s for p in entries if p.is_file() and (s := _file_source(p, p.name)) is not None]
    images = _images(path)
    if images:
        sources.append(Source(f"{path.name}/ ({len(images)} images)", "images", lambda: read_images(images)))
    for sub in (p for p in entries if p.is_dir()):
        sub_images = _images(sub)
        if sub_images:
            sources.append(Source(f"{sub.name}/", "images", lambda imgs=sub_images: read_images(imgs)))
    if not sources:
        raise GenieError(f"found nothing to ingest in folder {path} (expected {ACCEPTED})")
    return sources


def ingest(
    path: Path,
    data_dir: Path,
    dataset: str,
    *,
    height: int = 72,
    width: int = 128,
    seed: int = 0,
    val_fraction: float = 0.1,
    overwrite: bool = False,
    progress: bool = True,
    episode_frames: int | None = None,
) -> Path:
    """Import `path` as DATA_DIR/<dataset>; returns the dataset folder."""
    path = Path(path)
    check_dataset_name(dataset)
    if episode_frames is not None and episode_frames < 2:
        raise GenieError(f"episode_frames must be at least 2, got {episode_frames}")
    sources = find_sources(path)
    if len(sources) == 1 and episode_frames is None:
        # one file is one episode, too few for a split: say so without decoding it all, but after its
        # first frames, so that a broken file reports its real problem first
        with closing(sources[0].read()) as chunks:
            next(chunks)
        make_split(1, val_fraction, seed)
    episode_sources: list[str] = []  # where each episode came from, for the manifest
    with (
        DatasetWriter(
            data_dir,
            dataset,
            height=height,
            width=width,
            with_actions=False,
            seed=seed,
            val_fraction=val_fraction,
            overwrite=overwrite,
        ) as writer,
        progress_bar(total=None, unit="frame", desc=f"ingest {dataset}", disable=not progress) as bar,
    ):
        for source in sources:
            in_episode = 0
            for chunk in source.read():
                frames = resize_frames(chunk, height, width)
                while len(frames):  # split the chunk where an episode reaches episode_frames
                    room = len(frames) if episode_frames is None else episode_frames - in_episode
                    part, frames = frames[:room], frames[room:]
                    writer.append(part)
                    in_episode += len(part)
                    if in_episode == episode_frames:
                        writer.end_episode()
                        episode_sources.append(source.name)
                        in_episode = 0
                bar.update(len(chunk))
            if in_episode:
                writer.end_episode()
                episode_sources.append(source.name)
        manifest = {
            "source": "video",
            "origin": str(path.resolve()),
            "origin_kinds": sorted({s.kind for s in sources}),
            "episode_sources": episode_sources,
            "episode_frames": episode_frames,
            "resize": "area (PIL BOX)",
            "action_meanings": None,
            "movement_classes": None,
            "movement_names": None,
        }
        return writer.commit(manifest)
