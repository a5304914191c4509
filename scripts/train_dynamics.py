"""Train the dynamics model: a thin wrapper over `genie train dynamics` (same flags)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genie.cli import entry  # noqa: E402

if __name__ == "__main__":
    entry(["train", "dynamics", *sys.argv[1:]])
