"""The play page in a real browser: headless Chromium (Debian's package) driven by Playwright.

The test starts the server on a free port, opens the page, holds keys, and checks that frames arrive,
that the latent action follows the key, and that the same seeded start gives a different frame under a
different key. A screenshot lands in $GENIE_ARTIFACTS (default ./test-artifacts). Without Chromium the test is
skipped, unless GENIE_REQUIRE_BROWSER=1 (set by .ci/run, which installs it): then it fails.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from genie.world import WorldModels
from genie.world.action_map import ActionMap
from genie.world.server import create_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

if CHROMIUM is None and os.environ.get("GENIE_REQUIRE_BROWSER") != "1":
    pytest.skip("Chromium is not installed (apt-get install chromium)", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(dynamics_run, tmp_path_factory):
    import uvicorn

    models = WorldModels.load(dynamics_run, temperature=0.0)
    models = replace(models, actions=ActionMap(["up", "down", "stay"], [1.0] * 3, [10] * 3, "test"))
    app = create_app(models, fps=30, record_dir=tmp_path_factory.mktemp("rec"))
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/", models.actions.keys
    srv.should_exit = True
    thread.join(timeout=10)


FRAME_AFTER_RESET = """([from, step]) => {
  const log = window.genie.log.slice(from);
  const start = log.findIndex((f) => f.latent === null && f.step === 0);
  return start < 0 ? null : log.slice(start).find((f) => f.step === step) || null;
}"""


@pytest.mark.slow
def test_keys_drive_the_world_in_headless_chromium(server):
    from playwright.sync_api import sync_playwright

    assert CHROMIUM is not None, "GENIE_REQUIRE_BROWSER=1 but Chromium is not installed"
    url, keys = server
    artifacts = Path(os.environ.get("GENIE_ARTIFACTS", "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("window.genie && window.genie.frames > 5", timeout=30_000)
        assert "latent" in page.inner_text("#mapping")

        def play(key: str) -> dict:
            page.keyboard.down(key)
            seen = page.evaluate("window.genie.log.length")  # (the log keeps the last 2000 frames)
            page.evaluate("window.genie.reset(11)")
            handle = page.wait_for_function(FRAME_AFTER_RESET, arg=[seen, 4], timeout=30_000)
            frame = handle.json_value()
            page.keyboard.up(key)
            return frame

        up, down = play("ArrowUp"), play("ArrowDown")
        assert up["latent"] == keys["up"] and down["latent"] == keys["down"]
        assert up["checksum"] != down["checksum"]  # same seeded start, different key: a different world
        assert play("ArrowUp")["checksum"] == up["checksum"]  # and the same key replays it
        page.wait_for_function("window.genie.label === 'stay'", timeout=10_000)  # released: stay
        assert page.evaluate("window.genie.errors.length") == 0
        page.screenshot(path=str(artifacts / "browser_play.png"))
        browser.close()
    assert (artifacts / "browser_play.png").stat().st_size > 0
