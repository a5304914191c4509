"""The names every part of genie agrees on: the stages, the files of a run directory, and the evaluation
files each stage writes.

The loop and the stages write these files; the report, the demo and `genie plot` read them. One module,
so a renamed file cannot leave a reader looking for the old one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STAGES = ("tokenizer", "lam", "dynamics")

# a run directory, checkpoints/<stage>/run_YYYYMMDD_HHMMSS/, holds besides its config and checkpoints:
METRICS_LOG = "metrics.jsonl"  # one JSON row per logged step
BEST = "best.json"  # the best validation step and its checkpoint
LOSS_CURVE = "loss_curve.png"  # drawn from METRICS_LOG

# stem of each stage's evaluation files at a step (the LAM's adds its run name: _run_YYYYMMDD_HHMMSS)
_EVAL_STEMS = {
    "tokenizer": "comparison_checkpoint_step_{step}",
    "lam": "visual_eval_step_{step}",
    "dynamics": "dynamics_comparison_step_{step}",
}


def eval_stem(stage: str, step: int) -> str:
    """The file stem of `stage`'s evaluation at `step` (see `eval_files`)."""
    return _EVAL_STEMS[stage].format(step=step)


def eval_glob(stage: str) -> str:
    """A glob, inside EVAL_DIR/<stage>/, matching that stage's evaluation JSON at any step."""
    return _EVAL_STEMS[stage].format(step="*") + ".json"


@dataclass(frozen=True)
class EvalFiles:
    """The files of one evaluation, all named after its stem: `json` the numbers, `video` the side by side
    (original | reconstruction, true next frame | prediction, real | generated) and `extra` the stage's other
    picture (tokenizer: 7 consecutive sequences; LAM: the confusion matrix; dynamics: a long rollout)."""

    json: Path
    video: Path
    extra: Path

    def all(self) -> list[Path]:
        return [self.json, self.video, self.extra]


def eval_files(stage: str, folder: Path, stem: str) -> EvalFiles:
    """The files of `stage`'s evaluation named `stem` in `folder` (EVAL_DIR/<stage>/ or a per-run copy)."""
    extra = {
        "tokenizer": folder / f"{stem}_long_7seq.mp4",
        "lam": folder / f"{stem}_confusion.png",
        "dynamics": folder / "long_video" / f"{stem}.mp4",
    }[stage]
    return EvalFiles(folder / f"{stem}.json", folder / f"{stem}.mp4", extra)
