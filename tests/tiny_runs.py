"""The smallest real configs of the three stages, for tests that need trained (2-step) runs."""

from __future__ import annotations

from pathlib import Path

import yaml

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


def write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path
