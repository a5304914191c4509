"""How predictable a tokenizer's codes are: does a patch whose pixels did not change keep its code?

    python experiments/tokenizer_codes.py TOKENIZER_RUN [TOKENIZER_RUN ...] [--clips 128] [--out F.json]

Over validation clips spread over the held-out episodes: the share of patches whose pixels equal the
previous frame's but whose code differs ("flicker"), and the conditional entropy of the code given the
patch's pixels and position, H(code | pixels, position), in bits a token. A code that is a function of
the patch's pixels and position has 0 for both; anything above is noise the dynamics model has to guess,
since the decoder reads those codes back to the same pixels. Results in docs/dynamics.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genie.data.clips import ClipDataset, evenly_spaced  # noqa: E402
from genie.data.frames import to_float  # noqa: E402
from genie.data.store import EpisodeStore  # noqa: E402
from genie.inference import load_model  # noqa: E402
from genie.models.st_transformer import patchify  # noqa: E402


def conditional_entropy(keys: list[tuple], codes: np.ndarray) -> float:
    """H(code | key) in bits, from counts."""
    joint, marginal = Counter(zip(keys, codes.tolist(), strict=True)), Counter(keys)
    n = len(keys)
    return -sum(c / n * math.log2(c / marginal[k]) for (k, _), c in joint.items())


@torch.no_grad()
def code_stability(run: Path, store: EpisodeStore, clips: int) -> dict[str, float]:
    tokenizer, ckpt = load_model("tokenizer", run, torch.device("cpu"))
    T, p = int(ckpt["config"]["data"]["sequence_length"]), tokenizer.patch_size
    val = ClipDataset(store, "val", T, stride=T)
    frames = torch.stack([val[i]["frames"] for i in evenly_spaced(len(val), clips)])  # [B, T, 3, H, W]
    codes = torch.cat([tokenizer.encode(to_float(frames[i : i + 16])) for i in range(0, len(frames), 16)])
    patches = patchify(frames, p).numpy()  # [B, T, N, 3*p*p], the tokenizer's own patch order
    codes = codes.numpy()
    unchanged = (patches[:, 1:] == patches[:, :-1]).all(-1)
    position = np.broadcast_to(np.arange(patches.shape[2]), codes.shape).ravel()
    flat = patches.reshape(-1, patches.shape[-1])
    keys = [(hash(x.tobytes()), int(q)) for x, q in zip(flat, position, strict=True)]
    return {
        "flicker": float((codes[:, 1:] != codes[:, :-1])[unchanged].mean()),
        "code_entropy_given_pixels_and_position_bits": max(0.0, conditional_entropy(keys, codes.ravel())),
        "codes_used": len(np.unique(codes)),
        "patch_contents": len({k for k, _ in keys}),
        "clips": len(frames),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path, nargs="+", help="tokenizer run directories or checkpoints")
    p.add_argument("--data_dir", type=Path, default=Path("data/pong"))
    p.add_argument("--clips", type=int, default=128)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    torch.set_num_threads(1)
    store = EpisodeStore.open(a.data_dir)
    results = {}
    for run in a.runs:
        r = results[str(run)] = code_stability(run, store, a.clips)
        print(
            f"{run}: flicker {r['flicker']:.3f}, H(code | pixels, position) "
            f"{r['code_entropy_given_pixels_and_position_bits']:.3f} bits, {r['codes_used']} codes used "
            f"for {r['patch_contents']} patch contents",
            flush=True,
        )
    if a.out:
        a.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
