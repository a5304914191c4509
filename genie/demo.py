"""`make demo`: the whole pipeline at the tiny preset on a laptop CPU, from nothing to evaluated models.

Today: collect Pong (frames + true actions) -> train the tiny tokenizer -> evaluate it.
The LAM, dynamics and play stages extend this as they land.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from genie.cli import main as genie
from genie.cli import run

ROOT = Path(__file__).resolve().parents[1]


def demo(data_dir: Path, max_steps: int | None) -> None:
    from genie.data.store import ensure_dataset

    t0 = time.perf_counter()
    print("== 1/2 data: Atari Pong from ALE (frames, true actions, identifiability) ==")
    ensure_dataset(data_dir, "pong")
    print("== 2/2 tokenizer: tiny preset on CPU ==")
    args = ["train", "tokenizer", "--config", str(ROOT / "configs/tiny/tokenizer.yaml")]
    args += ["--data_dir", str(data_dir), "--dataset", "pong", "--device", "auto"]
    if max_steps:
        args += ["--max_steps", str(max_steps)]
    if genie(args) != 0:
        sys.exit(1)
    reports = sorted(Path("evaluations/tokenizer").glob("comparison_checkpoint_step_*.json"))
    if reports:
        metrics = json.loads(reports[-1].read_text())["metrics"]
        keys = ("val/psnr", "val/background_psnr", "val/object_recall", "val/ssim", "val/perplexity")
        print("tokenizer validation: " + ", ".join(f"{k[4:]}={metrics[k]:.3f}" for k in keys))
        print(f"videos and JSON: {reports[-1].parent}/")
    print(f"demo done in {(time.perf_counter() - t0) / 60:.1f} min.")
    print("next: the latent action model, dynamics and play stages (issues 5-7) extend this demo.")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--max_steps", type=int, help="shorten training (for a quick look)")
    a = p.parse_args()
    return run(lambda: demo(a.data_dir, a.max_steps))


if __name__ == "__main__":
    sys.exit(main())
