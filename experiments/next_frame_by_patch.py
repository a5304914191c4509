"""How sure the dynamics model is of each kind of token, teacher-forced: static patches, changed ones, and
the ones that hold each object of the game.

    python experiments/next_frame_by_patch.py checkpoints/dynamics/run_X [--clips 96]

For validation clips the last frame is fully masked (what MaskGIT's first round sees) and the real frames
before it are context, with their true actions. Per kind of patch of that last frame: the model's argmax
accuracy, the probability it puts on the true token, and, where the token changed, on the token the patch
held in the frame before ("nothing moved here"). Long play loses small objects (docs/dynamics.md); this
says whether the model is unsure of them even from a perfect past.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from einops import reduce

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.data.clips import ClipDataset, evenly_spaced  # noqa: E402
from genie.data.frames import to_float  # noqa: E402
from genie.evaluation.objects import game_objects, object_pixels  # noqa: E402
from genie.evaluation.world_eval import clip_actions  # noqa: E402
from genie.inference import TrainedWorld  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, help="a dynamics run directory (its best checkpoint) or checkpoint")
    p.add_argument("--clips", type=int, default=96)
    a = p.parse_args()
    world = TrainedWorld.load(a.run, "cpu")
    store = world.store
    objects = game_objects(store.manifest.get("game"), store.height, store.width)
    val = ClipDataset(store, "val", world.window, stride=world.window)
    batch = {k: torch.stack([val[i][k] for i in evenly_spaced(len(val), a.clips)]) for k in val[0]}
    with torch.no_grad():
        tokens = world.encode(to_float(batch["frames"]))  # (b, t, n)
        actions = clip_actions(world, batch)[:, : world.window - 1]
        mask = torch.zeros_like(tokens, dtype=torch.bool)
        mask[:, -1] = True
        vocab = world.config.model.token_embedding.vocab_size
        logits = world.dynamics(tokens.masked_fill(mask, vocab), actions, where=mask)
    probs = logits.float().softmax(-1).view(len(tokens), tokens.shape[-1], -1)  # (b, n, v)
    target, before = tokens[:, -1], tokens[:, -2]
    p_true = probs.gather(-1, target[..., None])[..., 0]
    p_before = probs.gather(-1, before[..., None])[..., 0]
    hit = probs.argmax(-1) == target
    changed = target != before
    last = batch["frames"][:, -1].permute(0, 2, 3, 1).numpy()  # (b, h, w, 3) uint8
    gh, gw = world.tokenizer.grid
    kinds = {"every patch": torch.ones_like(changed), "static": ~changed, "changed": changed}
    for name, pixels in object_pixels(last, objects).items():
        on = reduce(torch.from_numpy(pixels).float(), "b (gh ph) (gw pw) -> b (gh gw)", "max", gh=gh, gw=gw)
        kinds[name] = on > 0
    print(f"{'patches':18s} {'count':>6s} {'argmax acc':>10s} {'p(true)':>8s} {'p(as before), changed':>22s}")
    for name, sel in kinds.items():
        moved = sel & changed
        stay = f"{p_before[moved].mean():.3f}" if moved.any() else "-"
        n = int(sel.sum())
        print(f"{name:18s} {n:6d} {hit[sel].float().mean():10.3f} {p_true[sel].mean():8.3f} {stay:>22s}")


if __name__ == "__main__":
    main()
