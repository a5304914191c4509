"""Where does long play lose the agent's paddle? Its rows in generated frames against real ones, and where it
was in the frame before each time it vanished.

    python experiments/agent_paddle_rows.py checkpoints/dynamics/run_X [--frames 300]

Plays 8 held-out prompts for `--frames` frames with held random actions (as `long_play_frames.py`) and looks
for the agent paddle's colour in its columns over the whole height (walls included), so that a paddle pushed
into a wall still shows as the rows it has left. Prints, for generated and real validation frames: the share
of frames with no paddle pixel at all, how often its top sits at the top wall and its bottom at the bottom
wall, its mean height in pixels; then, each time the count of `genie.evaluation.objects` went from one or
more to none, where the paddle was in the frame before (at a wall, or mid-court), and each time it went back
to one or more, where it came back.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from long_play_frames import played  # noqa: E402

from genie.data.clips import ClipDataset, evenly_spaced  # noqa: E402
from genie.evaluation.objects import _matches, box, game_objects, objects_counted  # noqa: E402
from genie.inference import TrainedWorld  # noqa: E402

REAL_CLIPS, REAL_LENGTH = 40, 64


def paddle_rows(frames: np.ndarray, look) -> np.ndarray:
    """frames uint8 [..., H, W, 3] -> bool [K, H]: rows holding the paddle's colour in its columns."""
    whole_height = replace(look, rows=(0.0, 1.0))
    return _matches(frames.reshape(-1, *frames.shape[-3:]), whole_height).any(-1)


def ends(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rows bool [..., H] -> the first and the last row holding the paddle."""
    return rows.argmax(-1), rows.shape[-1] - 1 - rows[..., ::-1].argmax(-1)


def describe(name: str, rows: np.ndarray, top_wall: int, bottom_wall: int) -> None:
    seen = rows.any(1)
    top, bottom = ends(rows)
    at_top, at_bottom = (seen & (top <= top_wall)).mean(), (seen & (bottom >= bottom_wall)).mean()
    print(
        f"{name:9s} frames {len(rows)}: no paddle pixel {1 - seen.mean():.3f}, "
        f"top at the top wall {at_top:.3f}, "
        f"bottom at the bottom wall {at_bottom:.3f}, height {rows[seen].sum(1).mean():.1f} px"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a dynamics run directory (its best checkpoint) or checkpoint")
    p.add_argument("--frames", type=int, default=300)
    a = p.parse_args()
    world = TrainedWorld.load(a.run, "cpu")
    objects = game_objects(world.store.manifest.get("game"), world.store.height, world.store.width)
    if "agent_paddle" not in objects:
        sys.exit("this dataset's agent paddle is not known (genie.data.games): nothing to look for")
    look = objects["agent_paddle"]
    court = box(look, world.store.height, world.store.width)[0]
    top_wall, bottom_wall = court.start, court.stop - 2  # the real paddle's first and last rows (measured)

    frames = played(world, world.sampling, a.frames)
    real = ClipDataset(world.store, "val", REAL_LENGTH, stride=REAL_LENGTH)
    real_frames = np.concatenate([real[i]["frames"].numpy() for i in evenly_spaced(len(real), REAL_CLIPS)])
    real_frames = np.moveaxis(real_frames, 1, -1)  # [K, 3, H, W] -> [K, H, W, 3]

    generated = paddle_rows(frames, look).reshape(*frames.shape[:2], -1)  # [prompts, frames, H]
    describe("generated", generated.reshape(-1, generated.shape[-1]), top_wall, bottom_wall)
    describe("real", paddle_rows(real_frames, look), top_wall, bottom_wall)

    counts = objects_counted(frames, {"agent_paddle": look})["agent_paddle"]
    lost, there = counts == 0, counts >= 1
    print(f"lost in {lost.mean():.3f} of generated frames")
    for name, where, rows in (
        ("vanished", "the frame before", generated[:, :-1][there[:, :-1] & lost[:, 1:]]),
        ("came back", "there", generated[:, 1:][lost[:, :-1] & there[:, 1:]]),
    ):
        top, bottom = ends(rows)
        at_top, at_bottom = int((top <= top_wall).sum()), int((bottom >= bottom_wall).sum())
        print(
            f"{name} {len(rows)} times; {where}: at the top wall {at_top}, at the bottom wall {at_bottom}, "
            f"mid-court {len(rows) - at_top - at_bottom}"
        )


if __name__ == "__main__":
    main()
