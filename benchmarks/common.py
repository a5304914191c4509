"""What every benchmark records about the machine next to its numbers, and how it prints and saves them."""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path

import torch


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
