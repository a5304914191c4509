"""The play server abused the ways a browser or a broken client abuses it: a recording nobody stops, a long
recording stopped while other tabs play, a tab that never reads its socket, clients that vanish mid-frame.

The recording tests drive the app in process (TestClient); the socket tests serve it with uvicorn on a
loopback port, since only a real socket fills up when its reader stops reading.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

import av
import pytest
import uvicorn
from fastapi.testclient import TestClient
from websockets.sync.client import ClientConnection, connect

import genie.evaluation.video as video
import genie.world.server as server
from genie.world import World
from genie.world.server import create_app

LOCAL = "http://127.0.0.1:8000"  # the Host the play server answers (it refuses others)
WS = "ws://127.0.0.1:8000/ws"


class StepCounter:
    """World.step counted per world (one world per tab), from the model thread; read from the test's."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._steps: Counter[int] = Counter()
        self._lock = threading.Lock()
        real_step = World.step

        def counting_step(world: World, code: int):
            with self._lock:
                self._steps[id(world)] += 1
            return real_step(world, code)

        monkeypatch.setattr(World, "step", counting_step)

    def snapshot(self) -> Counter[int]:
        with self._lock:
            return Counter(self._steps)


def _until(ws, accept: Callable[[dict], bool], within: int = 500) -> dict:
    """Read a TestClient websocket until a message is accepted; that message. Frames keep coming, so a
    message that never does fails after `within` others instead of hanging the suite."""
    for _ in range(within):
        if accept(msg := json.loads(ws.receive_text())):
            return msg
    raise AssertionError(f"no such message within {within}")


def _stopped(msg: dict) -> bool:
    return msg["type"] == "recording" and not msg["on"]


def _frame(msg: dict) -> bool:
    return msg["type"] == "frame"


def test_a_forgotten_recording_stops_itself_at_max_recording(keyed, tmp_path, monkeypatch):
    monkeypatch.setattr(server, "MAX_RECORDING", 3)
    app = create_app(keyed, fps=100, record_dir=tmp_path)
    with TestClient(app, base_url=LOCAL) as client, client.websocket_connect(WS) as ws:
        ws.send_text(json.dumps({"type": "record", "on": True}))
        stopped = _until(ws, _stopped)  # never asked for: the cap stopped it
        assert not _until(ws, _frame)["recording"]  # play goes on, unrecorded
    with av.open(stopped["path"]) as mp4:
        assert sum(1 for _ in mp4.decode(video=0)) == 3


def test_stopping_a_recording_encodes_it_while_every_tab_plays_on(keyed, tmp_path, monkeypatch):
    """The encoder is made slow: it holds until both tabs' worlds have stepped three more frames (each
    stepped, then sent, by the event loop all tabs share), or gives up after 10 s. Were it encoding on
    that loop, no tab could step meanwhile."""
    steps = StepCounter(monkeypatch)
    played_meanwhile: list[int] = []
    real_write = video.write_mp4

    def slow_write(path, frames, fps) -> None:
        before, deadline = steps.snapshot(), time.monotonic() + 10
        while time.monotonic() < deadline:
            now = steps.snapshot()
            if len(now) == 2 and all(now[w] >= before[w] + 3 for w in now):
                break
            time.sleep(0.01)
        played_meanwhile.append(min(now[w] - before[w] for w in now))
        real_write(path, frames, fps)

    monkeypatch.setattr(video, "write_mp4", slow_write)
    app = create_app(keyed, fps=100, record_dir=tmp_path)
    with (
        TestClient(app, base_url=LOCAL) as client,
        client.websocket_connect(WS) as recorder,
        client.websocket_connect(WS) as other,
    ):
        _until(other, lambda m: _frame(m) and m["step"] >= 1)  # both worlds step before the stop
        recorder.send_text(json.dumps({"type": "record", "on": True}))
        _until(recorder, lambda m: _frame(m) and m["recording"] and m["step"] >= 3)
        recorder.send_text(json.dumps({"type": "record", "on": False}))
        stopped = _until(recorder, _stopped)
        assert stopped["url"].startswith("/recordings/")
        last = _until(other, _frame)["step"]
        assert _until(other, lambda m: _frame(m) and m["step"] > last)  # and it plays on after
    assert played_meanwhile and played_meanwhile[0] >= 3, played_meanwhile


# --- real sockets ---


@contextmanager
def _serving(app) -> Iterator[int]:
    """The app under uvicorn (as `genie play` serves it) on a free loopback port, in a thread; the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    runner = uvicorn.Server(uvicorn.Config(app, log_level="error", ws_max_size=server.MAX_MESSAGE * 4))
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not runner.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        runner.should_exit = True
        thread.join(timeout=30)


def _raw_tab(port: int) -> socket.socket:
    """A websocket opened by hand and never read: the handshake sent, a receive window kept small so
    that the server's side fills within a few frames, as a hung page's would in time."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: it sets the window
    raw.connect(("127.0.0.1", port))
    raw.sendall(
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return raw


def _cut(raw: socket.socket) -> None:
    """Drop the connection as a crashed client or a pulled cable does: a reset, no closing handshake."""
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()


def _cut_while_reading_a_frame(port: int) -> None:
    raw = _raw_tab(port)
    got = b""
    while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < 16:  # a frame's first bytes
        got += raw.recv(64)
    _cut(raw)


def _cut_while_sending_a_frame(port: int) -> None:
    raw = _raw_tab(port)
    while b"\r\n\r\n" not in raw.recv(4096):
        pass
    raw.sendall(bytes([0x81, 0x80 | 100]) + b"mask" + b"ten bytes!")  # a text frame of 100: 10 sent
    _cut(raw)


def _frames_in(ws: ClientConnection, seconds: float) -> int:
    """The frames a tab that reads receives in `seconds`."""
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        count += json.loads(ws.recv(timeout=10))["type"] == "frame"
    return count


def _tabs_all_play(port: int, n: int) -> bool:
    """Whether n more tabs, open together, are each played (and not told the server is full)."""
    with ExitStack() as stack:
        tabs = [stack.enter_context(connect(f"ws://127.0.0.1:{port}/ws")) for _ in range(n)]
        return all(json.loads(tab.recv(timeout=10))["type"] == "frame" for tab in tabs)


@pytest.mark.slow
def test_a_tab_that_never_reads_and_clients_cut_mid_frame_cost_the_others_nothing(
    keyed, tmp_path, monkeypatch
):
    monkeypatch.setattr(server, "MAX_SESSIONS", 4)
    steps = StepCounter(monkeypatch)
    app = create_app(keyed, fps=100, record_dir=tmp_path)
    with _serving(app) as port, connect(f"ws://127.0.0.1:{port}/ws") as good:
        assert _frames_in(good, 0.5) > 0
        stalled = _raw_tab(port)
        _cut_while_reading_a_frame(port)
        _cut_while_sending_a_frame(port)
        # once the stalled tab's socket is full its world waits (memory bounded); the good tab plays on
        for _ in range(20):
            before = steps.snapshot()
            received = _frames_in(good, 1.0)
            after = steps.snapshot()
            if sum(after[w] > before[w] for w in after) == 1:
                break
        advanced = [w for w in after if after[w] > before[w]]
        assert len(advanced) == 1 and received >= 5, (advanced, received)
        _cut(stalled)
        deadline = time.monotonic() + 10  # the server notices the cut connections in its own time
        while not _tabs_all_play(port, 3):  # with the good tab, all MAX_SESSIONS places: none leaked
            assert time.monotonic() < deadline, "the cut tabs' places were not given back"
            time.sleep(0.2)
        assert _frames_in(good, 0.5) > 0
