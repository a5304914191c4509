"""One resize for every source (ALE and ingested video), so all datasets share the same pixels.

Area interpolation (PIL's BOX filter) averages every source pixel by the share of it an output pixel
covers, also for non-integer ratios like 210 -> 72 rows: a 2-pixel ball stays a faint blob instead of
vanishing between samples, as it can with nearest or bilinear.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """[h, w, 3] uint8 -> [height, width, 3] uint8 by area interpolation."""
    if frame.shape[:2] == (height, width):
        return np.ascontiguousarray(frame)
    image = Image.fromarray(np.ascontiguousarray(frame))
    return np.asarray(image.resize((width, height), Image.Resampling.BOX))


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, h, w, 3] uint8 -> [N, height, width, 3] uint8, frame by frame."""
    out = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = resize_frame(frame, height, width)
    return out
