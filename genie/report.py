"""`genie report`: one HTML page (and the same numbers as JSON) for a tokenizer, LAM and dynamics run.

It opens with a summary read in ten seconds: per stage the headline numbers beside their references,
marked good / not yet against a stated bar (genie.evaluation.headline). Then for each stage: its loss
curve, best validation step, the metrics of its latest evaluation, the eval videos; for the LAM the
confusion matrix and code usage; for the dynamics model the rollout PSNR per horizon step and ΔtPSNR;
and a GIF of the world played with scripted keys, with its measured speed.
Assets are copied beside report.html, so the folder can be moved or shared as it is.

An app at the top, beside cli.py: it reads the runs and evaluations the stages wrote and plays the world
(genie.world), so nothing below it imports it.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from genie import metric_keys as mk
from genie.errors import GenieError
from genie.evaluation.headline import Headline, headlines
from genie.evaluation.long_play import LONG_HORIZON, LONG_MEASURED, WINDOWS
from genie.outputs import LOSS_CURVE, METRICS_LOG, STAGES, eval_files, eval_glob
from genie.training.checkpoint import load_checkpoint, read_best
from genie.world import World, WorldModels
from genie.world.control import control_rate

ASSETS_MARK = ".written_by_genie_report"
PLAY_SCRIPT = [("up", 12), ("stay", 6), ("down", 12), ("stay", 6), ("up", 8), ("down", 8)]  # 52 frames


def latest_run(checkpoints: Path, stage: str) -> Path | None:
    runs = sorted(p for p in (checkpoints / stage).glob("run_*") if (p / METRICS_LOG).is_file())
    return runs[-1] if runs else None


def stage_of(run: Path) -> str:
    if run.parent.name in STAGES:
        return run.parent.name
    ckpt = next(iter(sorted(run.glob("checkpoint_step_*.pt"))), None)
    if ckpt is not None:  # loaded as data, like every checkpoint (a crafted file must not run code)
        return str(load_checkpoint(ckpt)["stage"])
    raise GenieError(f"{run} is not a run directory of a stage (expected checkpoints/<stage>/run_*)")


def latest_eval(eval_dir: Path, stage: str, run: Path) -> tuple[Path, dict] | None:
    """The evaluation JSON of this run with the highest step."""
    found = []
    pattern = eval_glob(stage)
    for path in [*eval_dir.glob(f"{stage}/{pattern}"), *eval_dir.glob(f"{stage}/runs/{run.name}/{pattern}")]:
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        ckpt = str(data.get("checkpoint") or "")
        if ckpt and Path(ckpt).resolve().parent == run.resolve():
            found.append((int(data.get("step", 0)), path, data))
    if not found:
        return None
    _, path, data = max(found, key=lambda f: f[0])
    return path, data


def _videos(stage: str, json_path: Path) -> list[Path]:
    files = eval_files(stage, json_path.parent, json_path.stem)
    return [p for p in (files.video, files.extra) if p.is_file()]


def play_gif(models: WorldModels, out: Path) -> dict[str, Any]:
    """Play the world with PLAY_SCRIPT's keys from a fixed prompt; save a GIF, return the timing."""
    from PIL import Image

    world = World(models, seed=0)
    keys = models.actions.keys
    frames = [world.reset()]
    latencies, played = [], []
    for label, n in PLAY_SCRIPT:
        code = keys.get(label, keys.get("stay", 0))
        for _ in range(n):
            frames.append(world.step(code))
            latencies.append(world.latency_ms)
            played.append(label if label in keys else "stay")
    scale = 3
    images = [Image.fromarray(f.repeat(scale, 0).repeat(scale, 1)) for f in frames]
    fps = models.trained.fps
    images[0].save(out, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    ms = float(np.median(latencies[1:])) if len(latencies) > 1 else float(latencies[0])
    return {
        "gif": out.name,
        "frames": len(frames),
        "keys": played,
        "mapping": models.actions.to_dict(),
        "median_ms_per_frame": round(ms, 2),
        "frames_per_second": round(1000 / ms, 1),
        "sampling": vars(models.sampling),
        "actions": models.trained.actions.describe(),
    }


def _table(metrics: dict[str, float], keys: list[str] | None = None) -> str:
    rows = keys if keys is not None else sorted(metrics)
    body = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{metrics[k]:.4g}</td></tr>"
        for k in rows
        if isinstance(metrics.get(k), int | float)
    )
    return f"<table>{body}</table>"


