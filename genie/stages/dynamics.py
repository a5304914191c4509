"""Dynamics stage: MaskGIT over frozen tokenizer tokens and frozen latent actions (Genie Sec. 2.1).

The tokenizer and the LAM are loaded from their checkpoints (a run directory means its best one),
frozen, and checked against this config by `genie.inference.load_upstream`: vocabulary, action count
and resolution must fit. With
`actions: true` the same model trains on the dataset's true movement classes instead of the LAM's
codes: an oracle that shows how much control the LAM loses.

Validation reports teacher-forced token accuracy and, what matters, autoregressive rollouts:
PSNR per horizon step against the real frames, and Genie's controllability ΔtPSNR (inferred vs
random actions), over all pixels and over the moving ones (only the paddles answer actions).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genie.config import DynamicsConfig
from genie.data.clips import ClipDataset, evenly_spaced
from genie.data.frames import background_frame, to_float
from genie.data.store import EpisodeStore
from genie.evaluation.long_play import LONG_HORIZON, LONG_MEASURED, LONG_ROLLOUTS, long_play
from genie.evaluation.metrics import foreground_mask, masked_psnr, psnr, ssim, standard_error
from genie.evaluation.objects import game_objects, objects_seen
from genie.evaluation.video import side_by_side, to_rgb_uint8, write_mp4
from genie.inference import PROMPT_FRAMES, build_dynamics, load_upstream, sampling_of
from genie.models.dynamics import DynamicsModel
from genie.outputs import eval_stem
from genie.progress import progress_bar
from genie.stages.common import dataset_record, keep_per_run, report_batch_size
from genie.training.runtime import LOCAL, Runtime
from genie.training.sampler import validation_clips
from genie.training.stage import Batch

VAL_MASK_RATE = 0.75  # teacher-forced token accuracy is measured with this share of tokens masked
REPORT_CLIPS = 256  # validation clips the final evaluation scores, all rolled out (training's: eval_rollouts)
MOVING = 0.1  # a pixel "moves" when it differs from the last prompt frame by more than this


def _with_error(key: str) -> bool:
    """Metrics reported with their standard error over clips: ΔtPSNR (small and noisy) and the rollout
    PSNR that picks the best checkpoint (which must not follow noise)."""
    return "delta_psnr" in key or key == "val/rollout_psnr"


def sample_mask(
    shape: torch.Size, low: float, high: float, seeds: Tensor, prefix_share: float = 0.0
) -> Tensor:
    """MaskGIT training mask [B, T, N]: each clip draws its own rate from U(low, high) (Genie), then masks
    each token of frames 1.. with that probability; frame 0 is always context. Clip b's draws come from its
    own seed (`seeds[b]`, from the sampler), so a clip gets the same mask on any rank or micro-batch.

    With `prefix_share`, that share of clips also keeps the frames before a random cut frame c (uniform in
    1..T-1) unmasked: play predicts a frame from a whole clean past, which the all-frames mask never shows
    beyond frame 1."""
    B, T, N = shape
    masks = []
    for seed in seeds.tolist():
        g = torch.Generator().manual_seed(seed)
        rate = torch.rand((), generator=g) * (high - low) + low
        mask = torch.rand(T, N, generator=g) < rate
        if prefix_share and torch.rand((), generator=g) < prefix_share:
            mask[: int(torch.randint(1, T, (), generator=g))] = False
        masks.append(mask)
    mask = torch.stack(masks).to(seeds.device)
    mask[:, 0] = False
    return mask


def _clip_rng(seed: int, purpose: int) -> np.random.Generator:
    """An independent stream per (clip noise seed, purpose): the masks, the dropped actions and the
    corrupted context of one clip never share draws."""
    return np.random.default_rng([seed, purpose])


def drop_actions(actions: Tensor, share: float, null: int, seeds: Tensor) -> Tensor:
    """actions [B, T-1] with each transition's action replaced by `null` with probability `share`, drawn
    from each clip's own seed (classifier-free guidance's unconditional branch)."""
    if share == 0:
        return actions
    drop = np.stack([_clip_rng(s, 1).random(actions.shape[1]) < share for s in seeds.tolist()])
    return actions.masked_fill(torch.from_numpy(drop).to(actions.device), null)


def corrupt_context(inputs: Tensor, mask: Tensor, share: float, vocab: int, seeds: Tensor) -> Tensor:
    """inputs [B, T, N] with up to `share` of each clip's visible tokens (where `mask` is False) replaced
    by uniform random tokens: the clip's rate ~ U(0, share). Masked tokens, the ones scored, are untouched."""
    if share == 0:
        return inputs
    out = inputs.clone()
    for b, seed in enumerate(seeds.tolist()):
        rng = _clip_rng(seed, 2)
        hit = torch.from_numpy(rng.random(inputs.shape[1:]) < rng.random() * share).to(inputs.device)
        hit &= ~mask[b]
        random = torch.from_numpy(rng.integers(0, vocab, inputs.shape[1:])).to(inputs.device)
        out[b] = torch.where(hit, random, out[b])
    return out


