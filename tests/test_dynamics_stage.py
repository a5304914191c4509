"""Dynamics stage: upstream checks, per-clip mask rates, ΔtPSNR, and a CLI run with its outputs."""

import json

import pytest
import torch
import yaml
from tiny_runs import DYNAMICS, LAM, train_args, write

from genie.cli import main
from genie.evaluation.metrics import delta_psnr, masked_psnr, psnr, standard_error
from genie.inference import TrainedWorld, load_model
from genie.models.dynamics import sample_mask
from genie.stages.dynamics_loss import corrupt_context, drop_actions, masked_loss, motion_weights


def dynamics_args(pong_dataset, tmp_path, upstream, config: dict, *extra: str) -> list[str]:
    return [
        *train_args("dynamics", config, pong_dataset, tmp_path),
        "--tokenizer_path",
        str(upstream["tokenizer"]),
        *extra,
    ]


def test_mask_rate_is_drawn_per_clip_and_spares_the_first_frame():
    seeds = torch.arange(64) + 1000
    mask = sample_mask(torch.Size([64, 4, 144]), 0.5, 1.0, seeds)
    assert not mask[:, 0].any()
    rates = mask[:, 1:].float().mean(dim=(1, 2))
    assert rates.min() > 0.4 and rates.max() <= 1.0
    assert rates.std() > 0.08  # one rate per clip, spread over U(0.5, 1) (std 0.144), not one per batch
    # a clip's mask follows its own seed, whatever batch it is in (so ranks and micro-batches agree)
    assert torch.equal(sample_mask(torch.Size([2, 4, 144]), 0.5, 1.0, seeds[10:12]), mask[10:12])


def test_a_clean_prefix_leaves_the_frames_before_a_cut_visible_and_the_rest_as_before():
    seeds = torch.arange(64) + 1000
    plain = sample_mask(torch.Size([64, 8, 144]), 0.5, 1.0, seeds)
    prefix = sample_mask(torch.Size([64, 8, 144]), 0.5, 1.0, seeds, prefix_share=1.0)
    masked_frames = prefix.any(dim=2)  # [B, T]: frames with any masked token
    cuts = masked_frames.float().argmax(dim=1)  # the first masked frame of each clip
    for b, c in enumerate(cuts.tolist()):
        assert 1 <= c <= 7
        assert not prefix[b, :c].any()  # a clean past up to the cut
        assert torch.equal(prefix[b, c:], plain[b, c:])  # from the cut on, the plain mask
    assert len(set(cuts.tolist())) >= 5  # the cut is drawn per clip, over 1..T-1
    half = sample_mask(torch.Size([64, 8, 144]), 0.5, 1.0, seeds, prefix_share=0.5)
    with_prefix = (~half[:, 1].any(dim=1)).float().mean()  # frame 1 untouched: a prefix was kept
    assert 0.25 < with_prefix < 0.75


