"""The names every part of genie agrees on: the stages, and the evaluation files each writes.

Stages write their evaluation JSON (and videos beside it) under EVAL_DIR/<stage>/; the report and the demo
find them by these names. One module, so a renamed file cannot leave a reader globbing for the old one.
"""

from __future__ import annotations

STAGES = ("tokenizer", "lam", "dynamics")

# stem of each stage's evaluation files at a step (the LAM's adds its run name: _run_YYYYMMDD_HHMMSS)
_EVAL_STEMS = {
    "tokenizer": "comparison_checkpoint_step_{step}",
    "lam": "visual_eval_step_{step}",
    "dynamics": "dynamics_comparison_step_{step}",
}


def eval_stem(stage: str, step: int) -> str:
    """The file stem of `stage`'s evaluation at `step` (add .json / .mp4)."""
    return _EVAL_STEMS[stage].format(step=step)


def eval_glob(stage: str) -> str:
    """A glob, inside EVAL_DIR/<stage>/, matching that stage's evaluation JSON at any step."""
    return _EVAL_STEMS[stage].format(step="*") + ".json"
