"""Bad input everywhere, as one table: every command, run as a user runs it, with a bad value.

Each row: the command line (built in a sandbox holding a good dataset and good tiny runs) and a phrase of
the one line it must answer with. For every row: a non-zero exit, exactly one `error:` line on stderr (or
argparse's usage and its one error line), no traceback, and nothing half-written (no run directory, no
dataset, no evaluation folder). docs/errors.md holds the same table for users.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml
from tiny_runs import DYNAMICS, LAM, TOKENIZER

from genie.cli import main


def _config(box: Path, name: str, base: dict, **changes: dict) -> str:
    data = yaml.safe_load(yaml.safe_dump(base))
    for section, values in changes.items():
        data.setdefault(section, {}).update(values)
    path = box / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _train(box: Path, stage: str, config: str, *extra: str, dataset: str = "pong") -> list[str]:
    data = ["--data_dir", str(box / "data"), "--dataset", dataset, "--output_dir", str(box / "out")]
    return ["train", stage, "--config", config, *data, "--eval_dir", str(box / "evals"), "--quiet", *extra]


def _garbage(box: Path) -> str:
    path = box / "garbage.pt"
    path.write_bytes(b"\x80\x04 not a checkpoint at all")
    return str(path)


def _broken_pngs(box: Path) -> str:
    folder = box / "pngs"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i:03d}.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return str(folder)


def _empty_folder(box: Path) -> str:
    (box / "empty").mkdir()
    return str(box / "empty")


def _corrupt_npz(box: Path) -> str:
    path = box / "frames.npz"
    path.write_bytes(b"PK\x03\x04 not a zip")
    return str(path)


def _truncated_npy_dataset(box: Path) -> list[str]:
    broken = box / "broken" / "pong"
    shutil.copytree(box / "data" / "pong", broken)
    frames = next(p for p in broken.glob("*.npy") if "frame" in p.name)
    frames.write_bytes(frames.read_bytes()[: frames.stat().st_size // 2])
    return ["--data_dir", str(box / "broken"), "--dataset", "pong"]


ROWS = {
    # configs
    "unknown config key": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER, training={"max_lrr": 1e-3})),
        "max_lrr",
    ),
    "ill-typed config value": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER, training={"max_steps": "many"})),
        "max_steps",
    ),
    "zero batch size": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER, data={"batch_size": 0})),
        "batch_size",
    ),
    "negative learning rate": (
        lambda b, r: _train(b, "lam", _config(b, "c", LAM, training={"max_lr": -1.0})),
        "max_lr",
    ),
    "sequence_length 1": (
        lambda b, r: _train(b, "lam", _config(b, "c", LAM, data={"sequence_length": 1})),
        "sequence_length",
    ),
    "frame not divisible by the patch": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER, model={"patch_size": 7})),
        "patch",
    ),
    "a batch that does not split into micro-batches": (
        lambda b, r: _train(
            b, "tokenizer", _config(b, "c", TOKENIZER), "--batch_size", "3", "--grad_accum", "2"
        ),
        "grad_accum",
    ),
    "a config file that is missing": (lambda b, r: _train(b, "tokenizer", str(b / "nope.yaml")), "not found"),
    "a config that is a folder": (
        lambda b, r: _train(b, "tokenizer", _empty_folder(b)),
        "is a folder, not a YAML file",
    ),
    "a config that is not YAML": (
        lambda b, r: _train(b, "tokenizer", _garbage(b)),
        "not a text file",
    ),
    # paths, devices, flags
    "a dataset that does not exist": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER), dataset="nosuch"),
        "'nosuch' not found",
    ),
    "a dataset with a truncated .npy": (
        lambda b, r: (
            ["train", "tokenizer", "--config", _config(b, "c", TOKENIZER), *_truncated_npy_dataset(b)]
            + ["--output_dir", str(b / "out"), "--quiet"]
        ),
        "re-create the dataset",
    ),
    "--data_dir that is a file": (
        lambda b, r: [
            "train",
            "tokenizer",
            "--config",
            _config(b, "c", TOKENIZER),
            "--data_dir",
            _garbage(b),
        ],
        "not a folder",
    ),
    "a device that does not exist": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER), "--device", "tpu"),
        "invalid choice",
    ),
    "cuda on a machine without a GPU": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER), "--device", "cuda"),
        "cuda",
    ),
    "--max_steps 0": (
        lambda b, r: _train(b, "tokenizer", _config(b, "c", TOKENIZER), "--max_steps", "0"),
        "positive",
    ),
    "--label_fraction above 1": (
        lambda b, r: _train(b, "lam", _config(b, "c", LAM), "--label_fraction", "1.5"),
        "label_fraction",
    ),
    # checkpoints
    "--tokenizer_path that does not exist": (
        lambda b, r: _train(
            b, "dynamics", _config(b, "c", DYNAMICS), "--tokenizer_path", str(b / "missing.pt")
        ),
        "not found",
    ),
    "--tokenizer_path that is garbage": (
        lambda b, r: _train(b, "dynamics", _config(b, "c", DYNAMICS), "--tokenizer_path", _garbage(b)),
        "not readable",
    ),
    "a LAM passed as the tokenizer": (
        lambda b, r: _train(b, "dynamics", _config(b, "c", DYNAMICS), "--tokenizer_path", str(r["lam"])),
        "is a lam checkpoint",
    ),
    "--resume of a folder with no checkpoint": (
        lambda b, r: ["train", "tokenizer", "--resume", _empty_folder(b), "--data_dir", str(b / "data")],
        "holds no checkpoint_step",
    ),
    "eval of another stage's checkpoint": (
        lambda b, r: (
            ["eval", "tokenizer", "--checkpoint", str(r["lam"]), "--data_dir", str(b / "data")]
            + ["--eval_dir", str(b / "evals")]
        ),
        "is a lam checkpoint, expected a tokenizer",
    ),
    # data
    "collect an unknown game": (
        lambda b, r: ["collect", "nosuchgame", "--data_dir", str(b / "new")],
        "unknown ALE game",
    ),
    "ingest a path that does not exist": (
        lambda b, r: ["ingest", str(b / "missing.mp4"), "--dataset", "v", "--data_dir", str(b / "new")],
        "does not exist",
    ),
    "ingest an empty folder": (
        lambda b, r: ["ingest", _empty_folder(b), "--dataset", "v", "--data_dir", str(b / "new")],
        "found nothing to ingest",
    ),
    "ingest a folder of broken PNGs": (
        lambda b, r: ["ingest", _broken_pngs(b), "--dataset", "v", "--data_dir", str(b / "new")],
        "cannot read image",
    ),
    "ingest a corrupt NPZ": (
        lambda b, r: ["ingest", _corrupt_npz(b), "--dataset", "v", "--data_dir", str(b / "new")],
        "not a zip file",
    ),
    # play
    "play --port 70000": (
        lambda b, r: ["play", "--checkpoint", str(r["dynamics"]), "--port", "70000", "--no_browser"],
        "65535",
    ),
    "play --fps 0": (
        lambda b, r: (
            ["play", "--checkpoint", str(r["dynamics"]), "--fps", "0", "--no_browser"]
            + ["--data_dir", str(b / "data"), "--record_dir", str(b / "rec")]
        ),
        "fps",
    ),
    "play --steps 0": (
        lambda b, r: ["play", "--checkpoint", str(r["dynamics"]), "--steps", "0", "--no_browser"],
        "positive",
    ),
    "play --temperature -1": (
        lambda b, r: ["play", "--checkpoint", str(r["dynamics"]), "--temperature", "-1", "--no_browser"],
        "temperature",
    ),
    "play --temperature inf": (
        lambda b, r: ["play", "--checkpoint", str(r["dynamics"]), "--temperature", "inf", "--no_browser"],
        "finite",
    ),
    "play a tokenizer checkpoint": (
        lambda b, r: [
            "play",
            "--checkpoint",
            str(r["tokenizer"]),
            "--no_browser",
            "--data_dir",
            str(b / "data"),
        ],
        "expected a dynamics checkpoint",
    ),
    # report and plot
    "report --out that is a file": (
        lambda b, r: ["report", "--runs", str(r["tokenizer"]), "--out", _garbage(b), "--no_gif"],
        "is a file, not a folder",
    ),
    "report --runs of a folder that is not a run": (
        lambda b, r: ["report", "--runs", _empty_folder(b), "--out", str(b / "report"), "--no_gif"],
        "not a run directory",
    ),
    "report with no runs under --checkpoints": (
        lambda b, r: ["report", "--checkpoints", _empty_folder(b), "--out", str(b / "report")],
        "no runs found",
    ),
    "report --eval_dir that is a file": (
        lambda b, r: ["report", "--runs", str(r["tokenizer"]), "--eval_dir", _garbage(b)],
        "is a file, not a folder",
    ),
    "plot a folder that is not a run": (lambda b, r: ["plot", _empty_folder(b)], "no metrics.jsonl rows"),
}


@pytest.fixture(scope="module")
def runs(upstream, dynamics_run) -> dict[str, Path]:
    return {"tokenizer": upstream["tokenizer"], "lam": upstream["lam"], "dynamics": dynamics_run}


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_one_line_and_leaves_nothing(row, runs, pong_dataset, tmp_path, capsys, monkeypatch):
    if row == "cuda on a machine without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    monkeypatch.chdir(tmp_path)  # anything written to a default folder would show up here
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "pong").symlink_to(pong_dataset)
    argv, phrase = ROWS[row][0](tmp_path, runs), ROWS[row][1]
    before, dataset_before = set(tmp_path.rglob("*")), _listing(pong_dataset)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage + one error line
        code = e.code
    err = capsys.readouterr().err
    assert code not in (0, None), f"{row}: exit 0"
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    if not errors[0].startswith("genie "):  # not argparse's (usage, then its error line): one line in all
        assert err.strip() == errors[0], err
    assert phrase.lower() in errors[0].lower(), errors[0]
    left = sorted(str(p.relative_to(tmp_path)) for p in set(tmp_path.rglob("*")) - before)
    assert not left, f"{row}: left {left}"
    assert _listing(pong_dataset) == dataset_before, f"{row}: changed the dataset it was given"


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
