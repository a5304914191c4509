"""What every benchmark records about the machine next to its numbers, and how it prints and saves them."""

from __future__ import annotations

import datetime
import json
import os
import platform
import tempfile
from pathlib import Path

import torch

# The demo's LAM is few-label: one labelled training episode of Pong's 40 (`make demo`'s LABELS=1).
DEMO_LABEL_FRACTION = 0.025


def machine(benchmark: str, device: str) -> dict[str, object]:
    """The header of a results file: what ran, where, when, and how busy the machine was."""
    return {
        "benchmark": benchmark,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_before": os.getloadavg()[0],  # other jobs on the machine skew the numbers
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def save(results: dict[str, object], path: Path, *, width: int, digits: int) -> None:
    """Print the results as a table (floats to `digits` places) and write them to `path` as JSON. Nested
    dicts go to the JSON only: their benchmark prints its own lines for them."""
    for key, value in results.items():
        if isinstance(value, dict):
            continue
        print(f"{key:{width}s} {value:.{digits}f}" if isinstance(value, float) else f"{key:{width}s} {value}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {path}")


def dynamics_upstream(tokenizer: Path, lam: Path | None = None) -> dict:
    """The dynamics stage's frozen inputs: a tokenizer run, and a LAM run's codes or, without one, the true
    actions."""
    return {"tokenizer": tokenizer, "lam": lam, "actions": "lam" if lam else "true"}


def build_trainer(stage_name: str, config, data_dir: Path, device: str = "cpu", upstream: dict | None = None):
    """The real training loop of one stage on Pong (a throwaway run directory), ready to step."""
    from genie.data.clips import ClipDataset
    from genie.data.collect import ensure_dataset
    from genie.data.store import EpisodeStore
    from genie.stages.registry import stage_class
    from genie.training.loop import Trainer
    from genie.training.runtime import setup_runtime

    rt = setup_runtime(device, config.training.mixed_precision)
    d = config.data
    store = EpisodeStore.open(ensure_dataset(data_dir, "pong", height=d.height, width=d.width))
    stage = stage_class(stage_name)(config, store, rt.device, **({"upstream": upstream} if upstream else {}))
    T = config.data.sequence_length
    return Trainer(
        stage,
        config,
        rt,
        train_set=ClipDataset(store, "train", T),
        val_set=ClipDataset(store, "val", T, stride=T),
        run_root=Path(tempfile.mkdtemp()),
        progress=False,
    )


def training_step(trainer, data) -> None:
    """One step as the loop runs it: forward/backward, the finiteness check, optimizer, after_step."""
    totals, _ = trainer.train_step(data)
    torch.isfinite(totals["loss"]).item()
    trainer.scaler.step(trainer.optimizer)
    trainer.scaler.update()
    trainer.scheduler.step()
    trainer.stage.after_step(trainer.model, trainer.rt, torch.Generator().manual_seed(0))


def one_step_runs(configs: dict[str, Path], device: str, data_dir: Path) -> dict[str, Path]:
    """One-step runs of the given stages, in order (speed does not depend on trained weights): the
    tokenizer and LAM first, so that a dynamics run in `configs` trains on them."""
    from genie.cli import main as genie

    root, runs = Path(tempfile.mkdtemp()), {}
    for stage, config in configs.items():
        argv = ["train", stage, "--config", str(config), "--max_steps", "1", "--device", device]
        argv += ["--data_dir", str(data_dir), "--output_dir", str(root), "--no_eval", "--quiet"]
        if stage == "dynamics":
            argv += ["--tokenizer_path", str(runs["tokenizer"]), "--lam_path", str(runs["lam"])]
        assert genie(argv) == 0, argv
        runs[stage] = next((root / stage).glob("run_*"))
    return runs