class DynamicsStage:
    name = "dynamics"
    best_metric = "val/rollout_psnr"
    config_cls = DynamicsConfig

    def __init__(
        self, config: DynamicsConfig, store: EpisodeStore, device: torch.device, *, upstream: dict[str, Any]
    ) -> None:
        self.config, self.store, self.device = config, store, device
        up = load_upstream(config, store, device, upstream)
        self.tokenizer, self.actions, self.upstream = up.tokenizer, up.actions, up.records
        self.sampling = sampling_of(config)

    def build(self) -> DynamicsModel:
        return build_dynamics(self.config, self.tokenizer.num_patches)

    # --- inputs ---

    @torch.no_grad()
    def actions_of(self, batch: Batch) -> Tensor:
        """[B, T-1] action ids: the LAM's codes of the clip (read in windows of its clip length), or the true
        movement classes (oracle)."""
        return self.actions.of_clip(to_float(batch["frames"]), batch.get("actions"))

    def loss(self, model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        t = self.config.training
        with torch.no_grad():
            tokens = self.tokenizer.encode(to_float(batch["frames"]))  # (b, t, n)
            actions = self.actions_of(batch)
        seeds, vocab = batch["noise_seed"], self.config.model.token_embedding.vocab_size
        mask = sample_mask(tokens.shape, t.min_mask_prob, t.max_mask_prob, seeds, t.clean_prefix)
        inputs = corrupt_context(tokens, mask, t.context_noise, vocab, seeds).masked_fill(mask, vocab)
        null = self.config.model.action_embedding.num_actions  # the model's "no action"
        logits = model(inputs, drop_actions(actions, t.action_dropout, null, seeds))
        # Cross-entropy on masked tokens, averaged per clip and then over clips: a mean of per-sample losses,
        # so ranks and micro-batches add up to the single-process loss whatever their mask rates.
        ce = F.cross_entropy(logits.float().flatten(0, 2), tokens.flatten(), reduction="none").view_as(tokens)
        per_clip = mask.flatten(1).sum(1).clamp_min(1)
        loss = ((ce * mask).flatten(1).sum(1) / per_clip).mean()
        with torch.no_grad():
            hit = (logits.argmax(-1) == tokens) & mask
            acc = (hit.flatten(1).sum(1) / per_clip).mean()
        return loss, {"token_acc": acc, "mask_rate": mask[:, 1:].float().mean()}

    def after_step(self, model: nn.Module, rt: Runtime, rng: torch.Generator) -> dict[str, float]:
        return {}

    # --- evaluation ---

    @torch.no_grad()
    def rollouts(
        self, model: DynamicsModel, frames: Tensor, actions: Tensor, seed: int = 0
    ) -> dict[str, Tensor]:
        """Generate frames PROMPT_FRAMES.. of clips [B, T, 3, H, W] (float) from their first frames.

        Returns decoded frames [B, T - PROMPT_FRAMES, 3, H, W] (H: rows) from the given actions and from
        uniformly random ones.
        Both rollouts draw the same sampling noise (common random numbers), so their difference, the
        ΔtPSNR, measures the actions and not two different draws of the sampler.
        """
        tokens = self.tokenizer.encode(frames)
        P, T = PROMPT_FRAMES, frames.shape[1]
        window = self.config.data.sequence_length
        g = torch.Generator(device=frames.device).manual_seed(seed + 1)
        rand = torch.randint(0, model.num_actions, actions.shape, generator=g, device=actions.device)
        rand[:, : P - 1] = actions[:, : P - 1]  # same prompt, random actions only where generating
        out = {}
        for name, acts in (("inferred", actions), ("random", rand)):
            g = torch.Generator(device=frames.device).manual_seed(seed)  # the same noise for both
            gen = model.rollout(tokens[:, :P], acts[:, : T - 1], self.sampling, window=window, generator=g)
            out[name] = self.tokenizer.decode(torch.cat([tokens[:, :P], gen], 1))[:, P:]
        return out

    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], rt: Runtime = LOCAL, rollouts: int | None = None
    ) -> dict[str, float]:
        """Token accuracy and rollout metrics as sums and counts, reduced over ranks (each rank rolls out its
        share of `rollouts`, by default `eval_rollouts`). Each ΔtPSNR and the rollout PSNR also get their
        standard error over clips (`..._se`): with a handful of rollouts it is as large as a ΔtPSNR."""
        sums: dict[str, float] = {}
        counts: dict[str, int] = {}
        rollouts = self.config.training.eval_rollouts if rollouts is None else rollouts

        def add(key: str, value: Tensor) -> None:
            v = value[torch.isfinite(value)].double()
            sums[key] = sums.get(key, 0.0) + float(v.sum())
            counts[key] = counts.get(key, 0) + v.numel()
            if _with_error(key):
                sums[f"{key}_sq"] = sums.get(f"{key}_sq", 0.0) + float((v * v).sum())

        rolled = 0
        for batch in batches:
            x = to_float(batch["frames"])
            tokens = self.tokenizer.encode(x)
            actions = self.actions_of(batch)
            mask = sample_mask(tokens.shape, VAL_MASK_RATE, VAL_MASK_RATE, batch["noise_seed"])
            logits = model(tokens.masked_fill(mask, model.mask_id), actions)
            add("val/token_acc", (logits.argmax(-1) == tokens)[mask].float())
            if rolled >= -(-rollouts // rt.world_size):
                continue
            rolled += x.shape[0]
            out = self.rollouts(model, x, actions)
            real = x[:, PROMPT_FRAMES:]
            moving = (real - x[:, PROMPT_FRAMES - 1 : PROMPT_FRAMES]).abs().amax(2, keepdim=True) > MOVING
            p_inf, p_rand = psnr(out["inferred"], real), psnr(out["random"], real)
            m_inf, m_rand = (
                masked_psnr(out["inferred"], real, moving),
                masked_psnr(out["random"], real, moving),
            )
            add("val/rollout_psnr", p_inf.mean(1))  # per clip: its standard error is over clips
            add("val/rollout_ssim", ssim(out["inferred"], real))
            for h in range(real.shape[1]):
                add(f"val/rollout_psnr_t{h + 1}", p_inf[:, h])
                add(f"val/delta_psnr_t{h + 1}", p_inf[:, h] - p_rand[:, h])
                add(f"val/delta_psnr_moving_t{h + 1}", m_inf[:, h] - m_rand[:, h])
        sums = rt.all_sum(sums)
        counts = rt.all_sum({k: float(v) for k, v in counts.items()})
        out = {k: sums[k] / counts[k] for k in counts if counts[k]}
        for k in [k for k in out if _with_error(k) and counts[k] >= 2]:  # one clip has no spread
            out[f"{k}_se"] = standard_error(out[k], sums[f"{k}_sq"] / counts[k], int(counts[k]))
        return out

    def report(self, model: nn.Module, checkpoint: dict[str, Any], eval_dir: Path) -> dict[str, Any]:
        """dynamics_comparison_step_N.mp4 (real | generated), long_video/ (a 64+ frame rollout), JSON."""
        from torch.utils.data import DataLoader

        model.eval()
        d, step = self.config.data, int(checkpoint["step"])
        out_dir = Path(eval_dir) / "dynamics"
        val = ClipDataset(self.store, "val", d.sequence_length, stride=d.sequence_length)
        picks = evenly_spaced(len(val), REPORT_CLIPS)
        loader = DataLoader(validation_clips(val, picks), batch_size=report_batch_size(checkpoint, d))
        bar = progress_bar(total=len(loader) + 3, desc=f"evaluating dynamics step {step}", unit="part")

        def batches() -> Iterable[Batch]:
            for b in loader:
                yield {k: v.to(self.device) for k, v in b.items()}
                bar.update(1)

        with torch.no_grad(), bar:
            metrics = self.evaluate(model, batches(), rollouts=len(picks))
            shown = {k: torch.stack([val[i][k] for i in picks[:4]]).to(self.device) for k in val[0]}
            x = to_float(shown["frames"])
            gen = self.rollouts(model, x, self.actions_of(shown))["inferred"]
            video = side_by_side(x[:, PROMPT_FRAMES:].flatten(0, 1), gen.flatten(0, 1))
            write_mp4(out_dir / f"{eval_stem('dynamics', step)}.mp4", video, fps=d.fps)
            bar.update(1)
            long, seen = self._long_rollouts(model)
            metrics.update(seen)
            bar.update(1)
            if long is not None:
                write_mp4(out_dir / "long_video" / f"{eval_stem('dynamics', step)}.mp4", long, fps=d.fps)
            if self.config.training.eval_play_frames:
                metrics.update(self._long_play(model))
            bar.update(1)
        result = {
            "stage": "dynamics",
            "checkpoint": checkpoint.get("path"),
            "step": step,
            "dataset": self.store.name,
            "upstream": self.upstream,
            "prompt_frames": PROMPT_FRAMES,
            "sampling": vars(self.sampling),
            "metrics": metrics,
        }
        path = out_dir / f"{eval_stem('dynamics', step)}.json"
        path.write_text(json.dumps(result, indent=2) + "\n")
        keep_per_run(
            [path, path.with_suffix(".mp4"), out_dir / "long_video" / f"{path.stem}.mp4"], checkpoint
        )
        return result

    def _long_rollouts(self, model: DynamicsModel) -> tuple[np.ndarray | None, dict[str, float]]:
        """LONG_ROLLOUTS rollouts of LONG_HORIZON frames from starts spread over the validation episodes,
        with the actions inferred from the real frames: the video (real | generated) of the first, and
        how often each object the game is known to have is seen in the last quarter of the frames:
        generated (`long/<object>_seen`), in the tokenizer's reconstruction of the real frames
        (`..._seen_tokenizer`, the most the dynamics model can show) and in the real frames (`_seen_real`),
        with the share of pixels off the empty court in each (`long/foreground_share*`: junk is seen too)."""
        length = PROMPT_FRAMES + LONG_HORIZON
        starts = [
            s
            for ep in self.store.split_episodes("val")
            for s in range(
                int(self.store.episodes[ep][0]), int(self.store.episodes[ep][1]) - length + 1, length
            )
        ]
        if not starts:
            return None, {}
        picks = evenly_spaced(len(starts), LONG_ROLLOUTS)
        real = np.stack([np.asarray(self.store.frames[starts[i] : starts[i] + length]) for i in picks])
        batch: Batch = {"frames": torch.from_numpy(real).permute(0, 1, 4, 2, 3).to(self.device)}
        if self.store.actions is not None:
            batch["actions"] = torch.from_numpy(
                np.stack([np.asarray(self.store.actions[starts[i] : starts[i] + length - 1]) for i in picks])
            ).to(self.device)
        actions = self.actions_of(batch)
        x = to_float(batch["frames"])
        tokens = self.tokenizer.encode(x[:, :PROMPT_FRAMES])
        g = torch.Generator(device=self.device).manual_seed(0)
        gen = model.rollout(
            tokens, actions, self.sampling, window=self.config.data.sequence_length, generator=g
        )
        generated = self.tokenizer.decode(torch.cat([tokens, gen], 1))[:, PROMPT_FRAMES:]
        video = side_by_side(x[0, PROMPT_FRAMES:], generated[0])
        late = slice(PROMPT_FRAMES + LONG_HORIZON - LONG_MEASURED, None)
        objects = game_objects(self.store.manifest.get("game"), self.store.height, self.store.width)
        if not objects:
            return video, {}
        # the tokenizer's own reconstruction of the real frames: what the dynamics model could at best show
        recon = self.tokenizer.decode(self.tokenizer.encode(x))[:, late]
        background = background_frame(self.store, self.device)
        metrics = {}
        for source, frames in (
            ("", generated[:, late.start - PROMPT_FRAMES :]),
            ("_tokenizer", recon),
            ("_real", x[:, late]),
        ):
            for name, seen in objects_seen(to_rgb_uint8(frames), objects).items():
                metrics[f"long/{name}_seen{source}"] = float(seen.mean())
            # scattered junk also 'shows' objects: the share of pixels off the empty court tells it apart
            metrics[f"long/foreground_share{source}"] = float(
                foreground_mask(frames, background).float().mean()
            )
        return video, metrics

    def _long_play(self, model: DynamicsModel) -> dict[str, float]:
        """`eval_play_frames` (1,000) frames of play with held random actions from `eval_play_prompts` (8)
        held-out prompts spread over the validation split: object counts per window (evaluation.long_play)."""
        val = ClipDataset(self.store, "val", PROMPT_FRAMES, stride=PROMPT_FRAMES)
        picks = evenly_spaced(len(val), self.config.training.eval_play_prompts)
        batch = {k: torch.stack([val[i][k] for i in picks]).to(self.device) for k in val[0]}
        return long_play(
            model,
            self.tokenizer,
            self.store,
            to_float(batch["frames"]),
            self.actions_of(batch),
            self.sampling,
            window=self.config.data.sequence_length,
            horizon=self.config.training.eval_play_frames,
        )

    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            "dataset": dataset_record(self.store, self.config.data),
            "upstream": self.upstream,
        }
