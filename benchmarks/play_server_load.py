"""The play server under load: N tabs at once (and one flooding tab), frames/s per tab and memory.

Starts the real server (uvicorn, loopback) on a world with random weights (speed depends on shapes, not
weights), connects N websocket clients that read frames for `--seconds`, plus optionally one client that
sends `--flood` messages a second and reads nothing, and reports each tab's frames/s, the refusals, and
the process's resident memory before, under load and after every tab has closed.

    .venv/bin/python benchmarks/play_server_load.py                 # 16 tabs, ~1 min on 2 CPU cores
    .venv/bin/python benchmarks/play_server_load.py --tabs 4 8 --flood 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
import websockets
from common import machine, one_step_runs, save

from genie.world import WorldModels
from genie.world.server import MAX_SESSIONS, create_app

ROOT = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    """Resident memory now (Linux /proc), else the peak."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_world(data_dir: Path) -> WorldModels:
    """One-step tiny runs of the three stages: a world of the tiny preset's shapes."""
    configs = {s: ROOT / f"configs/tiny/{s}.yaml" for s in ("tokenizer", "lam", "dynamics")}
    return WorldModels.load(one_step_runs(configs, "cpu", data_dir)["dynamics"])


async def tab(url: str, seconds: float) -> dict:
    frames, refused = 0, None
    async with websockets.connect(url, max_size=2**22) as ws:
        start = time.perf_counter()
        try:
            while time.perf_counter() - start < seconds:
                msg = json.loads(await ws.recv())
                if msg["type"] == "frame":
                    frames += 1
                elif msg["type"] == "error":
                    refused = msg["message"]
                    break
        except websockets.ConnectionClosed as e:
            refused = f"closed: {e}"
    return {"frames_per_s": round(frames / seconds, 1), "refused": refused}


async def flooder(url: str, rate: int, seconds: float) -> int:
    sent = 0
    async with websockets.connect(url) as ws:
        start = time.perf_counter()
        with contextlib.suppress(websockets.ConnectionClosed):  # refused: the server was full
            while time.perf_counter() - start < seconds:
                await ws.send(json.dumps({"type": "key", "action": "up"}))
                sent += 1
                await asyncio.sleep(1 / rate)
    return sent


async def load(url: str, tabs: int, seconds: float, flood: int) -> dict:
    jobs = [tab(url, seconds) for _ in range(tabs)]
    if flood:
        jobs.append(flooder(url, flood, seconds))
    peak = {"rss_mb": rss_mb()}

    async def watch() -> None:
        while True:
            peak["rss_mb"] = max(peak["rss_mb"], rss_mb())
            await asyncio.sleep(0.5)

    watcher = asyncio.create_task(watch())
    results = await asyncio.gather(*jobs)
    watcher.cancel()
    played = [r for r in results[:tabs] if r["refused"] is None]
    return {
        "tabs": tabs,
        "played": len(played),
        "refused": sum(r["refused"] is not None for r in results[:tabs]),
        "frames_per_s_per_tab": [r["frames_per_s"] for r in played],
        "frames_per_s_total": round(sum(r["frames_per_s"] for r in played), 1),
        "flood_messages_sent": results[-1] if flood else 0,
        "peak_rss_mb": round(peak["rss_mb"], 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data_dir", type=Path, default=ROOT / "data")
    p.add_argument("--tabs", type=int, nargs="*", default=[1, MAX_SESSIONS, 2 * MAX_SESSIONS])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--flood", type=int, default=1000, help="messages a second of one extra tab (0: none)")
    p.add_argument("--fps", type=float, default=15.0, help="the game's frame rate each tab asks for")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/play_server_load.json")
    a = p.parse_args()

    models = random_world(a.data_dir)
    app = create_app(models, fps=a.fps, record_dir=Path(tempfile.mkdtemp()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"ws://127.0.0.1:{port}/ws"
    result: dict = {
        **machine("play_server_load", "cpu"),
        "fps_asked": a.fps,
        "rss_before_mb": round(rss_mb(), 1),
    }
    for tabs in a.tabs:
        r = asyncio.run(load(url, tabs, a.seconds, a.flood))
        time.sleep(1.0)  # the server notices the closed sockets
        r["rss_after_close_mb"] = round(rss_mb(), 1)
        result[f"tabs_{tabs}"] = r
        per = r["frames_per_s_per_tab"]
        print(
            f"{tabs:3d} tabs (+ a flood of {a.flood}/s): {r['played']} played, {r['refused']} refused; "
            f"frames/s per tab {min(per, default=0):.1f}-{max(per, default=0):.1f} (asked {a.fps:g}), "
            f"total {r['frames_per_s_total']}; RSS peak {r['peak_rss_mb']} MB, "
            f"after close {r['rss_after_close_mb']} MB"
        )
    server.should_exit = True
    save(result, a.out, width=28, digits=1)


if __name__ == "__main__":
    main()
