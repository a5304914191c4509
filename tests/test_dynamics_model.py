"""Dynamics model: action alignment, causality, the KV cache equals the full forward, MaskGIT sampling."""

import pytest
import torch
from tiny_models import A, N, V, tiny_dynamics

from genie.config import TransformerConfig
from genie.models.dynamics import DynamicsModel, FrameCache, SamplingConfig, nucleus


@pytest.fixture(params=["every_block", "input"])
def model(request) -> DynamicsModel:
    return tiny_dynamics(every_block=request.param == "every_block")


def clip(B: int = 2, T: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, V, (B, T, N), generator=g), torch.randint(0, A, (B, T - 1), generator=g)


def test_action_t_changes_frame_t_plus_1_and_nothing_before(model):
    tokens, actions = clip()
    t = 2
    other = actions.clone()
    other[:, t] = (actions[:, t] + 1) % A
    a, b = model(tokens, actions), model(tokens, other)
    torch.testing.assert_close(a[:, : t + 1], b[:, : t + 1])  # frames 0..t untouched by a_t
    assert (a[:, t + 1] - b[:, t + 1]).abs().amax() > 1e-4  # frame t+1 answers a_t


def test_causal_in_time(model):
    tokens, actions = clip()
    changed = tokens.clone()
    changed[:, 3] = (tokens[:, 3] + 1) % V
    torch.testing.assert_close(model(changed, actions)[:, :3], model(tokens, actions)[:, :3])


def test_cache_equals_full_forward(model):
    tokens, actions = clip(T=5)
    full = model(tokens, actions)
    cache = FrameCache(window=8)
    none = torch.full((2,), A)
    for t in range(4):
        model.observe(tokens[:, t], none if t == 0 else actions[:, t - 1], cache)
    logits, _ = model._frame_logits(tokens[:, 4], actions[:, 3], cache)
    torch.testing.assert_close(logits, full[:, 4], atol=1e-5, rtol=1e-4)


def test_sliding_window_equals_forward_on_the_last_frames():
    """Rotary positions: a cache trimmed to W frames equals a fresh forward over those W frames.

    Exact for one block; with more blocks a cached frame's keys also carry what that frame saw
    before the window (as in sliding-window attention LLMs), which is the point of keeping them.
    """
    model = tiny_dynamics(num_layers=1).eval()
    tokens, actions = clip(T=7)
    W = 3
    cache = FrameCache(window=W)
    none = torch.full((2,), A)
    for t in range(6):
        model.observe(tokens[:, t], none if t == 0 else actions[:, t - 1], cache)
    assert cache.layers[0][0].shape[2] == W - 1
    logits, _ = model._frame_logits(tokens[:, 6], actions[:, 5], cache)
    # the same last W frames from scratch: frame 4 is led to by a_3, so feed actions 3..5 via the embed path
    window_tokens = tokens[:, 4:7]
    x, cond = model._embed(window_tokens, actions[:, 3:6])
    ref = model.head(model.transformer(x, cond=cond))[:, -1]
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-4)


def test_greedy_one_step_sampling_is_argmax(model):
    tokens, actions = clip(T=3)
    cache = FrameCache(window=8)
    none = torch.full((2,), A)
    model.observe(tokens[:, 0], none, cache)
    model.observe(tokens[:, 1], actions[:, 0], cache)
    masked = torch.full((2, 1, N), model.mask_id)
    expected = model(torch.cat([tokens[:, :2], masked], 1), actions[:, :2])[:, 2].argmax(-1)
    out = model.sample_next(actions[:, 1], cache, SamplingConfig(steps=1, temperature=0.0))
    torch.testing.assert_close(out, expected)
    assert cache.next_position == 3


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_schedule_unmasks_everything_monotonically(schedule):
    cfg = SamplingConfig(steps=8, schedule=schedule)
    left = [cfg.masked_after(s, 144) for s in range(8)]
    assert left == sorted(left, reverse=True) and left[-1] == 0 and left[0] < 144


def test_rollout_shapes_and_sampled_tokens_are_real(model):
    tokens, actions = clip(T=3)
    g = torch.Generator().manual_seed(0)
    out = model.rollout(
        tokens[:, :2], torch.randint(0, A, (2, 1 + 4)), SamplingConfig(4, 2.0), window=3, generator=g
    )
    assert out.shape == (2, 4, N) and out.max() < V and out.min() >= 0


@pytest.mark.parametrize(("steps", "temperature"), [(0, 1.0), (4, -1.0)])
def test_bad_sampling_parameters(steps, temperature):
    with pytest.raises(ValueError):
        SamplingConfig(steps=steps, temperature=temperature)


@pytest.mark.parametrize("window", [8, 3])
def test_pending_frame_pass_equals_caching_each_frame_first(model, window):
    """sample_next leaves its frame pending and caches it in the next frame's first pass (one pass fewer);
    the tokens must equal those of caching every frame right away, also when the window slides."""
    tokens, actions = clip(T=3)
    sampling = SamplingConfig(steps=2, temperature=0.0)
    none = torch.full((2,), A)
    fast, slow = FrameCache(window), FrameCache(window)
    for cache in (fast, slow):
        model.observe(tokens[:, 0], none, cache)
        model.observe(tokens[:, 1], actions[:, 0], cache)
    for t in range(5):
        action = torch.tensor([t % A, (t + 1) % A])
        got = model.sample_next(action, fast, sampling)
        want = model.sample_next(action, slow, sampling)
        slow.pending = None
        model.observe(want, action, slow)  # cache it alone, right away
        torch.testing.assert_close(got, want)
        masked = torch.full_like(got, model.mask_id)  # the next frame's first round, with / without pending
        fast_logits, _ = model._frame_logits(masked, action, fast)
        slow_logits, _ = model._frame_logits(masked, action, slow)
        torch.testing.assert_close(fast_logits, slow_logits, atol=1e-5, rtol=1e-4)
    assert fast.next_position == slow.next_position == 7 and fast.pending is None


