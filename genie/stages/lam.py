"""LAM stage: learn one discrete action per transition by predicting the next frame, with no labels.

The failure to avoid is a collapsed LAM: constant action vectors and a decoder that predicts from history
alone (a prototype here did exactly that). Three things make the decoder need the action:
  - it sees only `decoder_context` frames (2: enough for the paddle's velocity, not for guessing a held
    action from a long history);
  - it predicts x_{t+1} as x_t plus a change, so its capacity goes to what moves, not to the court;
  - the pixel loss weights what moves: a paddle move changes ~44 of 9,216 pixels, so pixels that change
    between x_t and x_{t+1} or differ from the median background get `foreground_weight` extra weight.
Collapse is measured at every validation: the spread of the pre-quantisation action vectors, per-code usage,
and the action gain (next-frame PSNR on changed pixels with the inferred actions minus with them shuffled).
True actions, where the data has them, only measure the LAM; `best_metric` is label-free. The one exception
is the few-label mode (`supervision.label_fraction` > 0, genie/stages/few_labels.py): the true actions of
a recorded share of the training episodes, never of validation ones, join every batch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from genie.config import LamConfig
from genie.data.actions import class_ids, class_representatives
from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import background_frame, to_float
from genie.data.store import EpisodeStore
from genie.evaluation.action_metrics import agreement, linear_probe_accuracy
from genie.evaluation.metrics import codebook_usage, foreground_mask, psnr
from genie.evaluation.video import annotate, side_by_side, write_mp4
from genie.inference import build_lam
from genie.models.lam import LatentActionModel
from genie.outputs import eval_files, eval_stem
from genie.stages.common import REPORT_CLIPS, CodeRestarts, dataset_record, report_batch_size, vq_objective
from genie.stages.few_labels import LabelledEpisodes, label_loss
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch

VIDEO_CLIPS = 12  # consecutive clips shown in the report video


def _psnr_of_mse(mse: float) -> float:
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


class LamStage:
    name = "lam"
    best_metric = "val/psnr_changed"  # label-free: true actions measure, never select
    config_cls = LamConfig

    def __init__(self, config: LamConfig, store: EpisodeStore, device: torch.device) -> None:
        self.config, self.store, self.device = config, store, device
        self.background = background_frame(store, device)  # [3, H, W]
        classes = store.movement_classes
        self.class_names = list(class_representatives(classes)) if classes else None
        self.restarts = CodeRestarts()
        s = config.supervision
        self.labels = (
            LabelledEpisodes(
                store,
                s.label_fraction,
                config.data.sequence_length,
                config.training.seed,
                config.model.codebook.num_codes,
            )
            if s.label_fraction > 0
            else None
        )
        self.notes = [] if self.labels is None else [self._labels_note()]

    def _labels_note(self) -> str:
        r = self.labels.record
        return (
            f"few-label mode: the true actions of {len(r['episodes'])} training episode(s) "
            f"{r['episodes']} ({r['labelled_frames']} frames, {r['share_of_train_frames']:.1%} of the "
            "training frames) join every batch; validation episodes are never labelled"
        )

    def build(self) -> LatentActionModel:
        return build_lam(self.config)

    def moving_mask(self, frames: Tensor) -> Tensor:
        """frames [B, T, 3, H, W] -> bool [B, T-1, 1, H, W]: pixels that change between x_t and x_{t+1}, or
        differ from the background in either (so a paddle that should have stayed still is weighted too)."""
        prev, target = frames[:, :-1], frames[:, 1:]
        return (
            foreground_mask(target, prev)
            | foreground_mask(target, self.background)
            | foreground_mask(prev, self.background)
        )

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.config.training
        x = to_float(batch["frames"])
        n = len(x)
        # each clip brings one labelled clip, only encoded: its actions are what the label term needs
        if self.labels is not None:
            frames, targets = self.labels.draw(batch["noise_seed"])
            x = torch.cat([x, to_float(frames.to(x.device))])
        out = model(x, reconstruct=n)
        target = x[:n, 1:]
        weight = 1.0 + t.foreground_weight * self.moving_mask(x[:n]).float()
        loss, parts = vq_objective(t, out.prediction, target, weight, out.vq)
        self.restarts.record(out.latents, out.vq.indices, self.config.model.codebook.num_codes)
        if self.labels is not None:
            s = self.config.supervision
            similarity, targets = out.similarity[n:], targets.to(x.device)
            labelled = label_loss(similarity, targets, s.logit_scale)
            loss = loss + s.weight * labelled
            valid = targets >= 0
            hits = (similarity.argmax(-1) == targets) & valid
            parts["label_ce"] = labelled.detach()
            parts["label_acc"] = hits.sum().float() / valid.sum().clamp_min(1)
        return loss, parts

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        return self.restarts.after_step(model, rt, rng)

    # --- evaluation ---

    def evaluate(self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL) -> dict[str, float]:
        return self._measure(model, batches, rt)[0]

    def _measure(
        self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Validation numbers, and the agreement details (confusion matrices, mappings) behind them.
        Sums are reduced and per-transition codes gathered over ranks before any metric is computed."""
        gen = torch.Generator().manual_seed(0)  # the same shuffle at every validation
        sums = {"psnr": 0.0, "frames": 0.0, "changed_px": 0.0, "model": 0.0, "shuffled": 0.0, "copy": 0.0}
        codes, latents, actions, identifiable, episodes = [], [], [], [], []
        for batch in batches:
            x = to_float(batch["frames"])
            out = model(x)
            prev, target = x[:, :-1], x[:, 1:]
            pred = out.prediction.float().clamp(0, 1)
            sums["psnr"] += float(psnr(pred, target).sum())
            sums["frames"] += target.shape[0] * target.shape[1]
            changed = foreground_mask(target, prev)  # pixels that change between x_t and x_{t+1}
            # The batch's own actions, shuffled: the same code usage, no link to the frames. (Uniformly random
            # codes would also score codes the LAM never uses, and so inflate the gain.)
            order = torch.randperm(out.actions.numel(), generator=gen).to(x.device)
            shuffled = out.actions.flatten()[order].view_as(out.actions)
            shuffled_pred = model.decode(x, shuffled)
            for key, p in (("model", pred), ("shuffled", shuffled_pred), ("copy", prev)):
                sums[key] += float(((p.float() - target).pow(2).mean(dim=-3, keepdim=True) * changed).sum())
            sums["changed_px"] += float(changed.sum())
            codes.append(out.actions.flatten().cpu())
            latents.append(F.normalize(out.latents.float(), dim=-1).flatten(0, 1).cpu())
            if "actions" in batch:
                actions.append(batch["actions"].flatten().cpu())
            if "identifiable" in batch:
                identifiable.append(batch["identifiable"].flatten().cpu())
            if "episode" in batch:  # per transition, for the linear probe's split by episode
                episodes.append(batch["episode"][:, None].expand(out.actions.shape).flatten().cpu())
        sums = rt.all_sum(sums)
        code, latent = rt.cat(codes).long(), rt.cat(latents)
        action, ident = rt.cat(actions).long(), rt.cat(identifiable).bool()
        episode = rt.cat(episodes).long()
        if sums["frames"] == 0:
            return {}, {}
        metrics: dict[str, float] = {"val/psnr": sums["psnr"] / sums["frames"]}
        if sums["changed_px"]:
            names = {
                "model": "psnr_changed",
                "shuffled": "psnr_changed_shuffled",
                "copy": "copy_psnr_changed",
            }
            for key, name in names.items():
                metrics[f"val/{name}"] = _psnr_of_mse(sums[key] / sums["changed_px"])
            metrics["val/action_gain_db"] = metrics["val/psnr_changed"] - metrics["val/psnr_changed_shuffled"]
        counts = torch.bincount(code, minlength=model.num_actions).double()
        for k, share in enumerate((counts / counts.sum()).tolist()):
            metrics[f"val/usage_{k}"] = share
        metrics["val/perplexity"] = codebook_usage(code, model.num_actions)["perplexity"]
        metrics.update(action_spread(latent))
        details: dict[str, Any] = {}
        if action.numel():
            details = self._agreement(code.numpy(), action.numpy(), ident.numpy() if ident.numel() else None)
            if episode.numel() and ident.numel() and self.class_names is not None:
                keep = ident.numpy() & (action.numpy() >= 0)
                move = class_ids(action.numpy()[keep], self.store.movement_classes)
                probe = linear_probe_accuracy(
                    latent.numpy()[keep], move, episode.numpy()[keep], len(self.class_names)
                )
                if np.isfinite(probe):  # it needs two validation episodes
                    metrics["val/probe_acc_identifiable"] = probe
            for name, part in details.items():  # "move_identifiable" -> val/move_acc_identifiable, ...
                base, _, subset = name.partition("_")
                suffix = f"_{subset}" if subset else ""
                metrics[f"val/{base}_acc{suffix}"] = part["accuracy"]
                metrics[f"val/{base}_nmi{suffix}"] = part["nmi"]
                metrics[f"val/{base}_majority{suffix}"] = part["majority"]
        return metrics, details

    def _agreement(self, code: np.ndarray, actions: np.ndarray, identifiable: np.ndarray | None) -> dict:
        """Agreement with raw true actions, with movement classes, and with movement on identifiable steps."""
        valid = actions >= 0  # -1 marks an episode's last frame (never inside a clip, but be safe)
        k = self.config.model.codebook.num_codes
        meanings = self.store.action_meanings
        num_actions = len(meanings) if meanings else int(actions.max(initial=0)) + 1
        out = {"action": agreement(code[valid], actions[valid], k, num_actions)}
        if self.class_names is not None:
            move = class_ids(actions[valid], self.store.movement_classes)
            out["move"] = agreement(code[valid], move, k, len(self.class_names))
            if identifiable is not None:
                ident = identifiable[valid]
                out["move_identifiable"] = agreement(
                    code[valid][ident], move[ident], k, len(self.class_names)
                )
        return out

    # --- report ---

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """visual_eval_step_N_run_XXX.mp4 (true next frame | prediction, actions written on each), its JSON
        of validation numbers and confusion matrices, and a confusion-matrix PNG."""
        model.eval()
        d = self.config.data
        T, step = d.sequence_length, int(checkpoint["step"])
        path = Path(checkpoint.get("path", "checkpoint.pt"))
        run = path.parent.name if path.parent.name.startswith("run_") else path.stem
        files = eval_files("lam", Path(eval_dir) / "lam", f"{eval_stem('lam', step)}_{run}")
        val = ClipDataset(self.store, "val", T, stride=T)
        picks = evenly_spaced(len(val), REPORT_CLIPS["lam"])
        loader = DataLoader(Subset(val, picks), batch_size=report_batch_size(checkpoint, d))
        with torch.no_grad():
            metrics, details = self._measure(
                model, ({k: v.to(self.device) for k, v in b.items()} for b in loader)
            )
            mapping = details.get("move_identifiable", details.get("move", {})).get("mapping", {})
            video = self._visual(model, mapping)
        files.json.parent.mkdir(parents=True, exist_ok=True)
        if video is not None:
            write_mp4(files.video, video, fps=d.fps, scale=1)
        if details:
            self._plot_confusions(details, files.extra, f"LAM step {step} ({run})")
        result = {
            "stage": "lam",
            "checkpoint": checkpoint.get("path"),
            "step": step,
            "dataset": self.store.name,
            "clips": len(picks),
            "clip_length": T,
            "metrics": metrics,
            "agreement": {name: self._describe(name, part) for name, part in details.items()},
            "supervision": self.labels.record if self.labels is not None else {"label_fraction": 0.0},
            "note": "psnr_changed scores pixels that change between x_t and x_{t+1}; psnr_changed_shuffled "
            "decodes the same frames with the inferred actions shuffled across transitions, so "
            "action_gain_db > 0 means the decoder uses the actions; copy_psnr_changed repeats x_t. *_acc is "
            "the accuracy of the best "
            "one-to-one mapping of latent actions to true labels (Hungarian), *_nmi the normalised mutual "
            "information; move_* score movement classes (Pong: RIGHT = up, LEFT = down, NOOP = stay), "
            "move_identifiable_* only steps whose next frame differs from every other class's; "
            "move_majority_identifiable is the score of a LAM that ignores the frames (chance).",
        }
        files.json.write_text(json.dumps(result, indent=2) + "\n")
        return result

    def _labels(self, name: str) -> list[str]:
        """Column names of an agreement table: raw action meanings or movement classes (with what they do)."""
        if name == "action":
            meanings = self.store.action_meanings or []
            return list(meanings)
        said = self.store.movement_names or {}
        return [f"{c} ({said[c]})" if c in said else c for c in self.class_names or []]

    def _describe(self, name: str, part: dict) -> dict:
        labels = self._labels(name)
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

    def _plot_confusions(self, details: dict, path: Path, title: str) -> None:
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
            labels = self._labels(name)
            ax.set_xticks(range(confusion.shape[1]), labels[: confusion.shape[1]], rotation=30, fontsize=7)
            ax.set_yticks(range(confusion.shape[0]), [f"latent {k}" for k in range(confusion.shape[0])])
            ax.set_title(f"{name}: acc {part['accuracy']:.3f}, NMI {part['nmi']:.3f}", fontsize=9)
        fig.suptitle(title, fontsize=9)
        fig.tight_layout()
        tmp = path.with_name(path.stem + ".tmp.png")
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        tmp.replace(path)

    def _visual(self, model: nn.Module, mapping: dict[int, int]) -> np.ndarray | None:
        """true next frame | prediction over consecutive validation clips, captioned with the actions."""
        T = self.config.data.sequence_length
        length = VIDEO_CLIPS * (T - 1) + 1
        for ep in self.store.split_episodes("val"):
            start, end = (int(v) for v in self.store.episodes[ep])
            if end - start >= T:
                break
        else:
            return None
        length = min(length, end - start)
        clips = (length - 1) // (T - 1)
        starts = [start + i * (T - 1) for i in range(clips)]  # clips overlap by one frame: no transition lost
        frames = torch.stack([torch.from_numpy(np.array(self.store.frames[s : s + T])) for s in starts])
        x = to_float(frames.permute(0, 1, 4, 2, 3).to(self.device))  # (clips, T, 3, H, W)
        out = model(x)
        true_next = x[:, 1:].flatten(0, 1)
        video = side_by_side(true_next, out.prediction.clamp(0, 1).flatten(0, 1))
        said = self.store.movement_names or {}
        name = lambda c: said.get(self.class_names[c], self.class_names[c])  # noqa: E731
        captions = []
        for i, code in enumerate(out.actions.flatten().tolist()):
            s = starts[i // (T - 1)] + i % (T - 1)
            text = f"t={s - start}  latent {code}"
            if code in mapping and self.class_names:
                text += f" (~{name(mapping[code])})"
            if self.store.actions is not None and self.class_names:
                (true,) = class_ids(np.array([self.store.actions[s]]), self.store.movement_classes)
                text += f"   true: {name(int(true))}"
                if self.store.identifiable is not None and not self.store.identifiable[s]:
                    text += " (not identifiable)"
            captions.append(text + "    true next | LAM prediction")
        return annotate(video, captions)

    def checkpoint_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"dataset": dataset_record(self.store, self.config.data)}
        if self.labels is not None:
            extras["supervision"] = self.labels.record
        return extras


def action_spread(latents: Tensor) -> dict[str, float]:
    """Spread of l2-normalised pre-quantisation action vectors [N, D]: collapse shows as ~0 on both.

    action_std: per-dimension standard deviation, averaged over dimensions; action_cos_dist: mean cosine
    distance over all pairs i != j (from the norm of the sum, so no N x N matrix).
    """
    n = latents.shape[0]
    if n < 2:
        return {}
    z = F.normalize(latents.double(), dim=-1)
    mean_cos = (z.sum(dim=0).square().sum() - n) / (n * (n - 1))
    return {"val/action_std": float(z.std(dim=0).mean()), "val/action_cos_dist": float(1 - mean_cos)}
