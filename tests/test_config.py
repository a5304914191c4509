"""Configs: the user's own YAML loads, ours are strict, and the user's size runs."""

from pathlib import Path

import pytest
import torch

from genie.config import DynamicsConfig, TokenizerConfig, config_from_dict, load_config
from genie.errors import GenieError

ROOT = Path(__file__).resolve().parents[1]

# The keys and layout of the user's original configs/tokenizer_config.yaml.
USER_TOKENIZER_YAML = """
model:
  name: "video_tokenizer"
  encoder: {num_layers: 6, d_model: 384, num_heads: 6, k_q_size: 60, dim_feedforward: 1536,
            dropout: 0.1, activation: "gelu"}
  decoder: {num_layers: 8, d_model: 384, num_heads: 6, k_q_size: 60, dim_feedforward: 1536,
            dropout: 0.1, activation: "gelu"}
  codebook: {num_codes: 512, latent_dim: 32, commitment_cost: 0.25, decay: 0.99, epsilon: 1e-5}
  patch_size: 4
data: {sequence_length: 8, fps: 10, resolution: [128, 72, 3], batch_size: 1, num_workers: 0}
training:
  max_lr: 1.0e-4
  min_lr: 1.0e-5
  beta1: 0.9
  beta2: 0.9
  weight_decay: 1.0e-4
  warmup_steps: 500
  max_steps: 30000
  lr_schedule: "cosine"
  reconstruction_weight: 1.0
  commitment_weight: 0.25
  codebook_weight: 1.0
  mixed_precision: true
  gradient_checkpointing: true
  max_grad_norm: 1.0
  save_every: 5000
  eval_every: 1000
  memory_offload_interval: 100
  aggressive_cleanup_interval: 25
  memory_threshold_gb: 8.0
output: {checkpoint_dir: "checkpoints/tokenizer", log_dir: "logs/tokenizer"}
"""


def test_users_original_yaml_loads_with_notices(tmp_path, capsys):
    path = tmp_path / "tokenizer_config.yaml"
    path.write_text(USER_TOKENIZER_YAML)
    cfg = load_config(TokenizerConfig, path)
    assert (cfg.data.height, cfg.data.width) == (72, 128)  # their [128, 72, 3] is 128 columns x 72 rows
    assert cfg.model.encoder.num_layers == 6 and cfg.model.decoder.num_layers == 8
    assert cfg.model.codebook.num_codes == 512 and cfg.training.gradient_checkpointing
    notes = capsys.readouterr().out.splitlines()
    assert any("training.memory_threshold_gb is ignored" in n for n in notes)
    assert any("model.encoder.k_q_size is ignored" in n for n in notes)


@pytest.mark.parametrize("name", ["configs/tokenizer_config.yaml", "configs/tiny/tokenizer.yaml"])
def test_shipped_configs_load(name, capsys):
    cfg = load_config(TokenizerConfig, ROOT / name)
    assert (cfg.data.height, cfg.data.width) == (72, 128)
    assert capsys.readouterr().out == ""  # our own configs use no legacy keys


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"training": {"warmup_stepz": 1}}, "cfg.yaml: training.warmup_stepz: unknown key"),
        ({"model": {"encoder": {"num_layers": 2.5}}}, "cfg.yaml: model.encoder.num_layers: expected int"),
        ({"model": {"codebook": {"num_codes": 1}}}, "num_codes 1: expected at least 2"),
        ({"data": {"resolution": [128, 72, 4]}}, "expected [width, height, 3]"),
        ({"training": {"lr_schedule": "linear"}}, "lr_schedule 'linear'"),
        ({"model": {"encoder": {"activation": "tanh"}}}, "activation 'tanh'"),
        ({"training": {"mixed_precision": "yes"}}, "training.mixed_precision: expected bool"),
    ],
)
def test_bad_keys_and_values_name_the_file_and_key(patch, expected):
    with pytest.raises(GenieError) as info:
        config_from_dict(TokenizerConfig, patch, "cfg.yaml")
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_bad_yaml_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("model: [unclosed\n")
    with pytest.raises(GenieError, match="broken.yaml: not valid YAML at line"):
        load_config(TokenizerConfig, path)
    with pytest.raises(GenieError, match="not found"):
        load_config(TokenizerConfig, tmp_path / "missing.yaml")


@pytest.mark.slow
def test_user_size_tokenizer_runs_forward_backward():
    """The paper-ish size (6+8 layers x 384, patch 4: 576 tokens a frame) at a reduced batch and clip."""
    from genie.models.tokenizer import VideoTokenizer

    cfg = load_config(TokenizerConfig, ROOT / "configs/tokenizer_config.yaml")
    torch.manual_seed(0)
    model = VideoTokenizer(cfg.model, height=72, width=128, checkpointing=True)
    assert 20e6 < sum(p.numel() for p in model.parameters()) < 40e6
    out = model(torch.rand(1, 2, 3, 72, 128))
    assert out.indices.shape == (1, 2, 18 * 32)
    (out.reconstruction.square().mean() + out.vq.codebook_loss + out.vq.commitment_loss).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_an_unknown_context_noise_kind_is_named():
    with pytest.raises(GenieError) as info:
        config_from_dict(DynamicsConfig, {"training": {"context_noise_kind": "blur"}}, "cfg.yaml")
    assert "context_noise_kind 'blur': expected random or other_frame" in str(info.value)
