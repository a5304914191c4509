"""Typed configs loaded from YAML, strictly: an unknown or ill-typed key is an error naming file and key.

The YAML layout follows the user's original files (`model.encoder`, `model.decoder`, `model.codebook`,
`model.patch_size`, `data.*`, `training.*`, `output.*`) so their configs load unchanged. Keys that only
drove their manual GPU-memory clean-up are accepted with a one-line notice and ignored.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from genie.errors import GenieError

# Keys of the user's configs that have no meaning here; accepted with a notice, never used.
LEGACY_KEYS: dict[str, str] = {
    "memory_offload_interval": "memory stays flat without manual clean-up",
    "aggressive_cleanup_interval": "memory stays flat without manual clean-up",
    "memory_threshold_gb": "memory stays flat without manual clean-up",
    "k_q_size": "the per-head size is d_model // num_heads",
    "epsilon": "the codebook is learned by gradient, not EMA",
    "commitment_cost": "the commitment loss is weighted by training.commitment_weight",
    "mask_prob": "the mask rate is drawn from U(min_mask_prob, max_mask_prob) per clip",
    "log_dir": "logs live in the run directory (metrics.jsonl, TensorBoard events)",
}


@dataclass
class TransformerConfig:
    """One ST-transformer stack (encoder, decoder or the dynamics trunk)."""

    num_layers: int = 2
    d_model: int = 128
    num_heads: int = 4
    dim_feedforward: int = 0  # 0 means 4 * d_model
    dropout: float = 0.0
    activation: str = "gelu"
    qk_normalization: bool = False

    def __post_init__(self) -> None:
        if self.num_layers < 0 or self.d_model < 1 or self.num_heads < 1:
            raise ValueError("d_model and num_heads must be >= 1, num_layers >= 0")
        if self.d_model % self.num_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.activation not in ("gelu", "relu", "silu"):
            raise ValueError(f"activation {self.activation!r}: expected gelu, relu or silu")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout {self.dropout}: expected a number in [0, 1)")
        if self.dim_feedforward == 0:
            self.dim_feedforward = 4 * self.d_model


@dataclass
class CodebookConfig:
    """Vector quantiser: `num_codes` codes of size `latent_dim`, learned by gradient, dead codes restarted."""

    num_codes: int = 512
    latent_dim: int = 32
    decay: float = 0.99  # EMA decay of per-code usage, which decides when a code is dead
    dead_threshold: float = 0.03  # a code used under this fraction of its uniform share (EMA) is restarted

    def __post_init__(self) -> None:
        if self.num_codes < 2:
            raise ValueError(f"num_codes {self.num_codes}: expected at least 2")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim {self.latent_dim}: expected at least 1")
        if not 0.0 < self.decay < 1.0:
            raise ValueError(f"decay {self.decay}: expected a number in (0, 1)")


@dataclass
class TokenizerModelConfig:
    name: str = "video_tokenizer"
    encoder: TransformerConfig = field(default_factory=TransformerConfig)
    decoder: TransformerConfig = field(default_factory=TransformerConfig)
    codebook: CodebookConfig = field(default_factory=CodebookConfig)
    patch_size: int = 8

    def __post_init__(self) -> None:
        if self.decoder.num_layers < 1:  # the encoder may have none: per-patch codes
            raise ValueError("decoder.num_layers: expected at least 1")


@dataclass
class DataConfig:
    """Clips fed to a stage. Frames are `height` rows x `width` columns."""

    sequence_length: int = 8
    fps: int = 10  # frame rate of the eval videos
    height: int = 72
    width: int = 128
    resolution: list[int] | None = None  # the user's [128, 72, 3]: width, height, channels
    batch_size: int = 4  # the global batch per optimizer step, split over processes and grad_accum
    num_workers: int = 0

    def __post_init__(self) -> None:
        if self.resolution is not None:
            # The user wrote "128x72" / [128, 72, 3] for 72 rows x 128 columns (Pong is landscape).
            if len(self.resolution) not in (2, 3) or (len(self.resolution) == 3 and self.resolution[2] != 3):
                raise ValueError(f"resolution {self.resolution}: expected [width, height, 3]")
            self.width, self.height = int(self.resolution[0]), int(self.resolution[1])
            self.resolution = None
        if self.sequence_length < 2:
            raise ValueError(f"sequence_length {self.sequence_length}: expected at least 2")
        if self.batch_size < 1 or self.num_workers < 0 or self.fps < 1:
            raise ValueError("batch_size and fps must be >= 1, num_workers >= 0")


@dataclass
class TrainingConfig:
    max_lr: float = 3e-4
    min_lr: float = 3e-5
    beta1: float = 0.9
    beta2: float = 0.95
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    max_steps: int = 1000
    lr_schedule: str = "cosine"  # cosine | constant (after warmup)
    reconstruction_weight: float = 1.0
    commitment_weight: float = 0.25
    codebook_weight: float = 1.0
    foreground_weight: float = 20.0  # extra pixel-loss weight where a pixel differs from the background
    mixed_precision: bool = True  # bf16 where supported, fp16 + scaler on older GPUs; never on CPU
    gradient_checkpointing: bool = False
    strategy: str = "ddp"  # under torchrun: ddp (a full copy per process) or fsdp (sharded; big models)
    grad_accum: int = 1  # micro-batches per step: the global batch (data.batch_size) is split over them
    max_grad_norm: float = 1.0
    save_every: int = 1000
    eval_every: int = 500
    log_every: int = 10
    eval_batches: int = 8  # validation batches per periodic evaluation
    keep_checkpoints: int = 0  # keep only the newest N periodic checkpoints (0 keeps all); best is kept
    max_skipped_steps: int = 10  # steps with a non-finite loss or gradient skipped before the run stops
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_skipped_steps < 0:
            raise ValueError(f"max_skipped_steps {self.max_skipped_steps}: expected at least 0")
        if self.lr_schedule not in ("cosine", "constant"):
            raise ValueError(f"lr_schedule {self.lr_schedule!r}: expected cosine or constant")
        if self.strategy not in ("ddp", "fsdp"):
            raise ValueError(f"strategy {self.strategy!r}: expected ddp or fsdp")
        for name in ("max_steps", "save_every", "eval_every", "log_every", "eval_batches", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} {getattr(self, name)}: expected at least 1")
        if self.warmup_steps < 0 or self.max_lr <= 0 or self.min_lr < 0 or self.min_lr > self.max_lr:
            raise ValueError("expected warmup_steps >= 0 and 0 <= min_lr <= max_lr, max_lr > 0")


@dataclass
class OutputConfig:
    checkpoint_dir: str = ""  # runs go to CHECKPOINT_DIR/run_YYYYMMDD_HHMMSS; default checkpoints/<stage>


@dataclass
class TokenizerConfig:
    model: TokenizerModelConfig = field(default_factory=TokenizerModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        p = self.model.patch_size
        if p < 1 or self.data.height % p or self.data.width % p:
            raise ValueError(
                f"resolution {self.data.height}x{self.data.width} (rows x columns) is not divisible "
                f"by model.patch_size {p}"
            )


@dataclass
class LamModelConfig:
    """Latent action model on pixels (Genie Sec. 2.2): causal ST encoder -> one action code per transition;
    a causal ST decoder predicts the next frame from the last `decoder_context` frames plus that code."""

    name: str = "latent_action_model"
    encoder: TransformerConfig = field(default_factory=TransformerConfig)
    decoder: TransformerConfig = field(default_factory=TransformerConfig)
    codebook: CodebookConfig = field(default_factory=lambda: CodebookConfig(num_codes=3, latent_dim=32))
    patch_size: int = 16
    # Frames before the transition that the decoder sees. Pong's paddle has inertia, so one frame cannot tell
    # an action from the motion it inherits (measured: 87% best possible); two give the velocity (97%).
    # More history lets the decoder guess held actions without the code, the road to a collapsed LAM.
    decoder_context: int = 2

    def __post_init__(self) -> None:
        if self.encoder.num_layers < 1 or self.decoder.num_layers < 1:
            raise ValueError("encoder.num_layers and decoder.num_layers: expected at least 1")
        if self.patch_size < 1:
            raise ValueError(f"patch_size {self.patch_size}: expected at least 1")
        if self.decoder_context < 1:
            raise ValueError(f"decoder_context {self.decoder_context}: expected at least 1")


@dataclass
class LamSupervisionConfig:
    """The few-label mode (off by default): the true actions of a share of the *training* episodes tie code
    k to movement class k. Reconstruction alone does not prefer state-independent codes (docs/lam.md), and
    a handful of labels breaks that tie. Validation episodes are never labelled."""

    label_fraction: float = 0.0  # share of training episodes whose true actions are used (rounded up)
    weight: float = 0.05  # of the cross-entropy on the labelled transitions, beside the pixel loss
    logit_scale: float = 10.0  # cosine similarities to the codes, times this, are the logits

    def __post_init__(self) -> None:
        if not 0.0 <= self.label_fraction <= 1.0:
            raise ValueError(f"label_fraction {self.label_fraction}: expected a number in [0, 1]")
        if self.weight < 0 or self.logit_scale <= 0:
            raise ValueError("expected weight >= 0 and logit_scale > 0")


@dataclass
class LamConfig:
    """Frames need not divide by the patch: the LAM pads them (as Jafar's preprocess) and crops its output."""

    model: LamModelConfig = field(default_factory=LamModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    supervision: LamSupervisionConfig = field(default_factory=LamSupervisionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if self.model.decoder_context > self.data.sequence_length - 1:
            k, T = self.model.decoder_context, self.data.sequence_length
            raise ValueError(
                f"model.decoder_context {k} exceeds the {T - 1} frames before a clip's last transition "
                f"(data.sequence_length {T})"
            )


@dataclass
class EmbeddingConfig:
    """The user's token_embedding / action_embedding sections; embedding_dim must equal d_model."""

    vocab_size: int = 0  # token_embedding: the tokenizer's num_codes (0: read from its checkpoint)
    num_actions: int = 0  # action_embedding: the LAM's num_codes (0: read from its checkpoint)
    embedding_dim: int = 0  # 0 means d_model


@dataclass
class DynamicsModelConfig:
    name: str = "dynamics"
    architecture: TransformerConfig = field(default_factory=TransformerConfig)
    # The vocabulary and the number of actions are the upstream checkpoints' facts: left out (0), they are
    # read from them; stated, they must agree (one line naming both where they do not).
    token_embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    action_embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    # input: the action's embedding is added to the new frame's tokens (Genie); every_block: it also
    # scales and shifts each block's norms for that frame (adaptive layer norm). Measured equal on the
    # tiny preset (docs/dynamics.md), so input stays the default; checkpoints without the key are input.
    action_conditioning: str = "input"

    def __post_init__(self) -> None:
        if self.architecture.num_layers < 1:
            raise ValueError("architecture.num_layers: expected at least 1")
        if self.action_conditioning not in ("input", "every_block"):
            raise ValueError(
                f"action_conditioning {self.action_conditioning!r}: expected input or every_block"
            )
        d = self.architecture.d_model
        for name, emb in (
            ("token_embedding", self.token_embedding),
            ("action_embedding", self.action_embedding),
        ):
            if emb.embedding_dim not in (0, d):
                raise ValueError(
                    f"{name}.embedding_dim {emb.embedding_dim} must equal architecture.d_model {d}"
                )
        if self.token_embedding.vocab_size < 0 or self.token_embedding.vocab_size == 1:
            raise ValueError(
                f"token_embedding.vocab_size {self.token_embedding.vocab_size}: expected >= 2 (or 0: the "
                "tokenizer's)"
            )
        if self.action_embedding.num_actions < 0 or self.action_embedding.num_actions == 1:
            raise ValueError(
                f"action_embedding.num_actions {self.action_embedding.num_actions}: expected >= 2 (or 0: the "
                "LAM's)"
            )


@dataclass
class DynamicsTrainingConfig(TrainingConfig):
    """MaskGIT training: each clip's mask rate ~ U(min_mask_prob, max_mask_prob); Genie uses U(0.5, 1)."""

    min_mask_prob: float = 0.5
    max_mask_prob: float = 1.0
    eval_rollouts: int = 8  # validation clips rolled out autoregressively at each evaluation
    eval_play_frames: int = 1000  # frames of long play in the final evaluation (object counts; 0: none)
    eval_play_prompts: int = 8  # held-out prompts played that long (batched: time grows with the count)
    # Share of transitions whose action is replaced by "no action", so that the model also learns to
    # predict without it: classifier-free guidance (inference.guidance) needs that branch.
    action_dropout: float = 0.0
    # Play feeds the model its own imperfect frames. Each clip replaces up to this share of its visible
    # (unmasked) tokens by random ones, so the model learns to predict through errors in its context;
    # the tokens it is scored on (the masked ones) keep their true labels.
    context_noise: float = 0.0
    # What replaces them: uniform random tokens (random), or the token at the same place in another frame
    # of the clip (other_frame): ghosts where an object was, holes where it is, as in play.
    context_noise_kind: str = "random"
    # Share of clips whose frames before a random cut stay unmasked (the rest as above): play predicts each
    # new frame from a clean past, which masking every frame at one rate shows only for frame 1.
    clean_prefix: float = 0.0
    # Loss weight of the masked tokens near motion (within one patch of a token that differs from the
    # previous frame's), against 1 elsewhere: ~3% of Pong's tokens change, and the ball and paddles are
    # what play loses. The neighbourhood holds where an object could go as well as where it went, so
    # "stay" and "move" answers there are weighted alike. 1: every masked token counts the same.
    motion_weight: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.min_mask_prob <= self.max_mask_prob <= 1.0:
            raise ValueError("expected 0 < min_mask_prob <= max_mask_prob <= 1")
        if self.eval_play_frames < 0:
            raise ValueError(f"eval_play_frames {self.eval_play_frames}: expected a number >= 0")
        if self.eval_play_prompts < 1:
            raise ValueError(f"eval_play_prompts {self.eval_play_prompts}: expected at least 1")
        for name in ("action_dropout", "context_noise"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} {getattr(self, name)}: expected a number in [0, 1)")
        if self.context_noise_kind not in ("random", "other_frame"):
            kind = self.context_noise_kind
            raise ValueError(f"context_noise_kind {kind!r}: expected random or other_frame")
        if not 0.0 <= self.clean_prefix <= 1.0:
            raise ValueError(f"clean_prefix {self.clean_prefix}: expected a number in [0, 1]")
        if self.motion_weight < 1.0:
            raise ValueError(f"motion_weight {self.motion_weight}: expected a number >= 1")


@dataclass
class InferenceConfig:
    """MaskGIT sampling (Genie: 25 steps, temperature 2; the user's config: 25 steps, temperature 1)."""

    maskgit_steps: int = 25
    temperature: float = 1.0
    sampling: str = "random"  # random: sample at `temperature`; greedy: argmax
    schedule: str = "cosine"
    # classifier-free guidance on the action: logits = uncond + guidance * (cond - uncond); 1 = off.
    # Needs a model trained with training.action_dropout > 0 (its "no action" branch).
    guidance: float = 1.0
    top_p: float = 1.0  # nucleus sampling: each token among its likeliest ones holding this mass; 1 = off

    def __post_init__(self) -> None:
        if self.maskgit_steps < 1:
            raise ValueError(f"maskgit_steps {self.maskgit_steps}: expected at least 1")
        if not 0 <= self.temperature < float("inf"):
            raise ValueError(f"temperature {self.temperature}: expected a finite number >= 0")
        if not 0 <= self.guidance < float("inf"):
            raise ValueError(f"guidance {self.guidance}: expected a finite number >= 0 (1 = off)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p {self.top_p}: expected a number in (0, 1] (1 = off)")
        if self.sampling not in ("random", "greedy"):
            raise ValueError(f"sampling {self.sampling!r}: expected random or greedy")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"schedule {self.schedule!r}: expected cosine or linear")


@dataclass
class DynamicsConfig:
    model: DynamicsModelConfig = field(default_factory=DynamicsModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: DynamicsTrainingConfig = field(default_factory=DynamicsTrainingConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# --- loading -------------------------------------------------------------------------------------------


def _check_scalar(value: Any, tp: Any, where: str) -> Any:
    ok = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }.get(tp, False)
    if ok:
        return float(value) if tp is float else value
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    raise GenieError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def _convert(value: Any, tp: Any, where: str, notices: list[str]) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, notices)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return _convert(value, inner, where, notices)
    if origin is list:
        if not isinstance(value, list):
            raise GenieError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [_convert(v, item, f"{where}[{i}]", notices) for i, v in enumerate(value)]
    return _check_scalar(value, tp, where)


def _build(cls: type, data: Any, where: str, notices: list[str]) -> Any:
    """`where` is "FILE: dotted.key" of the mapping being built (just "FILE:" at the top)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GenieError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    sep = " " if where.endswith(":") else "."
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        key_where = f"{where}{sep}{key}"
        if key not in hints:
            if key in LEGACY_KEYS:
                notices.append(f"note: {key_where} is ignored ({LEGACY_KEYS[key]})")
                continue
            raise GenieError(f"{key_where}: unknown key (known here: {', '.join(sorted(hints))})")
        kwargs[key] = _convert(value, hints[key], key_where, notices)
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise GenieError(f"{where.rstrip(':')}: {e}") from None


def config_from_dict(cls: type, data: dict, source: str = "config") -> Any:
    """Build a config dataclass from a plain dict; errors name `source` and the dotted key."""
    notices: list[str] = []
    cfg = _build(cls, data, f"{source}:", notices)
    for line in dict.fromkeys(notices):
        print(line)
    return cfg


def load_config(cls: type, path: Path) -> Any:
    """Read a YAML file into `cls`; a missing file, bad YAML, unknown key or wrong type is a GenieError."""
    path = Path(path)
    if path.is_dir():
        raise GenieError(f"config file {path} is a folder, not a YAML file")
    if not path.is_file():
        raise GenieError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise GenieError(f"{path}: not valid YAML{at}") from None
    except UnicodeDecodeError:
        raise GenieError(f"{path}: not a text file (a YAML config is UTF-8 text)") from None
    except OSError as e:
        raise GenieError(f"config file {path} cannot be read ({e.strerror or e})") from None
    if not isinstance(data, dict):
        raise GenieError(f"{path}: expected a mapping at the top level")
    return config_from_dict(cls, data, str(path))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
