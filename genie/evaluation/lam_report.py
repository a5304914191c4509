"""The LAM's final evaluation: validation numbers over the report clips, the agreement tables made
readable (label names, the latent -> label mapping), a confusion-matrix PNG and a video of consecutive
validation clips (true next frame | prediction), each transition captioned with its latent action and,
where recorded, the true one."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genie.data.actions import class_ids
from genie.data.frames import to_float
from genie.data.store import EpisodeStore
from genie.evaluation.lam_measures import class_names, measure_lam
from genie.evaluation.video import annotate, side_by_side, write_mp4
from genie.models.lam import LatentActionModel
from genie.outputs import EvalFiles
from genie.training.stage import Batch

VIDEO_CLIPS = 12  # consecutive clips shown in the report video
# what the evaluation JSON's numbers mean, written into it
NOTE = (
    "psnr_changed scores pixels that change between x_t and x_{t+1}; psnr_changed_shuffled "
    "decodes the same frames with the inferred actions shuffled across transitions, so "
    "action_gain_db > 0 means the decoder uses the actions; copy_psnr_changed repeats x_t. *_acc is "
    "the accuracy of the best "
    "one-to-one mapping of latent actions to true labels (Hungarian), *_nmi the normalised mutual "
    "information; move_* score movement classes (Pong: RIGHT = up, LEFT = down, NOOP = stay), "
    "move_identifiable_* only steps whose next frame differs from every other class's; "
    "move_majority_identifiable is the score of a LAM that ignores the frames (chance)."
)


@dataclass(frozen=True)
class LamReport:
    """What the final evaluation measured: `metrics` (val/... keys) and `agreement`, per part ("action",
    "move", "move_identifiable") its accuracy, NMI, chance, mapping, column names and confusion matrix,
    ready for JSON."""

    metrics: dict[str, float]
    agreement: dict[str, dict[str, Any]]


@torch.no_grad()
def lam_report(
    model: LatentActionModel,
    store: EpisodeStore,
    batches: Iterable[Batch],
    files: EvalFiles,
    *,
    clip_length: int,
    fps: int,
    title: str,
    device: torch.device,
) -> LamReport:
    """Measure `batches`, write `files.video` (when a validation episode is long enough) and `files.extra`
    (the confusion matrices, when the data has true actions)."""
    measured = measure_lam(model, batches, store)
    details = measured.agreement
    mapping = details.get("move_identifiable", details.get("move", {})).get("mapping", {})
    video = lam_video(model, store, clip_length, mapping, device)
    files.json.parent.mkdir(parents=True, exist_ok=True)
    if video is not None:
        write_mp4(files.video, video, fps=fps, scale=1)
    if details:
        plot_confusions(store, details, files.extra, title)
    described = {name: _describe(store, name, part) for name, part in details.items()}
    return LamReport(measured.metrics, described)


def _labels(store: EpisodeStore, name: str) -> list[str]:
    """Column names of an agreement table: raw action meanings or movement classes (with what they do)."""
    if name == "action":
        return list(store.action_meanings or [])
    said = store.movement_names or {}
    return [f"{c} ({said[c]})" if c in said else c for c in class_names(store) or []]


def _describe(store: EpisodeStore, name: str, part: dict[str, Any]) -> dict[str, Any]:
    labels = _labels(store, name)
    confusion = part["confusion"]
    labels += [str(i) for i in range(len(labels), confusion.shape[1])]
    return {
        "accuracy": part["accuracy"],
        "nmi": part["nmi"],
        "majority": part["majority"],
        "mapping": {f"latent {k}": labels[v] for k, v in part["mapping"].items()},
        "columns": labels,
        "confusion": confusion.tolist(),  # rows: latent actions 0..K-1
    }


def plot_confusions(store: EpisodeStore, details: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in ("move_identifiable", "move", "action") if n in details]
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names, strict=True):
        part = details[name]
        confusion = part["confusion"]
        ax.imshow(confusion, cmap="Blues")
        for (i, j), n in np.ndenumerate(confusion):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=8)
        labels = _labels(store, name)
        ax.set_xticks(range(confusion.shape[1]), labels[: confusion.shape[1]], rotation=30, fontsize=7)
        ax.set_yticks(range(confusion.shape[0]), [f"latent {k}" for k in range(confusion.shape[0])])
        ax.set_title(f"{name}: acc {part['accuracy']:.3f}, NMI {part['nmi']:.3f}", fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)


def lam_video(
    model: LatentActionModel,
    store: EpisodeStore,
    clip_length: int,
    mapping: dict[int, int],
    device: torch.device,
) -> np.ndarray | None:
    """true next frame | prediction over consecutive validation clips, captioned with the actions."""
    T = clip_length
    length = VIDEO_CLIPS * (T - 1) + 1
    span = store.first_long_episode("val", T)
    if span is None:
        return None
    start, end = span
    length = min(length, end - start)
    clips = (length - 1) // (T - 1)
    starts = [start + i * (T - 1) for i in range(clips)]  # clips overlap by one frame: no transition lost
    frames = torch.stack([torch.from_numpy(store.read_frames(s, s + T)) for s in starts])
    x = to_float(frames.permute(0, 1, 4, 2, 3).to(device))  # (clips, T, 3, H, W)
    out = model(x)
    true_next = x[:, 1:].flatten(0, 1)
    video = side_by_side(true_next, out.prediction.clamp(0, 1).flatten(0, 1))
    names, said = class_names(store), store.movement_names or {}

    def name(c: int) -> str:
        return said.get(names[c], names[c])

    captions = []
    for i, code in enumerate(out.actions.flatten().tolist()):
        s = starts[i // (T - 1)] + i % (T - 1)
        text = f"t={s - start}  latent {code}"
        if code in mapping and names:
            text += f" (~{name(mapping[code])})"
        if store.actions is not None and names:
            (true,) = class_ids(np.array([store.actions[s]]), store.movement_classes)
            text += f"   true: {name(int(true))}"
            if store.identifiable is not None and not store.identifiable[s]:
                text += " (not identifiable)"
        captions.append(text + "    true next | LAM prediction")
    return annotate(video, captions)
