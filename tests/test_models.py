"""The shared ST block, the quantiser and the tokenizer on tiny tensors; a gradient for every parameter of
all three models."""

import pytest
import torch
from tiny_models import A, N, V, tiny_dynamics, tiny_lam, tiny_tokenizer

from genie.config import TransformerConfig
from genie.models.quantizer import VectorQuantizer
from genie.models.st_transformer import STBlock, STTransformer, patchify, unpatchify


def test_patchify_round_trip():
    x = torch.rand(2, 3, 3, 8, 12)
    p = patchify(x, 4)
    assert p.shape == (2, 3, 6, 48)
    torch.testing.assert_close(unpatchify(p, 4, 8, 12), x)


@pytest.mark.parametrize("qk_norm", [False, True])
def test_temporal_causality(qk_norm):
    torch.manual_seed(0)
    block = STBlock(
        TransformerConfig(num_layers=1, d_model=32, num_heads=4, qk_normalization=qk_norm), causal=True
    )
    x = torch.randn(2, 5, 6, 32)
    x2 = x.clone()
    x2[:, 3] = torch.randn_like(x[:, 3])  # change frame 3 only
    from genie.models.st_transformer import rotary_cos_sin

    rot = rotary_cos_sin(torch.arange(5), 8)
    y, y2 = block(x, rot), block(x2, rot)
    torch.testing.assert_close(y2[:, :3], y[:, :3])  # frames before 3 untouched
    assert (y2[:, 3:] - y[:, 3:]).abs().amax() > 1e-3  # the change does reach frames >= 3


def test_non_causal_sees_the_future():
    torch.manual_seed(0)
    net = STTransformer(TransformerConfig(num_layers=1, d_model=32, num_heads=4), causal=False)
    x = torch.randn(1, 4, 3, 32)
    x2 = x.clone()
    x2[:, -1] = torch.randn_like(x[:, -1])
    assert (net(x2)[:, 0] - net(x)[:, 0]).abs().amax() > 1e-3


