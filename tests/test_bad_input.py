"""Bad input that used to end in a traceback, or late (after work was done): one line, exit 2."""

from __future__ import annotations

import socket

import pytest

from genie.cli import main
from genie.errors import GenieError


@pytest.mark.parametrize("flag", ["--data_dir", "--output_dir", "--eval_dir"])
def test_a_folder_flag_given_a_file_is_refused_before_any_work(tmp_path, capsys, flag) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    with pytest.raises(SystemExit) as stop:
        main(["train", "tokenizer", "--config", "configs/tiny/tokenizer.yaml", flag, str(a_file)])
    assert stop.value.code == 2
    assert f"{a_file} is a file, not a folder" in capsys.readouterr().err


def test_play_refuses_a_port_out_of_range(dynamics_run, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["play", "--checkpoint", str(dynamics_run), "--port", "70000", "--no_browser"])
    assert stop.value.code == 2 and "expected a port in 1..65535" in capsys.readouterr().err


def test_play_refuses_a_port_in_use_before_its_banner(dynamics_run, pong_dataset, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["play", "--checkpoint", str(dynamics_run), "--port", str(port), "--no_browser"]
        assert main([*argv, "--data_dir", str(pong_dataset.parent)]) == 2
    out, err = capsys.readouterr()
    assert "playing" not in out and f"cannot serve on 127.0.0.1:{port}" in err


def test_play_refuses_an_unwritable_record_dir_at_start(dynamics_run, pong_dataset, tmp_path, capsys) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")  # a folder inside a file cannot be made, by any user
    argv = ["play", "--checkpoint", str(dynamics_run), "--record_dir", str(a_file / "rec"), "--no_browser"]
    assert main([*argv, "--data_dir", str(pong_dataset.parent)]) == 2
    out, err = capsys.readouterr()
    assert "playing" not in out and "is not a writable folder" in err


def test_a_run_being_trained_cannot_be_resumed_twice(upstream, pong_dataset) -> None:
    from genie.training.checkpoint import lock_run

    run = upstream["tokenizer"]
    held = lock_run(run)
    try:
        data = ["--data_dir", str(pong_dataset.parent), "--dataset", pong_dataset.name, "--quiet"]
        with pytest.raises(GenieError, match="is being trained by another process"):
            lock_run(run)
        assert main(["train", "tokenizer", "--resume", str(run), "--max_steps", "3", *data]) == 2
    finally:
        held.close()
    lock_run(run).close()  # free again once the holder is gone


@pytest.mark.parametrize(
    ("key", "value"), [("height", "72"), ("num_frames", -5), ("split", {"train": "all"}), ("width", True)]
)
def test_a_manifest_with_wrong_types_is_one_line(pong_dataset, tmp_path, key, value) -> None:
    import json
    import shutil

    from genie.data.store import EpisodeStore

    copy = tmp_path / "pong"
    shutil.copytree(pong_dataset, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest[key] = value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GenieError, match=f"{key} is .*re-create the dataset"):
        EpisodeStore.open(copy)


@pytest.mark.parametrize("text", ["[1, 2]", '{"step": 3}', "{not json"])
def test_a_malformed_best_json_is_one_line(tmp_path, text) -> None:
    from genie.training.checkpoint import read_best

    (tmp_path / "best.json").write_text(text)
    with pytest.raises(GenieError, match="best.json: "):
        read_best(tmp_path)


def test_malformed_metrics_rows_are_skipped(tmp_path) -> None:
    from genie.training.metrics_log import read_metrics

    (tmp_path / "metrics.jsonl").write_text(
        '{"step": 1, "a": 1}\n[3]\n{"a": 2}\n{"step": 2, "a"\n{"step": 3}\n'
    )
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 3]