def _horizon_table(metrics: dict[str, float]) -> str:
    steps = mk.horizons(metrics)
    if not steps:
        return ""
    head = "<tr><th>horizon t</th><th>rollout PSNR</th><th>ΔtPSNR</th><th>ΔtPSNR moving px</th></tr>"
    rows = "".join(
        f"<tr><td>{h}</td><td>{metrics.get(mk.at_horizon(mk.ROLLOUT_PSNR_AT, h), float('nan')):.2f}</td>"
        f"<td>{with_error(metrics, mk.at_horizon(mk.DELTA_PSNR_AT, h))}</td>"
        f"<td>{with_error(metrics, mk.at_horizon(mk.DELTA_PSNR_MOVING_AT, h))}</td></tr>"
        for h in steps
    )
    return f"<table>{head}{rows}</table><p>± one standard error over the rolled-out clips.</p>"


def with_error(metrics: dict[str, float], key: str) -> str:
    """'+0.940 ± 0.310' from a metric and its standard error (`key_se`), when the run has one."""
    value, se = metrics.get(key, float("nan")), metrics.get(key + mk.SE)
    return f"{value:+.3f}" if se is None else f"{value:+.3f} ± {se:.3f}"


def _long_table(metrics: dict[str, float]) -> str:
    """The long rollouts' objects: generated | the tokenizer's reconstruction | real, one row each."""
    names = mk.long_objects(metrics)
    if not names:
        return ""
    columns = (f"last {LONG_MEASURED} of {LONG_HORIZON} frames", "generated", "tokenizer", "real")
    head = "<tr>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(mk.long_seen(n)[len(mk.LONG) :])}</td>"
        + "".join(f"<td>{metrics.get(mk.long_seen(n, s), float('nan')):.2f}</td>" for s in mk.LONG_SOURCES)
        + "</tr>"
        for n in names
    )
    return f"<table>{head}{rows}</table>"


def _play_table(metrics: dict[str, float]) -> str:
    """Long play's object counts: one row per object, one column per window of generated frames and the
    real frames; each cell 'exactly one / two or more' (shares of frames)."""
    names = mk.play_objects(metrics)
    ends = [last for _, last in WINDOWS if names and mk.play_share(names[0], "one", last) in metrics]
    if not ends:
        return ""
    columns = [f"frames {f}-{last}" for f, last in WINDOWS if last in ends] + ["real"]
    head = "<tr><th>object: one / two or more</th>" + "".join(f"<th>{c}</th>" for c in columns) + "</tr>"
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td>"
        + "".join(
            f"<td>{metrics[mk.play_share(n, 'one', w)]:.2f} / {metrics[mk.play_share(n, 'many', w)]:.2f}</td>"
            for w in [*ends, mk.REAL]
        )
        + "</tr>"
        for n in names
    )
    rollouts = int(metrics.get(mk.PLAY_ROLLOUTS, 0))
    return (
        f"<table>{head}{rows}</table><p>{rollouts} held-out prompts played with held random actions; "
        "shares of frames holding exactly one / two or more of each object.</p>"
    )


