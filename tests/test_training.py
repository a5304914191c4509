"""The one training loop on the tokenizer stage: learning, exact resume, atomic saves, NaN stop, outputs."""

import errno
import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import LOOP_TOKENIZER, data_args, tokenizer_config, train_by_cli, variant, write

from genie.cli import main
from genie.config import TokenizerConfig, config_from_dict
from genie.data.clips import ClipDataset
from genie.data.store import EpisodeStore
from genie.errors import GenieError
from genie.stages.tokenizer import TokenizerStage
from genie.training import checkpoint as ckpt_mod
from genie.training import loop as loop_mod
from genie.training import runtime as runtime_mod
from genie.training.checkpoint import list_checkpoints, load_checkpoint
from genie.training.curves import panels
from genie.training.loop import Trainer, lr_at
from genie.training.metrics_log import read_metrics
from genie.training.runtime import Runtime


def make_trainer(
    cfg: TokenizerConfig, store: EpisodeStore, root: Path, resume: dict | None = None
) -> Trainer:
    rt = Runtime(torch.device("cpu"))
    stage = TokenizerStage(cfg, store, rt.device)
    T = cfg.data.sequence_length
    return Trainer(
        stage,
        cfg,
        rt,
        train_set=ClipDataset(store, "train", T),
        val_set=ClipDataset(store, "val", T, stride=T),
        run_root=root,
        resume=resume,
        progress=False,
    )


def test_lr_schedule_warmup_then_cosine_to_min():
    cfg = tokenizer_config(max_steps=100, warmup_steps=10)
    t = cfg.training
    assert lr_at(0, t) == pytest.approx(t.max_lr / 10)
    assert lr_at(9, t) == pytest.approx(t.max_lr)
    assert lr_at(100, t) == pytest.approx(t.min_lr)
    assert all(lr_at(s, t) >= lr_at(s + 1, t) for s in range(10, 100))


def test_loss_falls_on_a_fixed_batch(store):
    torch.manual_seed(0)
    cfg = tokenizer_config()
    stage = TokenizerStage(cfg, store, torch.device("cpu"))
    model = stage.build()
    batch = {"frames": torch.stack([ClipDataset(store, "train", 4)[i]["frames"] for i in (0, 50)])}
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss, _ = stage.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses[::10]


def test_resume_equals_uninterrupted_run(store, tmp_path, monkeypatch):
    full = make_trainer(tokenizer_config(max_steps=6), store, tmp_path / "a")
    full.train()

    killed = make_trainer(tokenizer_config(max_steps=6), store, tmp_path / "b")
    real_after_step = killed.stage.after_step

    def die_after_step_3(model, *args):
        if killed.step == 3:  # checkpoint_step_3.pt is on disk; step 4 is half done
            raise KeyboardInterrupt
        return real_after_step(model, *args)

    monkeypatch.setattr(killed.stage, "after_step", die_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        killed.train()

    state = load_checkpoint(killed.run_dir, stage="tokenizer")  # a run dir resolves to its best/latest
    assert state["step"] == 3
    cfg = config_from_dict(TokenizerConfig, state["config"], "resume")
    resumed = make_trainer(cfg, store, tmp_path / "b", resume=state)
    assert resumed.run_dir == killed.run_dir and resumed.step == 3
    resumed.train()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert float(b["quantizer.restarts"]) > 0  # the restart count survived the resume


def test_a_kill_between_a_best_checkpoint_and_best_json_is_repaired_on_resume(store, tmp_path, monkeypatch):
    killed = make_trainer(tokenizer_config(max_steps=6), store, tmp_path)
    real_write = loop_mod.write_text_atomic

    def die_before_best_json(path, text):
        if killed.step == 6:  # checkpoint_step_6.pt is on disk, best.json still names step 3
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(loop_mod, "write_text_atomic", die_before_best_json)
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    monkeypatch.undo()
    stale = json.loads((killed.run_dir / "best.json").read_text())
    assert stale["step"] == 3 and killed.best["step"] == 6  # step 6 was the new best the kill did not record

    state = load_checkpoint(ckpt_mod.resolve_checkpoint(killed.run_dir, prefer="latest"), stage="tokenizer")
    cfg = config_from_dict(TokenizerConfig, state["config"], "resume")
    make_trainer(cfg, store, tmp_path, resume=state).train()  # nothing left to train: only the repair
    assert json.loads((killed.run_dir / "best.json").read_text()) == killed.best
    assert load_checkpoint(killed.run_dir, stage="tokenizer")["step"] == 6  # the run's best resolves to it


def test_run_directory_contract(store, tmp_path):
    trainer = make_trainer(tokenizer_config(), store, tmp_path)
    result = trainer.train()
    run = result.run_dir
    assert run.parent == tmp_path and run.name.startswith("run_")
    assert [s for s, _ in list_checkpoints(run)] == [3, 6]
    for name in ("config.yaml", "metrics.jsonl", "best.json", "loss_curve.png"):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if "train/loss" in r]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4, 5, 6]
    assert all("lr" in r and "frames_per_s" in r and "mem/peak_mb" in r for r in train_rows)
    assert any("val/psnr" in r and "val/object_recall" in r for r in rows)
    best = json.loads((run / "best.json").read_text())
    assert best["metric"] == "val/psnr" and best["step"] in (3, 6)
    state = load_checkpoint(run / "checkpoint_step_6.pt", stage="tokenizer")
    assert {"model", "optimizer", "scheduler", "scaler", "rng", "config", "step", "dataset"} <= set(state)
    assert yaml.safe_load((run / "config.yaml").read_text())["model"]["patch_size"] == 8


