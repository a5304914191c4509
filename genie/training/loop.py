"""The one training loop, shared by every stage (tokenizer, LAM, dynamics).

Each step runs in a fixed order (as torchtitan): zero_grad, forward/backward under autocast,
unscale + clip, a finiteness check, optimizer step, LR for the next step, log/eval/save when due.
The LR is a pure function of the step; the data order is a pure function of the step (see
sampler.py); RNG states are saved; so resuming from a checkpoint equals never having stopped.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from genie.config import TrainingConfig, config_to_dict
from genie.errors import GenieError
from genie.progress import progress_bar
from genie.training.checkpoint import (
    FORMAT_VERSION,
    checkpoint_path,
    list_checkpoints,
    load_model_state,
    new_run_dir,
    read_best,
    save_atomic,
    write_config,
    write_text_atomic,
)
from genie.training.metrics_log import MetricsLog
from genie.training.runtime import Runtime, memory_mb, unwrap
from genie.training.sampler import StepBatchSampler
from genie.training.stage import Batch, Stage


def lr_at(step: int, cfg: TrainingConfig) -> float:
    """Linear warmup to max_lr, then cosine (or constant) down to min_lr at max_steps."""
    if step < cfg.warmup_steps:
        return cfg.max_lr * (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return cfg.max_lr
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.max_lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def _to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class RunResult:
    run_dir: Path
    step: int
    last_checkpoint: Path
    best: dict | None
    val: dict[str, float]


class Trainer:
    def __init__(
        self,
        stage: Stage,
        config: Any,
        rt: Runtime,
        *,
        train_set: Dataset,
        val_set: Dataset,
        run_root: Path,
        resume: dict | None = None,
        progress: bool = True,
    ) -> None:
        self.stage, self.config, self.rt = stage, config, rt
        self.cfg: TrainingConfig = config.training
        self.batch_size: int = config.data.batch_size
        self.progress = progress and rt.is_main
        torch.manual_seed(self.cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights

        model = stage.build().to(rt.device)
        self.optimizer = torch.optim.AdamW(
            self._param_groups(model),
            lr=self.cfg.max_lr,
            betas=(self.cfg.beta1, self.cfg.beta2),
            fused=rt.device.type == "cuda",
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_at(s, self.cfg) / self.cfg.max_lr
        )
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)
        self.step = 0
        self.best: dict | None = None
        if resume is not None:
            load_model_state(model, resume["model"], resume["path"])
            self.optimizer.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            self.scaler.load_state_dict(resume["scaler"])
            self.step = int(resume["step"])
            _set_rng_state(resume["rng"])
            self.run_dir = Path(resume["path"]).parent
            self.best = read_best(self.run_dir)
        else:
            self.run_dir = Path(str(rt.broadcast(str(new_run_dir(run_root)) if rt.is_main else None)))
        self.model = rt.wrap(model)

        world = rt.world_size
        self.sampler = StepBatchSampler(
            len(train_set),
            self.batch_size * world,
            seed=self.cfg.seed,
            start_step=self.step,
            rank=rt.rank,
            world_size=world,
        )
        workers = config.data.num_workers
        self.train_loader = DataLoader(
            train_set,
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=rt.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        # A fixed, evenly spread set of validation clips, sharded over ranks.
        n_val = min(len(val_set), self.cfg.eval_batches * self.batch_size * world)
        picks = torch.linspace(0, len(val_set) - 1, n_val).round().long().unique().tolist()
        self.val_loader = DataLoader(Subset(val_set, picks[rt.rank :: world]), batch_size=self.batch_size)
        self.frames_per_step = self.batch_size * world * config.data.sequence_length

    def _param_groups(self, model: torch.nn.Module) -> list[dict]:
        """Weight decay on matrices only (not norms, biases, embeddings' positions, codebooks)."""
        decay, no_decay = [], []
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            (decay if p.ndim >= 2 and "pos" not in name and "codebook" not in name else no_decay).append(p)
        return [
            {"params": decay, "weight_decay": self.cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]

    # --- checkpoints ---

    def save(self, val: dict[str, float] | None = None) -> Path:
        path = checkpoint_path(self.run_dir, self.step)
        if self.rt.is_main:
            state = {
                "format_version": FORMAT_VERSION,
                "stage": self.stage.name,
                "step": self.step,
                "model": unwrap(self.model).state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": _rng_state(),
                "config": config_to_dict(self.config),
                "val": val or {},
                **self.stage.checkpoint_extras(),
            }
            save_atomic(state, path)
            self._prune()
        return path

    def _prune(self) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        best_step = self.best["step"] if self.best else None
        periodic = [(s, p) for s, p in list_checkpoints(self.run_dir) if s != best_step]
        for _, p in periodic[:-keep]:
            p.unlink(missing_ok=True)

    def _update_best(self, val: dict[str, float]) -> bool:
        key = self.stage.best_metric
        if key not in val or not math.isfinite(val[key]):
            return False
        if self.best is not None and val[key] <= self.best["value"]:
            return False
        self.best = {
            "step": self.step,
            "metric": key,
            "value": val[key],
            "checkpoint": checkpoint_path(self.run_dir, self.step).name,
            "val": val,
        }
        return True

    # --- the loop ---

    def validate(self) -> dict[str, float]:
        self.model.eval()
        with torch.no_grad(), self.rt.autocast():
            batches = (_to_device(b, self.rt.device) for b in self.val_loader)
            val = self.stage.evaluate(unwrap(self.model), batches)
        self.model.train()
        return self.rt.all_mean(val)

    def train(self) -> RunResult:
        cfg, rt = self.cfg, self.rt
        log = MetricsLog(self.run_dir) if rt.is_main else None
        if rt.is_main:
            write_config(self.run_dir, config_to_dict(self.config))
        bar = progress_bar(
            total=cfg.max_steps,
            initial=self.step,
            desc=f"{self.stage.name} {self.run_dir.name}",
            unit="step",
            disable=not self.progress,
            smoothing=0.05,
        )
        data = iter(self.train_loader)
        last_ckpt = checkpoint_path(self.run_dir, self.step)
        val: dict[str, float] = {}
        t_log, steps_since_log = time.perf_counter(), 0
        self.model.train()
        try:
            while self.step < cfg.max_steps:
                batch = _to_device(next(data), rt.device)
                self.optimizer.zero_grad(set_to_none=True)
                with rt.autocast():
                    loss, parts = self.stage.loss(self.model, batch)
                self.scaler.scale(loss).backward()
                self.scaler.unscale_(self.optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                if not torch.isfinite(loss).item():
                    raise GenieError(
                        f"loss became non-finite at step {self.step + 1}; stopped. The last good checkpoint "
                        f"is {last_ckpt if last_ckpt.exists() else 'none (no checkpoint was written yet)'}"
                    )
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                extra = self.stage.after_step(unwrap(self.model))
                self.step += 1
                steps_since_log += 1

                if rt.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.max_steps):
                    elapsed = time.perf_counter() - t_log
                    row = {
                        "train/loss": loss.item(),
                        **{f"train/{k}": v.item() for k, v in parts.items()},
                        **extra,
                        "grad_norm": grad_norm.item(),
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "frames_per_s": steps_since_log * self.frames_per_step / max(elapsed, 1e-9),
                        **memory_mb(rt.device),
                    }
                    log.log(row, self.step)
                    bar.set_postfix(loss=f"{row['train/loss']:.4g}", fps=f"{row['frames_per_s']:.0f}")
                    t_log, steps_since_log = time.perf_counter(), 0
                bar.update(1)

                new_best = False
                if self.step % cfg.eval_every == 0 or self.step == cfg.max_steps:
                    val = self.validate()
                    new_best = self._update_best(val)
                    if rt.is_main:
                        log.log(val, self.step)
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(
                                f"{k}={v:.4g}" for k, v in val.items() if not k.startswith("val/usage")
                            )
                        )
                if self.step % cfg.save_every == 0 or self.step == cfg.max_steps or new_best:
                    last_ckpt = self.save(val)
                    if new_best and rt.is_main:
                        write_text_atomic(self.run_dir / "best.json", _json(self.best))
                    if rt.is_main:
                        from genie.evaluation.curves import plot_run

                        plot_run(self.run_dir)
        finally:
            bar.close()
            if log is not None:
                log.close()
        return RunResult(self.run_dir, self.step, last_ckpt, self.best, val)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
