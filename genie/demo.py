"""`make demo`: the whole pipeline at the tiny preset on a laptop CPU, from nothing to evaluated models.

Today: collect Pong (frames + true actions) -> train and evaluate the tiny tokenizer -> train and evaluate
the tiny latent action model (scored against the true actions it never saw). Dynamics and play extend this.
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
    print("== 1/3 data: Atari Pong from ALE (frames, true actions, identifiability) ==")
    ensure_dataset(data_dir, "pong")
    print("== 2/3 tokenizer: tiny preset on CPU ==")
    train("tokenizer", data_dir, max_steps)
    reports = sorted(Path("evaluations/tokenizer").glob("comparison_checkpoint_step_*.json"))
    if reports:
        metrics = json.loads(reports[-1].read_text())["metrics"]
        keys = ("val/psnr", "val/background_psnr", "val/object_recall", "val/ssim", "val/perplexity")
        print("tokenizer validation: " + ", ".join(f"{k[4:]}={metrics[k]:.3f}" for k in keys))
        print(f"videos and JSON: {reports[-1].parent}/")
    print("== 3/3 latent action model: tiny preset on CPU (~8 min) ==")
    train("lam", data_dir, max_steps)
    reports = sorted(Path("evaluations/lam").glob("visual_eval_step_*.json"), key=lambda p: p.stat().st_mtime)
    if reports:
        m = json.loads(reports[-1].read_text())["metrics"]  # Pong from ALE: true actions are there
        usage = " / ".join(f"{v:.2f}" for k, v in m.items() if k.startswith("val/usage_"))
        print(
            f"LAM validation: movement accuracy on identifiable steps {m['val/move_acc_identifiable']:.3f} "
            f"(chance {m['val/move_majority_identifiable']:.3f}), NMI {m['val/move_nmi_identifiable']:.3f}; "
            f"code usage {usage}; next-frame PSNR {m['val/psnr']:.2f} dB, on changed pixels "
            f"{m['val/psnr_changed']:.2f} dB ({m['val/action_gain_db']:+.2f} dB over shuffled actions)"
        )
        print(f"video, confusion matrix and JSON: {reports[-1].parent}/")
    print(f"demo done in {(time.perf_counter() - t0) / 60:.1f} min.")
    print("next: the dynamics and play stages (issues 6-7) extend this demo.")


def train(stage: str, data_dir: Path, max_steps: int | None) -> None:
    args = ["train", stage, "--config", str(ROOT / f"configs/tiny/{stage}.yaml")]
    args += ["--data_dir", str(data_dir), "--dataset", "pong", "--device", "auto"]
    if max_steps:
        args += ["--max_steps", str(max_steps)]
    if genie(args) != 0:
        sys.exit(1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--max_steps", type=int, help="shorten training (for a quick look)")
    a = p.parse_args()
    return run(lambda: demo(a.data_dir, a.max_steps))


if __name__ == "__main__":
    sys.exit(main())
