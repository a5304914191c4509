"""The trained world apart from training: loading it and its action source (the import rules that keep play
and evaluation off the training stages are in test_imports.py)."""

from __future__ import annotations

import json

import numpy as np
import torch

from genie.data.actions import class_ids
from genie.data.clips import ClipDataset
from genie.data.frames import to_float
from genie.evaluation.dynamics_report import dynamics_report
from genie.inference import PROMPT_FRAMES, TrainedWorld
from genie.outputs import eval_files
from genie.stages.registry import stage_from_checkpoint


def test_trained_world_is_the_stages_world(dynamics_run):
    """Loaded without a stage, the world holds the same weights and reads the same actions as the stage."""
    world = TrainedWorld.load(dynamics_run)
    stage, model, _ = stage_from_checkpoint("dynamics", dynamics_run, torch.device("cpu"))
    for mine, theirs in ((world.dynamics, model), (world.tokenizer, stage.tokenizer)):
        a, b = mine.state_dict(), theirs.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert world.window == stage.config.data.sequence_length and vars(world.sampling) == vars(stage.sampling)
    clip = ClipDataset(world.store, "val", world.window)[0]
    x = to_float(clip["frames"][None])
    assert torch.equal(world.infer_actions(x), stage.actions_of({"frames": clip["frames"][None]}))


def test_trained_world_samples_reproducibly(dynamics_run):
    world = TrainedWorld.load(dynamics_run)
    clip = ClipDataset(world.store, "val", world.window)[0]
    x = to_float(clip["frames"][None])
    tokens, actions = world.encode(x), world.infer_actions(x)
    runs = [
        world.sample(tokens[:, :PROMPT_FRAMES], actions, torch.Generator().manual_seed(5)) for _ in range(2)
    ]
    assert runs[0].shape == (1, world.window - PROMPT_FRAMES, world.tokenizer.num_patches)
    assert torch.equal(runs[0], runs[1])
    assert world.decode(torch.cat([tokens[:, :PROMPT_FRAMES], runs[0]], 1)).shape == x.shape


def test_a_clip_longer_than_the_lam_is_read_in_windows_of_its_length(dynamics_run):
    world = TrainedWorld.load(dynamics_run)
    source, store = world.actions, world.store
    n = source.lam_clip
    x = to_float(torch.from_numpy(np.array(store.frames[: 2 * n + 3])).permute(0, 3, 1, 2)[None])
    long = source.of_clip(x)
    assert long.shape == (1, 2 * n + 2)
    torch.testing.assert_close(long[:, : n - 1], source.lam.infer_actions(x[:, :n]))
    # the last window ends at the clip's end, full length
    torch.testing.assert_close(long[:, -(n - 1) :], source.lam.infer_actions(x[:, -n:]))


def test_an_oracle_world_reads_the_true_actions(pong_dataset, upstream, tmp_path):
    from test_dynamics_stage import dynamics_args
    from tiny_runs import DYNAMICS

    from genie.cli import main

    args = dynamics_args(pong_dataset, tmp_path, upstream, DYNAMICS, "--actions", "true", "--no_eval")
    assert main(args) == 0
    (run,) = (tmp_path / "ck" / "dynamics").iterdir()
    world = TrainedWorld.load(run)
    assert world.actions.lam is None and world.actions.classes == world.store.movement_classes
    clip = ClipDataset(world.store, "val", world.window)[0]
    got = world.infer_actions(to_float(clip["frames"][None]), clip["actions"][None])
    want = class_ids(clip["actions"].numpy(), world.store.movement_classes)
    assert got.tolist() == [want.tolist()]


def test_the_final_evaluation_runs_on_a_loaded_world_and_returns_its_json(dynamics_run, tmp_path):
    """The dynamics report is an app over the trained world (no stage): its result is the JSON it writes."""
    world = TrainedWorld.load(dynamics_run)
    files = eval_files("dynamics", tmp_path, "eval")
    report = dynamics_report(world, files, checkpoint="ckpt.pt", step=2, upstream={}, clips=2, batch_size=2)
    assert json.loads(files.json.read_text()) == report.record()
    assert files.video.is_file() and files.extra.is_file()
    assert report.record()["prompt_frames"] == PROMPT_FRAMES and report.sampling == vars(world.sampling)
    assert {"val/token_acc", "val/rollout_psnr", "long/ball_seen", "play/horizon"} <= set(report.metrics)
