"""Readers that turn one source (a video, a folder of images, an array file) into chunks of frames.

Each reader yields uint8 arrays [n, h, w, 3] at the source's own size and turns any failure into a
GenieError naming the file, so `genie ingest` answers bad input with one line.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from collections.abc import Generator
from pathlib import Path

import numpy as np

from genie.errors import GenieError

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".npz", ".h5", ".hdf5")
ARRAY_NAMES = ("frames", "observations")  # preferred names inside .npz / .h5 files
CHUNK = 256  # frames a chunk at most
CHUNK_BYTES = 64 << 20  # and at most this much at the source's size: a 1080p video is 10 frames a chunk
EXPECTED = "[N, H, W, 3] uint8"
Chunks = Generator[np.ndarray, None, None]  # uint8 [n, h, w, 3] at a time


def chunk_frames(height: int, width: int) -> int:
    """Frames per chunk for frames of this size: memory stays bounded whatever the source resolution."""
    return max(1, min(CHUNK, CHUNK_BYTES // (height * width * 3)))


def natural_key(path: Path) -> list[int | str]:
    """Sort 'frame_2.png' before 'frame_10.png'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def read_video(path: Path) -> Chunks:
    """Decoded RGB frames of the first video stream, CHUNK at a time."""
    import av

    chunk: list[np.ndarray] = []
    count = 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise GenieError(f"{path} has no video stream (expected a video file)")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                chunk.append(frame.to_ndarray(format="rgb24"))
                count += 1
                if len(chunk) >= chunk_frames(frame.height, frame.width):
                    yield np.stack(chunk)
                    chunk = []
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
        raise GenieError(
            f"cannot decode video {path}: {e} (is it a complete, playable video file?)"
        ) from None
    if chunk:
        yield np.stack(chunk)
    if count == 0:
        raise GenieError(f"video {path} has no frames")


def _read_image(path: Path) -> np.ndarray:
    """One image as an RGB frame. Its size is checked from the header, before decoding: PIL itself refuses
    only images over twice its MAX_IMAGE_PIXELS, and decodes those in between (up to ~0.5 GB each) with a
    warning."""
    from PIL import Image, UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS  # None: the user lifted PIL's limit
    too_large = f"image {path} is too large to be a video frame (over {limit} pixels, PIL's MAX_IMAGE_PIXELS)"
    try:
        with warnings.catch_warnings():  # the one line below says it, not a warning beside it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if limit is not None and image.width * image.height > limit:
                    raise GenieError(too_large)
                return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError:
        raise GenieError(too_large) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise GenieError(f"cannot read image {path}: {e}") from None


def read_images(paths: list[Path]) -> Chunks:
    """The images as RGB frames in the given order; they must all have one size."""
    size = None
    chunk: list[np.ndarray] = []
    for path in paths:
        frame = _read_image(path)
        if size is not None and frame.shape != size:
            raise GenieError(
                f"image {path} is {frame.shape[1]}x{frame.shape[0]}, the frames before it are "
                f"{size[1]}x{size[0]} (one episode's frames must share a size)"
            )
        size = frame.shape
        chunk.append(frame)
        if len(chunk) >= chunk_frames(*size[:2]):
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)


def _check_frames(array: object, where: str) -> None:
    shape = getattr(array, "shape", None)
    dtype = getattr(array, "dtype", None)
    if shape is None or len(shape) != 4 or shape[-1] != 3 or dtype != np.uint8:
        raise GenieError(f"{where} holds an array of shape {list(shape or [])} {dtype}, expected {EXPECTED}")
    if shape[0] == 0:
        raise GenieError(f"{where} holds no frames (shape {list(shape)}), expected {EXPECTED} with N >= 1")


def _pick(shapes: dict[str, tuple[int, ...]], path: Path) -> str:
    """The array named 'frames' or 'observations' if present, else the first 4-D one, else the first."""
    if not shapes:
        raise GenieError(f"{path} holds no arrays, expected one of {EXPECTED}")
    for name in (*ARRAY_NAMES, *(n for n, shape in shapes.items() if len(shape) == 4)):
        if name in shapes:
            return name
    return next(iter(shapes))


def read_array(path: Path) -> Chunks:
    """Frames from an .npy, .npz (array 'frames' or the first 4-D one) or HDF5 file, CHUNK at a time."""
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5"):
        yield from _read_hdf5(path)
        return
    if suffix == ".npz":
        yield from _read_npz(path)
        return
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise GenieError(f"cannot read {path}: {e} (expected a numpy {suffix} file)") from None
    _check_frames(array, str(path))
    step = chunk_frames(*array.shape[1:3])
    for start in range(0, len(array), step):
        yield np.asarray(array[start : start + step])


def _read_npz(path: Path) -> Chunks:
    """An .npz member streamed out of the zip a chunk at a time (npz cannot be memory-mapped, and loading
    the member whole would hold all its frames at the source's size at once)."""
    try:
        with zipfile.ZipFile(path) as z:
            headers = {}
            for member in z.namelist():
                if member.endswith(".npy"):
                    with z.open(member) as f:
                        headers[member[:-4]] = _npy_header(f)
            named = [n for n in ARRAY_NAMES if n in headers]
            name = named[0] if named else _pick({k: h[0] for k, h in headers.items()}, path)
            shape, fortran, dtype = headers[name]
            _check_frames(_Shaped(shape, dtype), f"{path} (array {name!r})")
            if fortran:
                raise GenieError(f"{path} (array {name!r}) is Fortran-ordered; save it C-ordered")
            step = chunk_frames(*shape[1:3])
            frame_bytes = int(np.prod(shape[1:]))
            with z.open(f"{name}.npy") as f:
                _npy_header(f)
                for start in range(0, shape[0], step):
                    chunk = np.empty((min(step, shape[0] - start), *shape[1:]), np.uint8)
                    for i in range(len(chunk)):  # a frame at a time: zip reads copy what they return
                        data = f.read(frame_bytes)
                        if len(data) != frame_bytes:
                            raise GenieError(f"{path} (array {name!r}) is truncated at frame {start + i}")
                        chunk[i] = np.frombuffer(data, np.uint8).reshape(shape[1:])
                    yield chunk
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise GenieError(f"cannot read {path}: {e} (expected a numpy .npz file)") from None


class _Shaped:
    """Shape and dtype of an array not read yet, for _check_frames."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.shape, self.dtype = shape, dtype


def _npy_header(f) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    return np.lib.format.read_array_header_2_0(f)


def _read_hdf5(path: Path) -> Chunks:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            shapes: dict[str, tuple[int, ...]] = {}

            def visit(name: str, obj: object) -> None:  # returning non-None would stop the visit
                if isinstance(obj, h5py.Dataset):
                    shapes[name] = obj.shape

            f.visititems(visit)
            name = _pick(shapes, path)
            array = f[name]
            _check_frames(array, f"{path} (dataset {name!r})")
            step = chunk_frames(*array.shape[1:3])
            for start in range(0, array.shape[0], step):
                yield np.asarray(array[start : start + step])
    except OSError as e:
        raise GenieError(f"cannot read HDF5 file {path}: {e}") from None
