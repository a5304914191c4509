"""Play: the cached tokenizer decode, World reset/step, the key map, the Gymnasium env, the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from genie.cli import main
from genie.config import TokenizerModelConfig, TransformerConfig
from genie.errors import GenieError
from genie.models.st_transformer import FrameCache
from genie.models.tokenizer import VideoTokenizer
from genie.world import World, WorldEnv
from genie.world.action_map import map_from_frames, map_from_labels
from genie.world.server import RATE, create_app

LOCAL = "http://127.0.0.1:8000"  # the Host the play server answers (it refuses others)
WS = "ws://127.0.0.1:8000/ws"


def test_cached_decode_equals_full_decode():
    torch.manual_seed(0)
    layer = TransformerConfig(num_layers=2, d_model=32, num_heads=2)
    cfg = TokenizerModelConfig(encoder=layer, decoder=layer, patch_size=8)
    tok = VideoTokenizer(cfg, height=16, width=24).eval()
    tokens = torch.randint(0, cfg.codebook.num_codes, (2, 5, tok.num_patches))
    full = tok.decode(tokens)
    cache = FrameCache(window=8)
    step = [tok.decode_next(tokens[:, t], cache) for t in range(5)]
    torch.testing.assert_close(torch.stack(step, 1), full, atol=1e-5, rtol=1e-4)
    # a clip longer than the training window decodes as a sliding window, as play's cache does
    tok.window = 3
    tokens = torch.randint(0, cfg.codebook.num_codes, (2, 7, tok.num_patches))
    cache = FrameCache(window=3)
    step = [tok.decode_next(tokens[:, t], cache) for t in range(7)]
    torch.testing.assert_close(torch.stack(step, 1), tok.decode(tokens), atol=1e-5, rtol=1e-4)


def test_world_steps_frames_deterministically_for_a_seed(models):
    a, b = World(models, seed=3), World(models, seed=3)
    h, w = models.store.height, models.store.width
    assert a.reset().shape == (h, w, 3) and b.reset().dtype == np.uint8
    for code in (0, 1, 2, 1):
        fa, fb = a.step(code), b.step(code)
        assert fa.shape == (h, w, 3) and fa.dtype == np.uint8
        np.testing.assert_array_equal(fa, fb)
    assert a.steps == 4 and a.latency_ms > 0


def test_world_actions_change_the_next_frame(models):
    frames = []
    for code in range(models.dynamics.num_actions):
        world = World(models, seed=0)
        world.reset()
        frames.append(world.step(code))
    assert any(not np.array_equal(frames[0], f) for f in frames[1:])


def test_world_rejects_bad_use(models, tmp_path):
    world = World(models)
    with pytest.raises(GenieError, match="reset"):
        world.step(0)
    world.reset()
    with pytest.raises(GenieError, match="expected 0..2"):
        world.step(3)
    with pytest.raises(GenieError, match="does not exist"):
        world.reset(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(GenieError, match="unsupported type"):
        world.reset(tmp_path / "notes.txt")
    with pytest.raises(GenieError, match="uint8"):
        world.reset(np.zeros((2, 72, 128), np.uint8))


def test_world_starts_from_an_image_file_of_any_size(models, tmp_path):
    real = np.array(models.store.frames[10])
    Image.fromarray(real).resize((256, 144)).save(tmp_path / "prompt.png")
    world = World(models)
    first = world.reset(tmp_path / "prompt.png")
    assert first.shape == real.shape
    assert np.abs(first.astype(int) - real.astype(int)).mean() < 3  # the same picture, resized back
    assert world.step(0).shape == real.shape


def test_key_map_from_true_labels():
    codes = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    truth = np.array([1, 1, 0, 2, 2, 0, 0, 0, 1])
    m = map_from_labels(codes, truth, ["stay", "up", "down"], 3, "test")
    assert m.labels == ["up", "down", "stay"]
    assert m.confidence == pytest.approx([2 / 3, 1.0, 3 / 4])
    assert m.keys == {"up": 0, "down": 1, "stay": 2}


def test_key_map_gives_every_key_a_code_when_the_codes_lean_one_way():
    """A weak LAM: two codes are mostly "up"; one to one, the weaker of them still becomes "down"."""
    codes = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2])
    truth = np.array([0, 0, 0, 1, 1, 1, 2, 1, 2, 2])  # code 1: up 3 / down 1; code 2: up 1 / down 2
    m = map_from_labels(codes, truth, ["stay", "up", "down"], 3, "test")
    assert m.keys == {"stay": 0, "up": 1, "down": 2}
    codes = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    truth = np.array([0, 0, 0, 1, 1, 2, 1, 1, 2])  # both moving codes mostly "up"
    m = map_from_labels(codes, truth, ["stay", "up", "down"], 3, "test")
    assert sorted(m.labels) == ["down", "stay", "up"] and m.confidence[m.keys["down"]] == pytest.approx(1 / 3)


def test_key_map_prefers_the_most_seen_code_for_a_shared_label():
    m = map_from_labels(np.array([0, 1, 1, 2]), np.array([1, 1, 1, 0]), ["stay", "up"], 3, "test")
    assert m.labels == ["up", "up", "stay"] and m.keys == {"up": 1, "stay": 2}


class ShiftingLam(torch.nn.Module):
    """A stand-in LAM whose code c moves a bright bar by (-2, +2, 0) rows: a known effect to recover."""

    num_actions = 3

    def decode(self, frames, actions):
        shifts = {0: -2, 1: 2, 2: 0}
        prev = frames[:, :-1]
        out = torch.stack(
            [
                torch.stack([prev[b, t].roll(shifts[int(a)], dims=-2) for t, a in enumerate(actions[b])])
                for b in range(frames.shape[0])
            ]
        )
        return out


def test_key_map_read_from_the_frames_without_labels():
    frames = torch.zeros(4, 3, 3, 24, 32)
    for b in range(4):
        frames[b, :, :, 8 + b : 14 + b, 28:30] = 1.0  # a paddle at different heights
    m = map_from_frames(ShiftingLam(), frames)
    assert m.labels == ["up", "down", "stay"]
    assert min(m.confidence) == 1.0


def test_world_env_passes_gymnasiums_checker(models):
    from gymnasium.utils.env_checker import check_env

    env = WorldEnv(models=models, max_steps=5)
    check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)
    for t in range(5):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert reward == 0.0 and not terminated and truncated == (t == 4)
        assert info["label"] in env.action_labels


def test_gymnasium_make_builds_the_registered_env(dynamics_run):
    import gymnasium

    env = gymnasium.make("genie/World-v0", checkpoint=dynamics_run, max_steps=3)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (72, 128, 3)
    env.close()


# --- the play server ---


def frames_of(ws, n: int) -> list[dict]:
    got = []
    while len(got) < n:
        msg = json.loads(ws.receive_text())
        if msg["type"] == "frame":
            got.append(msg)
    return got


def test_server_plays_and_answers_bad_messages_without_dying(keyed, tmp_path):
    app = create_app(keyed, fps=200, record_dir=tmp_path / "rec")
    with TestClient(app, base_url=LOCAL) as client:
        page = client.get("/").text
        assert "<canvas" in page and "/ws" in page
        info = client.get("/info").json()
        assert set(info["keys"]) <= {"up", "down", "stay", "left", "right"} and info["mapping_text"]
        with client.websocket_connect(WS) as ws:
            first = frames_of(ws, 2)
            assert first[0]["image"].startswith("data:image/png;base64,")
            for bad in (
                "not json",
                json.dumps({"type": "warp"}),
                json.dumps({"type": "key", "action": "jump"}),
                json.dumps({"type": "reset", "seed": "x"}),
                "x" * 2000,
            ):
                ws.send_text(bad)
                while json.loads(ws.receive_text())["type"] != "error":
                    pass
            ws.send_bytes(b"\x00\x01")
            while json.loads(ws.receive_text())["type"] != "error":
                pass
            ws.send_text(json.dumps({"type": "key", "action": next(iter(info["keys"]))}))
            later = frames_of(ws, 2)
            assert later[-1]["step"] > first[-1]["step"]  # still playing


def test_server_refuses_other_sites_pages_and_other_host_names(keyed, tmp_path):
    """A page from another site (its Origin) or a DNS-rebinding name (its Host) cannot drive the world."""
    from starlette.websockets import WebSocketDisconnect

    app = create_app(keyed, fps=200, record_dir=tmp_path / "rec")
    with TestClient(app, base_url=LOCAL) as client:
        assert client.get("/info").status_code == 200
        assert client.get("/info", headers={"origin": "http://127.0.0.1:8000"}).status_code == 200
        assert client.get("/info", headers={"origin": "https://evil.example"}).status_code == 403
        assert client.get("/info", headers={"host": "evil.example:8000"}).status_code == 403
        for headers in ({"origin": "https://evil.example"}, {"host": "rebound.example:8000"}):
            with pytest.raises(WebSocketDisconnect), client.websocket_connect(WS, headers=headers) as ws:
                ws.receive_text()
        with client.websocket_connect(WS, headers={"origin": LOCAL}) as ws:
            assert frames_of(ws, 1)
    with TestClient(app, base_url="http://localhost:8000") as client:
        assert client.get("/info").status_code == 200


def test_a_server_for_other_machines_needs_its_token(keyed, tmp_path):
    """Bound beyond loopback (any Host), a request without the printed URL's token is refused; the URL sets
    a cookie, so the page's own /info and /ws then pass without the token in them."""
    from starlette.websockets import WebSocketDisconnect

    app = create_app(keyed, fps=200, record_dir=tmp_path / "rec", hosts=None, token="s3cret")
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        refused = client.get("/info")
        assert refused.status_code == 403 and "token" in refused.json()["error"]
        assert client.get("/?token=wrong").status_code == 403
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("ws://10.1.2.3:8000/ws") as ws:
            ws.receive_text()
        page = client.get("/?token=s3cret")
        assert page.status_code == 200 and "HttpOnly" in page.headers["set-cookie"]
        assert client.get("/info").status_code == 200  # the cookie, not the URL
        with client.websocket_connect("ws://10.1.2.3:8000/ws") as ws:
            assert frames_of(ws, 1)
        assert "genie_token_8000=" in page.headers["set-cookie"]  # one cookie per port: servers side by side
    with TestClient(app, base_url="http://10.1.2.3:8000") as client:
        client.cookies.set("genie_token_8000", "wrong")
        assert client.get("/info").status_code == 403
        assert client.get("/info?token=%C3%A9").status_code == 403  # non-ASCII: refused, not a 500
        # a malformed cookie of another app on this host does not hide ours
        headers = {"cookie": "other=a b; genie_token_8000=s3cret"}
        assert client.get("/info", headers=headers).status_code == 200


