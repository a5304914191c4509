"""`genie play`: the learned world in a browser, served from this machine.

One FastAPI app: `/` is a plain HTML/JS page (no build step), `/info` the key map and settings, `/ws` a
websocket per tab. Each tab gets its own `World` (its own caches and random state) over the shared models,
so several tabs play independently. Per tab, one task steps the world at the game's frame rate with the
key currently held and sends each frame (PNG) with its numbers; another reads the tab's messages:

    {"type": "key", "action": "up"}        hold a mapped action ("stay" = no key)
    {"type": "reset", "seed": 3}           a new prompt from a held-out episode (seed optional)
    {"type": "record", "on": true|false}   start / stop recording the session to mp4
    {"type": "pause", "on": true|false}

Bounds: messages over MAX_MESSAGE bytes close the socket (uvicorn's ws_max_size) or are refused; more than
RATE messages a second are refused; a malformed message gets {"type": "error"} and play goes on.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import secrets
import socket
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from PIL import Image
from starlette.requests import cookie_parser

from genie.errors import GenieError
from genie.world.world import World, WorldModels

MAX_MESSAGE = 1024  # bytes: every message of the protocol fits easily
RATE = 60  # messages a second per tab (key repeat runs at ~30)
MAX_RECORDING = 9000  # frames (10 minutes at 15 frames/s): a forgotten recording stops itself
MAX_SESSIONS = 8  # tabs played at once: each costs a world's caches, and they share the cores


@dataclass(eq=False)  # compared (and hashed) by identity: one per tab
class Session:
    """One tab's state."""

    world: World
    action: str = "stay"
    paused: bool = False
    recording: list[bytes] | None = None  # the frames' PNGs, already made for the tab: ~10x smaller
    pending_reset: int | None = -1  # -1: no reset asked; None: a reset with a random seed
    tokens: float = RATE  # token bucket: RATE messages a second, bursts of up to RATE
    last: float = 0.0
    refused_told: float = -1.0  # when the tab was last told a message was refused

    def allow(self, now: float) -> bool:
        """O(1) per message, so a flooding tab costs the server next to nothing."""
        self.tokens = min(RATE, self.tokens + (now - self.last) * RATE)
        self.last = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def tell_refused(self, now: float) -> bool:
        """Refusals are told at most once a second: a flood gets no flood of replies."""
        if now - self.refused_told < 1.0:
            return False
        self.refused_told = now
        return True


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def png_data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


LOOPBACK = ("127.0.0.1", "localhost", "::1")


