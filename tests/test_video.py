"""Evaluation videos: a machine without PyAV (the GPU image) gets one line naming the fix, and no file."""

import sys

import numpy as np
import pytest

from genie.errors import GenieError
from genie.evaluation.video import write_mp4


def test_a_missing_pyav_is_one_line_and_no_file(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # `import av` now raises ImportError
    with pytest.raises(GenieError, match=r"cannot write .*clip\.mp4: videos need PyAV"):
        write_mp4(tmp_path / "clip.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert not list(tmp_path.iterdir())


def test_a_video_is_written_where_pyav_is(tmp_path):
    path = write_mp4(tmp_path / "clip.mp4", np.zeros((2, 8, 8, 3), np.uint8))
    assert path.stat().st_size > 0 and not list(tmp_path.glob("*.tmp*"))