def test_server_seeded_resets_replay_and_keys_change_the_frames(keyed, tmp_path):
    app = create_app(keyed, fps=200, record_dir=tmp_path)
    keys = keyed.actions.keys

    def play(label: str) -> int:
        with TestClient(app, base_url=LOCAL) as client, client.websocket_connect(WS) as ws:
            ws.send_text(json.dumps({"type": "key", "action": label}))
            ws.send_text(json.dumps({"type": "reset", "seed": 7}))
            while True:  # frames after the seeded reset
                msg = json.loads(ws.receive_text())
                if msg["type"] == "frame" and msg["latent"] is None and msg["step"] == 0:
                    break
            while True:
                msg = json.loads(ws.receive_text())
                if msg["type"] == "frame" and msg["step"] == 3:
                    assert msg["latent"] == keys[label]
                    return msg["checksum"]

    labels = list(keys)
    assert play(labels[0]) == play(labels[0])
    assert len({play(label) for label in labels}) > 1


def test_server_rate_limit_and_separate_tabs(keyed, tmp_path):
    app = create_app(keyed, fps=100, record_dir=tmp_path)
    with (
        TestClient(app, base_url=LOCAL) as client,
        client.websocket_connect(WS) as a,
        client.websocket_connect(WS) as b,
    ):
        for _ in range(RATE + 5):
            a.send_text(json.dumps({"type": "pause", "on": False}))
        errors = 0
        while errors == 0:
            msg = json.loads(a.receive_text())
            errors += msg["type"] == "error" and "messages a second" in msg["message"]
        a.send_text(json.dumps({"type": "pause", "on": True}))
        assert frames_of(b, 3)[-1]["step"] >= 2  # the other tab plays on


