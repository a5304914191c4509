"""The LAM's validation numbers, shared by its periodic validation and its final evaluation.

Collapse shows in every run: the spread of the pre-quantisation action vectors, per-code usage, and the
action gain (next-frame PSNR on changed pixels with the inferred actions minus with them shuffled). Where
the data has true actions they measure the LAM (agreement after the best one-to-one mapping, NMI, a
linear probe), never select it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genie import metric_keys as mk
from genie.data.actions import class_ids, class_representatives
from genie.data.frames import to_float
from genie.data.store import EpisodeStore
from genie.evaluation.action_metrics import agreement, linear_probe_accuracy, many_to_one_accuracy
from genie.evaluation.metrics import codebook_usage, foreground_mask, psnr
from genie.models.lam import LatentActionModel
from genie.training.runtime import LOCAL, Runtime
from genie.training.stage import Batch


@dataclass(frozen=True)
class LamMeasures:
    """One measurement: the numbers (`metrics`, val/... keys) and the agreement parts behind the agreement
    numbers (`agreement`: "action", "move", "move_identifiable" -> accuracy, nmi, majority, the best
    mapping latent -> label id and the confusion matrix, rows the latent actions)."""

    metrics: dict[str, float]
    agreement: dict[str, dict[str, Any]]


def class_names(store: EpisodeStore) -> list[str] | None:
    """The dataset's movement classes in class-id order, or None without true actions."""
    classes = store.movement_classes
    return list(class_representatives(classes)) if classes else None


def _psnr_of_mse(mse: float) -> float:
    return float(10 * np.log10(1.0 / max(mse, 1e-10)))


def measure_lam(
    model: LatentActionModel, batches: Iterable[Batch], store: EpisodeStore, rt: Runtime = LOCAL
) -> LamMeasures:
    """Validation numbers over `batches`, and the agreement details. Sums are reduced and per-transition
    codes gathered over ranks before any metric is computed."""
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
        return LamMeasures({}, {})
    metrics: dict[str, float] = {mk.PSNR: sums["psnr"] / sums["frames"]}
    if sums["changed_px"]:
        names = {"model": mk.PSNR_CHANGED, "shuffled": mk.PSNR_CHANGED_SHUFFLED, "copy": mk.COPY_PSNR_CHANGED}
        for key, name in names.items():
            metrics[name] = _psnr_of_mse(sums[key] / sums["changed_px"])
        metrics[mk.ACTION_GAIN] = metrics[mk.PSNR_CHANGED] - metrics[mk.PSNR_CHANGED_SHUFFLED]
    counts = torch.bincount(code, minlength=model.num_actions).double()
    for k, share in enumerate((counts / counts.sum()).tolist()):
        metrics[f"{mk.USAGE}{k}"] = share
    metrics[mk.PERPLEXITY] = codebook_usage(code, model.num_actions)["perplexity"]
    metrics.update(action_spread(latent))
    details: dict[str, Any] = {}
    names = class_names(store)
    if action.numel():
        details = _agreement(
            code.numpy(), action.numpy(), ident.numpy() if ident.numel() else None, store, model
        )
        if episode.numel() and ident.numel() and names is not None:
            keep = ident.numpy() & (action.numpy() >= 0)
            move = class_ids(action.numpy()[keep], store.movement_classes)
            probe = linear_probe_accuracy(latent.numpy()[keep], move, episode.numpy()[keep], len(names))
            if np.isfinite(probe):  # it needs two validation episodes
                metrics[mk.PROBE_ACC_IDENTIFIABLE] = probe
            many_to_one = many_to_one_accuracy(
                code.numpy()[keep], move, episode.numpy()[keep], model.num_actions, len(names)
            )
            if np.isfinite(many_to_one):
                metrics[mk.MANY_TO_ONE_ACC_IDENTIFIABLE] = many_to_one
        for part_name, part in details.items():  # "move_identifiable" -> val/move_acc_identifiable, ...
            for measure, field in (("acc", "accuracy"), ("nmi", "nmi"), ("majority", "majority")):
                metrics[mk.agreement(part_name, measure)] = part[field]
    return LamMeasures(metrics, details)


def _agreement(
    code: np.ndarray,
    actions: np.ndarray,
    identifiable: np.ndarray | None,
    store: EpisodeStore,
    model: LatentActionModel,
) -> dict[str, dict[str, Any]]:
    """Agreement with raw true actions, with movement classes, and with movement on identifiable steps."""
    valid = actions >= 0  # -1 marks an episode's last frame (never inside a clip, but be safe)
    k = model.num_actions
    meanings = store.action_meanings
    num_actions = len(meanings) if meanings else int(actions.max(initial=0)) + 1
    out = {"action": agreement(code[valid], actions[valid], k, num_actions)}
    names = class_names(store)
    if names is not None:
        move = class_ids(actions[valid], store.movement_classes)
        out["move"] = agreement(code[valid], move, k, len(names))
        if identifiable is not None:
            ident = identifiable[valid]
            out["move_identifiable"] = agreement(code[valid][ident], move[ident], k, len(names))
    return out


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
    return {mk.ACTION_STD: float(z.std(dim=0).mean()), mk.ACTION_COS_DIST: float(1 - mean_cos)}
