"""Long play: object counts see duplicates, long decoding is exact, the held random actions."""

from pathlib import Path

import numpy as np
import torch

from genie.config import CodebookConfig, TokenizerModelConfig, TransformerConfig
from genie.data.store import EpisodeStore
from genie.evaluation import long_play
from genie.evaluation.long_play import MAX_HOLD, count_shares, decode_long, held_random_actions
from genie.evaluation.objects import box, game_objects, object_pixels, objects_counted, objects_seen
from genie.models.tokenizer import VideoTokenizer


def test_counts_see_a_duplicated_paddle_and_a_lost_ball(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    objects = game_objects("pong", store.height, store.width)
    frames = np.asarray(store.frames[:200])
    counts = objects_counted(frames, objects)
    assert (counts["agent_paddle"] == 1).all() and (counts["opponent_paddle"] <= 1).all()
    assert set(np.unique(counts["ball"])) <= {0, 1}

    # a copy of the agent's paddle 20 rows away is a second paddle; the court painted over the ball, none
    frame = frames[counts["ball"] == 1][0].copy()
    rows, cols = box(objects["agent_paddle"], store.height, store.width)
    band = frame[rows, cols].copy()
    match = np.abs(band.astype(int) - np.array(objects["agent_paddle"].colour)).sum(-1) < 60
    top = int(np.nonzero(match.any(1))[0][0])
    shifted = np.roll(band, 20 if top < 30 else -20, axis=0)
    twice = frame.copy()
    twice[rows, cols] = np.where(match[..., None], band, shifted)
    court = np.median(frames, axis=0).astype(np.uint8)
    ball_rows, ball_cols = box(objects["ball"], store.height, store.width)
    no_ball = frame.copy()
    no_ball[ball_rows, ball_cols] = court[ball_rows, ball_cols]
    counts = objects_counted(np.stack([frame, twice, no_ball]), objects)
    assert counts["agent_paddle"].tolist() == [1, 2, 1]
    assert counts["ball"].tolist() == [1, 1, 0]


def test_object_pixels_lie_in_the_object_box_and_agree_with_presence(pong_dataset: Path) -> None:
    store = EpisodeStore.open(pong_dataset)
    objects = game_objects("pong", store.height, store.width)
    frames = np.asarray(store.frames[:100])
    pixels, seen = object_pixels(frames, objects), objects_seen(frames, objects)
    for name, look in objects.items():
        assert pixels[name].shape == frames.shape[:-1]
        rows, cols = box(look, store.height, store.width)
        outside = pixels[name].copy()
        outside[:, rows, cols] = False
        assert not outside.any()
        assert np.array_equal(pixels[name].sum((1, 2)) >= look.min_pixels, seen[name])


def test_count_shares():
    shares = count_shares({"ball": np.array([[0, 1, 1, 2]])}, 4)
    assert shares == {"play/ball_one_t4": 0.5, "play/ball_many_t4": 0.25}


def test_held_random_actions_hold_and_cover_every_action():
    actions = held_random_actions(3, 4, 500, torch.Generator().manual_seed(0))
    assert actions.shape == (4, 500) and set(actions.unique().tolist()) == {0, 1, 2}
    for row in actions.tolist():
        changes = [i for i in range(1, len(row)) if row[i] != row[i - 1]]
        runs = np.diff([0, *changes, len(row)])
        # holds of 1..8 (mean 4.5); a hold that repeats the last action (1 in 3) lengthens the run
        assert 3 < runs.mean() < 9 and runs.min() >= 1 and np.median(runs) <= MAX_HOLD


def test_long_decoding_in_chunks_equals_one_pass(monkeypatch):
    torch.manual_seed(0)
    small = TransformerConfig(num_layers=2, d_model=32, num_heads=2)
    cfg = TokenizerModelConfig(encoder=small, decoder=small, codebook=CodebookConfig(16, 8), patch_size=4)
    tokenizer = VideoTokenizer(cfg, height=8, width=12, window=3).eval()
    tokens = torch.randint(0, 16, (2, 23, 6))
    monkeypatch.setattr(long_play, "DECODE_CHUNK", 5)
    with torch.no_grad():
        whole = (tokenizer.decode(tokens).clamp(0, 1) * 255).round().byte().movedim(-3, -1).numpy()
    chunked = decode_long(tokenizer, tokens)
    assert chunked.shape == whole.shape
    assert np.abs(chunked.astype(int) - whole.astype(int)).max() <= 1  # float rounding at most


def test_a_tokenizer_without_window_decodes_in_one_pass():
    torch.manual_seed(0)
    small = TransformerConfig(num_layers=1, d_model=32, num_heads=2)
    cfg = TokenizerModelConfig(encoder=small, decoder=small, codebook=CodebookConfig(16, 8), patch_size=4)
    tokenizer = VideoTokenizer(cfg, height=8, width=12).eval()
    assert decode_long(tokenizer, torch.randint(0, 16, (1, 7, 6))).shape == (1, 7, 8, 12, 3)
