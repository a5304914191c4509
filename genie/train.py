"""`genie train STAGE` / scripts/train_*.py: config + data + stage -> the one training loop.

An app beside cli.py, not part of training/: it names the stages and their flags (the dynamics stage's
upstream checkpoints) and collects a missing ALE dataset, so the loop below it never imports a stage.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from genie.config import config_from_dict, load_config
from genie.data.clips import ClipDataset
from genie.data.collect import ensure_dataset
from genie.data.store import EpisodeStore
from genie.errors import GenieError
from genie.inference import check_upstream, upstream_paths
from genie.stages.registry import stage_class, stage_from_checkpoint
from genie.training.checkpoint import load_checkpoint, resolve_checkpoint
from genie.training.loop import Trainer
from genie.training.runtime import setup_runtime
from genie.training.sampler import micro_batch_size


def train_from_args(stage_name: str, args: argparse.Namespace) -> None:
    cls = stage_class(stage_name)
    resume = None
    if args.resume is not None:
        resume = load_checkpoint(resolve_checkpoint(args.resume, prefer="latest"), stage=stage_name)
        config = config_from_dict(cls.config_cls, resume["config"], f"{resume['path']} (config)")
        print(f"resuming {resume['path']} at step {resume['step']} with the run's own config")
    elif args.config is None:
        raise GenieError(
            f"genie train {stage_name} needs --config (a YAML file) or --resume (a run to continue)"
        )
    else:
        config = load_config(cls.config_cls, args.config)
        if args.seed is not None:
            config.training.seed = args.seed
        if args.batch_size is not None:
            config.data.batch_size = args.batch_size
    if getattr(args, "label_fraction", None) is not None:
        if stage_name != "lam":
            raise GenieError(f"--label_fraction is a LAM flag; the {stage_name} stage has no labels to use")
        if resume is not None and args.label_fraction != config.supervision.label_fraction:
            raise GenieError(
                f"--label_fraction {args.label_fraction} differs from the run's "
                f"{config.supervision.label_fraction}: a resumed run keeps its labelled episodes"
            )
        config.supervision.label_fraction = args.label_fraction
    if args.max_steps is not None:
        config.training.max_steps = args.max_steps
    if args.grad_accum is not None:  # also on resume: the global batch stays, only its split changes
        config.training.grad_accum = args.grad_accum
    if args.strategy is not None:
        config.training.strategy = args.strategy

    # before any process group: a bad split fails at once, on every rank alike
    micro_batch_size(
        config.data.batch_size, int(os.environ.get("WORLD_SIZE", "1")), config.training.grad_accum
    )
    rt = setup_runtime(args.device, config.training.mixed_precision, config.training.strategy)
    try:
        d = config.data  # a missing ALE game is collected: the seed's commands start from no data
        store = EpisodeStore.open(ensure_dataset(args.data_dir, args.dataset, height=d.height, width=d.width))
        stage = cls(config, store, rt.device, **_stage_kwargs(stage_name, args, resume))
        if resume is not None and "upstream" in resume:
            check_upstream(stage.upstream, resume["upstream"], resume["path"])
        T = config.data.sequence_length
        train_set, val_set = ClipDataset(store, "train", T), ClipDataset(store, "val", T, stride=T)
        if args.output_dir is not None:
            run_root = Path(args.output_dir) / stage_name
        else:
            run_root = Path(config.output.checkpoint_dir or f"checkpoints/{stage_name}")
        trainer = Trainer(
            stage,
            config,
            rt,
            train_set=train_set,
            val_set=val_set,
            run_root=run_root,
            resume=resume,
            progress=not args.quiet,
        )
        if rt.is_main:
            params = sum(p.numel() for p in trainer.model.parameters()) / 1e6
            print(
                f"{stage_name}: {params:.2f}M parameters on {rt.device} x{rt.world_size} "
                f"(autocast {rt.dtype or 'off'}); {len(train_set)} train / {len(val_set)} val clips "
                f"of {T} frames from {store.root}; run dir {trainer.run_dir}"
            )
            for line in getattr(stage, "notes", []):
                print(line)
        t0, first = time.perf_counter(), trainer.step
        result = trainer.train()
        if rt.is_main:
            print(
                f"done: step {result.step} ({result.step - first} steps in {_minutes(t0)}, validation "
                f"included); last checkpoint {result.last_checkpoint}"
            )
            if result.best:
                print(f"best: step {result.best['step']} {result.best['metric']}={result.best['value']:.4g}")
            if not args.no_eval:
                t0 = time.perf_counter()
                stage, model, ckpt = stage_from_checkpoint(stage_name, result.run_dir, rt.device)
                report = stage.report(model, ckpt, args.eval_dir)
                print(
                    f"evaluation of step {report['step']} written to {Path(args.eval_dir) / stage_name}/ "
                    f"in {_minutes(t0)}"
                )
    finally:
        rt.close()


def _minutes(t0: float) -> str:
    return f"{(time.perf_counter() - t0) / 60:.1f} min"


def _stage_kwargs(stage_name: str, args: argparse.Namespace, resume: dict | None) -> dict:
    """The dynamics stage's upstream checkpoints: from the CLI, or from the run being resumed."""
    if stage_name != "dynamics":
        return {}
    if resume is not None:
        return {"upstream": upstream_paths(resume["upstream"], Path(resume["path"]))}
    if args.tokenizer_path is None:
        raise GenieError(
            "the dynamics stage needs --tokenizer_path (a tokenizer checkpoint or run directory)"
        )
    upstream = {"tokenizer": args.tokenizer_path, "lam": args.lam_path, "actions": args.actions}
    if args.lam_config is not None:
        upstream["lam_config"] = args.lam_config
    return {"upstream": upstream}
