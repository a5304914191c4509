"""The LAM's few-label mode: the true actions of a few training episodes tie code k to movement class k.

Reconstruction alone is as happy with a state-dependent relabelling of up / down / stay as with the true
one (docs/lam.md), so an unsupervised LAM's codes need not mean the controls. Nikulin et al. (2025) found
the same with distractors and fixed it with a small labelled share mixed into every batch; here every
training clip is paired with one clip of the labelled episodes (only encoded: the label needs its
actions, not its reconstruction), and a cross-entropy on the cosine similarities to the codes asks its
identifiable transitions for their movement class.

The labelled episodes are whole training episodes (never validation ones), drawn by the training seed and
recorded in every checkpoint. Only identifiable transitions are labelled: on the others the next frame
does not show the action (the paddle at a wall, the first step of a reversal).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from genie.data.actions import class_ids, class_representatives
from genie.data.clips import ClipDataset
from genie.data.store import EpisodeStore
from genie.errors import GenieError


class LabelledEpisodes:
    def __init__(
        self, store: EpisodeStore, fraction: float, clip_len: int, seed: int, num_codes: int
    ) -> None:
        if store.actions is None or not store.movement_classes:
            raise GenieError(
                f"supervision.label_fraction {fraction} asks for true actions, but dataset {store.name} has "
                "none (video has no actions; ALE collections do): set it to 0"
            )
        self.classes = store.movement_classes
        num_classes = len(class_representatives(self.classes))
        if num_classes > num_codes:
            raise GenieError(
                f"the few-label mode ties code k to movement class k, but dataset {store.name} has "
                f"{num_classes} classes and the LAM {num_codes} codes: use at least {num_classes} codes"
            )
        train = [
            e
            for e in store.split_episodes("train")
            if store.episodes[e, 1] - store.episodes[e, 0] >= clip_len
        ]
        count = min(len(train), math.ceil(fraction * len(train)))  # one episode at least
        order = np.random.default_rng(seed).permutation(len(train))
        self.episodes = sorted(int(train[i]) for i in order[:count])
        self.clips = ClipDataset(store, "train", clip_len, episodes=self.episodes)
        labelled = sum(int(store.episodes[e, 1] - store.episodes[e, 0]) for e in self.episodes)
        train_frames = sum(
            int(store.episodes[e, 1] - store.episodes[e, 0]) for e in store.split_episodes("train")
        )
        self.record: dict[str, Any] = {
            "label_fraction": fraction,
            "episodes": self.episodes,
            "labelled_frames": labelled,
            "share_of_train_frames": labelled / max(train_frames, 1),
        }

    def draw(self, noise_seeds: Tensor) -> tuple[Tensor, Tensor]:
        """One labelled clip per training clip, picked by that clip's noise seed (so resume and any split
        over ranks draw the same ones) -> frames uint8 [B, T, 3, H, W], class targets int64 [B, T-1]
        (-1 where the transition is not identifiable)."""
        n = len(self.clips)
        items = [self.clips[int(np.random.default_rng(int(s)).integers(n))] for s in noise_seeds.tolist()]
        frames = torch.stack([item["frames"] for item in items])
        actions = torch.stack([item["actions"] for item in items]).numpy()
        targets = torch.from_numpy(class_ids(actions, self.classes))
        if "identifiable" in items[0]:
            targets[~torch.stack([item["identifiable"] for item in items])] = -1
        return frames, targets


def label_loss(similarity: Tensor, targets: Tensor, logit_scale: float) -> Tensor:
    """Cross-entropy of scaled cosine similarities [B, T-1, K] against classes [B, T-1] (-1: none), as a
    mean over clips of each clip's mean (a clip without a labelled transition adds 0), so micro-batches and
    ranks add up to the single-process loss."""
    ce = F.cross_entropy(
        (logit_scale * similarity.float()).flatten(0, 1), targets.flatten().clamp_min(0), reduction="none"
    ).view_as(targets)
    valid = (targets >= 0).float()
    return ((ce * valid).sum(1) / valid.sum(1).clamp_min(1)).mean()
