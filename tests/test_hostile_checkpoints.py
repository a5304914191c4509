"""A checkpoint is data on every path: a crafted pickle that would run code is refused in one line, by every
command and API that reads checkpoints, and the code it carries never runs."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch

from genie.cli import main
from genie.errors import GenieError


class _Planted:
    """Unpickling this calls open(marker, "w"): with code execution allowed, the marker file appears."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _plant(source: Path, run: Path, marker: Path) -> Path:
    """A copy of the run `source` whose checkpoints carry the payload; the copy's folder."""
    shutil.copytree(source, run)
    for path in run.glob("checkpoint_step_*.pt"):
        state = torch.load(path, weights_only=True)
        state["model"]["payload"] = _Planted(marker)
        torch.save(state, path)
    return run


@pytest.fixture
def hostile(tmp_path: Path, upstream: dict[str, Path]) -> tuple[Path, Path]:
    """A tokenizer run directory (not under a folder named after a stage) whose checkpoint plants a marker."""
    marker = tmp_path / "code_ran"
    return _plant(upstream["tokenizer"], tmp_path / "handed_to_me", marker), marker


def _one_line_refusal(capsys, run: Path) -> None:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "could run code" in err and str(run) in err, err


def test_every_command_refuses_a_checkpoint_that_would_run_code(
    hostile, tmp_path, capsys, pong_dataset, upstream
) -> None:
    run, marker = hostile
    (ckpt,) = sorted(run.glob("checkpoint_step_*.pt"))[-1:]
    data = ["--data_dir", str(pong_dataset.parent), "--dataset", pong_dataset.name, "--quiet"]
    commands = [
        ["train", "tokenizer", "--resume", str(run), *data],
        ["train", "dynamics", "--config", "configs/tiny/dynamics.yaml", "--tokenizer_path", str(ckpt)]
        + ["--lam_path", str(upstream["lam"]), "--output_dir", str(tmp_path / "ck"), *data],
        ["eval", "tokenizer", "--checkpoint", str(run), "--eval_dir", str(tmp_path / "ev")],
        ["play", "--checkpoint", str(ckpt), "--no_browser"],
        ["report", "--runs", str(run), "--out", str(tmp_path / "report"), "--no_gif"],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        _one_line_refusal(capsys, run)
    assert not marker.exists()
    assert not (tmp_path / "ck").exists()  # refused before a run directory was made


def test_a_lam_that_would_run_code_is_refused_by_lam_path_and_eval(tmp_path, capsys, pong_dataset, upstream):
    marker = tmp_path / "code_ran"
    lam = _plant(upstream["lam"], tmp_path / "lam_handed_to_me", marker)
    data = ["--data_dir", str(pong_dataset.parent), "--dataset", pong_dataset.name, "--quiet"]
    commands = [
        ["train", "dynamics", "--config", "configs/tiny/dynamics.yaml"]
        + ["--tokenizer_path", str(upstream["tokenizer"]), "--lam_path", str(lam)]
        + ["--output_dir", str(tmp_path / "ck"), *data],
        ["eval", "lam", "--checkpoint", str(lam), "--eval_dir", str(tmp_path / "ev")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        _one_line_refusal(capsys, lam)
    assert not marker.exists()
    assert not (tmp_path / "ck").exists() and not (tmp_path / "ev").exists()


def test_the_python_entry_points_refuse_it_too(hostile) -> None:
    from genie.training.checkpoint import load_checkpoint
    from genie.world import WorldModels
    from genie.world.env import WorldEnv

    run, marker = hostile
    for load in (load_checkpoint, WorldModels.load, WorldEnv):
        with pytest.raises(GenieError, match="could run code"):
            load(run)
    assert not marker.exists()


def test_truncated_and_foreign_files_are_one_line_each(tmp_path, upstream) -> None:
    from genie.training.checkpoint import load_checkpoint

    (ckpt,) = sorted(upstream["tokenizer"].glob("checkpoint_step_*.pt"))[-1:]
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(GenieError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(GenieError, match="not a genie checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(GenieError, match="is a tokenizer checkpoint, expected a lam"):
        load_checkpoint(ckpt, stage="lam")
    (tmp_path / "empty_run").mkdir()
    with pytest.raises(GenieError, match="holds no checkpoint"):
        load_checkpoint(tmp_path / "empty_run")


def test_a_newer_format_or_a_checkpoint_without_its_config_or_step_is_one_line(tmp_path, upstream, capsys):
    from genie.training.checkpoint import FORMAT_VERSION, load_checkpoint

    (ckpt,) = sorted(upstream["tokenizer"].glob("checkpoint_step_*.pt"))[-1:]
    state = torch.load(ckpt, weights_only=True)
    newer = tmp_path / "newer.pt"
    torch.save({**state, "format_version": FORMAT_VERSION + 1}, newer)
    assert main(["eval", "tokenizer", "--checkpoint", str(newer), "--eval_dir", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(newer) in err, err
    assert f"format_version {FORMAT_VERSION + 1}; this genie reads formats 1 to {FORMAT_VERSION}" in err
    assert not (tmp_path / "ev").exists()
    for key in ("config", "step"):
        partial = tmp_path / f"no_{key}.pt"
        torch.save({k: v for k, v in state.items() if k != key}, partial)
        with pytest.raises(GenieError, match=f"{partial} lacks its {key}: not a complete genie checkpoint"):
            load_checkpoint(partial)


@pytest.mark.parametrize("kind", ["tokenizer", "lam"])
def test_a_swapped_upstream_file_is_refused_by_its_recorded_sha256(
    dynamics_run, pong_dataset, tmp_path, kind
) -> None:
    from genie.inference import upstream_paths
    from genie.world import WorldModels

    run = tmp_path / "dynamics" / "run_copy"
    shutil.copytree(dynamics_run, run)
    swapped = tmp_path / f"retrained_{kind}.pt"  # the same model retrained: other weights, same shapes
    for path in run.glob("checkpoint_step_*.pt"):
        state = torch.load(path, weights_only=True)
        if not swapped.exists():
            original = torch.load(upstream_paths(state["upstream"], path)[kind], weights_only=True)
            weights = original["model"]
            original["model"] = {k: v + 1 if v.is_floating_point() else v for k, v in weights.items()}
            torch.save(original, swapped)
        state["upstream"][kind]["path"] = str(swapped)  # its sha256 stays the one trained on
        torch.save(state, path)
    trained_on = f"was trained on the {kind} {re.escape(str(swapped))} with sha256"
    with pytest.raises(GenieError, match=f"{trained_on} .* restore the {kind} it was trained on"):
        WorldModels.load(run)
    with pytest.raises(GenieError, match=trained_on):
        data = ["--data_dir", str(pong_dataset.parent), "--dataset", pong_dataset.name]
        main_raising(["train", "dynamics", "--resume", str(run), "--max_steps", "3", *data])


def main_raising(argv: list[str]) -> None:
    from genie.cli import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)


def test_a_checkpoint_near_the_filesystem_root_resolves_its_upstream_paths() -> None:
    from genie.inference import upstream_paths

    recorded = {"tokenizer": {"path": "checkpoints/tokenizer/run_x/checkpoint_step_1.pt"}, "actions": "lam"}
    assert upstream_paths(recorded, Path("/world.pt")) == {
        "tokenizer": "checkpoints/tokenizer/run_x/checkpoint_step_1.pt",
        "actions": "lam",
    }
