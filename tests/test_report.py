"""`genie report`: the summary it opens with, the page and JSON over real tiny runs, its assets."""

from __future__ import annotations

import json
import shutil

from PIL import Image

from genie.cli import main
from genie.evaluation.headline import headlines


def test_report_opens_with_the_summary_then_every_stage(dynamics_run, upstream, tmp_path):
    """A real tiny run of the three stages, each evaluated: the report's summary holds each stage's headline
    numbers beside their references, with the marks their bars give, and comes before the stages."""
    out, ev = tmp_path / "report", tmp_path / "ev"
    runs = {"tokenizer": upstream["tokenizer"], "lam": upstream["lam"], "dynamics": dynamics_run}
    for stage, run in runs.items():
        assert main(["eval", stage, "--checkpoint", str(run), "--eval_dir", str(ev)]) == 0
    runs_flag = ["--runs", *map(str, runs.values())]
    assert main(["report", *runs_flag, "--eval_dir", str(ev), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "<td>ball_seen</td>" in page and "<td>foreground_share</td>" in page  # the long rollouts' table
    summary = json.loads((out / "report.json").read_text())
    assert set(summary["runs"]) == {"tokenizer", "lam", "dynamics"}
    assert summary["play"]["frames"] > 40 and (out / "assets" / "play.gif").is_file()
    assert "play.gif" in page and "loss_curve.png" in page
    with Image.open(out / "assets" / "play.gif") as gif:
        assert gif.n_frames == summary["play"]["frames"]

    rows = summary["headline"]
    assert [(r["stage"], r["measure"]) for r in rows] == [
        ("tokenizer", "PSNR"),
        ("tokenizer", "object recall"),
        ("lam", "agreement with the true movement (identifiable steps)"),
        ("lam", "action gain (next frame, changed pixels)"),
        ("dynamics", "control: holding up moves the paddle up"),
        ("dynamics", "control: holding down moves the paddle down"),
        ("dynamics", "ΔtPSNR@2"),  # 4-frame clips, 2 prompt frames: 2 generated
        ("dynamics", "long play: exactly one agent paddle (frames to 256)"),  # 70 frames played
        ("dynamics", "long play: exactly one opponent paddle (frames to 256)"),
        ("dynamics", "long play: exactly one ball (frames to 256)"),
    ]
    metrics = {stage: entry["metrics"] for stage, entry in summary["runs"].items()}
    psnr, agreement, control = rows[0], rows[2], rows[4]
    assert (psnr["value"], psnr["reference"]) == (
        metrics["tokenizer"]["val/psnr"],
        metrics["tokenizer"]["val/background_psnr"],
    )
    assert psnr["good"] is False  # 2 training steps are far below the static background
    assert agreement["reference"] == metrics["lam"]["val/move_majority_identifiable"]  # chance
    assert control["reference"] == summary["control"]["real"]["up_rate"]
    assert rows[-1]["reference"] == metrics["dynamics"]["play/ball_one_real"]
    assert all(r["good"] == (r["value"] >= r["bar"]) for r in rows)
    table = page[page.index("<h2>summary</h2>") : page.index("<h2>tokenizer</h2>")]  # first on the page
    assert table.count("<td class='good'>good</td>") + table.count("<td class='notyet'>not yet</td>") == len(
        rows
    )


def test_summary_marks_each_number_against_its_stated_bar():
    evaluations = {
        "tokenizer": {"val/psnr": 38.4, "val/background_psnr": 32.7, "val/object_recall": 0.85},
        "lam": {
            "val/move_acc_identifiable": 0.91,
            "val/move_majority_identifiable": 0.37,
            "val/action_gain_db": 0.4,
        },
        "dynamics": {
            **{f"val/rollout_psnr_t{h}": 30.0 for h in range(1, 7)},
            **{f"val/delta_psnr_t{h}": 0.5 * h for h in range(1, 7)},
            "val/delta_psnr_t4_se": 0.04,
            "play/ball_one_t64": 0.9,
            "play/ball_one_t1000": 0.37,
            "play/ball_one_real": 0.4,
            "play/opponent_paddle_one_t64": 0.9,
            "play/opponent_paddle_one_t1000": 0.5,
            "play/opponent_paddle_one_real": 0.9,
        },
    }
    control = {"up_rate": 0.91, "down_rate": 0.80, "real": {"up_rate": 0.95, "down_rate": 0.95}}
    rows = headlines(evaluations, control)
    assert {r.measure: r.good for r in rows} == {
        "PSNR": True,  # 5.7 dB above the background, the bar 3
        "object recall": False,  # the bar 0.9
        "agreement with the true movement (identifiable steps)": True,  # the bar 0.85
        "action gain (next frame, changed pixels)": False,  # the bar 1 dB
        "control: holding up moves the paddle up": True,  # 4 points below real, the bar 5
        "control: holding down moves the paddle down": False,  # 15 points below
        "ΔtPSNR@4": True,  # 2.0 dB, read at step 4 of 6, the bar 1
        "long play: exactly one ball (frames to 1000)": True,  # 0.37 of real 0.4, the bar 90% of it: 0.36
        "long play: exactly one opponent paddle (frames to 1000)": False,  # 0.5, the bar 0.81
    }
    delta = next(r for r in rows if r.measure == "ΔtPSNR@4")
    assert (delta.value, delta.error, delta.reference) == (2.0, 0.04, 0.0)
    assert headlines({}, None) == []  # nothing evaluated: no row, no error


def test_report_replaces_only_its_own_assets_and_only_when_it_succeeds(
    upstream, dynamics_run, tmp_path, capsys
):
    out = tmp_path / "report"
    (out / "assets").mkdir(parents=True)
    (out / "assets" / "thesis.pdf").write_bytes(b"mine")
    report = ["report", "--runs", str(upstream["tokenizer"]), "--out", str(out), "--no_gif"]
    assert main(report) == 2
    assert "did not write" in capsys.readouterr().err and (out / "assets" / "thesis.pdf").is_file()
    (out / "assets" / "thesis.pdf").unlink()
    assert main(report) == 0
    first = sorted(p.name for p in (out / "assets").iterdir())
    assert "tokenizer_loss_curve.png" in first
    # a report that fails (a dynamics run with no checkpoint yet) leaves the last good one as it was
    empty = tmp_path / "dynamics" / "run_x"
    empty.mkdir(parents=True)
    shutil.copy(dynamics_run / "metrics.jsonl", empty)
    assert main(["report", "--runs", str(upstream["tokenizer"]), str(empty), "--out", str(out)]) == 2
    assert sorted(p.name for p in (out / "assets").iterdir()) == first
    assert [p.name for p in out.iterdir() if p.name.startswith(".assets")] == []


def test_report_assets_of_the_same_name_do_not_overwrite_each_other(tmp_path):
    from genie.report import _asset

    (tmp_path / "long_video").mkdir()
    (tmp_path / "x.mp4").write_bytes(b"short")
    (tmp_path / "long_video" / "x.mp4").write_bytes(b"long")
    assets = tmp_path / "assets"
    assets.mkdir()
    a, b = _asset(tmp_path / "x.mp4", assets, "dyn"), _asset(tmp_path / "long_video" / "x.mp4", assets, "dyn")
    assert a != b and (tmp_path / a).read_bytes() == b"short" and (tmp_path / b).read_bytes() == b"long"
