"""Train the latent action model: a thin wrapper over `genie train lam` (same flags)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from genie.cli import entry  # noqa: E402

if __name__ == "__main__":
    entry(["train", "lam", *sys.argv[1:]])