def _headline_table(rows: list[Headline]) -> str:
    """The opening summary: one row per headline number, its reference and its mark."""
    if not rows:
        return "<p>no evaluations to sum up yet (run <code>genie eval STAGE</code>)</p>"
    head = "".join(f"<th>{c}</th>" for c in ("stage", "measure", "now", "reference", "good from", "mark"))
    body = "".join(
        f"<tr><td>{r.stage}</td><td>{html.escape(r.measure)}</td>"
        f"<td>{r.shown(r.value)}{'' if r.error is None else f' ± {r.error:.2f}'}</td>"
        f"<td>{html.escape(r.reference_name)} {r.shown(r.reference)}</td><td>{html.escape(r.rule)}</td>"
        f"<td class='{'good' if r.good else 'notyet'}'>{'good' if r.good else 'not yet'}</td></tr>"
        for r in rows
    )
    return (
        f"<h2>summary</h2><table class='summary'><tr>{head}</tr>{body}</table>"
        "<p>Each stage's latest evaluation (and the control measured on the world below); the bars are "
        "this project's (genie/evaluation/headline.py).</p>"
    )


def _asset(src: Path, assets: Path, prefix: str) -> str:
    dst = assets / f"{prefix}_{src.name}"
    if dst.exists():  # long_video/x.mp4 beside x.mp4
        dst = assets / f"{prefix}_{src.parent.name}_{src.name}"
    shutil.copyfile(src, dst)
    return f"assets/{dst.name}"


