"""Evaluation videos: side-by-side panels, captions, written as H.264 mp4 (atomic: temp file, then rename)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import Tensor

from genie.errors import GenieError

SHOWN_CLIPS = 4  # report clips a comparison video shows, one after another (tokenizer, dynamics)


def to_rgb_uint8(frames: Tensor) -> np.ndarray:
    """float [..., 3, H, W] in [0, 1] -> uint8 [..., H, W, 3]."""
    return (frames.detach().float().clamp(0, 1) * 255).round().byte().movedim(-3, -1).cpu().numpy()


def side_by_side(*panels: Tensor, gap: int = 2) -> np.ndarray:
    """Panels of float [T, 3, H, W] -> one uint8 [T, H, W_total, 3] video with white gaps between."""
    parts = []
    for i, p in enumerate(panels):
        if i:
            parts.append(np.full((p.shape[0], p.shape[2], gap, 3), 255, np.uint8))
        parts.append(to_rgb_uint8(p))
    return np.concatenate(parts, axis=2)


def annotate(frames: np.ndarray, captions: list[str], scale: int = 4, band: int = 14) -> np.ndarray:
    """uint8 [T, H, W, 3] -> [T, H*scale + band, W*scale, 3]: upscaled (nearest), a caption in a black band
    below each frame, so the text never hides the picture. Write the result with `write_mp4(..., scale=1)`."""
    from PIL import Image, ImageDraw

    if len(captions) != len(frames):
        raise ValueError(f"{len(captions)} captions for {len(frames)} frames")
    big = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    out = np.zeros((big.shape[0], big.shape[1] + band, big.shape[2], 3), np.uint8)
    out[:, : big.shape[1]] = big
    for i, text in enumerate(captions):
        image = Image.fromarray(out[i])
        ImageDraw.Draw(image).text((4, big.shape[1] + 1), text, fill=(255, 255, 255))
        out[i] = np.asarray(image)
    return out


def write_mp4(path: Path, frames: np.ndarray, fps: int = 10, scale: int = 4) -> Path:
    """uint8 [T, H, W, 3] -> mp4, upscaled `scale`x (nearest) so 72x128 Atari frames are watchable.

    PyAV is imported here, not at the top: training imports this module, and a machine that only trains
    (the GPU benchmark's, which carries its missing wheels within 64 MiB) has no room for PyAV's ~40 MB."""
    try:
        import av
    except ImportError:
        raise GenieError(
            f"cannot write {path}: videos need PyAV, which this Python lacks (requirements.txt pins it)"
        ) from None

    if scale > 1:
        frames = frames.repeat(scale, axis=1).repeat(scale, axis=2)
    h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p needs even sizes
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:h, :w]))):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
    return path
