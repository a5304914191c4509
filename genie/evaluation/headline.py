"""The report's opening table: per stage its headline numbers beside their references, each marked good or
not yet against a threshold stated beside it, so a reader sees in ten seconds where the world stands.

The thresholds are this project's bar, not the paper's: each says what a number must reach before the
next stage can lean on it (the tiny presets reach all but long play; README's status table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from genie import metric_keys as mk
from genie.evaluation.long_play import WINDOWS

# the tokenizer must bring back the objects, not only the court: the static background alone scores
# ~32.7 dB on Pong, the tiny preset +5.6 dB above it
TOKENIZER_MARGIN_DB = 3.0
OBJECT_RECALL_GOOD = 0.9  # of the foreground pixels reconstructed within 0.1 (tiny preset: 0.97)
LAM_ACCURACY_GOOD = 0.8  # codes that mean the controls (few-label tiny: 0.91; unsupervised: 0.52)
ACTION_GAIN_GOOD_DB = 1.0  # the LAM's decoder uses its actions (trained: ~2 dB over shuffled ones)
CONTROL_GAP = 0.10  # a key moves the paddle within 10 points as often as in the real frames
DELTA_PSNR_STEP = 4  # ΔtPSNR is read 4 generated frames out, as Genie does
DELTA_PSNR_GOOD_DB = 1.0  # Genie's worlds: 1.66-1.91 dB
PLAY_GAP = 0.10  # late long-play frames hold exactly one of an object within 0.1 as often as real ones


@dataclass(frozen=True)
class Headline:
    """One row: `value` (± `error` where measured) beside `reference`; good from `bar` up (`rule` says the
    bar in words). `unit` "dB", "%" (a share shown in percent) or "" (a share shown as a fraction)."""

    stage: str
    measure: str
    value: float
    reference: float
    reference_name: str
    bar: float
    rule: str
    unit: str = ""
    error: float | None = None

    @property
    def good(self) -> bool:
        return self.value >= self.bar

    def shown(self, x: float) -> str:
        if math.isnan(x):  # a rate with no step to count (the paddle never free)
            return "n/a"
        return {"dB": f"{x:.2f} dB", "%": f"{x:.0%}"}.get(self.unit, f"{x:.3f}")


def headlines(evaluations: dict[str, dict[str, float]], control: dict[str, Any] | None) -> list[Headline]:
    """The rows for the stages whose evaluation metrics (`evaluations`: stage -> metrics) hold them, and
    for the control measured on the world (genie.world.control.control_rate, None when not measured)."""
    tok, lam = evaluations.get("tokenizer", {}), evaluations.get("lam", {})
    dyn = evaluations.get("dynamics", {})
    rows = []
    if mk.PSNR in tok and mk.BACKGROUND_PSNR in tok:
        bar = tok[mk.BACKGROUND_PSNR] + TOKENIZER_MARGIN_DB
        rows.append(
            Headline(
                stage="tokenizer",
                measure="PSNR",
                value=tok[mk.PSNR],
                reference=tok[mk.BACKGROUND_PSNR],
                reference_name="static background",
                bar=bar,
                rule=f"≥ background + {TOKENIZER_MARGIN_DB:g} dB",
                unit="dB",
            )
        )
    if mk.OBJECT_RECALL in tok:
        recall = tok[mk.OBJECT_RECALL]
        rows.append(
            Headline(
                stage="tokenizer",
                measure="object recall",
                value=recall,
                reference=1.0,
                reference_name="every object pixel",
                bar=OBJECT_RECALL_GOOD,
                rule=f"≥ {OBJECT_RECALL_GOOD:g}",
            )
        )
    if mk.MOVE_ACC_IDENTIFIABLE in lam:
        acc = lam[mk.MOVE_ACC_IDENTIFIABLE]
        rows.append(
            Headline(
                stage="lam",
                measure="agreement with the true movement (identifiable steps)",
                value=acc,
                reference=lam[mk.MOVE_CHANCE_IDENTIFIABLE],
                reference_name="chance",
                bar=LAM_ACCURACY_GOOD,
                rule=f"≥ {LAM_ACCURACY_GOOD:g}",
            )
        )
    if mk.ACTION_GAIN in lam:
        gain = lam[mk.ACTION_GAIN]
        rows.append(
            Headline(
                stage="lam",
                measure="action gain (next frame, changed pixels)",
                value=gain,
                reference=0.0,
                reference_name="shuffled actions",
                bar=ACTION_GAIN_GOOD_DB,
                rule=f"≥ {ACTION_GAIN_GOOD_DB:g} dB",
                unit="dB",
            )
        )
    rows += _control_rows(control)
    if steps := [h for h in mk.horizons(dyn) if h <= DELTA_PSNR_STEP]:
        key = mk.at_horizon(mk.DELTA_PSNR_AT, steps[-1])
        rows.append(
            Headline(
                stage="dynamics",
                measure=f"ΔtPSNR@{steps[-1]}",
                value=dyn[key],
                reference=0.0,
                reference_name="random actions",
                bar=DELTA_PSNR_GOOD_DB,
                rule=f"≥ {DELTA_PSNR_GOOD_DB:g} dB",
                unit="dB",
                error=dyn.get(key + mk.SE),
            )
        )
    rows += _play_rows(dyn)
    return rows


def _control_rows(control: dict[str, Any] | None) -> list[Headline]:
    """Holding up / down moves the paddle that way, in generated frames beside real ones."""
    real = (control or {}).get("real") or {}
    rows = []
    for key in ("up", "down"):
        if control is None or f"{key}_rate" not in real:
            continue
        rate, reference = control[f"{key}_rate"], real[f"{key}_rate"]
        rows.append(
            Headline(
                stage="dynamics",
                measure=f"control: holding {key} moves the paddle {key}",
                value=rate,
                reference=reference,
                reference_name="real frames",
                bar=reference - CONTROL_GAP,
                rule=f"≥ real − {CONTROL_GAP * 100:g} points",
                unit="%",
            )
        )
    return rows


def _play_rows(metrics: dict[str, float]) -> list[Headline]:
    """Exactly one of each object in the last window of long play, beside the real frames' share."""
    rows = []
    for name in mk.play_objects(metrics):
        ends = [last for _, last in WINDOWS if mk.play_share(name, "one", last) in metrics]
        if not ends:
            continue
        share, real = (
            metrics[mk.play_share(name, "one", ends[-1])],
            metrics[mk.play_share(name, "one", mk.REAL)],
        )
        rows.append(
            Headline(
                stage="dynamics",
                measure=f"long play: exactly one {name.replace('_', ' ')} (frames to {ends[-1]})",
                value=share,
                reference=real,
                reference_name="real frames",
                bar=real - PLAY_GAP,
                rule=f"≥ real − {PLAY_GAP:g}",
            )
        )
    return rows
