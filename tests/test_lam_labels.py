"""The LAM's few-label mode: which episodes are labelled, that labels pull codes to classes, bad input."""

import dataclasses

import numpy as np
import pytest
import torch
from tiny_runs import LOOP_LAM, lam_config, variant, write

from genie.cli import main
from genie.config import LamConfig, config_from_dict
from genie.data.actions import class_ids
from genie.data.store import EpisodeStore
from genie.errors import GenieError
from genie.stages.few_labels import label_loss
from genie.stages.lam import LamStage


def labelled_config(fraction: float, **supervision) -> LamConfig:
    data = variant(LOOP_LAM)
    data["supervision"] = {"label_fraction": fraction, **supervision}
    return config_from_dict(LamConfig, data, "tiny")


def training_batch(store: EpisodeStore, seeds: list[int]) -> dict:
    from genie.data.clips import ClipDataset

    train = ClipDataset(store, "train", 4)
    items = [train[i] for i in range(len(seeds))]
    batch = {k: torch.stack([item[k] for item in items]) for k in items[0]}
    return {**batch, "noise_seed": torch.tensor(seeds)}


def test_only_training_episodes_are_labelled_and_recorded(store):
    val = set(store.split_episodes("val"))
    train = store.split_episodes("train")
    one = LamStage(labelled_config(0.01), store, torch.device("cpu"))
    assert len(one.labels.episodes) == 1  # a share under one episode rounds up to one
    everything = LamStage(labelled_config(1.0), store, torch.device("cpu"))
    assert sorted(everything.labels.episodes) == sorted(train) and not val & set(everything.labels.episodes)
    record = everything.checkpoint_extras()["supervision"]
    assert record["episodes"] == everything.labels.episodes and record["share_of_train_frames"] == 1.0
    assert "validation episodes are never labelled" in everything.notes[0]


def test_labelled_clips_follow_the_noise_seed_and_skip_unidentifiable_steps(store):
    labels = LamStage(labelled_config(1.0), store, torch.device("cpu")).labels
    frames, targets = labels.draw(torch.tensor([5, 6, 5]))
    again, _ = labels.draw(torch.tensor([5, 6, 5]))
    assert torch.equal(frames, again) and torch.equal(frames[0], frames[2])
    assert frames.shape[:2] == (3, 4) and targets.shape == (3, 3)
    # every target is the true movement class of an identifiable step, -1 elsewhere
    clips = labels.clips
    for row, seed in zip(targets, (5, 6, 5), strict=True):
        start = int(clips.starts[np.random.default_rng(seed).integers(len(clips))])
        actions = class_ids(store.actions[start : start + 3], store.movement_classes)
        ident = store.identifiable[start : start + 3]
        assert row.tolist() == [int(a) if i else -1 for a, i in zip(actions, ident, strict=True)]


def test_label_fraction_zero_uses_no_labels(store):
    """The unsupervised loss is the same whatever the true actions say, and with none at all."""
    stage = LamStage(lam_config(), store, torch.device("cpu"))
    assert stage.labels is None and "supervision" not in stage.checkpoint_extras()
    torch.manual_seed(0)
    model = stage.build()
    batch = training_batch(store, [1, 2])
    scrambled = {**batch, "actions": torch.zeros_like(batch["actions"])}
    bare = {"frames": batch["frames"], "noise_seed": batch["noise_seed"]}
    losses = [stage.loss(model, b)[0].item() for b in (batch, scrambled, bare)]
    assert losses[0] == losses[1] == losses[2]


