"""Where long play goes wrong: per generated frame, how many of each object (none, one, two or more).

    python experiments/long_play_frames.py checkpoints/dynamics/run_X --frames 300 --out DIR [--steps N]

Plays 8 held-out prompts for `--frames` frames with held random actions (as the dynamics evaluation's long
play), then prints, per object, the share of frames holding none / one / two or more, and for the first two
rollouts a line a frame (0, 1 or M); writes DIR/rollout{0,1}.png (every 10th of the first 160 frames, four
to a row) and DIR/counts.json. The evaluation's `play/*_one` shares say how often the world is right;
this says which way it is wrong: an object lost, or doubled.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.data.clips import ClipDataset, evenly_spaced  # noqa: E402
from genie.data.frames import to_float  # noqa: E402
from genie.evaluation.long_play import played_frames  # noqa: E402
from genie.evaluation.objects import game_objects, objects_counted  # noqa: E402
from genie.evaluation.world_eval import clip_actions  # noqa: E402
from genie.inference import PROMPT_FRAMES, TrainedWorld  # noqa: E402

PROMPTS = 8
SHOWN = 2  # rollouts printed and drawn


def grid(frames: np.ndarray, per_row: int = 4) -> np.ndarray:
    """frames uint8 [K, H, W, 3] (K a multiple of per_row) -> one image, per_row frames a row."""
    rows = [np.concatenate(list(frames[i : i + per_row]), axis=1) for i in range(0, len(frames), per_row)]
    return np.concatenate(rows, axis=0)


def played(world: TrainedWorld, sampling, frames: int) -> np.ndarray:
    """PROMPTS held-out prompts played for `frames` frames with held random actions: uint8 [P, frames, H, W,
    3]."""
    val = ClipDataset(world.store, "val", PROMPT_FRAMES, stride=PROMPT_FRAMES)
    batch = {k: torch.stack([val[i][k] for i in evenly_spaced(len(val), PROMPTS)]) for k in val[0]}
    with torch.no_grad():
        return played_frames(
            world.dynamics,
            world.tokenizer,
            to_float(batch["frames"]),
            clip_actions(world, batch),
            sampling,
            world.window,
            frames,
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a dynamics run directory (its best checkpoint) or checkpoint")
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--steps", type=int, help="MaskGIT rounds (default: the run's)")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args()
    world = TrainedWorld.load(a.run, "cpu")
    sampling = world.sampling if a.steps is None else replace(world.sampling, steps=a.steps)
    objects = game_objects(world.store.manifest.get("game"), world.store.height, world.store.width)
    if not objects:
        sys.exit("this dataset's objects are not known (genie.data.games): nothing to count")
    frames = played(world, sampling, a.frames)
    counts = objects_counted(frames, objects)
    shares = {
        name: {"none": float((c == 0).mean()), "one": float((c == 1).mean()), "many": float((c >= 2).mean())}
        for name, c in counts.items()
    }
    a.out.mkdir(parents=True, exist_ok=True)
    for name, c in counts.items():
        for b in range(SHOWN):
            line = "".join("0" if n == 0 else "1" if n == 1 else "M" for n in c[b, :200])
            print(f"{name:16s} {b}: {line}")
    for b in range(SHOWN):
        image = grid(frames[b, :160:10])
        Image.fromarray(image).resize((image.shape[1] * 2, image.shape[0] * 2), Image.NEAREST).save(
            a.out / f"rollout{b}.png"
        )
    result = {"run": str(a.run), "frames": a.frames, "steps": sampling.steps, "shares": shares}
    (a.out / "counts.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(shares))


if __name__ == "__main__":
    main()
