"""Progress bars that stay readable in a terminal and in a log file (CI, nohup)."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


def progress_bar(*, total: int | None, desc: str, unit: str, disable: bool = False, **kw: Any) -> tqdm:
    """tqdm with live updates on a terminal and one line every 30 s when stderr is a file."""
    interactive = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        disable=disable,
        mininterval=0.5 if interactive else 30.0,
        dynamic_ncols=interactive,
        **kw,
    )
