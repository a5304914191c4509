"""`make demo`: the whole pipeline at the tiny preset on a laptop CPU, from nothing to evaluated models.

Collect Pong (frames + true actions) -> train and evaluate the tiny tokenizer -> the tiny latent action
model (scored against the true actions of the validation episodes) -> the tiny dynamics model on both
(rollouts, controllability, long play) -> one HTML report with a play GIF -> how to play it in the browser.

The LAM trains in the few-label mode by default, with the true actions of one training episode (~2.5%
of the training frames): unsupervised, its codes do not mean up / down / stay (docs/lam.md), and a world
whose keys do not mean the controls cannot be played. `make demo LABELS=0` trains it unsupervised.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from genie import metric_keys as mk
from genie.cli import main as genie
from genie.cli import run
from genie.data.collect import ensure_dataset
from genie.data.store import EpisodeStore
from genie.outputs import eval_glob
from genie.report import latest_run as latest_run_in
from genie.report import with_error

ROOT = Path(__file__).resolve().parents[1]


def demo(data_dir: Path, max_steps: int | None, labelled_episodes: int) -> None:
    t0 = time.perf_counter()
    phases = Phases()
    print("== 1/5 data: Atari Pong from ALE (frames, true actions, identifiability) ==")
    store = EpisodeStore.open(ensure_dataset(data_dir, "pong"))
    phases.end("data")
    print("== 2/5 tokenizer: tiny preset on CPU (~3-5 min) ==")
    train("tokenizer", data_dir, max_steps)
    reports = sorted(Path("evaluations/tokenizer").glob(eval_glob("tokenizer")), key=_mtime)
    if reports:
        metrics = json.loads(reports[-1].read_text())["metrics"]
        keys = (mk.PSNR, mk.BACKGROUND_PSNR, mk.OBJECT_RECALL, mk.SSIM, mk.PERPLEXITY)
        print("tokenizer validation: " + ", ".join(f"{k[4:]}={metrics[k]:.3f}" for k in keys))
        print(f"videos and JSON: {reports[-1].parent}/")
    phases.end("tokenizer")
    train_episodes = len(store.split_episodes("train"))
    if labelled_episodes:
        n = min(labelled_episodes, train_episodes)
        print(
            f"== 3/5 latent action model: tiny preset on CPU, few-label mode (~4-5 min): the true actions of "
            f"{n} of {train_episodes} training episodes tie the codes to up / down / stay, because "
            "unsupervised codes do not mean the controls (~0.5 on identifiable steps, docs/lam.md); "
            "LABELS=0 trains it without labels =="
        )
        train("lam", data_dir, max_steps, "--label_fraction", str(n / train_episodes))
    else:
        print("== 3/5 latent action model: tiny preset on CPU, unsupervised (LABELS=0) (~3-4 min) ==")
        train("lam", data_dir, max_steps, "--label_fraction", "0")
    reports = sorted(Path("evaluations/lam").glob(eval_glob("lam")), key=_mtime)
    if reports:
        report = json.loads(reports[-1].read_text())
        m = report["metrics"]  # Pong from ALE: true actions are there
        labels = report.get("supervision", {})
        mode = (
            f"few-label mode, {len(labels['episodes'])} labelled training episode(s), "
            f"{labels['share_of_train_frames']:.1%} of the training frames"
            if labels.get("episodes")
            else "unsupervised"
        )
        usage = " / ".join(f"{v:.2f}" for k, v in m.items() if k.startswith(mk.USAGE))
        print(
            f"LAM validation ({mode}): movement accuracy on identifiable steps "
            f"{m[mk.MOVE_ACC_IDENTIFIABLE]:.3f} "
            f"(chance {m[mk.MOVE_CHANCE_IDENTIFIABLE]:.3f}), NMI {m[mk.MOVE_NMI_IDENTIFIABLE]:.3f}; "
            f"code usage {usage}; next-frame PSNR {m[mk.PSNR]:.2f} dB, on changed pixels "
            f"{m[mk.PSNR_CHANGED]:.2f} dB ({m[mk.ACTION_GAIN]:+.2f} dB over shuffled actions)"
        )
        print(f"video, confusion matrix and JSON: {reports[-1].parent}/")
    phases.end("LAM")
    print("== 4/5 dynamics: tiny preset on CPU, on the tokenizer's tokens and the LAM's actions (~12-16 min)")
    tokenizer, lam = latest_run("tokenizer"), latest_run("lam")
    train("dynamics", data_dir, max_steps, "--tokenizer_path", str(tokenizer), "--lam_path", str(lam))
    dynamics = latest_run("dynamics")
    reports = sorted(Path("evaluations/dynamics").glob(eval_glob("dynamics")), key=_mtime)
    if reports:
        m = json.loads(reports[-1].read_text())["metrics"]
        last = mk.horizons(m)[-1]
        h = min(4, last)
        psnr_at = lambda t: m[mk.at_horizon(mk.ROLLOUT_PSNR_AT, t)]  # noqa: E731
        print(
            f"dynamics validation: token accuracy {m[mk.TOKEN_ACC]:.3f}; autoregressive rollout PSNR "
            f"{m[mk.ROLLOUT_PSNR]:.2f} dB (t=1: {psnr_at(1):.2f}, t={last}: {psnr_at(last):.2f}); "
            f"ΔtPSNR@{h} {with_error(m, mk.at_horizon(mk.DELTA_PSNR_AT, h))} dB, on moving pixels "
            f"{with_error(m, mk.at_horizon(mk.DELTA_PSNR_MOVING_AT, h))} dB (± s.e. over clips)"
        )
        play = [
            f"{name} {m[mk.play_share(name, 'one', 1000)]:.0%} ({m[mk.play_share(name, 'many', 1000)]:.0%} "
            f"doubled; real {m[mk.play_share(name, 'one', mk.REAL)]:.0%})"
            for name in mk.play_objects(m)
            if mk.play_share(name, "one", 1000) in m
        ]
        if play:
            print(
                "long play (frames 257-1000 of 1,000 with held random keys): exactly one " + ", ".join(play)
            )
        print(f"videos and JSON: {reports[-1].parent}/")
    phases.end("dynamics")
    print("== 5/5 report (and how well the keys control the paddle) ==")
    if genie(["report", "--runs", str(tokenizer), str(lam), str(dynamics)]) != 0:
        sys.exit(1)
    control = json.loads(Path("evaluations/report/report.json").read_text()).get("control")
    if control:
        real = control.get("real") or {}
        print(
            f"control: holding 'up' moved the paddle up in {control['up_rate']:.0%} of free generated steps, "
            f"'down' down in {control['down_rate']:.0%} (real frames with true actions: "
            f"{real.get('up_rate', float('nan')):.0%} / {real.get('down_rate', float('nan')):.0%})"
        )
    else:
        print("control: not measured (it needs a known paddle, as Pong's, and keys mapped to up and down)")
    phases.end("report")
    print(f"demo done in {(time.perf_counter() - t0) / 60:.1f} min ({phases}).")
    print(f"play it: .venv/bin/genie play --checkpoint {dynamics}   (arrow keys or W/S; opens your browser)")


class Phases:
    """Minutes each phase took (training and its evaluation together), for the closing line: the demo's
    budget is 30 minutes, and a reader of a slow run should see where they went."""

    def __init__(self) -> None:
        self.last, self.minutes = time.perf_counter(), {}

    def end(self, name: str) -> None:
        now = time.perf_counter()
        self.minutes[name], self.last = (now - self.last) / 60, now

    def __str__(self) -> str:
        return ", ".join(f"{name} {m:.1f}" for name, m in self.minutes.items())


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


def latest_run(stage: str) -> Path:
    run = latest_run_in(Path("checkpoints"), stage)
    if run is None:
        sys.exit(f"error: no {stage} run under checkpoints/{stage}/")
    return run


def train(stage: str, data_dir: Path, max_steps: int | None, *extra: str) -> None:
    args = ["train", stage, "--config", str(ROOT / f"configs/tiny/{stage}.yaml"), *extra]
    args += ["--data_dir", str(data_dir), "--dataset", "pong", "--device", "auto"]
    if max_steps:
        args += ["--max_steps", str(max_steps)]
    if genie(args) != 0:
        sys.exit(1)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=Path("data"))
    p.add_argument("--max_steps", type=int, help="shorten training (for a quick look)")
    p.add_argument(
        "--labelled_episodes",
        type=int,
        default=1,
        help="training episodes whose true actions the LAM may use (0: unsupervised; default 1)",
    )
    a = p.parse_args()
    return run(lambda: demo(a.data_dir, a.max_steps, a.labelled_episodes))


if __name__ == "__main__":
    sys.exit(main())