def test_the_action_reaches_every_block_only_when_asked():
    cfg = TransformerConfig(num_layers=2, d_model=32, num_heads=4)
    every = DynamicsModel(cfg, vocab_size=V, num_actions=A, num_patches=N, action_every_block=True)
    plain = DynamicsModel(cfg, vocab_size=V, num_actions=A, num_patches=N)
    assert all(b.modulation is not None for b in every.transformer.blocks)
    assert all(b.modulation is None for b in plain.transformer.blocks)
    # zero-initialised: at init the conditioned model computes what the plain one does with its weights
    plain.load_state_dict({k: v for k, v in every.state_dict().items() if "modulation" not in k})
    tokens, actions = clip()
    torch.testing.assert_close(every(tokens, actions), plain(tokens, actions))


def test_guidance_one_is_the_unguided_sampler_and_never_runs_the_null_branch(model, monkeypatch):
    tokens, actions = clip(T=3)
    calls = []
    frame_logits = model._frame_logits
    monkeypatch.setattr(
        model,
        "_frame_logits",
        lambda *a, **k: calls.append(k.get("null_branch", False)) or frame_logits(*a, **k),
    )
    outs = []
    for sampling in (SamplingConfig(3, 1.0), SamplingConfig(3, 1.0, guidance=1.0)):
        g = torch.Generator().manual_seed(0)
        outs.append(model.rollout(tokens[:, :2], actions, sampling, window=4, generator=g))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)
    assert calls and not any(calls)


def test_the_null_branch_rides_along_without_changing_the_action_branch(model):
    """Both branches in one pass: the action's branch equals the unguided pass, the null branch equals a
    pass with "no action"; the branches do not see each other, and the pending frame joins the cache once."""
    tokens, actions = clip(T=4)
    none = torch.full((2,), A)
    caches = [FrameCache(8) for _ in range(3)]
    for cache in caches:
        model.observe(tokens[:, 0], none, cache)
        model.observe(tokens[:, 1], actions[:, 0], cache)
        cache.pending = (tokens[:, 2], actions[:, 1])  # a generated frame, not cached yet
    masked = torch.full((2, N), model.mask_id)
    both, kv = model._frame_logits(masked, actions[:, 2], caches[0], null_branch=True)
    cond, kv_cond = model._frame_logits(masked, actions[:, 2], caches[1])
    uncond, _ = model._frame_logits(masked, none, caches[2])
    assert both.shape == (2, 2, N, V)
    torch.testing.assert_close(both[:, 0], cond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(both[:, 1], uncond, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(kv[0][0], kv_cond[0][0], atol=1e-5, rtol=1e-4)
    assert caches[0].position == caches[1].position == 3 and caches[0].pending is None


def test_guidance_pushes_toward_the_action(model):
    """logits = uncond + w (cond - uncond): with greedy sampling and a large w the sampled frame follows
    the direction in which the action moved the logits."""
    tokens, actions = clip(T=3)
    none = torch.full((2,), A)
    cache = FrameCache(8)
    model.observe(tokens[:, 0], none, cache)
    model.observe(tokens[:, 1], actions[:, 0], cache)
    masked = torch.full((2, N), model.mask_id)
    both, _ = model._frame_logits(masked, actions[:, 1], cache, null_branch=True)
    want = (both[:, 1] + 5.0 * (both[:, 0] - both[:, 1])).argmax(-1)
    got = model.sample_next(actions[:, 1], cache, SamplingConfig(1, 0.0, guidance=5.0))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("guidance", [-1.0, float("inf")])
def test_bad_guidance(guidance):
    with pytest.raises(ValueError):
        SamplingConfig(guidance=guidance)


def test_nucleus_keeps_the_likeliest_tokens_holding_top_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = nucleus(logits, 0.7).isfinite()
    assert kept.tolist() == [[True, True, False, False]]  # 0.5 + 0.3 reaches 0.7
    assert nucleus(logits, 1.0).isfinite().all() and nucleus(logits, 0.01).isfinite().sum() == 1
    shuffled = logits[:, [2, 0, 3, 1]]  # the set follows the probabilities, not the positions
    assert nucleus(shuffled, 0.7).isfinite().tolist() == [[False, True, False, True]]


def test_a_tiny_nucleus_samples_the_argmax(model):
    tokens, actions = clip(T=3)
    none = torch.full((2,), A)
    frames = []
    for sampling in (SamplingConfig(1, 1.0, top_p=1e-6), SamplingConfig(1, 0.0)):
        cache = FrameCache(8)
        model.observe(tokens[:, 0], none, cache)
        model.observe(tokens[:, 1], actions[:, 0], cache)
        frames.append(model.sample_next(actions[:, 1], cache, sampling, torch.Generator().manual_seed(0)))
    torch.testing.assert_close(frames[0], frames[1])


def test_logits_at_selected_tokens_equal_the_full_forward_there(model):
    tokens, actions = clip()
    where = torch.rand(tokens.shape, generator=torch.Generator().manual_seed(1)) < 0.6
    full = model(tokens, actions)
    assert torch.allclose(model(tokens, actions, where=where), full[where], atol=1e-6)
