"""Ingest: videos, arrays and image folders become datasets; bad input is one clear error."""

from __future__ import annotations

from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from PIL import Image

from genie.cli import main
from genie.data.ingest import ingest
from genie.data.resize import resize_frames
from genie.data.store import EpisodeStore
from genie.errors import GenieError

H, W = 96, 160  # source size; datasets are 72 x 128 (a non-integer 0.75 / 0.8 ratio)


def moving_square(n: int, seed: int = 0) -> np.ndarray:
    """[n, H, W, 3] uint8: a dark court with a bright square moving right (easy on lossy codecs)."""
    frames = np.full((n, H, W, 3), (40, 80, 40), np.uint8)
    for i in range(n):
        x = (8 * i + 16 * seed) % (W - 24)
        frames[i, 30:54, x : x + 24] = (230, 200, 60)
    return frames


def write_video(path: Path, frames: np.ndarray, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return path


def assert_close_to_source(store: EpisodeStore, sources: list[np.ndarray], tolerance: float) -> None:
    assert (store.height, store.width) == (72, 128)
    assert len(store.episodes) == len(sources)
    for (start, end), source in zip(store.episodes, sources, strict=True):
        assert end - start == len(source)
        error = np.abs(store.frames[start:end].astype(int) - resize_frames(source, 72, 128).astype(int))
        assert error.mean() <= tolerance


def test_video_folder(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    sources = [moving_square(20, seed=s) for s in range(3)]
    write_video(folder / "b.mp4", sources[1])
    write_video(folder / "a.mp4", sources[0])
    write_video(folder / "c.avi", sources[2], codec="mpeg4")
    (folder / "notes.txt").write_text("ignored")
    store = EpisodeStore.open(ingest(folder, tmp_path / "data", "vids", progress=False))
    assert_close_to_source(store, sources, tolerance=6.0)  # lossy codecs
    m = store.manifest
    assert (m["source"], m["action_meanings"], m["episode_sources"]) == (
        "video",
        None,
        ["a.mp4", "b.mp4", "c.avi"],
    )
    assert store.actions is None and store.identifiable is None


def test_one_video_cut_into_episodes(tmp_path: Path) -> None:
    video = write_video(tmp_path / "long.mp4", moving_square(25))
    with pytest.raises(GenieError, match="at least 2 episodes"):
        ingest(video, tmp_path / "data", "one", progress=False)
    store = EpisodeStore.open(ingest(video, tmp_path / "data", "cut", episode_frames=10, progress=False))
    assert (store.episodes[:, 1] - store.episodes[:, 0]).tolist() == [10, 10, 5]


def test_arrays_are_exact(tmp_path: Path) -> None:
    sources = [moving_square(7, seed=s) for s in range(4)]
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.savez(folder / "0.npz", other=np.zeros(3), frames=sources[0])
    np.savez(folder / "1.npz", sources[1])  # unnamed: the first 4-D array
    with h5py.File(folder / "2.h5", "w") as f:
        f.create_dataset("meta/rewards", data=np.zeros(7))
        f.create_dataset("episode/observations", data=sources[2])
    np.save(folder / "10.npy", sources[3])  # natural order: 10 after 2
    store = EpisodeStore.open(ingest(folder, tmp_path / "data", "arr", progress=False))
    assert_close_to_source(store, sources, tolerance=0.0)


def test_png_folders(tmp_path: Path) -> None:
    sources = [moving_square(12, seed=s) for s in range(2)]
    for e, source in enumerate(sources):
        (tmp_path / "pngs" / f"ep{e}").mkdir(parents=True)
        for i, frame in enumerate(source):  # frame_10 must sort after frame_9
            Image.fromarray(frame).save(tmp_path / "pngs" / f"ep{e}" / f"frame_{i}.png")
    store = EpisodeStore.open(ingest(tmp_path / "pngs", tmp_path / "data", "pngs", progress=False))
    assert_close_to_source(store, sources, tolerance=0.0)
    flat = EpisodeStore.open(
        ingest(tmp_path / "pngs" / "ep0", tmp_path / "data", "flat", episode_frames=6, progress=False)
    )
    assert np.array_equal(flat.frames, store.frames[:12])


def make_bad_input(kind: str, folder: Path) -> Path:
    """One kind of bad input inside `folder`; returns the path to ingest."""
    path = folder / {
        "missing": "missing.mp4",
        "empty": "empty",
        "text": "x.txt",
        "random_mp4": "bad.mp4",
    }.get(kind, kind)
    if kind == "empty":
        path.mkdir()
    elif kind == "text":
        path.write_text("hi")
    elif kind == "random_mp4":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "float.npy":
        np.save(path, np.zeros((5, 8, 8, 3), np.float32))
    elif kind == "gray.npy":
        np.save(path, np.zeros((5, 8, 8), np.uint8))
    elif kind in ("broken.h5", "broken.npz"):
        path.write_bytes(b"not an array file")
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "missing.mp4 does not exist"),
        ("empty", "found nothing to ingest in folder"),
        ("text", "unknown file type '.txt'"),
        ("random_mp4", "cannot decode video"),
        ("float.npy", r"holds an array of shape \[5, 8, 8, 3\] float32, expected \[N, H, W, 3\] uint8"),
        ("gray.npy", r"\[5, 8, 8\] uint8, expected"),
        ("broken.h5", "cannot read HDF5 file"),
        ("broken.npz", "cannot read"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path: Path, kind: str, message: str) -> None:
    path = make_bad_input(kind, tmp_path)
    data_dir = tmp_path / "data"
    with pytest.raises(GenieError, match=message):
        ingest(path, data_dir, "bad", progress=False)
    assert not data_dir.exists() or list(data_dir.iterdir()) == []  # nothing half-written


def test_existing_dataset_needs_overwrite(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", moving_square(4))
    np.save(tmp_path / "b.npy", moving_square(6))
    ingest(tmp_path, tmp_path / "data", "d", progress=False)
    with pytest.raises(GenieError, match="already exists"):
        ingest(tmp_path, tmp_path / "data", "d", progress=False)
    ingest(tmp_path, tmp_path / "data", "d", overwrite=True, progress=False)


def test_cli_turns_bad_input_into_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["ingest", str(tmp_path / "nope"), "--dataset", "x", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ingest path") and "does not exist" in err
    assert main(["collect", "not_a_game", "--data_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown ALE game 'not_a_game'" in err


def _peak_mb(fn) -> float:
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["video", "npz"])
def test_ingest_memory_is_bounded_at_1080p(tmp_path: Path, kind: str) -> None:
    """40 frames at 1080p are 249 MB at the source's size; ingest decodes and resizes a bounded chunk at a
    time (numpy's allocations, traced), so a long or compressible file costs what a short one does."""
    frames = np.zeros((40, 1080, 1920, 3), np.uint8)
    frames[:, 500:580, ::7] = 200
    if kind == "video":
        source = write_video(tmp_path / "hd.mp4", frames)
    else:
        source = tmp_path / "hd.npz"
        np.savez_compressed(source, frames=frames)  # ~1 MB on disk
    del frames
    peak = _peak_mb(lambda: ingest(source, tmp_path / "data", "hd", progress=False, episode_frames=20))
    assert peak < 200, f"{peak:.0f} MB"
    assert EpisodeStore.open(tmp_path / "data" / "hd").frames.shape == (40, 72, 128, 3)


def test_a_decompression_bomb_png_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    big = Image.new("RGB", (1, 1))
    for i in range(3):
        big.save(folder / f"{i}.png")
    Image.new("1", (20000, 20000)).save(folder / "3.png")  # 400 Mpixels, a few KB on disk
    with pytest.raises(GenieError, match="too large to be a video frame"):
        ingest(folder, tmp_path / "data", "bomb", progress=False)


def test_an_image_over_pils_pixel_limit_is_refused_from_its_header(tmp_path, capsys, monkeypatch) -> None:
    """PIL refuses images over twice MAX_IMAGE_PIXELS and only warns of those in between, decoding them (up
    to ~0.5 GB a frame at its default limit). The limit is lowered here so the images stay small."""
    from PIL import ImageFile

    limit, real_load = 10_000, ImageFile.ImageFile.load

    def load(image):
        assert image.width * image.height <= limit, f"{image.filename} decoded before its size was checked"
        return real_load(image)

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", limit)
    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    for name, size in (("between", (150, 100)), ("over_twice", (200, 200))):  # 15,000 and 40,000 pixels
        folder = tmp_path / name
        folder.mkdir()
        Image.new("RGB", (50, 40)).save(folder / "0.png")
        Image.new("RGB", size).save(folder / "1.png")
        code = main(["ingest", str(folder), "--dataset", name, "--data_dir", str(tmp_path / "data")])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert f"image {folder / '1.png'} is too large to be a video frame (over {limit} pixels" in err
        assert not (tmp_path / "data" / name).exists()