def test_a_flood_is_refused_in_o1_and_told_once_a_second(keyed, tmp_path):
    from genie.world.server import Session, _handle

    session = Session(world=None)  # _handle never touches the world for refused messages
    keys = {"stay": 0, "up": 1}
    replies = [_handle(session, json.dumps({"type": "key", "action": "up"}), keys) for _ in range(10 * RATE)]
    refused = [r for r in replies if r is not None]
    assert len(refused) == 1 and "messages a second" in refused[0]["message"]  # one notice, not 540
    assert session.tokens < 1 and session.action == "up"


def test_server_refuses_tabs_past_its_cap_with_a_reason(keyed, tmp_path, monkeypatch):
    import genie.world.server as server

    monkeypatch.setattr(server, "MAX_SESSIONS", 2)
    app = create_app(keyed, fps=100, record_dir=tmp_path)
    with TestClient(app, base_url=LOCAL) as client:
        with client.websocket_connect(WS) as a, client.websocket_connect(WS) as b:
            frames_of(a, 1), frames_of(b, 1)
            with client.websocket_connect(WS) as c:
                msg = json.loads(c.receive_text())
                assert msg["type"] == "error" and "plays 2 tabs at once" in msg["message"]
        with client.websocket_connect(WS) as d:  # the closed tabs gave their places back
            assert frames_of(d, 1)


