"""Which latent action means what: keys are mapped to latent codes automatically, with how sure we are.

With true actions in the data, codes and movements are matched one to one by agreement on validation
transitions (identifiable ones where recorded: there the movement is visible in the frames). Without
them, each code's effect is read from the frames: the LAM decoder predicts the next frame once per
code from the same past, the pixels where those predictions differ are the controlled object, and the
shift that best turns x_t into each code's prediction there says which way the code moves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genie.evaluation.action_metrics import best_mapping_accuracy

STAY = "stay"
MAX_SHIFT = 6  # pixels searched each way for a code's displacement (a paddle moves ~1-4 a frame at 72 rows)


@dataclass
class ActionMap:
    labels: list[str]  # per latent code: "up", "down", "stay", ...
    confidence: list[float]  # per code: share of its transitions that agree with its label
    counts: list[int]  # per code: transitions the label was read from
    source: str  # how the labels were found

    def code_for(self, label: str) -> int | None:
        """The code for a label; when several codes share it, the one seen most often."""
        codes = [c for c, name in enumerate(self.labels) if name == label]
        return max(codes, key=lambda c: self.counts[c]) if codes else None

    @property
    def keys(self) -> dict[str, int]:
        """label -> code, one code per label ("stay" is the code played when no key is held)."""
        return {
            name: code for name in dict.fromkeys(self.labels) if (code := self.code_for(name)) is not None
        }

    def describe(self) -> list[str]:
        return [
            f"latent {c} -> {name} ({conf:.0%} of {n} transitions; {self.source})"
            for c, (name, conf, n) in enumerate(zip(self.labels, self.confidence, self.counts, strict=True))
        ]

    def to_dict(self) -> dict:
        return {
            "labels": self.labels,
            "confidence": self.confidence,
            "counts": self.counts,
            "source": self.source,
        }


def map_from_labels(
    codes: np.ndarray, truth: np.ndarray, names: list[str], num_codes: int, source: str
) -> ActionMap:
    """codes, truth: int arrays of the same length (truth indexes `names`) -> a label per code.

    One to one first (the best mapping, as the LAM's accuracy is scored), so every key gets a code even
    when a weak LAM's codes all lean the same way (two codes "mostly up" would leave no "down" key);
    codes left over, when there are more codes than labels, take their majority label. The confidence
    says how often each code's transitions really were its label."""
    confusion = np.zeros((num_codes, len(names)), dtype=np.int64)
    np.add.at(confusion, (codes, truth), 1)
    _, matched = best_mapping_accuracy(confusion)
    labels, confidence = [], []
    for code, row in enumerate(confusion):
        best = matched.get(code, int(row.argmax()))
        labels.append(names[best])
        confidence.append(float(row[best] / row.sum()) if row.sum() else 0.0)
    return ActionMap(labels, confidence, confusion.sum(1).tolist(), source)


def _best_shift(pred: Tensor, prev: Tensor, region: Tensor) -> Tensor:
    """pred, prev [M, 3, H, W], region [M, 1, H, W] bool -> [M, 2] (dy, dx) minimising the mean absolute
    difference between pred and prev shifted by (dy, dx) inside the region."""
    s = MAX_SHIFT
    errors = []
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            moved = torch.roll(prev, shifts=(dy, dx), dims=(-2, -1))
            errors.append(((pred - moved).abs().mean(1, keepdim=True) * region).sum((1, 2, 3)))
    best = torch.stack(errors, 1).argmin(1)  # (m,)
    return torch.stack([best // (2 * s + 1) - s, best % (2 * s + 1) - s], 1)


@torch.no_grad()
def map_from_frames(lam: nn.Module, frames: Tensor, threshold: float = 0.1) -> ActionMap:
    """Label each code by how it moves the controlled object, from clips frames [B, T, 3, H, W] in [0, 1].

    For every transition and code, the LAM decoder predicts x_{t+1}; pixels where the codes' predictions
    differ by more than `threshold` (dilated by MAX_SHIFT) are the controlled region. The code's shift
    there is its effect: its mean over transitions names it (up/down/left/right, or stay when under half
    a pixel), and the confidence is the share of transitions whose own shift has the same direction.
    """
    num_codes = lam.num_actions
    B, T = frames.shape[:2]
    preds = torch.stack(
        [
            lam.decode(frames, torch.full((B, T - 1), c, dtype=torch.long, device=frames.device))
            for c in range(num_codes)
        ]
    )  # (codes, b, t-1, 3, h, w)
    prev = frames[:, :-1].flatten(0, 1)
    spread = (preds.amax(0) - preds.amin(0)).amax(2).flatten(0, 1)[:, None]  # (m, 1, h, w)
    controlled = spread > threshold
    region = F.max_pool2d(controlled.float(), 2 * MAX_SHIFT + 1, stride=1, padding=MAX_SHIFT) > 0
    used = controlled.flatten(1).any(1)  # transitions where the codes make a difference at all
    labels, confidence, counts = [], [], []
    for c in range(num_codes):
        shift = _best_shift(preds[c].flatten(0, 1)[used], prev[used], region[used]).float()
        names = [_direction(dy, dx) for dy, dx in shift.tolist()]
        mean_dy, mean_dx = shift.mean(0).tolist() if len(shift) else (0.0, 0.0)
        label = _direction(mean_dy, mean_dx)
        labels.append(label)
        confidence.append(sum(n == label for n in names) / len(names) if names else 0.0)
        counts.append(len(names))
    return ActionMap(labels, confidence, counts, "inferred from the frames (no true actions)")


def _direction(dy: float, dx: float) -> str:
    if max(abs(dy), abs(dx)) < 0.5:
        return STAY
    if abs(dy) >= abs(dx):
        return "up" if dy < 0 else "down"
    return "left" if dx < 0 else "right"
