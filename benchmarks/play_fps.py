"""Play speed: frames/s of the world's step (MaskGIT over one frame + decoding it) at the tiny preset.

    .venv/bin/python benchmarks/play_fps.py [--frames 60] [--steps 1 4 8] [--device cpu]

The tiny tokenizer and dynamics configs, randomly initialised (speed depends on shapes, not weights).
For each MaskGIT step count: with the per-frame KV cache (what `World.step` does: the network runs over
the new frame only) and without it (the whole window re-run every round, and the whole window decoded),
interleaved in one run, so their ratio holds on a noisy machine; the median and the best of --repeats
are kept (other jobs only ever slow a run down). Writes benchmarks/results/play_fps.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from common import machine, save

from genie.config import DynamicsConfig, TokenizerConfig, load_config
from genie.models.dynamics import DynamicsModel, SamplingConfig
from genie.models.st_transformer import FrameCache
from genie.models.tokenizer import VideoTokenizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "play_fps.json"


def build(device: torch.device) -> tuple[VideoTokenizer, DynamicsModel, int]:
    tok_cfg = load_config(TokenizerConfig, ROOT / "configs/tiny/tokenizer.yaml")
    dyn_cfg = load_config(DynamicsConfig, ROOT / "configs/tiny/dynamics.yaml")
    d = tok_cfg.data
    tok = VideoTokenizer(tok_cfg.model, height=d.height, width=d.width, window=d.sequence_length)
    m = dyn_cfg.model
    dyn = DynamicsModel(
        m.architecture,
        vocab_size=m.token_embedding.vocab_size or tok_cfg.model.codebook.num_codes,  # 0: the tokenizer's
        num_actions=m.action_embedding.num_actions or 3,  # 0: the LAM's (the tiny LAM has 3 codes)
        num_patches=tok.num_patches,
        action_every_block=m.action_conditioning == "every_block",
    )
    return tok.to(device).eval(), dyn.to(device).eval(), dyn_cfg.data.sequence_length


@torch.no_grad()
def cached_fps(tok, dyn, window: int, sampling: SamplingConfig, frames: int, device) -> float:
    cache, dec_cache = FrameCache(window), FrameCache(window)
    none = torch.tensor([dyn.null_action], device=device)
    for _ in range(2):  # a two-frame prompt
        t = torch.randint(0, dyn.vocab_size, (1, dyn.num_patches), device=device)
        dyn.observe(t, none, cache)
        tok.decode_next(t, dec_cache)
    action = torch.tensor([0], device=device)
    start = time.perf_counter()
    for _ in range(frames):
        tok.decode_next(dyn.sample_next(action, cache, sampling), dec_cache)
    return frames / (time.perf_counter() - start)


@torch.no_grad()
def uncached_fps(tok, dyn, window: int, sampling: SamplingConfig, frames: int, device) -> float:
    """The same work without caches: every MaskGIT round runs the model over the whole window."""
    tokens = torch.randint(0, dyn.vocab_size, (1, window - 1, dyn.num_patches), device=device)
    actions = torch.zeros(1, window - 1, dtype=torch.long, device=device)
    start = time.perf_counter()
    for _ in range(frames):
        new = torch.full((1, 1, dyn.num_patches), dyn.vocab_size, device=device)  # all masked
        clip = torch.cat([tokens, new], 1)
        for _ in range(sampling.steps):
            logits = dyn(clip, actions)[:, -1]
            clip[:, -1] = logits.argmax(-1)
        tok.decode(clip)
        tokens = clip[:, 1:]
    return frames / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=60, help="frames generated per measurement")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 4, 8], help="MaskGIT steps to measure")
    p.add_argument("--repeats", type=int, default=5, help="measurements per setting (median and best kept)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    device = torch.device(a.device)
    torch.manual_seed(0)
    tok, dyn, window = build(device)
    results = machine("play_fps", str(device))
    results |= {
        "dynamics_layers": len(dyn.transformer.blocks),
        "tokens_per_frame": dyn.num_patches,
        "window": window,
    }
    for steps in a.steps:
        sampling = SamplingConfig(steps, 1.0)
        cached_fps(tok, dyn, window, sampling, 5, device)  # warm-up
        cached, uncached = [], []
        for _ in range(a.repeats):  # interleaved, so both see the same machine
            cached.append(cached_fps(tok, dyn, window, sampling, a.frames, device))
            uncached.append(uncached_fps(tok, dyn, window, sampling, max(1, a.frames // 3), device))
        results[f"fps_cached_steps{steps}_median"] = statistics.median(cached)
        results[f"fps_cached_steps{steps}_best"] = max(cached)
        results[f"fps_uncached_steps{steps}_median"] = statistics.median(uncached)
        results[f"cache_speedup_steps{steps}"] = statistics.median(
            c / u for c, u in zip(cached, uncached, strict=True)
        )
    save(results, RESULTS, width=32, digits=2)


if __name__ == "__main__":
    main()
