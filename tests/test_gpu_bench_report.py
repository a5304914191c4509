"""benchmarks/gpu_bench.py's report: the GPU run comes back once, so its merge of partial, failed and
skipped parts must not be what breaks."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))  # last: its common.py, data.py

import gpu_bench  # noqa: E402


def test_report_keeps_partial_failed_and_skipped_parts(tmp_path: Path) -> None:
    work, out = tmp_path / "parts", tmp_path / "out"
    work.mkdir()
    (work / "peak.json").write_text(json.dumps({"gpu": "H100", "peak_bf16_gflop_per_s": 800_000.0}))
    run = {"config": "c.yaml", "batch_size": 8, "autocast": "bfloat16", "compile": "off", "steps_timed": 20}
    run |= {"steps_per_s": 2.0, "frames_per_s": 128.0, "gflop_per_step": 100_000.0}
    run |= {"achieved_gflop_per_s": 200_000.0, "peak_mem_gb": 3.5}
    runs = [run, {"batch_size": 64, "error": "out of memory"}]
    (work / "tokenizer_eager.json").write_text(json.dumps({"runs": runs}))
    memory = {"batch_size": 8, "steps": 400, "frames_per_s": 120.0}
    memory["memory_flat"] = {"early_step": 40, "early_mb": 900.0, "last_step": 400, "last_mb": 900.0}
    memory["memory_flat"]["measure"] = "max allocated so far"
    (work / "memory.json").write_text(json.dumps(memory))
    parts = ["peak 0 9 30", "tokenizer_eager 0 40 50", "lam_eager 124 70 70", "lam_compile -1 0 0"]
    (work / "parts.txt").write_text("\n".join(parts) + "\n")

    gpu_bench.report(argparse.Namespace(work=work, out=out))

    table = (out / "gpu.md").read_text()
    assert "| tokenizer | 8 | off | 2.0 | 128.0 | 100000.0 | 200 | 25.0% | 3.5 |" in table
    assert "| tokenizer | 64 | eager |" in table and "out of memory" in table
    assert "| lam | | eager | | | | | | | no result (stopped at its time cap) |" in table
    assert "lam_compile 0/0 s exit -1" in table
    assert "step 40 900.0 MB, step 400 900.0 MB" in table
    merged = json.loads((out / "gpu.json").read_text())
    assert merged["parts"]["lam_eager"]["hit_cap"] and merged["gpu"] == "H100"
