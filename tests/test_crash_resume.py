"""Runs stopped the ways users stop them: kill -9 (then --resume), SIGTERM, Ctrl-C, and a kill mid-save.

Each run is a real `genie train` subprocess on the real Pong fixture, at the smallest model size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from tiny_runs import TOKENIZER, write

from genie.training.metrics_log import read_metrics

pytestmark = pytest.mark.slow

STEPS = 16
CONFIG = {
    **TOKENIZER,
    "training": {
        **TOKENIZER["training"],
        "max_steps": STEPS,
        "save_every": 4,
        "eval_every": 4,
        "log_every": 2,
        "keep_checkpoints": 0,
    },
}


def _train(dataset: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "genie.cli", "train", "tokenizer", *args]
    cmd += ["--data_dir", str(dataset.parent), "--dataset", dataset.name, "--no_eval", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # bitwise-equal runs across processes
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _wait_for_step(run_root: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> Path:
    """Poll until some run under run_root has logged `step` (the process still running)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in run_root.glob("tokenizer/run_*"):
            if any(r.get("step", 0) >= step for r in read_metrics(run)):
                return run
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError(f"no step {step} within {timeout} s")


def _final_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / f"checkpoint_step_{STEPS}.pt", weights_only=True)["model"]


def test_kill_9_then_resume_equals_an_uninterrupted_run(pong_dataset, tmp_path) -> None:
    config = str(write(tmp_path / "tokenizer.yaml", CONFIG))
    plain = _train(pong_dataset, "--config", config, "--output_dir", str(tmp_path / "plain"))
    assert plain.wait(timeout=300) == 0, plain.communicate()

    killed_root = tmp_path / "killed"
    proc = _train(pong_dataset, "--config", config, "--output_dir", str(killed_root))
    run = _wait_for_step(killed_root, 6, proc)  # past the step-4 checkpoint, before the step-8 one
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # the state a kill in the middle of a save leaves: a temp file, and a metrics line cut mid-write
    (run / f"checkpoint_step_{STEPS}.pt.tmp").write_bytes(b"half a checkpoint")
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 7, "train/lo')
    for stop_at in (11, None):  # killed once more, then left to finish
        proc = _train(pong_dataset, "--resume", str(run))
        if stop_at is not None:
            _wait_for_step(killed_root, stop_at, proc)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.wait(timeout=300) == 0, proc.communicate()

    (plain_run,) = (tmp_path / "plain" / "tokenizer").iterdir()
    ours, theirs = _final_weights(run), _final_weights(plain_run)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    rows = read_metrics(run)
    train_steps = [r["step"] for r in rows if "train/loss" in r]
    assert train_steps == list(range(2, STEPS + 1, 2))  # each logged step once, none missing
    assert [r["step"] for r in rows if "val/psnr" in r] == [4, 8, 12, 16]
    assert len(rows) == len((run / "metrics.jsonl").read_text().splitlines())  # no unreadable line
    assert not list(run.glob("*.tmp"))
    best = json.loads((run / "best.json").read_text())
    assert (run / best["checkpoint"]).is_file()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_the_current_step_then_stop(pong_dataset, tmp_path, signum) -> None:
    long = {**CONFIG["training"], "max_steps": 10**6, "save_every": 10**6}  # no periodic save
    config = str(write(tmp_path / "tokenizer.yaml", {**CONFIG, "training": long}))
    proc = _train(pong_dataset, "--config", config, "--output_dir", str(tmp_path / "ck"))
    run = _wait_for_step(tmp_path / "ck", 3, proc)  # between checkpoints
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum
    (line,) = err.strip().splitlines()
    step = int(line.split(" at step ")[1].split(":")[0])
    assert line.startswith(f"stopped: {signal.Signals(signum).name} at step {step}: saved ")
    assert [p.name for p in run.glob("*.pt")] == [f"checkpoint_step_{step}.pt"]  # written by the stop
    assert f"--resume {run}" in line
    proc = _train(pong_dataset, "--resume", str(run), "--max_steps", str(step + 1))
    assert proc.wait(timeout=120) == 0, proc.communicate()
    assert (run / f"checkpoint_step_{step + 1}.pt").is_file()
