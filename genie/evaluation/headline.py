"""The report's opening table: per stage its headline numbers beside their references, each marked good or
not yet against a threshold stated beside it, so a reader sees in ten seconds where the world stands.

The thresholds are this project's bar, not the paper's: the targets of its open issues (a LAM whose codes
mean the controls, a world that obeys its keys as often as the real game lets it and keeps its objects in
long play); README's status table says which the tiny presets reach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from genie import metric_keys as mk
from genie.evaluation.long_play import WINDOWS

# the tokenizer must bring back the objects, not only the court: the static background alone scores
# ~32.7 dB on Pong, the tiny preset +5.6 dB above it
TOKENIZER_MARGIN_DB = 3.0
OBJECT_RECALL_GOOD = 0.9  # of the foreground pixels reconstructed within 0.1 (tiny preset: 0.97)
LAM_ACCURACY_GOOD = 0.85  # codes that mean the controls (few-label tiny: 0.93; unsupervised: 0.52)
ACTION_GAIN_GOOD_DB = 1.0  # the LAM's decoder uses its actions (trained: ~2 dB over shuffled ones)
CONTROL_GAP = 0.05  # a key moves the paddle within 5 points as often as in the real frames (95%: 90%)
DELTA_PSNR_STEP = 4  # ΔtPSNR is read 4 generated frames out, as Genie does
DELTA_PSNR_GOOD_DB = 1.0  # Genie's worlds: 1.66-1.91 dB
PLAY_SHARE = 0.9  # late long-play frames hold exactly one of an object >= 90% as often as real ones


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
        psnr, background = tok[mk.PSNR], tok[mk.BACKGROUND_PSNR]
        rows.append(
            _near("tokenizer", "PSNR", psnr, background, "static background", TOKENIZER_MARGIN_DB, "dB")
        )
    if mk.OBJECT_RECALL in tok:
        recall = tok[mk.OBJECT_RECALL]
        rows.append(
            _from_bar("tokenizer", "object recall", recall, 1.0, "every object pixel", OBJECT_RECALL_GOOD)
        )
    if mk.MOVE_ACC_IDENTIFIABLE in lam:
        acc, chance = lam[mk.MOVE_ACC_IDENTIFIABLE], lam[mk.MOVE_CHANCE_IDENTIFIABLE]
        measure = "agreement with the true movement (identifiable steps)"
        rows.append(_from_bar("lam", measure, acc, chance, "chance", LAM_ACCURACY_GOOD))
    if mk.ACTION_GAIN in lam:
        measure = "action gain (next frame, changed pixels)"
        rows.append(
            _from_bar("lam", measure, lam[mk.ACTION_GAIN], 0.0, "shuffled actions", ACTION_GAIN_GOOD_DB, "dB")
        )
    real = (control or {}).get("real") or {}
    for key in ("up", "down"):
        if control is not None and f"{key}_rate" in real:
            measure, rate = f"control: holding {key} moves the paddle {key}", control[f"{key}_rate"]
            rows.append(
                _near("dynamics", measure, rate, real[f"{key}_rate"], "real frames", -CONTROL_GAP, "%")
            )
    if steps := [h for h in mk.horizons(dyn) if h <= DELTA_PSNR_STEP]:
        key = mk.at_horizon(mk.DELTA_PSNR_AT, steps[-1])
        delta = _from_bar(
            "dynamics", f"ΔtPSNR@{steps[-1]}", dyn[key], 0.0, "random actions", DELTA_PSNR_GOOD_DB, "dB"
        )
        rows.append(replace(delta, error=dyn.get(key + mk.SE)))
    for name in mk.play_objects(dyn):
        if ends := [last for _, last in WINDOWS if mk.play_share(name, "one", last) in dyn]:
            measure = f"long play: exactly one {name.replace('_', ' ')} (frames to {ends[-1]})"
            share, real_share = (
                dyn[mk.play_share(name, "one", ends[-1])],
                dyn[mk.play_share(name, "one", mk.REAL)],
            )
            rows.append(_share_of("dynamics", measure, share, real_share, "real frames", PLAY_SHARE))
    return rows


def _from_bar(
    stage: str, measure: str, value: float, reference: float, name: str, bar: float, unit: str = ""
) -> Headline:
    """A row good from a fixed bar."""
    return Headline(stage, measure, value, reference, name, bar, f"≥ {_amount(bar, unit)}", unit)


def _near(
    stage: str, measure: str, value: float, reference: float, name: str, margin: float, unit: str = ""
) -> Headline:
    """A row good from `margin` off its reference (above it when positive, below when negative)."""
    rule = f"≥ {name} {'+' if margin >= 0 else '−'} {_amount(abs(margin), unit)}"
    return Headline(stage, measure, value, reference, name, reference + margin, rule, unit)


def _share_of(stage: str, measure: str, value: float, reference: float, name: str, share: float) -> Headline:
    """A row good from `share` of its reference (a real share that is itself small, as the ball's ~0.4,
    asks for proportionally less)."""
    return Headline(stage, measure, value, reference, name, share * reference, f"≥ {share:.0%} of {name}")


def _amount(x: float, unit: str) -> str:
    return {"dB": f"{x:g} dB", "%": f"{x * 100:g} points"}.get(unit, f"{x:g}")