def test_labels_pull_each_code_to_its_class(store):
    """Trained on the label loss alone, the codes come to predict the labelled transitions' classes."""
    stage = LamStage(labelled_config(1.0), store, torch.device("cpu"))
    torch.manual_seed(0)
    model = stage.build()
    frames, targets = stage.labels.draw(torch.arange(16))
    x = frames.float() / 255
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    def accuracy() -> float:
        similarity = model(x).similarity
        valid = targets >= 0
        return float(((similarity.argmax(-1) == targets) & valid).sum() / valid.sum())

    before = accuracy()
    for _ in range(100):
        optimizer.zero_grad()
        label_loss(model(x).similarity, targets, 10.0).backward()
        optimizer.step()
    assert before < 0.5 and accuracy() > 0.85  # measured: 0.16 -> 0.98


def test_the_training_loss_carries_the_label_term(store):
    stage = LamStage(labelled_config(1.0, weight=1.0), store, torch.device("cpu"))
    torch.manual_seed(0)
    model = stage.build()
    loss, parts = stage.loss(model, training_batch(store, [3, 4]))
    assert {"label_ce", "label_acc"} <= set(parts) and parts["label_ce"] > 0
    no_weight = LamStage(labelled_config(1.0, weight=0.0), store, torch.device("cpu"))
    plain, _ = no_weight.loss(model, training_batch(store, [3, 4]))
    assert loss.item() == pytest.approx(plain.item() + parts["label_ce"].item(), rel=1e-5)


def test_labelled_clips_add_the_label_term_not_reconstruction(store):
    """Each training clip's labelled partner is only encoded: the reconstruction term is the unlabelled
    batch's alone, as in the unsupervised stage."""
    labelled = LamStage(labelled_config(1.0), store, torch.device("cpu"))
    torch.manual_seed(0)
    model = labelled.build()
    batch = training_batch(store, [3, 4])
    _, with_labels = labelled.loss(model, batch)
    _, without = LamStage(lam_config(), store, torch.device("cpu")).loss(model, batch)
    assert with_labels["recon"].item() == pytest.approx(without["recon"].item(), rel=1e-6)
    assert "label_ce" in with_labels and "label_ce" not in without


def test_label_loss_ignores_unlabelled_transitions():
    similarity = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    only_first = label_loss(similarity, torch.tensor([[0, -1]]), 10.0)
    both_right = label_loss(similarity, torch.tensor([[0, 1]]), 10.0)
    assert only_first.item() == pytest.approx(both_right.item())
    assert label_loss(similarity, torch.tensor([[-1, -1]]), 10.0).item() == 0.0


def test_a_dataset_without_actions_cannot_be_labelled(store):
    video = dataclasses.replace(store, actions=None, identifiable=None)
    with pytest.raises(GenieError, match="has none"):
        LamStage(labelled_config(0.5), video, torch.device("cpu"))
    LamStage(lam_config(), video, torch.device("cpu"))  # unsupervised: fine


@pytest.mark.parametrize("fraction", ["1.5", "-0.1", "half"])
def test_a_bad_label_fraction_flag_is_one_line(pong_dataset, tmp_path, capsys, fraction):
    config = write(tmp_path / "tiny.yaml", variant(LOOP_LAM))
    args = ["train", "lam", "--config", str(config), "--data_dir", str(pong_dataset.parent)]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--label_fraction", fraction])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and "expected a number in [0, 1]" in err[-1]


def test_a_bad_label_fraction_in_the_config_is_one_line(pong_dataset, tmp_path, capsys):
    data = variant(LOOP_LAM)
    data["supervision"] = {"label_fraction": 2.0}
    config = write(tmp_path / "tiny.yaml", data)
    code = main(["train", "lam", "--config", str(config), "--data_dir", str(pong_dataset.parent)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "supervision: label_fraction 2.0: expected a number in [0, 1]" in err
    assert len(err.splitlines()) == 1


def test_label_fraction_is_a_lam_flag(pong_dataset, tmp_path, capsys):
    args = ["train", "tokenizer", "--config", "configs/tiny/tokenizer.yaml"]
    code = main([*args, "--data_dir", str(pong_dataset.parent), "--label_fraction", "0.5"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--label_fraction is a LAM flag" in err and len(err.splitlines()) == 1