class SameHostOnly:
    """ASGI middleware: only requests addressed to this server, from its own page, reach the app.

    A web page the user visits can open a websocket to 127.0.0.1 (browsers send its Origin), and a
    DNS-rebinding domain reaches it under its own Host name; both would drive the world and read /info.
    Requests whose Host is not one of `hosts` (None: any, for a server bound to every address), or whose
    Origin, when there is one, is not the Host's, get 403 (a websocket is closed before its handshake
    completes). Clients that send no Origin (scripts, curl) are not web pages.

    `token` (a server reachable from other machines): every request must also carry it, as `?token=` in
    the URL the server prints, or as the cookie the first such request sets (HttpOnly, SameSite=Strict), so
    the page's own /info and /ws requests carry it without the script ever seeing it (as Jupyter does).
    """

    def __init__(self, app, hosts: tuple[str, ...] | None, token: str | None = None) -> None:
        self.app = app
        self.hosts = None if hosts is None else {h.strip("[]").lower() for h in hosts}
        self.token = None if token is None else token.encode()

    def _allowed(self, headers: dict[str, str]) -> bool:
        host = urlsplit(f"//{headers.get('host', '')}").hostname
        if host is None or (self.hosts is not None and host not in self.hosts):
            return False
        origin = headers.get("origin")
        return origin is None or urlsplit(origin).hostname == host

    @staticmethod
    def cookie_name(scope) -> str:
        """One cookie per port: browsers share cookies across a host's ports, and two servers must not
        overwrite each other's."""
        server = scope.get("server") or ("", None)
        return f"genie_token_{server[1]}" if server[1] else "genie_token"

    def _matches(self, given: str) -> bool:
        return secrets.compare_digest(given.encode("utf-8", "replace"), self.token)  # bytes: any input

    def _token_in(self, scope, headers: dict[str, str]) -> tuple[bool, bool]:
        """-> (the request carries the token, it came in the URL: set the cookie)."""
        if self.token is None:
            return True, False
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if any(self._matches(t) for t in query.get("token", [])):
            return True, True
        # starlette's parser, as browsers do, keeps the other cookies when one is malformed
        given = cookie_parser(headers.get("cookie", "")).get(self.cookie_name(scope))
        return given is not None and self._matches(given), False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        carries, from_url = self._token_in(scope, headers)
        if not self._allowed(headers) or not carries:
            reason = (
                "not this server's page" if carries else "this server needs the token of the URL it printed"
            )
            if scope["type"] == "http":
                return await JSONResponse({"error": reason}, status_code=403)(scope, receive, send)
            await receive()  # websocket.connect
            return await send({"type": "websocket.close", "code": 1008})
        if not (from_url and scope["type"] == "http"):
            return await self.app(scope, receive, send)
        cookie = b"%s=%s; Path=/; HttpOnly; SameSite=Strict" % (self.cookie_name(scope).encode(), self.token)

        async def send_with_cookie(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def create_app(
    models: WorldModels,
    *,
    fps: float,
    record_dir: Path = Path("evaluations/play"),
    prompt: Path | None = None,
    hosts: tuple[str, ...] | None = LOOPBACK,
    token: str | None = None,
) -> FastAPI:
    """The app; `prompt` (an image or video file) starts every tab, later resets draw held-out episodes.
    Only requests addressed to one of `hosts`, with `token` if given, are served (`SameHostOnly`)."""
    app = FastAPI(title="genie play", docs_url=None, redoc_url=None)
    app.add_middleware(SameHostOnly, hosts=hosts, token=token)
    # All model calls run on one worker thread, so tabs take turns on the cores instead of several torch
    # calls (each with its own intra-op threads) oversubscribing them; the event loop stays free.
    model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="genie-world")

    async def run_model(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(model_thread, fn, *args)

    keys = models.actions.keys  # label -> latent code
    page = resources.files("genie.world").joinpath("static/index.html").read_text()
    seeds = iter(range(1, 1 << 62))
    sessions: set[Session] = set()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/info")
    def info() -> JSONResponse:
        store = models.store
        return JSONResponse(
            {
                "checkpoint": models.checkpoint,
                "dataset": store.name,
                "height": store.height,
                "width": store.width,
                "fps": fps,
                "keys": keys,
                "mapping": models.actions.to_dict(),
                "mapping_text": models.actions.describe(),
                "sampling": vars(models.sampling),
            }
        )

    @app.get("/recordings/{name}")
    def recording(name: str):
        path = record_dir / name
        if "/" in name or "\\" in name or not name.endswith(".mp4") or not path.is_file():
            return JSONResponse({"error": f"no recording {name!r}"}, status_code=404)
        return FileResponse(path, media_type="video/mp4")

    @app.websocket("/ws")
    async def play(ws: WebSocket) -> None:
        await ws.accept()
        if len(sessions) >= MAX_SESSIONS:
            message = f"this server plays {MAX_SESSIONS} tabs at once: close one, then reload"
            await ws.send_text(json.dumps({"type": "error", "message": message}))
            await ws.close(code=1013)  # try again later
            return
        session = Session(World(models, seed=next(seeds)))
        session.pending_reset = None
        sessions.add(session)
        sender = asyncio.create_task(_run(ws, session))
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    reply = {"type": "error", "message": "binary messages are not part of the protocol"}
                else:
                    reply = _handle(session, message["text"], keys)
                if reply is not None and reply["type"] == "stop_recording":
                    reply = await stop_recording(session)
                if reply is not None:
                    await ws.send_text(json.dumps(reply))
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sessions.discard(session)
            session.recording = None  # its memory goes with the tab
            sender.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await sender

    async def stop_recording(session: Session) -> dict:
        """Encoding a long recording takes seconds: it runs on a thread, not on the loop every tab shares."""
        frames, session.recording = session.recording, None
        return await asyncio.to_thread(_write_recording, frames, record_dir, fps)

    async def _run(ws: WebSocket, session: Session) -> None:
        """Play the tab; if the world fails (a bad model, out of memory), say so to the tab and stop."""
        try:
            await _play(ws, session)
        except (WebSocketDisconnect, asyncio.CancelledError):
            raise
        except Exception as e:  # whatever broke, the tab hears it and the server lives on
            with suppress(Exception):
                await ws.send_text(json.dumps({"type": "error", "message": f"the world stopped: {e}"}))
                await ws.close()

    async def _play(ws: WebSocket, session: Session) -> None:
        """Step the world at `fps` (or as fast as the model allows) and send each frame."""
        period, shown, t_shown = 1.0 / fps, 0, time.perf_counter()
        measured = 0.0
        while True:
            start = time.perf_counter()
            if session.pending_reset != -1:
                seed, session.pending_reset = session.pending_reset, -1
                if seed is not None:
                    session.world.seed(seed)
                first = session.world.frame is None
                frame = await run_model(session.world.reset, prompt if first else None)
                code = None
            elif session.paused:
                await asyncio.sleep(period)
                continue
            else:
                code = keys.get(session.action, keys.get("stay", 0))
                frame = await run_model(session.world.step, code)
            png = png_bytes(frame)
            if session.recording is not None:
                session.recording.append(png)
                if len(session.recording) >= MAX_RECORDING:
                    await ws.send_text(json.dumps(await stop_recording(session)))
            shown += 1
            now = time.perf_counter()
            if now - t_shown >= 1.0:
                measured, shown, t_shown = shown / (now - t_shown), 0, now
            label = None if code is None else next((k for k, c in keys.items() if c == code), None)
            await ws.send_text(
                json.dumps(
                    {
                        "type": "frame",
                        "image": png_data_url(png),
                        "step": session.world.steps,
                        "latent": code,
                        "label": label,
                        "latency_ms": round(session.world.latency_ms, 2),
                        "fps": round(measured, 1),
                        "checksum": int(frame.astype(np.int64).sum()),
                        "recording": session.recording is not None,
                    }
                )
            )
            await asyncio.sleep(max(0.0, period - (time.perf_counter() - start)))

    return app


def _handle(session: Session, text: str, keys: dict[str, int]) -> dict | None:
    """Apply one message from a tab; returns a reply for the tab, if any ({"type": "stop_recording"}: the
    caller encodes the recording off the event loop)."""
    now = time.monotonic()
    if not session.allow(now):
        told = session.tell_refused(now)
        return {"type": "error", "message": f"over {RATE} messages a second: refused"} if told else None
    if len(text) > MAX_MESSAGE:  # characters >= bytes / 4; uvicorn closes sockets over 4 KB anyway
        return {"type": "error", "message": f"message over {MAX_MESSAGE} characters refused"}
    try:
        msg = json.loads(text)
    except json.JSONDecodeError:
        return {"type": "error", "message": "not JSON"}
    kind = msg.get("type") if isinstance(msg, dict) else None
    if kind == "key":
        action = msg.get("action")
        if action not in keys:
            return {"type": "error", "message": f"unknown action {action!r} (known: {', '.join(keys)})"}
        session.action = action
        return None
    if kind == "reset":
        seed = msg.get("seed")
        if seed is not None and (
            not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**62
        ):
            return {"type": "error", "message": "seed must be an integer in [0, 2^62)"}
        session.pending_reset = seed
        return None
    if kind in ("record", "pause"):
        on = msg.get("on")
        if not isinstance(on, bool):
            return {"type": "error", "message": f"{kind}: 'on' must be true or false"}
        if kind == "pause":
            session.paused = on
            return None
        if on:
            session.recording = session.recording if session.recording is not None else []
            return {"type": "recording", "on": True}
        return {"type": "stop_recording"}
    return {"type": "error", "message": f"unknown message type {kind!r} (key, reset, record, pause)"}


def _write_recording(frames: list[bytes] | None, record_dir: Path, fps: float) -> dict:
    """The recording's mp4, under a name no other stop can take (two in one second included)."""
    from genie.evaluation.video import write_mp4

    if not frames:
        return {"type": "recording", "on": False, "url": None}
    name = time.strftime("session_%Y%m%d_%H%M%S") + f"_{uuid.uuid4().hex[:8]}.mp4"
    video = np.stack([np.asarray(Image.open(io.BytesIO(png)).convert("RGB")) for png in frames])
    write_mp4(record_dir / name, video, fps=max(1, round(fps)))
    return {"type": "recording", "on": False, "url": f"/recordings/{name}", "path": str(record_dir / name)}


def serve(
    models: WorldModels,
    *,
    host: str,
    port: int,
    fps: float,
    open_browser: bool,
    record_dir: Path,
    prompt: Path | None = None,
) -> None:
    import uvicorn

    if fps <= 0:
        raise GenieError(f"--fps {fps}: expected a number > 0")
    if prompt is not None:
        World(models).reset(prompt)  # a bad file is one line now, not an error in every tab
    _check_writable(record_dir)
    sock = _bind(host, port)  # before the banner: a port in use is one line, not a traceback after it
    hosts = LOOPBACK if host in LOOPBACK else None if host in ("0.0.0.0", "::") else (*LOOPBACK, host)
    token = None if host in LOOPBACK else secrets.token_urlsafe(16)
    if token is not None:
        print(
            f"note: --host {host} serves the world to every machine that can reach this one; it answers "
            "only requests that carry the token in the URL below (or the cookie that URL sets)"
        )
    app = create_app(models, fps=fps, record_dir=record_dir, prompt=prompt, hosts=hosts, token=token)
    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    url = f"http://{shown}:{port}/" + ("" if token is None else f"?token={token}")
    print(f"playing {models.checkpoint} at {url} (Ctrl-C to stop)")
    for line in models.actions.describe():
        print("  " + line)
    if open_browser:
        import threading
        import webbrowser

        threading.Timer(1.0, lambda: webbrowser.open(url)).start()
    config = uvicorn.Config(app, log_level="warning", ws_max_size=MAX_MESSAGE * 4)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        raise GenieError(f"cannot serve on {host}:{port} ({e.strerror or e}): pick another --port") from None
    sock.set_inheritable(True)
    return sock


def _check_writable(record_dir: Path) -> None:
    """Recordings are written when a tab stops one: an unwritable folder is found now, not then."""
    try:
        record_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=record_dir):
            pass
    except OSError as e:
        raise GenieError(f"--record_dir {record_dir} is not a writable folder ({e.strerror or e})") from None