def write_report(
    out: Path, *, checkpoints: Path, eval_dir: Path, runs: list[Path] | None = None, gif: bool = True
) -> Path:
    chosen: dict[str, Path] = {}
    for run in runs or []:
        if not (run / METRICS_LOG).is_file():
            raise GenieError(f"{run} is not a run directory (no {METRICS_LOG})")
        chosen[stage_of(run)] = run
    if not runs:
        chosen = {s: r for s in STAGES if (r := latest_run(checkpoints, s)) is not None}
    if not chosen:
        raise GenieError(f"no runs found under {checkpoints}/<stage>/ (train a stage first)")
    final_assets = out / "assets"
    if final_assets.exists() and not _written_by_report(final_assets):
        raise GenieError(
            f"{final_assets} holds files genie report did not write, which it would replace: "
            "choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    assets = Path(tempfile.mkdtemp(prefix=".assets.", dir=out))  # swapped in only when the page is done
    try:
        page, summary = _build(out, assets, chosen, eval_dir, gif)
        (assets / ASSETS_MARK).touch()
        old = out / f".assets.old.{os.getpid()}"
        if final_assets.exists():
            final_assets.rename(old)
        assets.rename(final_assets)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(assets, ignore_errors=True)
    for name, text in (("report.json", json.dumps(summary, indent=2) + "\n"), ("report.html", page)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)
    return out / "report.html"


def _written_by_report(assets: Path) -> bool:
    """A folder this command made: its mark, or (reports written before the mark) only names it gives."""
    if not assets.is_dir():
        return False
    if (assets / ASSETS_MARK).is_file():
        return True
    return all(p.is_file() and (p.name == "play.gif" or p.name.startswith(STAGES)) for p in assets.iterdir())


def _build(
    out: Path, assets: Path, chosen: dict[str, Path], eval_dir: Path, gif: bool
) -> tuple[str, dict[str, Any]]:
    """The page and its summary, with every asset copied into `assets`."""
    summary: dict[str, Any] = {"runs": {}}
    sections = []
    for stage in STAGES:
        run = chosen.get(stage)
        if run is None:
            continue
        entry: dict[str, Any] = {"run": str(run)}
        parts = [f"<h2>{stage}</h2><p>run <code>{html.escape(str(run))}</code></p>"]
        if (best := read_best(run)) is not None:
            entry["best"] = {k: best.get(k) for k in ("step", "metric", "value", "checkpoint")}
            parts.append(f"<p>best: step {best['step']}, {best['metric']} = {best['value']:.4g}</p>")
        if (run / LOSS_CURVE).is_file():
            parts.append(f'<img src="{_asset(run / LOSS_CURVE, assets, stage)}" width="960">')
        found = latest_eval(eval_dir, stage, run)
        if found is not None:
            path, data = found
            metrics = data.get("metrics", {})
            entry.update(evaluation=str(path), step=data.get("step"), metrics=metrics)
            parts.append(f"<h3>evaluation at step {data.get('step')}</h3>")
            if stage == "dynamics":
                parts.append(_horizon_table(metrics))
                parts.append(_long_table(metrics))
                parts.append(_play_table(metrics))
                parts.append(_table(metrics, sorted(k for k in metrics if not mk.is_detail(k))))
            else:
                parts.append(_table(metrics))
            if stage == "lam" and "agreement" in data:
                entry["agreement"] = data["agreement"]
                move = data["agreement"].get("move_identifiable") or data["agreement"].get("move")
                if move:
                    parts.append(
                        f"<p>latent -> movement mapping: {html.escape(json.dumps(move['mapping']))}</p>"
                    )
            for media in _videos(stage, path):
                src = _asset(media, assets, stage)
                tag = (
                    f'<video src="{src}" controls loop muted width="640"></video>'
                    if media.suffix == ".mp4"
                    else f'<img src="{src}" width="480">'
                )
                parts.append(f"<p>{html.escape(media.name)}<br>{tag}</p>")
        else:
            parts.append("<p>no evaluation found (run <code>genie eval</code>)</p>")
        summary["runs"][stage] = entry
        sections.append("\n".join(parts))
    if gif and "dynamics" in chosen:
        models = WorldModels.load(chosen["dynamics"])  # loaded once: checkpoints and the key map
        play = play_gif(models, assets / "play.gif")
        summary["play"] = play
        summary["control"] = control = control_rate(models)
        if control is not None:
            real = control.get("real") or {}
            sections.append(
                "<h2>control you can see</h2><p>From the same held-out prompts, holding the key mapped to "
                f"&quot;up&quot; moved the agent's paddle up in {control['up_rate']:.0%} of "
                f"{control['up_steps']} free generated steps, &quot;down&quot; moved it down in "
                f"{control['down_rate']:.0%} of {control['down_steps']} (real frames with the true actions: "
                f"{real.get('up_rate', float('nan')):.0%} / {real.get('down_rate', float('nan')):.0%}); "
                f"paddle found in {control['paddle_seen']:.0%} of generated frames.</p>"
            )
        else:
            sections.append(
                "<h2>control you can see</h2><p>not measured: it needs a known paddle (Pong's) and keys "
                "mapped to up and down.</p>"
            )
        keys = " ".join(f"{k}x{n}" for k, n in PLAY_SCRIPT)
        sections.append(
            f"<h2>play</h2><p>a dynamics model trained on {play['actions']}; "
            f"scripted keys: {keys}; {play['median_ms_per_frame']} ms a frame "
            f"({play['frames_per_second']} frames/s, MaskGIT {play['sampling']['steps']} steps, CPU)</p>"
            f'<img src="assets/{play["gif"]}"><p>play it yourself: '
            f"<code>genie play --checkpoint {html.escape(str(chosen['dynamics']))}</code></p>"
        )
    rows = headlines({s: e.get("metrics", {}) for s, e in summary["runs"].items()}, summary.get("control"))
    summary["headline"] = [{**asdict(r), "good": r.good} for r in rows]
    style = (
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:1000px}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 8px;"
        "font-family:ui-monospace,monospace;font-size:.85em}"
        "table.summary td{font-family:system-ui,sans-serif;font-size:.95em}"
        ".good{background:#d8f5d0}.notyet{background:#fde2c8}.good,.notyet{white-space:nowrap}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>genie report</title><style>{style}</style>"
        f"</head><body><h1>genie report</h1>{_headline_table(rows)}{''.join(sections)}</body></html>\n"
    )
    return page, summary