def test_keep_checkpoints_prunes_but_keeps_best(store, tmp_path):
    trainer = make_trainer(tokenizer_config(max_steps=9, keep_checkpoints=1), store, tmp_path)
    result = trainer.train()
    steps = [s for s, _ in list_checkpoints(result.run_dir)]
    assert 9 in steps and result.best["step"] in steps and len(steps) <= 2


def test_crash_during_save_keeps_previous_checkpoint(store, tmp_path, monkeypatch):
    trainer = make_trainer(tokenizer_config(max_steps=6), store, tmp_path)
    real_save = torch.save
    calls = {"n": 0}

    def dying_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint dies half-written
            f.write(b"PK\x03\x04 half a zip")
            raise KeyboardInterrupt
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [3]
    assert load_checkpoint(trainer.run_dir, stage="tokenizer")["step"] == 3


@pytest.mark.parametrize(
    ("error", "cause"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (PermissionError(errno.EACCES, "Permission denied"), "Permission denied"),
    ],
)
def test_disk_full_or_read_only_while_saving_keeps_the_previous_checkpoint(
    store, tmp_path, monkeypatch, error, cause
):
    trainer = make_trainer(tokenizer_config(max_steps=6), store, tmp_path)
    real_save = torch.save
    calls = {"n": 0}

    def failing_save(obj, f, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            f.write(b"PK\x03\x04 the first bytes fit")
            raise error
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ckpt_mod.torch, "save", failing_save)
    with pytest.raises(
        GenieError, match=f"cannot write checkpoint .*checkpoint_step_6.pt: {cause}; the previous"
    ):
        trainer.train()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [3]
    assert not list(trainer.run_dir.glob("*.tmp"))
    assert load_checkpoint(trainer.run_dir, stage="tokenizer")["step"] == 3


needs_dev_full = pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")


@needs_dev_full
def test_a_really_full_disk_while_saving_keeps_the_previous_checkpoint(store, tmp_path):
    """A genuine ENOSPC: the temp file of the second checkpoint is /dev/full, where every write fails (torch's
    own file writer turns that into a RuntimeError naming no cause; chmod cannot fake it for root)."""
    trainer = make_trainer(tokenizer_config(max_steps=6), store, tmp_path)
    (trainer.run_dir / "checkpoint_step_6.pt.tmp").symlink_to("/dev/full")
    with pytest.raises(GenieError) as raised:
        trainer.train()
    message = str(raised.value)
    assert len(message.splitlines()) == 1
    assert f"cannot write checkpoint {trainer.run_dir / 'checkpoint_step_6.pt'}: No space left" in message
    assert (
        f"the previous checkpoint is kept (free space or fix the folder, then --resume {trainer.run_dir})"
        in message
    )
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [3]
    assert not list(trainer.run_dir.glob("*.tmp"))
    assert load_checkpoint(trainer.run_dir, stage="tokenizer")["step"] == 3
    assert Path("/dev/full").is_char_device()  # the link was removed, not what it pointed to


@needs_dev_full
@pytest.mark.parametrize(
    ("link", "written"),
    [
        ("config.yaml.tmp", "config.yaml"),
        ("metrics.jsonl", "metrics.jsonl"),
        ("best.json.tmp", "best.json"),
        ("loss_curve.tmp.png", "loss_curve.png"),
    ],
)
def test_a_full_disk_under_the_other_run_files_is_one_line(store, tmp_path, link, written):
    trainer = make_trainer(tokenizer_config(max_steps=3), store, tmp_path)
    (trainer.run_dir / link).symlink_to("/dev/full")
    with pytest.raises(GenieError) as raised:
        trainer.train()
    message = str(raised.value)
    assert (
        message
        == f"cannot write {trainer.run_dir / written}: No space left on device; free space or fix the folder"
    )
    assert (trainer.run_dir / link).is_symlink() == (link == written)  # a temp file is removed, the log stays
    assert trainer.lock is None  # the run is free for a --resume


