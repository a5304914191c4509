"""Data pipeline speed: ALE collection frames/s (with and without the identifiability probe) and
ClipDataset loading clips/s through a DataLoader (0 and 2 workers).

    .venv/bin/python benchmarks/data.py [--frames 3000] [--batches 100]

Prints a table and writes benchmarks/results/data.json (with versions, CPU count and date).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, save
from torch.utils.data import DataLoader

from genie.data.clips import ClipDataset
from genie.data.collect import collect

RESULTS = Path(__file__).parent / "results" / "data.json"


def bench_collect(data_dir: Path, frames: int, probe: bool) -> tuple[Path, float]:
    start = time.perf_counter()
    root = collect(
        "pong", data_dir, dataset=f"pong_probe{int(probe)}", frames=frames, episode_frames=500, probe=probe,
        progress=False,
    )  # fmt: skip
    return root, frames / (time.perf_counter() - start)


def bench_loader(root: Path, workers: int, batches: int, clip_len: int = 8, batch_size: int = 8) -> float:
    dataset = ClipDataset(root, "train", clip_len=clip_len)
    sampler = torch.utils.data.RandomSampler(dataset, num_samples=batches * batch_size, replacement=True)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)
    iterator = iter(loader)
    next(iterator)  # workers started, first batch out: not timed
    start, clips = time.perf_counter(), 0
    for batch in iterator:
        clips += len(batch["frames"])
    return clips / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3000, help="frames to collect per measurement")
    parser.add_argument("--batches", type=int, default=100, help="DataLoader batches to time")
    args = parser.parse_args()

    import ale_py

    results = machine("data", "cpu")
    results |= {
        "numpy": np.__version__,
        "ale_py": ale_py.__version__,
        "frames": args.frames,
        "resolution": "72x128",
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, results["collect_fps_with_probe"] = bench_collect(Path(tmp), args.frames, probe=True)
        root, results["collect_fps_without_probe"] = bench_collect(Path(tmp), args.frames, probe=False)
        for workers in (0, 2):
            results[f"loader_clips_per_s_T8_B8_workers{workers}"] = bench_loader(root, workers, args.batches)
        # in-process collate (torch.stack) uses intra-op threads: on a busy machine one thread can be faster
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        results["loader_clips_per_s_T8_B8_workers0_1thread"] = bench_loader(root, 0, args.batches)
        torch.set_num_threads(threads)

    save(results, RESULTS, width=44, digits=1)


if __name__ == "__main__":
    main()
