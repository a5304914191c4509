"""The smallest real configs of the three stages, shared by the tests: 2-step presets for the fixtures'
trained runs, 6-step ones for the tests of the loop and the stages, `variant` to change a few keys, and
`train_by_cli` to train one as a user does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from genie.cli import main
from genie.config import LamConfig, TokenizerConfig, config_from_dict

SMALL = {"num_layers": 1, "d_model": 32, "num_heads": 2}
TOKENIZER = {
    "model": {
        "encoder": SMALL,
        "decoder": SMALL,
        "codebook": {"num_codes": 32, "latent_dim": 8},
        "patch_size": 8,
    },
    "data": {"sequence_length": 4, "batch_size": 2},
    "training": {"max_steps": 2, "warmup_steps": 1, "eval_every": 2, "save_every": 2, "eval_batches": 1},
}
# the LAM: the same small sizes, with 3 action codes
LAM = {**TOKENIZER, "model": {**TOKENIZER["model"], "codebook": {"num_codes": 3, "latent_dim": 8}}}
DYNAMICS = {
    "model": {
        "architecture": {**SMALL, "qk_normalization": True},
        "token_embedding": {"vocab_size": 32},
        "action_embedding": {"num_actions": 3},
    },
    "data": {"sequence_length": 4, "batch_size": 2},
    "training": {
        "max_steps": 2,
        "warmup_steps": 1,
        "eval_every": 2,
        "save_every": 2,
        "eval_batches": 1,
        "eval_rollouts": 2,
        "eval_play_frames": 70,  # reaches the second window (frames 65-256) of the long-play counts
    },
    "inference": {"maskgit_steps": 2, "temperature": 1.0},
}


# the loop's tests: 6 steps, a validation of 2 batches and a checkpoint every 3, a metrics row every step
LOOP = {
    "max_lr": 3e-3,
    "min_lr": 3e-4,
    "warmup_steps": 2,
    "max_steps": 6,
    "save_every": 3,
    "eval_every": 3,
    "log_every": 1,
    "eval_batches": 2,
}
LOOP_TOKENIZER = {**TOKENIZER, "training": LOOP}
# the LAM's: patches of 16 and a decoder that sees 2 frames
LOOP_LAM = {**LAM, "model": {**LAM["model"], "patch_size": 16, "decoder_context": 2}, "training": LOOP}


def variant(
    preset: dict, *, model: dict | None = None, data: dict | None = None, **training: Any
) -> dict[str, Any]:
    """A copy of `preset` with some keys of its model, data and training sections replaced. The copy shares
    no part with the preset (used by every test) nor within itself (the encoder and decoder are one dict
    in the preset)."""
    out = json.loads(json.dumps(preset))
    out["model"].update(model or {})
    out["data"].update(data or {})
    out["training"].update(training)
    return out


def tokenizer_config(**training: Any) -> TokenizerConfig:
    """LOOP_TOKENIZER as a config, with `training` keys replaced."""
    return config_from_dict(TokenizerConfig, variant(LOOP_TOKENIZER, **training), "tiny")


def lam_config(**training: Any) -> LamConfig:
    """LOOP_LAM as a config, with `training` keys replaced."""
    return config_from_dict(LamConfig, variant(LOOP_LAM, **training), "tiny")


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def data_args(dataset: Path) -> list[str]:
    """The flags that point a command at `dataset` (a folder DATA_DIR/NAME), without a progress bar."""
    return ["--data_dir", str(dataset.parent), "--dataset", dataset.name, "--quiet"]


def train_args(stage: str, config: dict, dataset: Path, out: Path) -> list[str]:
    """`genie train STAGE` on `dataset` with `config` (written to OUT/STAGE.yaml), runs under OUT/ck/ and
    evaluations under OUT/ev/."""
    path = write(out / f"{stage}.yaml", config)
    return [
        "train",
        stage,
        "--config",
        str(path),
        *data_args(dataset),
        "--output_dir",
        str(out / "ck"),
        "--eval_dir",
        str(out / "ev"),
    ]


def train_by_cli(stage: str, config: dict, dataset: Path, out: Path, *flags: str) -> tuple[Path, Path]:
    """Train `stage` as a user does (see `train_args`, plus `flags`); its run directory and the stage's
    evaluation folder."""
    assert main([*train_args(stage, config, dataset, out), *flags]) == 0
    (run,) = (out / "ck" / stage).iterdir()
    return run, out / "ev" / stage
