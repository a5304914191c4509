"""Do a LAM's codes say the action, or the paddle's last move? Many-to-one agreement on held-out episodes,
scored against the movement of the transition (the action) and of the one before it, on all identifiable
validation transitions and on those where the movement changed.

Actions are held (the class repeats on ~84% of identifiable steps), so a code that only encoded how the
paddle was already moving (it can be read from x_{t-1}, x_t) would agree with the action that often too.
Where the movement changed it cannot: there the action and the last move disagree, and the score tells
which one the codes follow. True actions only measure.

    python experiments/lam_codes_vs_last_move.py LAM_RUN [LAM_RUN ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.data.actions import class_ids  # noqa: E402
from genie.data.clips import ClipDataset  # noqa: E402
from genie.data.frames import to_float  # noqa: E402
from genie.data.store import EpisodeStore  # noqa: E402
from genie.evaluation.action_metrics import majority_share, many_to_one_accuracy  # noqa: E402
from genie.inference import load_model  # noqa: E402


@torch.no_grad()
def codes_and_moves(lam, store: EpisodeStore, T: int = 8) -> dict[str, np.ndarray]:
    """Per validation transition (clips of T frames, stride T): code, movement class, the previous
    transition's class (-1 at a clip's first), identifiable, episode."""
    val = ClipDataset(store, "val", T, stride=T)
    out: dict[str, list] = {k: [] for k in ("code", "move", "last", "ident", "episode")}
    for start in range(0, len(val), 32):
        clips = [val[i] for i in range(start, min(start + 32, len(val)))]
        frames = to_float(torch.stack([c["frames"] for c in clips]))
        code = lam.infer_actions(frames).numpy()
        move = class_ids(torch.stack([c["actions"] for c in clips]).numpy(), store.movement_classes)
        last = np.concatenate([np.full((len(clips), 1), -1), move[:, :-1]], 1)
        out["code"].append(code.ravel())
        out["move"].append(move.ravel())
        out["last"].append(last.ravel())
        out["ident"].append(torch.stack([c["identifiable"] for c in clips]).numpy().ravel())
        out["episode"].append(np.repeat([c["episode"] for c in clips], T - 1))
    return {k: np.concatenate(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("--data_dir", type=Path, default=Path("data/pong"))
    a = p.parse_args()
    store = EpisodeStore.open(a.data_dir)
    for run in a.runs:
        lam, _ = load_model("lam", run, torch.device("cpu"))
        d = codes_and_moves(lam, store)
        k, n = lam.num_actions, 3
        base = d["ident"].astype(bool) & (d["move"] >= 0) & (d["last"] >= 0)
        changed = base & (d["move"] != d["last"])
        row = []
        for name, keep in (("all", base), ("changed", changed)):
            action = many_to_one_accuracy(d["code"][keep], d["move"][keep], d["episode"][keep], k, n)
            last = many_to_one_accuracy(d["code"][keep], d["last"][keep], d["episode"][keep], k, n)
            chance = majority_share(d["move"][keep])
            row.append(f"{name} ({keep.sum()}): action {action:.3f}, last {last:.3f}, chance {chance:.3f}")
        print(f"{run} ({k} codes, many-to-one): " + "; ".join(row), flush=True)


if __name__ == "__main__":
    main()
