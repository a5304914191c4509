"""Checkpoints and run directories: written atomically, loaded as data (weights_only=True).

A run directory is `checkpoints/<stage>/run_YYYYMMDD_HHMMSS/` holding config.yaml, metrics.jsonl,
checkpoint_step_N.pt, best.json and loss_curve.png.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import time
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any

import torch
import yaml

from genie.errors import GenieError, cannot_write
from genie.outputs import BEST

FORMAT_VERSION = 2  # 2: optimizer state keyed by parameter name (resumes in any world size)
_STEP = re.compile(r"checkpoint_step_(\d+)\.pt$")


def save_atomic(state: dict, path: Path) -> None:
    """torch.save to a temp file flushed to the disk, then rename: a crash leaves the old file or the new one,
    never half, and a full disk or a refused folder is reported before the old file is touched."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("wb") as f:  # a Python file: a refused write keeps its errno (torch's own writer
            torch.save(state, f)  # turns a full disk into a RuntimeError that names no cause)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # disk full, a read-only or vanished folder: the previous one stays
        tmp.unlink(missing_ok=True)
        raise cannot_write(
            f"checkpoint {path}",
            e,
            f"the previous checkpoint is kept (free space or fix the folder, then --resume {path.parent})",
        ) from None


def write_text_atomic(path: Path, text: str) -> None:
    """A temp file, then rename (as save_atomic): a refused write is one line and leaves the old file."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise cannot_write(str(path), e) from None


def lock_run(run_dir: Path) -> IO[str] | None:
    """Hold run_dir/.lock for as long as this process trains it: a second `--resume` of the same run (or
    one that started training into it) is refused instead of interleaving its checkpoints. The OS drops
    the lock when the process ends, also by kill -9, so a crashed run never stays locked."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; runs are not guarded there
        return None
    handle = (run_dir / ".lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "?"
        handle.close()
        raise GenieError(
            f"{run_dir} is being trained by another process (pid {holder}); wait for it or stop it"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def new_run_dir(root: Path) -> Path:
    """checkpoints/<stage>/run_YYYYMMDD_HHMMSS (a suffix only if two runs start in the same second)."""
    root.mkdir(parents=True, exist_ok=True)
    name = time.strftime("run_%Y%m%d_%H%M%S")
    path, n = root / name, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            path, n = root / f"{name}_{n}", n + 1


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / f"checkpoint_step_{step}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = [
        (int(m.group(1)), p) for p in run_dir.glob("checkpoint_step_*.pt") if (m := _STEP.search(p.name))
    ]
    return sorted(found)


def read_best(run_dir: Path) -> dict | None:
    path = run_dir / BEST
    if not path.is_file():
        return None
    try:
        best = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise GenieError(f"{path}: not valid JSON") from None
    keys = ("step", "metric", "value", "checkpoint")
    if (
        not isinstance(best, dict)
        or not all(k in best for k in keys)
        or not isinstance(best["checkpoint"], str)
    ):
        raise GenieError(
            f"{path}: expected {{step, metric, value, checkpoint, ...}} "
            "(delete it: the next validation writes a new one)"
        )
    return best


def resolve_checkpoint(path: Path, *, prefer: str = "best") -> Path:
    """A checkpoint file as is; a run directory -> its best checkpoint (or latest, by `prefer`)."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.is_dir():
        raise GenieError(f"checkpoint {path} not found (expected a .pt file or a run directory)")
    found = list_checkpoints(path)
    if not found:
        raise GenieError(f"run directory {path} holds no checkpoint_step_N.pt")
    best = read_best(path) if prefer == "best" else None
    if best and (path / Path(best["checkpoint"]).name).is_file():
        return path / Path(best["checkpoint"]).name
    return found[-1][1]


def _first_line(e: BaseException) -> str:
    """The cause in one short line. torch's weights-only refusal opens with advice to load the file with
    code execution on, which is the wrong advice for a file that is not a genie checkpoint: keep its cause."""
    text = str(e).strip()
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:120]


def load_checkpoint(
    path: Path, *, stage: str | None = None, map_location: str | torch.device = "cpu"
) -> dict:
    """Load a checkpoint as data; a missing, corrupt or wrong-stage file is a GenieError."""
    path = resolve_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch warns of pickle protocols it may not read: we say why below
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "Unsupported global" not in str(e):  # torch names the callable a crafted file would call
            raise GenieError(
                f"checkpoint {path} is not readable (corrupt or truncated?): {_first_line(e)}"
            ) from None
        raise GenieError(  # torch's weights_only unpickler met a Python object that is not plain data
            f"checkpoint {path} holds Python objects, not only tensors and plain data: refused, since "
            "loading it could run code (genie checkpoints never hold any)"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise GenieError(
            f"checkpoint {path} is not readable (corrupt or truncated?): {_first_line(e)}"
        ) from None
    _check_entries(state, path, stage)
    state["path"] = str(path)
    return state


def _check_entries(state: Any, path: Path, stage: str | None) -> None:
    """A file that loads is still refused unless this genie can read every entry it holds: one of a newer
    format would otherwise load silently and train or play from fields read the old way."""
    if not isinstance(state, dict) or "stage" not in state or "model" not in state:
        raise GenieError(f"checkpoint {path} is not a genie checkpoint (no stage/model entries)")
    version = state.get("format_version", 1)  # format 1 predates the entry
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise GenieError(
            f"checkpoint {path} has format_version {version!r}; this genie reads formats 1 to "
            f"{FORMAT_VERSION} (a newer genie wrote it: update genie to load it)"
        )
    if stage is not None and state["stage"] != stage:
        raise GenieError(f"checkpoint {path} is a {state['stage']} checkpoint, expected a {stage} checkpoint")
    missing = [key for key in ("config", "step") if key not in state]
    if missing:
        raise GenieError(
            f"checkpoint {path} lacks its {' and '.join(missing)}: not a complete genie checkpoint"
        )


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False))


def load_model_state(model: torch.nn.Module, state: dict, source: str) -> None:
    """load_state_dict, with a shape or key mismatch reported as one line naming the checkpoint."""
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise GenieError(f"checkpoint {source} does not fit this model's shapes: {detail}") from None
