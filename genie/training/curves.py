"""loss_curve.png, drawn from metrics.jsonl so it can be redrawn at any time (`genie plot RUN_DIR`).

The loop redraws it at every save; matplotlib is imported only when drawing, so importing the loop
(and `genie --help`) stays fast.
"""

from __future__ import annotations

from pathlib import Path

from genie.errors import GenieError, cannot_write
from genie.outputs import LOSS_CURVE
from genie.training.metrics_log import read_metrics


def plot_run(run_dir: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    if not rows:
        raise GenieError(f"{run_dir}: no metrics.jsonl rows to plot")
    train = [r for r in rows if r.get("train/loss") is not None]
    shown = [k for r in rows for k in r if k.startswith("val/") and isinstance(r[k], int | float)]
    val_keys = sorted({k for k in shown if not k.endswith("_se")})  # standard errors stay in the JSON
    fig, axes = plt.subplots(1, 1 + bool(val_keys), figsize=(6 + 5 * bool(val_keys), 4), squeeze=False)
    ax = axes[0, 0]
    ax.plot([r["step"] for r in train], [r["train/loss"] for r in train], label="train/loss")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_title(f"{run_dir.parent.name}/{run_dir.name}")
    ax.legend()
    if val_keys:
        ax = axes[0, 1]
        unit = ax.twinx()  # dB on the left, shares in [0, 1] on the right
        for k in val_keys:
            pts = [(r["step"], r[k]) for r in rows if isinstance(r.get(k), int | float)]
            target = ax if "psnr" in k else unit
            target.plot(*zip(*pts, strict=True), marker="o", ms=3, label=k, ls="-" if target is ax else "--")
        ax.set_xlabel("step")
        ax.set_ylabel("dB")
        ax.set_title("validation")
        for axis, corner in ((ax, "upper left"), (unit, "lower right")):
            if axis.get_legend_handles_labels()[0]:  # a run may log only dB or only shares
                axis.legend(loc=corner, fontsize=7)
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
