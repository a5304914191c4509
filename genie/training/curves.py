"""loss_curve.png, drawn from metrics.jsonl so it can be redrawn at any time (`genie plot RUN_DIR`).

The loop redraws it at every save in a child process (`plot_run_apart`): matplotlib's import, font cache
and figure stay out of the training process, whose memory would otherwise step up by ~25 MB at the first
save, for good (benchmarks/README.md, `benchmarks/loop_memory.py`). `genie plot RUN_DIR` draws it in its
own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from genie import metric_keys as mk
from genie.errors import GenieError, cannot_write
from genie.outputs import LOSS_CURVE
from genie.training.metrics_log import read_metrics

# one panel per metric family (first match on the key wins), so no axis mixes units or holds twenty lines
PANELS = (
    ("ΔtPSNR, action gain (dB)", ("delta_psnr", "action_gain")),
    ("PSNR (dB)", ("psnr",)),
    ("accuracy (majority: chance)", ("_acc", "_majority")),
    ("NMI with true actions", ("_nmi",)),
    ("code usage (share)", ("usage_",)),
    ("object recall, SSIM", ("recall", "ssim")),
    ("codebook", ("perplexity", "codes_used", "dead_codes")),
    ("action spread", ("action_std", "action_cos_dist")),
)
REFERENCES = ("background", "majority", "shuffled", "copy_")  # drawn dashed: what a number is read against


def panels(keys: Iterable[str]) -> dict[str, list[str]]:
    """Validation keys grouped by PANELS (the rest under "other"), in order. Per-horizon keys only at the
    first and the last step (ΔtPSNR at every step is the report's table); standard errors stay in the JSON."""
    keys = sorted({k for k in keys if k.startswith("val/") and not k.endswith(mk.SE)})
    steps = mk.horizons(keys)
    ends = {steps[0], steps[-1]} if steps else set()
    keys = [k for k in keys if (h := mk.horizon_of(k)) is None or h in ends]
    out: dict[str, list[str]] = {}
    for k in keys:
        title = next((t for t, parts in PANELS if any(p in k for p in parts)), "other")
        out.setdefault(title, []).append(k)
    order = [t for t, _ in PANELS] + ["other"]
    return {t: out[t] for t in order if t in out}


def plot_run(run_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise GenieError(f"{run_dir}: no metrics.jsonl rows to plot")
    train = [r for r in rows if r.get("train/loss") is not None]
    groups = panels(k for r in rows for k in r if isinstance(r[k], int | float))
    n = 1 + len(groups)
    cols = min(3, n)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(5 * cols, 3.4 * -(-n // cols)), squeeze=False)
    ax = axes.flat[0]
    ax.plot([r["step"] for r in train], [r["train/loss"] for r in train], label="train/loss")
    ax.set_yscale("log")
    ax.set_title(f"{run_dir.parent.name}/{run_dir.name}", fontsize=9)
    for ax, (title, keys) in zip(axes.flat[1:], groups.items(), strict=False):
        for k in keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), int | float)]
            style = "--" if any(p in k for p in REFERENCES) else "-"
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3, ls=style, label=k[len("val/") :])
        ax.set_title(f"validation: {title}", fontsize=9)
    for ax in axes.flat[:n]:
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    for ax in axes.flat[n:]:
        ax.axis("off")
    fig.tight_layout()
    out = run_dir / LOSS_CURVE
    tmp = out.with_name(f"{out.stem}.tmp{out.suffix}")
    try:
        fig.savefig(tmp, dpi=100)
        tmp.replace(out)
    except OSError as e:  # a full disk or a read-only folder: the previous curve stays
        tmp.unlink(missing_ok=True)
        raise cannot_write(str(out), e) from None
    finally:
        plt.close(fig)
    return out


def plot_run_apart(run_dir: Path) -> Path:
    """plot_run in a child process of its own session (a Ctrl-C meant for training does not kill it); its
    failure is the same one line (`GenieError`) as in-process."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-m", __name__, str(run_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": path},
        start_new_session=True,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise GenieError(
            lines[-1] if lines else f"drawing {run_dir / LOSS_CURVE} failed (exit {done.returncode})"
        )
    return Path(done.stdout.strip())


if __name__ == "__main__":
    try:
        print(plot_run(Path(sys.argv[1])))
    except GenieError as e:
        sys.exit(str(e))