def test_non_finite_loss_stops_with_the_step(store, tmp_path, monkeypatch):
    trainer = make_trainer(tokenizer_config(max_steps=6, max_skipped_steps=0), store, tmp_path)
    real_loss = trainer.stage.loss

    def loss(model, batch):
        value, parts = real_loss(model, batch)
        return (value * float("nan") if trainer.step >= 4 else value), parts

    monkeypatch.setattr(trainer.stage, "loss", loss)
    with pytest.raises(GenieError, match="non-finite at step 5.*checkpoint_step_3.pt"):
        trainer.train()
    assert [s for s, _ in list_checkpoints(trainer.run_dir)] == [3]


@pytest.mark.parametrize("fault", ["loss", "gradient"])
def test_non_finite_steps_are_skipped_and_counted_up_to_the_limit(store, tmp_path, monkeypatch, fault):
    """Steps 2 and 4 go bad: both are skipped (the weights stay as they were), counted in metrics.jsonl,
    and the run finishes; with a limit of 1 the second one stops it."""
    for limit, finishes in ((2, True), (1, False)):
        trainer = make_trainer(
            tokenizer_config(max_steps=6, max_skipped_steps=limit, log_every=1), store, tmp_path
        )
        real_loss = trainer.stage.loss
        before: dict = {}

        def loss(model, batch, trainer=trainer, real_loss=real_loss, before=before):
            trained = [p for p in model.parameters() if p.requires_grad]
            if trainer.step - 1 in before:  # the skipped step left the trained weights as they were
                assert all(torch.equal(a, b) for a, b in zip(before[trainer.step - 1], trained, strict=True))
            value, parts = real_loss(model, batch)
            if trainer.step in (1, 3):
                before[trainer.step] = [p.detach().clone() for p in trained]
                if fault == "loss":
                    return value * float("inf"), parts
                bad = next(p for p in model.parameters() if p.requires_grad)
                return value + (bad * float("nan")).sum(), parts
            return value, parts

        monkeypatch.setattr(trainer.stage, "loss", loss)
        if not finishes:
            with pytest.raises(GenieError, match="non-finite at step 4 .2 steps skipped"):
                trainer.train()
            continue
        trainer.train()
        rows = [r for r in read_metrics(trainer.run_dir) if "skipped_steps" in r]
        assert [r["skipped_steps"] for r in rows] == [0, 1, 1, 2, 2, 2]
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


@pytest.mark.slow
def test_cli_train_then_eval_writes_user_named_outputs(pong_dataset, tmp_path, capsys):
    config = variant(LOOP_TOKENIZER, max_steps=3)
    run, ev = train_by_cli("tokenizer", config, pong_dataset, tmp_path, "--device", "cpu")
    assert (ev / "comparison_checkpoint_step_3.mp4").stat().st_size > 1000
    metrics = json.loads((ev / "comparison_checkpoint_step_3.json").read_text())["metrics"]
    for key in ("val/psnr", "val/ssim", "val/background_psnr", "val/object_recall", "val/perplexity"):
        assert key in metrics
    # resume continues the same run directory to a larger max_steps, with the run's config (no --config)
    out = ["--output_dir", str(tmp_path / "ck"), "--eval_dir", str(tmp_path / "ev")]
    resume = ["--resume", str(run), "--max_steps", "5", "--no_eval"]
    assert main(["train", "tokenizer", *data_args(pong_dataset), *out, *resume]) == 0
    assert [s for s, _ in list_checkpoints(run)] == [3, 5]
    # eval from the run directory alone
    assert main(["eval", "tokenizer", "--checkpoint", str(run), "--eval_dir", str(tmp_path / "ev2")]) == 0
    assert list((tmp_path / "ev2" / "tokenizer").glob("comparison_checkpoint_step_*.json"))


def test_saving_before_the_first_log_row_keeps_the_run(pong_dataset, tmp_path):
    """save_every < log_every: the first saves come before any metrics row (no curve to draw yet)."""
    config = write(tmp_path / "tiny.yaml", variant(LOOP_TOKENIZER, max_steps=3, save_every=1, log_every=3))
    args = ["--config", str(config), "--data_dir", str(pong_dataset.parent), "--dataset", pong_dataset.name]
    assert (
        main(["train", "tokenizer", *args, "--output_dir", str(tmp_path / "ck"), "--no_eval", "--quiet"]) == 0
    )
    (run,) = (tmp_path / "ck" / "tokenizer").iterdir()
    assert [s for s, _ in list_checkpoints(run)] == [1, 2, 3] and (run / "loss_curve.png").is_file()


