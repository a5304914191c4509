"""The one training loop, shared by every stage (tokenizer, LAM, dynamics).

Each step runs in a fixed order (as torchtitan): zero_grad, forward/backward of each of grad_accum
micro-batches under autocast (gradients reduced across ranks on the last only), unscale + clip,
a finiteness check, optimizer step, LR for the next step, log/eval/save when due.
The LR is a pure function of the step; the data order is a pure function of the step (see
sampler.py); RNG states are saved; so resuming from a checkpoint equals never having stopped.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from genie.config import TrainingConfig, config_to_dict
from genie.data.clips import evenly_spaced
from genie.errors import GenieError, Stopped
from genie.outputs import BEST
from genie.progress import progress_bar
from genie.training.checkpoint import (
    FORMAT_VERSION,
    checkpoint_path,
    list_checkpoints,
    load_model_state,
    lock_run,
    new_run_dir,
    read_best,
    save_atomic,
    write_config,
    write_text_atomic,
)
from genie.training.curves import plot_run_apart
from genie.training.metrics_log import MetricsLog
from genie.training.runtime import Runtime, memory_mb, release_free_memory, unwrap
from genie.training.sampler import SeededItems, StepBatchSampler, micro_batch_size, validation_clips
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
        self.batch_size: int = config.data.batch_size  # the global batch of one optimizer step
        self.accum = self.cfg.grad_accum
        world = rt.world_size
        self.micro = micro_batch_size(self.batch_size, world, self.accum)  # clips per forward on one rank
        self.progress = progress and rt.is_main
        torch.manual_seed(self.cfg.seed)  # same init on every rank; DDP also broadcasts rank 0's weights

        model = stage.build().to(rt.device)
        if resume is not None:
            load_model_state(model, resume["model"], resume["path"])
        self.model = rt.wrap(model)  # before the optimizer: FSDP replaces the parameters with shards
        self.optimizer = torch.optim.AdamW(
            self._param_groups(self.model),
            lr=self.cfg.max_lr,
            betas=(self.cfg.beta1, self.cfg.beta2),
            # one kernel over all tensors, not a Python loop over them: 3-4 ms a tiny step less on 2 CPU
            # cores (benchmarks/optimizer_step.py)
            fused=rt.device.type in ("cpu", "cuda"),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_at(s, self.cfg) / self.cfg.max_lr
        )
        self.scaler = torch.amp.GradScaler(rt.device.type, enabled=rt.dtype == torch.float16)
        self.step = 0
        self.best: dict | None = None
        self.resumed = resume is not None
        self.val_step: int | None = None  # the step the latest validation metrics were measured at
        self.stop_signal: int | None = None  # set by SIGTERM / SIGINT: save this step, then stop
        self.skipped = 0  # steps skipped for a non-finite loss or gradient (saved, so resume keeps counting)
        if resume is not None:
            if resume.get("format_version", 1) >= 2:  # keyed by parameter name: any world size
                rt.load_optimizer_state(self.model, self.optimizer, resume["optimizer"])
            elif rt.sharded:
                raise GenieError(
                    f"{resume['path']} predates sharded checkpoints (format 1): resume it with --strategy ddp"
                )
            else:
                self.optimizer.load_state_dict(resume["optimizer"])
            self.scheduler.load_state_dict(resume["scheduler"])
            self.scaler.load_state_dict(resume["scaler"])
            self.step = int(resume["step"])
            self.skipped = int(resume.get("skipped_steps", 0))
            for group in self.optimizer.param_groups:  # the LR is a function of the step and *this* config
                group["lr"] = lr_at(self.step, self.cfg)  # (the saved one is stale if max_steps changed)
            _set_rng_state(resume["rng"])  # rank 0's; ranks are told apart below
            self.run_dir = Path(resume["path"]).parent
            self.lock = lock_run(self.run_dir) if rt.is_main else None
            self.best = read_best(self.run_dir)
            if rt.is_main:
                self._tidy_after_crash(resume)
        else:
            self.run_dir = Path(str(rt.broadcast(str(new_run_dir(run_root)) if rt.is_main else None)))
            self.lock = lock_run(self.run_dir) if rt.is_main else None

        if rt.rank:  # dropout: every rank its own stream (the weights above were built from one seed)
            torch.manual_seed(self.cfg.seed * 1_000_003 + self.step * 1_009 + rt.rank)

        self.sampler = StepBatchSampler(
            len(train_set),
            self.batch_size,
            seed=self.cfg.seed,
            start_step=self.step,
            rank=rt.rank,
            world_size=world,
            grad_accum=self.accum,
        )
        workers = config.data.num_workers
        self.train_loader = DataLoader(
            SeededItems(train_set),
            batch_sampler=self.sampler,
            num_workers=workers,
            pin_memory=rt.device.type == "cuda",
            persistent_workers=workers > 0,
        )
        # A fixed, evenly spread set of validation clips, sharded over ranks, in micro-batches.
        picks = evenly_spaced(len(val_set), self.cfg.eval_batches * self.batch_size)
        self.val_loader = DataLoader(
            validation_clips(val_set, picks[rt.rank :: world]), batch_size=self.micro
        )
        self.frames_per_step = self.batch_size * config.data.sequence_length

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
        """Every rank takes part (FSDP gathers the shards); rank 0 writes one world-size-free file."""
        path = checkpoint_path(self.run_dir, self.step)
        model_state = self.rt.model_state(self.model)
        optimizer_state = self.rt.optimizer_state(self.model, self.optimizer)
        if self.rt.is_main:
            state = {
                "format_version": FORMAT_VERSION,
                "stage": self.stage.name,
                "step": self.step,
                "model": model_state,
                "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": _rng_state(),
                "config": config_to_dict(self.config),
                "val": val or {},
                "val_step": self.val_step,
                "skipped_steps": self.skipped,
                "micro_batch": self.micro,  # clips per forward pass: what `genie eval` may put on one device
                **self.stage.checkpoint_extras(),
            }
            save_atomic(state, path)
            self._prune()
        return path

    def _tidy_after_crash(self, resume: dict) -> None:
        """A run killed mid-save leaves a temp file; one killed between its checkpoint and best.json leaves
        best.json behind the checkpoint it resumes from: remove the first, bring the second up to date."""
        for tmp in self.run_dir.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        if resume.get("val_step") == self.step and resume.get("val") and self._update_best(resume["val"]):
            write_text_atomic(self.run_dir / BEST, _json(self.best))

    def _prune(self) -> None:
        keep = self.cfg.keep_checkpoints
        if keep <= 0:
            return
        best_step = self.best["step"] if self.best else None
        periodic = [(s, p) for s, p in list_checkpoints(self.run_dir) if s != best_step]
        for _, p in periodic[:-keep]:
            p.unlink(missing_ok=True)

    def _update_best(self, val: dict[str, float]) -> bool:
        """The best checkpoint has the highest `best_metric`, except that a later one scoring within one
        standard error of the highest (where the stage reports `<metric>_se`) takes its place: the
        difference is noise, and the later model has trained longer."""
        key = self.stage.best_metric
        value, se = val.get(key, math.nan), val.get(f"{key}_se", 0.0)
        if not math.isfinite(value):
            return False
        highest = self.best.get("highest", self.best["value"]) if self.best else -math.inf
        if not (value > highest or (se > 0 and value >= highest - se)):
            return False
        self.best = {
            "step": self.step,
            "metric": key,
            "value": value,
            "highest": max(highest, value),
            "checkpoint": checkpoint_path(self.run_dir, self.step).name,
            "val": val,
        }
        return True

    # --- the loop ---

    def validate(self) -> dict[str, float]:
        """Each rank scores its shard of the validation clips; the stage reduces over ranks."""
        self.model.eval()
        with torch.no_grad(), self.rt.autocast(), self.rt.unsharded(self.model):
            batches = (_to_device(b, self.rt.device) for b in self.val_loader)
            val = self.stage.evaluate(unwrap(self.model), batches, self.rt)
        self.model.train()
        return val

    def train_step(self, data: Iterator[Batch]) -> tuple[dict[str, Tensor], Tensor]:
        """One optimizer step over grad_accum micro-batches; returns the step's mean loss parts and grad norm.
        Each micro-batch's loss is a mean over its clips, so loss / grad_accum, summed here and averaged over
        ranks by DDP/FSDP, is the mean over the global batch: the single-process gradient."""
        rt = self.rt
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, Tensor] = {}
        for j in range(self.accum):
            batch = _to_device(next(data), rt.device)
            with rt.grad_sync(self.model, j == self.accum - 1):
                with rt.autocast():
                    loss, parts = self.stage.loss(self.model, batch)
                self.scaler.scale(loss / self.accum).backward()
            for k, v in {"loss": loss, **parts}.items():
                totals[k] = totals.get(k, 0.0) + v.detach().float() / self.accum
        self.scaler.unscale_(self.optimizer)
        grad_norm = rt.clip_grad_norm(self.model, self.cfg.max_grad_norm)
        return totals, grad_norm

    def train(self) -> RunResult:
        cfg, rt = self.cfg, self.rt
        log: MetricsLog | None = None
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
        restore_signals = self._catch_stop_signals()
        try:  # from here on any failure (a full disk included) closes the log and frees the run's lock
            if rt.is_main:
                log = MetricsLog(self.run_dir, self.step if self.resumed else None)
                write_config(self.run_dir, config_to_dict(self.config))
            while self.step < cfg.max_steps:
                totals, grad_norm = self.train_step(data)
                # fp16's GradScaler skips steps with inf gradients itself (and lowers its scale)
                checked = totals["loss"] if self.scaler.is_enabled() else totals["loss"] + grad_norm
                if rt.any(not torch.isfinite(checked).item()):
                    self.skipped += 1
                    if self.skipped > cfg.max_skipped_steps:
                        raise GenieError(
                            f"loss or gradient non-finite at step {self.step + 1} ({self.skipped} steps "
                            f"skipped, training.max_skipped_steps {cfg.max_skipped_steps}); stopped. The "
                            "last good checkpoint is "
                            f"{last_ckpt if last_ckpt.exists() else 'none (no checkpoint was written yet)'}"
                        )
                    self.optimizer.zero_grad(set_to_none=True)  # the weights stay; the batch is spent
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                rng = torch.Generator().manual_seed(cfg.seed * 1_000_003 + self.step)  # same on every rank
                extra = self.stage.after_step(unwrap(self.model), rt, rng)
                self.step += 1
                steps_since_log += 1

                if self.step % cfg.log_every == 0 or self.step == cfg.max_steps:
                    means = rt.all_mean({f"train/{k}": v.item() for k, v in totals.items()})  # every rank
                    if rt.is_main:
                        elapsed = time.perf_counter() - t_log
                        row = {
                            **means,
                            **extra,
                            "grad_norm": grad_norm.item(),
                            "skipped_steps": self.skipped,
                            "lr": self.optimizer.param_groups[0]["lr"],
                            "frames_per_s": steps_since_log * self.frames_per_step / max(elapsed, 1e-9),
                            **memory_mb(rt.device),
                        }
                        log.log(row, self.step)
                        bar.set_postfix(loss=f"{row['train/loss']:.4g}", fps=f"{row['frames_per_s']:.0f}")
                    t_log, steps_since_log = time.perf_counter(), 0
                bar.update(1)

                new_best = False
                evaluated = self.step % cfg.eval_every == 0 or self.step == cfg.max_steps
                if evaluated:
                    t_val = time.perf_counter()
                    val = self.validate()
                    self.val_step = self.step
                    new_best = self._update_best(val)
                    if rt.is_main:  # the validation's seconds beside its metrics: where a run's time goes
                        log.log({**val, "val_seconds": time.perf_counter() - t_val}, self.step)
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(
                                f"{k}={v:.4g}"
                                for k, v in val.items()
                                if not k.startswith("val/usage") and not k.endswith("_se")
                            )
                        )
                saved = self.step % cfg.save_every == 0 or self.step == cfg.max_steps or new_best
                if saved:
                    last_ckpt = self.save(val)
                    if new_best and rt.is_main:
                        write_text_atomic(self.run_dir / BEST, _json(self.best))
                    if rt.is_main and log.has_rows:  # none yet when save_every < log_every
                        plot_run_apart(self.run_dir)
                if evaluated or saved:  # else the validation's and the save's freed heap stays
                    release_free_memory()
                if rt.any(self.stop_signal is not None):
                    self._stop(last_ckpt, val)
        finally:
            restore_signals()
            bar.close()
            if log is not None:
                log.close()
            if self.lock is not None:  # the run is free for a --resume (also in this process)
                self.lock.close()
                self.lock = None
        return RunResult(self.run_dir, self.step, last_ckpt, self.best, val)

    def _catch_stop_signals(self) -> Callable[[], None]:
        """SIGTERM (a scheduler's stop) and the first Ctrl-C end the current step, save it and stop (a
        second Ctrl-C interrupts at once). Returns what puts the previous handlers back."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def request_stop(signum: int, frame: Any) -> None:
            self.stop_signal = signum
            if signum == signal.SIGINT:
                signal.signal(signal.SIGINT, signal.default_int_handler)

        def restore() -> None:
            for s, handler in previous.items():
                signal.signal(s, handler)

        for s in previous:
            signal.signal(s, request_stop)
        return restore

    def _stop(self, last_ckpt: Path, val: dict[str, float]) -> None:
        """Every rank takes part in the save (FSDP gathers); then one line says where the run is."""
        if last_ckpt != checkpoint_path(self.run_dir, self.step) or not last_ckpt.exists():
            last_ckpt = self.save(val)
        signum = self.stop_signal or signal.SIGTERM  # a rank that did not get the signal itself
        raise Stopped(
            f"{signal.Signals(signum).name} at step {self.step}: saved {last_ckpt}; continue with "
            f"--resume {self.run_dir}",
            signum,
        )


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2) + "\n"