def test_two_recordings_stopped_in_one_second_keep_both_files(tmp_path):
    from genie.world.server import _write_recording, png_bytes

    frames = [np.full((72, 128, 3), v, np.uint8) for v in (0, 120, 240)]
    pngs = [png_bytes(f) for f in frames]
    first, second = (_write_recording(pngs, tmp_path, 15) for _ in range(2))
    assert first["path"] != second["path"]
    assert Path(first["path"]).is_file() and Path(second["path"]).is_file()


def test_server_records_a_session_to_mp4(keyed, tmp_path):
    app = create_app(keyed, fps=100, record_dir=tmp_path / "rec")
    with TestClient(app, base_url=LOCAL) as client:
        with client.websocket_connect(WS) as ws:
            ws.send_text(json.dumps({"type": "record", "on": True}))
            frames_of(ws, 4)
            ws.send_text(json.dumps({"type": "record", "on": False}))
            while (msg := json.loads(ws.receive_text()))["type"] != "recording" or msg["on"]:
                pass
        assert msg["url"].startswith("/recordings/") and Path(msg["path"]).stat().st_size > 0
        assert client.get(msg["url"]).headers["content-type"] == "video/mp4"
        assert client.get("/recordings/..%2Fsecret.mp4").status_code == 404


def test_play_refuses_bad_input_in_one_line(tmp_path, capsys, upstream, dynamics_run):
    assert main(["play", "--checkpoint", str(tmp_path / "nope"), "--no_browser"]) == 2
    assert main(["play", "--checkpoint", str(upstream["lam"]), "--no_browser"]) == 2
    bad_prompt = ["--prompt", str(tmp_path / "missing.png"), "--no_browser"]
    assert main(["play", "--checkpoint", str(dynamics_run), *bad_prompt]) == 2
    assert main(["play", "--checkpoint", str(dynamics_run), "--fps", "0", "--no_browser"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 4 and all(line.startswith("error: ") for line in err), err


def test_server_starts_each_tab_from_the_given_prompt(keyed, tmp_path):
    real = np.array(keyed.store.frames[20])
    Image.fromarray(real).save(tmp_path / "start.png")
    app = create_app(keyed, fps=100, record_dir=tmp_path, prompt=tmp_path / "start.png")
    with TestClient(app, base_url=LOCAL) as client, client.websocket_connect(WS) as ws:
        first = frames_of(ws, 1)[0]
    assert first["latent"] is None and first["checksum"] == int(real.astype(np.int64).sum())


def test_a_failing_world_tells_its_tab_and_the_server_lives_on(keyed, tmp_path, monkeypatch):
    app = create_app(keyed, fps=100, record_dir=tmp_path)

    def broken(self, action):
        raise RuntimeError("out of memory")

    with TestClient(app, base_url=LOCAL) as client:
        monkeypatch.setattr(World, "step", broken)
        with client.websocket_connect(WS) as ws:
            while (msg := json.loads(ws.receive_text()))["type"] != "error":
                pass
            assert "the world stopped: out of memory" in msg["message"]
        monkeypatch.undo()
        with client.websocket_connect(WS) as ws:
            assert frames_of(ws, 3)[-1]["step"] >= 2


# --- control you can see ---


def test_paddle_is_found_in_real_pong_frames_and_not_when_painted_over(models):
    from genie.data.frames import median_background
    from genie.world.control import paddle_of, paddle_row

    store = models.store
    paddle = paddle_of(store)
    rows = [paddle_row(np.asarray(store.frames[t]), paddle) for t in range(20, 120)]
    found = [r for r in rows if r is not None]
    assert len(found) > 90 and all(10 < r < 68 for r in found)
    assert paddle_row(median_background(store), paddle) is None  # the court without paddles


def test_control_score_counts_free_steps_that_move_the_way_of_the_key(models):
    from genie.world.control import _score, paddle_of

    paddle = paddle_of(models.store)
    rows = [40.0, 38.0, 38.2, None, 30.0, 12.0, 11.0]  # up, still, unseen, unseen, up, at the wall
    assert _score(rows, -1, paddle, 72, 4.0) == (2, 3)
    assert _score(rows, +1, paddle, 72, 4.0) == (0, 3)


def test_control_rate_on_a_world_and_on_the_real_frames(keyed):
    from genie.world.control import control_rate

    out = control_rate(keyed, prompts=2, horizon=2)
    assert out["up_steps"] <= 4 and 0 <= out["paddle_seen"] <= 1
    assert out["real"]["up_rate"] > 0.7 and out["real"]["down_rate"] > 0.7  # real Pong: keys move it


def test_recorded_relative_upstream_paths_resolve_from_any_directory(tmp_path, monkeypatch):
    from genie.inference import upstream_paths

    root = tmp_path / "project"
    (root / "checkpoints/tokenizer/run_1").mkdir(parents=True)
    (root / "checkpoints/dynamics/run_2").mkdir(parents=True)
    (root / "checkpoints/tokenizer/run_1/checkpoint_step_5.pt").write_bytes(b"x")
    recorded = {"actions": "lam", "tokenizer": {"path": "checkpoints/tokenizer/run_1/checkpoint_step_5.pt"}}
    monkeypatch.chdir(tmp_path)  # not the project: the recorded relative path does not exist from here
    paths = upstream_paths(recorded, root / "checkpoints/dynamics/run_2/checkpoint_step_9.pt")
    assert Path(paths["tokenizer"]).is_file() and paths["actions"] == "lam"