def test_delta_psnr_on_hand_made_frames():
    torch.manual_seed(0)
    target = torch.rand(2, 3, 8, 8)
    close = (target + 0.01 * torch.randn_like(target)).clamp(0, 1)
    far = (target + 0.2 * torch.randn_like(target)).clamp(0, 1)
    assert (delta_psnr(target, close, far) > 10).all()
    torch.testing.assert_close(delta_psnr(target, close, close), torch.zeros(2))
    assert (delta_psnr(target, far, close) < 0).all()
    # masked PSNR looks only at the masked pixels
    mask = torch.zeros(2, 1, 8, 8, dtype=torch.bool)
    mask[..., :2, :2] = True
    wrong_outside = target.clone()
    wrong_outside[..., 4:, 4:] = 1 - wrong_outside[..., 4:, 4:]
    assert (masked_psnr(wrong_outside, target, mask) > 90).all() and (psnr(wrong_outside, target) < 20).all()
    # its standard error, from the running moments the evaluation reduces over ranks: std / sqrt(n)
    v = torch.tensor([1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    assert standard_error(v.mean().item(), v.pow(2).mean().item(), 4) == pytest.approx(v.std().item() / 2)
    assert standard_error(3.0, 9.0, 1) != standard_error(3.0, 9.0, 1)  # NaN from one sample


@pytest.mark.slow
def test_cli_trains_dynamics_and_writes_the_users_outputs(pong_dataset, tmp_path, upstream):
    args = dynamics_args(pong_dataset, tmp_path, upstream, DYNAMICS, "--lam_path", str(upstream["lam"]))
    assert main([*args, "--lam_config", str(upstream["lam_config"])]) == 0
    (run,) = (tmp_path / "ck" / "dynamics").iterdir()
    ckpt = torch.load(run / "checkpoint_step_2.pt", weights_only=True)
    assert ckpt["upstream"]["tokenizer"]["sha256"] and ckpt["upstream"]["lam"]["path"].endswith(".pt")
    ev = tmp_path / "ev" / "dynamics"
    assert (ev / "dynamics_comparison_step_2.mp4").is_file()
    assert (ev / "long_video" / "dynamics_comparison_step_2.mp4").is_file()
    # a copy per run: another run evaluated at step 2 (say the oracle) replaces the files above
    kept = ev / "runs" / run.name
    assert (kept / "dynamics_comparison_step_2.json").is_file()
    assert (kept / "long_video" / "dynamics_comparison_step_2.mp4").is_file()
    metrics = json.loads((ev / "dynamics_comparison_step_2.json").read_text())["metrics"]
    for key in ("val/token_acc", "val/rollout_psnr", "val/delta_psnr_t2", "val/delta_psnr_moving_t2"):
        assert key in metrics
    assert metrics["val/delta_psnr_t2_se"] >= 0 and "val/token_acc_se" not in metrics
    assert metrics["val/rollout_psnr_se"] > 0  # picks the best checkpoint, so its noise is reported too
    # the long rollouts count Pong's objects, generated and real (the real agent paddle is always there)
    assert {"long/ball_seen", "long/opponent_paddle_seen", "long/agent_paddle_seen_tokenizer"} <= set(metrics)
    assert metrics["long/agent_paddle_seen_real"] == 1.0
    # long play counts each object per frame: exactly one agent paddle in every real frame
    assert metrics["play/agent_paddle_one_real"] == 1.0 and metrics["play/agent_paddle_many_real"] == 0.0
    assert {"play/ball_one_t64", "play/opponent_paddle_many_t256"} <= set(metrics)
    assert "play/ball_one_t1000" not in metrics and metrics["play/horizon"] == 70
    assert 0 < metrics["long/foreground_share_real"] < 0.05  # paddles, ball and score on an empty court
    # the dynamics clips' tokens were read through the tokenizer's own window, whatever their length
    tokenizer, ckpt = load_model("tokenizer", upstream["tokenizer"], torch.device("cpu"))
    assert tokenizer.window == ckpt["config"]["data"]["sequence_length"]
    # a run directory is enough to evaluate: it knows its upstream checkpoints
    assert main(["eval", "dynamics", "--checkpoint", str(run), "--eval_dir", str(tmp_path / "ev2")]) == 0


def test_vocabulary_and_actions_come_from_the_upstream_checkpoints(pong_dataset, tmp_path, upstream):
    """Left out of the config, the vocabulary and the action count are the tokenizer's and the LAM's, and
    the run's config records them."""
    config = json.loads(json.dumps(DYNAMICS))
    del config["model"]["token_embedding"], config["model"]["action_embedding"]
    flags = ("--lam_path", str(upstream["lam"]), "--no_eval")
    assert main(dynamics_args(pong_dataset, tmp_path, upstream, config, *flags)) == 0
    (run,) = (tmp_path / "ck" / "dynamics").iterdir()
    world = TrainedWorld.load(run)
    assert (world.dynamics.vocab_size, world.dynamics.num_actions) == (32, 3)
    saved = yaml.safe_load((run / "config.yaml").read_text())["model"]
    assert saved["token_embedding"]["vocab_size"] == 32 and saved["action_embedding"]["num_actions"] == 3


@pytest.mark.parametrize(
    ("change", "extra", "expected"),
    [
        ({"vocab_size": 64}, "lam", "has 32 codes but model.token_embedding.vocab_size is 64"),
        ({"num_actions": 4}, "lam", "the LAM has 3 actions but model.action_embedding.num_actions is 4"),
        ({}, "tokenizer_as_lam", "is a tokenizer checkpoint, expected a lam checkpoint"),
        ({}, "none", "needs --lam_path"),
        ({}, "bad_lam_config", "says 5 codes but the LAM checkpoint"),
    ],
)
def test_upstream_mismatch_is_one_line(pong_dataset, tmp_path, upstream, capsys, change, extra, expected):
    config = json.loads(json.dumps(DYNAMICS))
    if "vocab_size" in change:
        config["model"]["token_embedding"]["vocab_size"] = change["vocab_size"]
    if "num_actions" in change:
        config["model"]["action_embedding"]["num_actions"] = change["num_actions"]
    flags = {
        "lam": ["--lam_path", str(upstream["lam"])],
        "tokenizer_as_lam": ["--lam_path", str(upstream["tokenizer"])],
        "none": [],
        "bad_lam_config": [
            "--lam_path",
            str(upstream["lam"]),
            "--lam_config",
            str(
                write(
                    tmp_path / "lam5.yaml", {**LAM, "model": {**LAM["model"], "codebook": {"num_codes": 5}}}
                )
            ),
        ],
    }[extra]
    assert main(dynamics_args(pong_dataset, tmp_path, upstream, config, *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    ("key", "value"),
    [("maskgit_steps", 0), ("temperature", -1.0), ("temperature", ".inf"), ("guidance", -2.0)],
)
def test_bad_sampling_parameters_in_config(tmp_path, key, value, capsys):
    config = json.loads(json.dumps(DYNAMICS))
    config["inference"][key] = value
    assert main(["train", "dynamics", "--config", str(write(tmp_path / "d.yaml", config))]) == 2
    assert key in capsys.readouterr().err


def test_dropped_actions_follow_each_clip_seed_and_become_the_null_action():
    actions = torch.randint(0, 3, (64, 7))
    seeds = torch.arange(64)
    dropped = drop_actions(actions, 0.1, 3, seeds)
    changed = dropped != actions
    assert torch.equal(dropped[changed], torch.full_like(dropped[changed], 3))
    assert 0.05 < changed.float().mean() < 0.15
    assert torch.equal(drop_actions(actions, 0.1, 3, seeds), dropped)  # the same seeds, the same drops
    assert torch.equal(drop_actions(actions[10:12], 0.1, 3, seeds[10:12]), dropped[10:12])  # any batching
    assert drop_actions(actions, 0.0, 3, seeds) is actions


def test_corrupted_context_touches_only_visible_tokens():
    """The scored tokens (masked: the labels) are never corrupted; visible ones of any frame may be."""
    tokens = torch.randint(0, 32, (16, 4, 24))
    seeds = torch.arange(16)
    mask = sample_mask(tokens.shape, 0.5, 1.0, seeds)
    noisy = corrupt_context(tokens, mask, 0.5, 32, seeds)
    changed = noisy != tokens
    assert not (changed & mask).any() and changed.any() and changed[:, 0].any()  # frame 0 is context
    assert changed.float().sum() < 0.5 * (~mask).float().sum()  # rates ~ U(0, 0.5)
    assert torch.equal(corrupt_context(tokens, mask, 0.5, 32, seeds), noisy)
    assert corrupt_context(tokens, mask, 0.0, 32, seeds) is tokens


def test_other_frame_context_makes_ghosts_and_holes_only_where_things_move():
    """A corrupted token takes the token at its place in another frame of the clip: a static court stays
    as it is, and a moving object leaves a ghost where it was or a hole where it is."""
    court, ball = 0, 7
    tokens = torch.full((16, 4, 24), court)
    for t in range(4):
        tokens[:, t, 2 + 5 * t] = ball  # the ball moves by 5 tokens a frame
    seeds = torch.arange(16)
    mask = torch.zeros_like(tokens, dtype=torch.bool)  # everything visible
    noisy = corrupt_context(tokens, mask, 0.9, 32, seeds, "other_frame")
    changed = noisy != tokens
    assert changed.any()
    ball_places = torch.zeros(24, dtype=torch.bool)
    ball_places[[2, 7, 12, 17]] = True
    assert not changed[..., ~ball_places].any()  # the court never changes
    ghosts = (noisy == ball) & (tokens == court)
    holes = (noisy == court) & (tokens == ball)
    assert ghosts.any() and holes.any() and (ghosts | holes).sum() == changed.sum()
    assert torch.equal(corrupt_context(tokens, mask, 0.9, 32, seeds, "other_frame"), noisy)


def test_guidance_needs_a_model_trained_with_action_dropout(pong_dataset, tmp_path, upstream, capsys):
    config = json.loads(json.dumps(DYNAMICS))
    config["inference"]["guidance"] = 2.0
    args = dynamics_args(pong_dataset, tmp_path, upstream, config, "--lam_path", str(upstream["lam"]))
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a model trained with training.action_dropout > 0" in err and len(err.splitlines()) == 1


@pytest.mark.slow
def test_a_checkpoint_from_before_per_block_actions_loads_as_it_was_trained(pong_dataset, tmp_path, upstream):
    """A dynamics checkpoint whose config has no action_conditioning key (written before it existed) has
    no per-block modulation: it is rebuilt with the action at the input only, and evaluates."""
    config = json.loads(json.dumps(DYNAMICS))
    config["model"]["action_conditioning"] = "input"
    args = dynamics_args(pong_dataset, tmp_path, upstream, config, "--lam_path", str(upstream["lam"]))
    assert main([*args, "--no_eval"]) == 0
    (run,) = (tmp_path / "ck" / "dynamics").iterdir()
    for path in run.glob("checkpoint_step_*.pt"):
        ckpt = torch.load(path, weights_only=True)
        del ckpt["config"]["model"]["action_conditioning"]
        assert not any("modulation" in k for k in ckpt["model"])
        torch.save(ckpt, path)
    assert main(["eval", "dynamics", "--checkpoint", str(run), "--eval_dir", str(tmp_path / "ev2")]) == 0


def test_the_masked_loss_is_the_per_clip_mean_of_the_dense_cross_entropy():
    torch.manual_seed(0)
    tokens = torch.randint(0, 12, (3, 4, 10))
    mask = sample_mask(tokens.shape, 0.5, 1.0, torch.tensor([5, 6, 7]))
    dense = torch.randn(3, 4, 10, 12)
    loss, acc = masked_loss(dense[mask], tokens, mask)
    ce = torch.nn.functional.cross_entropy(dense.permute(0, 3, 1, 2), tokens, reduction="none")
    hit = (dense.argmax(-1) == tokens).float()
    per_clip = mask.flatten(1).sum(1)
    assert torch.allclose(loss, ((ce * mask).flatten(1).sum(1) / per_clip).mean())
    assert torch.allclose(acc, ((hit * mask).flatten(1).sum(1) / per_clip).mean())


def test_motion_weights_cover_the_neighbourhood_of_changed_tokens_and_nothing_else():
    tokens = torch.zeros(1, 3, 4 * 5, dtype=torch.long)
    tokens[0, 1:, 2 * 5 + 3] = 7  # frame 1: one token changes at row 2, column 3; frame 2 keeps it
    w = motion_weights(tokens, (4, 5), 4.0).view(1, 3, 4, 5)
    assert torch.equal(w[0, 0], torch.ones(4, 5)) and torch.equal(w[0, 2], torch.ones(4, 5))
    near = torch.zeros(4, 5, dtype=torch.bool)
    near[1:4, 2:5] = True
    assert torch.equal(w[0, 1] == 4.0, near) and torch.equal(w[0, 1][~near], torch.ones(20 - 9))


def test_the_weighted_masked_loss_is_the_per_clip_weighted_mean_and_weights_of_one_change_nothing():
    torch.manual_seed(0)
    tokens = torch.randint(0, 12, (3, 4, 10))
    mask = sample_mask(tokens.shape, 0.5, 1.0, torch.tensor([5, 6, 7]))
    dense = torch.randn(3, 4, 10, 12)
    weights = torch.rand(3, 4, 10) + 0.5
    loss, acc = masked_loss(dense[mask], tokens, mask, weights)
    ce = torch.nn.functional.cross_entropy(dense.permute(0, 3, 1, 2), tokens, reduction="none")
    wm = weights * mask
    assert torch.allclose(loss, ((ce * wm).flatten(1).sum(1) / wm.flatten(1).sum(1)).mean())
    assert torch.allclose(acc, masked_loss(dense[mask], tokens, mask)[1])
    plain = masked_loss(dense[mask], tokens, mask)[0]
    assert torch.allclose(masked_loss(dense[mask], tokens, mask, torch.ones(3, 4, 10))[0], plain)