@pytest.mark.parametrize(
    ("training", "model", "expected"),
    [
        ({"max_lrr": 1}, {}, "tiny.yaml: training.max_lrr: unknown key"),
        ({"max_steps": "many"}, {}, "tiny.yaml: training.max_steps: expected int"),
        ({}, {"patch_size": 7}, "not divisible by model.patch_size 7"),
    ],
)
def test_bad_config_is_one_line(pong_dataset, tmp_path, capsys, training, model, expected):
    config = write(tmp_path / "tiny.yaml", variant(LOOP_TOKENIZER, model=model, **training))
    code = main(["train", "tokenizer", "--config", str(config), "--data_dir", str(pong_dataset.parent)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expected in err and len(err.splitlines()) == 1


def test_train_without_config_or_resume_is_one_line(pong_dataset, capsys):
    assert main(["train", "lam", "--data_dir", str(pong_dataset.parent)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs --config" in err and len(err.splitlines()) == 1


def test_bad_checkpoints_are_refused(tmp_path, capsys):
    corrupt = tmp_path / "checkpoint_step_1.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    assert main(["eval", "tokenizer", "--checkpoint", str(corrupt)]) == 2
    assert "not readable" in capsys.readouterr().err
    other = tmp_path / "lam.pt"
    torch.save({"stage": "lam", "model": {}, "step": 1}, other)
    assert main(["eval", "tokenizer", "--checkpoint", str(other)]) == 2
    assert "is a lam checkpoint, expected a tokenizer checkpoint" in capsys.readouterr().err
    assert main(["eval", "tokenizer", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_device_cuda_without_gpu_is_one_line(tmp_path, capsys):
    config = write(tmp_path / "tiny.yaml", variant(LOOP_TOKENIZER))
    assert main(["train", "tokenizer", "--config", str(config), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU" in err and len(err.splitlines()) == 1


def test_checkpoint_of_another_shape_is_refused(store, tmp_path):
    from genie.training.checkpoint import load_model_state

    small = TokenizerStage(tokenizer_config(), store, torch.device("cpu")).build()
    data = variant(LOOP_TOKENIZER)
    data["model"]["encoder"]["d_model"] = 64
    other = TokenizerStage(config_from_dict(TokenizerConfig, data, "x"), store, torch.device("cpu")).build()
    with pytest.raises(GenieError, match="ckpt.pt does not fit this model's shapes") as info:
        load_model_state(small, other.state_dict(), "ckpt.pt")
    assert "\n" not in str(info.value)


def test_validation_curves_draw_one_metric_family_per_panel():
    """dB beside dB, shares beside shares; per-horizon keys at the first and last step only; no error bars."""
    dynamics = [
        f"val/{m}_t{h}" for m in ("rollout_psnr", "delta_psnr", "delta_psnr_moving") for h in range(1, 7)
    ]
    lam = ["val/psnr", "val/psnr_changed", "val/move_acc", "val/move_majority", "val/move_nmi", "val/usage_0"]
    keys = [
        *dynamics,
        "val/rollout_psnr",
        "val/rollout_psnr_se",
        "val/delta_psnr_t4_se",
        "val/token_acc",
        *lam,
    ]
    assert panels([*keys, "train/loss", "step"]) == {
        "ΔtPSNR, action gain (dB)": [
            "val/delta_psnr_moving_t1",
            "val/delta_psnr_moving_t6",
            "val/delta_psnr_t1",
            "val/delta_psnr_t6",
        ],
        "PSNR (dB)": [
            "val/psnr",
            "val/psnr_changed",
            "val/rollout_psnr",
            "val/rollout_psnr_t1",
            "val/rollout_psnr_t6",
        ],
        "accuracy (majority: chance)": ["val/move_acc", "val/move_majority", "val/token_acc"],
        "NMI with true actions": ["val/move_nmi"],
        "code usage (share)": ["val/usage_0"],
    }


@pytest.mark.skipif(runtime_mod._LIBC is None, reason="glibc's malloc_trim only")
def test_release_free_memory_returns_a_fragmented_heap_to_the_os():
    """What a validation leaves behind: many small freed blocks under one still in use, which glibc keeps."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"))  # its own handle: the signatures set here stay here
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    blocks = [libc.malloc(4096) for _ in range(40_000)]  # ~160 MB on the heap, below the mmap threshold
    for b in blocks:
        ctypes.memset(b, 1, 4096)  # touched: resident
    for b in blocks[:-1]:
        libc.free(b)  # the last block pins the heap's top, so nothing shrinks by itself
    held = runtime_mod.memory_mb(torch.device("cpu"))["mem/anon_mb"]
    runtime_mod.release_free_memory()
    after = runtime_mod.memory_mb(torch.device("cpu"))["mem/anon_mb"]
    libc.free(blocks[-1])
    assert held - after > 100  # MB handed back
