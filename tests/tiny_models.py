"""The smallest models of the three kinds, built directly (no config file, no training run), for the
tests on tiny tensors. Each starts from seed 0 with the layers that are zero at init woken, so a test
sees them act."""

from __future__ import annotations

import torch

from genie.config import CodebookConfig, LamModelConfig, TokenizerModelConfig, TransformerConfig
from genie.models.dynamics import DynamicsModel
from genie.models.lam import LatentActionModel
from genie.models.tokenizer import VideoTokenizer

V, A, N = 16, 3, 6  # the tiny dynamics model's vocabulary, actions and patches per frame


def tiny_tokenizer(encoder_layers: int = 1, **kw) -> VideoTokenizer:
    """8 x 12 frames in patches of 4 (6 a frame), 16 codes."""
    small = TransformerConfig(num_layers=1, d_model=32, num_heads=2)
    encoder = TransformerConfig(num_layers=encoder_layers, d_model=32, num_heads=2)
    cfg = TokenizerModelConfig(encoder=encoder, decoder=small, codebook=CodebookConfig(16, 8), patch_size=4)
    return VideoTokenizer(cfg, height=8, width=12, **kw)


def tiny_lam(context: int = 2, height: int = 20, width: int = 24) -> LatentActionModel:
    """20 rows do not divide by the patch 8: the model pads to 24 and crops."""
    small = TransformerConfig(num_layers=2, d_model=32, num_heads=2)
    cfg = LamModelConfig(encoder=small, decoder=small, patch_size=8, decoder_context=context)
    torch.manual_seed(0)
    model = LatentActionModel(cfg, height=height, width=width)
    torch.nn.init.normal_(model.to_pixels.weight, std=0.1)  # zero at init (a copy of x_t): wake it for tests
    return model.eval()


def tiny_dynamics(every_block: bool = True, num_layers: int = 2) -> DynamicsModel:
    """V codes, A actions, N patches; the action enters every block (its modulation woken) or the input."""
    torch.manual_seed(0)
    cfg = TransformerConfig(num_layers=num_layers, d_model=32, num_heads=4, qk_normalization=True)
    model = DynamicsModel(cfg, vocab_size=V, num_actions=A, num_patches=N, action_every_block=every_block)
    for block in model.transformer.blocks:  # the per-block modulation starts at zero (the plain block)
        if block.modulation is not None:
            torch.nn.init.normal_(block.modulation[1].weight, std=0.2)
    return model