def test_rotary_turns_each_half_split_pair_by_its_angle():
    """apply_rotary against RoPE written out: pair (x_i, x_{i+hd/2}) turns by position * 10000^(-2i/hd)."""
    from genie.models.st_transformer import apply_rotary, rotary_cos_sin

    torch.manual_seed(0)
    x, positions, hd = torch.randn(2, 3, 5, 8), torch.tensor([0, 1, 4, 9, 37]), 8
    angle = positions[:, None].double() * 10000 ** (-torch.arange(0, hd, 2).double() / hd)  # (t, hd/2)
    x1, x2 = x.double().chunk(2, dim=-1)
    expected = torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], dim=-1)
    out = apply_rotary(x, *rotary_cos_sin(positions, hd))
    assert out.dtype == x.dtype
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert torch.allclose(out.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # a rotation keeps lengths


def test_rotary_depends_on_offsets_only():
    """Shifting all frame positions by a constant leaves temporal attention unchanged (sliding window)."""
    from genie.models.st_transformer import Attention, rotary_cos_sin

    torch.manual_seed(0)
    attn = Attention(16, 2)
    x = torch.randn(3, 5, 16)
    a = attn(x, causal=True, rotary=rotary_cos_sin(torch.arange(5), 8))
    b = attn(x, causal=True, rotary=rotary_cos_sin(torch.arange(5) + 37, 8))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_sliding_window_sees_only_the_last_frames():
    """A causal stack run with window w over a longer clip: a frame never sees w or more frames back
    (one block)."""
    torch.manual_seed(0)
    net = STTransformer(TransformerConfig(num_layers=1, d_model=32, num_heads=4), causal=True)
    x = torch.randn(2, 6, 3, 32)
    x2 = x.clone()
    x2[:, 1] = torch.randn_like(x[:, 1])
    y, y2 = net(x, window=3), net(x2, window=3)
    torch.testing.assert_close(y2[:, 4:], y[:, 4:])  # frames 4, 5 are 3+ frames after frame 1
    assert (y2[:, 1:4] - y[:, 1:4]).abs().amax() > 1e-3
    assert (net(x2)[:, 4:] - net(x)[:, 4:]).abs().amax() > 1e-3  # without the window they see it
    with pytest.raises(ValueError, match="causal"):
        STTransformer(TransformerConfig(num_layers=1, d_model=32, num_heads=4), causal=False)(x, window=3)


def test_checkpointing_matches_plain_forward_and_grads():
    torch.manual_seed(0)
    cfg = TransformerConfig(num_layers=2, d_model=32, num_heads=4)
    plain = STTransformer(cfg, causal=True)
    ckpt = STTransformer(cfg, causal=True, checkpointing=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 32)
    plain(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for p, q in zip(plain.parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)


def test_quantizer_round_trip_and_straight_through():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    z = torch.randn(2, 5, 4, requires_grad=True)
    out = vq(z)
    assert out.indices.shape == (2, 5) and out.indices.dtype == torch.int64
    torch.testing.assert_close(vq.indices_to_codes(out.indices), out.quantized.detach())
    (g,) = torch.autograd.grad(out.quantized.sum(), z, retain_graph=True)
    assert g.abs().sum() > 0  # gradient passes straight through the argmax
    (out.codebook_loss + out.commitment_loss).backward()
    assert vq.codebook.grad is not None and vq.codebook.grad.abs().sum() > 0
    assert 1.0 <= float(out.perplexity) <= 8.0


def test_dead_codes_are_restarted_onto_encoder_outputs():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, decay=0.5)
    z = torch.randn(64, 4) * 0.01 + torch.tensor([1.0, 0, 0, 0])  # all inputs in one direction
    for _ in range(20):
        vq.update_usage_(torch.bincount(vq(z).indices, minlength=8))
    dead = vq.dead_codes()
    assert dead.sum() >= 6  # one or two codes take everything
    restarted = vq.restart_dead_codes_(z)
    assert restarted == int(dead.sum())
    assert not vq.dead_codes().any()
    # restarted codes now sit on the data: all close to the input direction
    assert (vq.codes()[dead] @ torch.tensor([1.0, 0, 0, 0])).min() > 0.9
    vq.eval()
    used = vq(torch.randn(256, 4) * 0.3 + torch.tensor([1.0, 0, 0, 0])).indices.unique().numel()
    assert used > 2


def test_tokenizer_shapes_encode_decode():
    torch.manual_seed(0)
    model = tiny_tokenizer().eval()
    x = torch.rand(2, 3, 3, 8, 12)
    out = model(x)
    assert out.reconstruction.shape == x.shape
    assert out.indices.shape == (2, 3, 6)
    tokens = model.encode(x)
    torch.testing.assert_close(tokens, out.indices)
    frames = model.decode(tokens)
    assert frames.shape == x.shape and frames.min() >= 0 and frames.max() <= 1
    torch.testing.assert_close(frames, out.reconstruction.clamp(0, 1))


def test_tokenizer_is_causal_in_time():
    torch.manual_seed(0)
    model = tiny_tokenizer().eval()
    x = torch.rand(1, 4, 3, 8, 12)
    x2 = x.clone()
    x2[:, 3] = torch.rand_like(x[:, 3])
    torch.testing.assert_close(model(x2).reconstruction[:, :3], model(x).reconstruction[:, :3])


def test_a_local_encoder_codes_each_patch_from_its_own_pixels():
    """With no encoder layers a patch's code depends on its pixels and position only: changing one patch of
    one frame changes no other token, in that frame or later ones (the attention encoder's do change)."""
    torch.manual_seed(0)
    x = torch.rand(2, 3, 3, 8, 12)
    x2 = x.clone()
    x2[:, 1, :, :4, :4] = torch.rand(2, 3, 4, 4)  # patch 0 of frame 1
    local, attending = tiny_tokenizer(encoder_layers=0).eval(), tiny_tokenizer().eval()
    for model in (local, attending):  # a codebook spread over the encoder's outputs, so codes can move
        with torch.no_grad():
            model.quantizer.codebook.copy_(model._encode(torch.rand(4, 3, 3, 8, 12))[0].flatten(0, 2)[:16])
    same = local.encode(x) == local.encode(x2)
    same[:, 1, 0] = True
    assert same.all()
    changed = attending.encode(x) != attending.encode(x2)
    changed[:, 1, 0] = False
    assert changed.any()


def _tokenizer_loss() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model = tiny_tokenizer()
    out = model(torch.rand(2, 3, 3, 8, 12))
    return model, out.reconstruction.square().mean() + out.vq.codebook_loss + out.vq.commitment_loss


def _lam_loss() -> tuple[torch.nn.Module, torch.Tensor]:
    model = tiny_lam().train()
    out = model(torch.rand(2, 4, 3, 20, 24))
    return model, out.prediction.square().mean() + out.vq.codebook_loss + out.vq.commitment_loss


def _dynamics_loss() -> tuple[torch.nn.Module, torch.Tensor]:
    """As the stage trains it: a share of the tokens masked, only the masked ones scored."""
    model = tiny_dynamics()
    g = torch.Generator().manual_seed(1)
    tokens, actions = torch.randint(0, V, (2, 4, N), generator=g), torch.randint(0, A, (2, 3), generator=g)
    where = torch.rand(2, 4, N, generator=g) < 0.5
    logits = model(tokens.masked_fill(where, model.mask_id), actions, where)
    return model, torch.nn.functional.cross_entropy(logits, tokens[where])


TRAINING_LOSSES = {"tokenizer": _tokenizer_loss, "lam": _lam_loss, "dynamics": _dynamics_loss}


@pytest.mark.parametrize("kind", TRAINING_LOSSES)
def test_every_parameter_gets_a_gradient(kind):
    """DDP needs it: it reduces every parameter's gradient, and one that the training loss does not reach
    makes a multi-process run fail."""
    model, loss = TRAINING_LOSSES[kind]()
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing
