"""One `log(metrics, step)` for every sink: metrics.jsonl always, TensorBoard when it is installed."""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path

from genie.errors import cannot_write
from genie.outputs import METRICS_LOG


class MetricsLog:
    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        """resume_step: the step of the checkpoint a resumed run restarts from. Rows logged after it (the
        steps a killed run made past its last checkpoint, about to be made again) and a line cut by the
        kill are dropped first, so every step appears once."""
        self.path = run_dir / METRICS_LOG
        try:
            if resume_step is not None and self.path.is_file():
                self._keep_rows_up_to(resume_step)
            self.has_rows = self.path.is_file() and self.path.stat().st_size > 0
            self._file = self.path.open("a", buffering=1)  # line-buffered: a crash loses at most one line
        except OSError as e:  # a full disk or a read-only folder
            raise cannot_write(str(self.path), e) from None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        except ImportError:  # tensorboard is optional
            self._tb = None

    def _keep_rows_up_to(self, step: int) -> None:
        """Rewrite metrics.jsonl with the rows up to `step`, atomically: a kill here keeps the old file."""
        kept = [row for row in read_metrics(self.path.parent) if row.get("step", 0) <= step]
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text("".join(json.dumps(row) + "\n" for row in kept))
            os.replace(tmp, self.path)
        finally:  # gone after the rename; a refused write leaves none
            tmp.unlink(missing_ok=True)

    def log(self, metrics: dict[str, float], step: int) -> None:
        row = {"step": step, **{k: (v if math.isfinite(v) else None) for k, v in metrics.items()}}
        try:
            self._file.write(json.dumps(row) + "\n")
        except OSError as e:  # a full disk: the rows since the last checkpoint are logged again on resume
            raise cannot_write(str(self.path), e) from None
        self.has_rows = True
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        """A row the disk refused was reported by log(); its buffered copy fails again here, unsaid."""
        with contextlib.suppress(OSError):
            self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS_LOG
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut by a crash
        if isinstance(row, dict) and isinstance(row.get("step"), int):
            rows.append(row)
    return rows
