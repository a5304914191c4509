"""`genie eval STAGE --checkpoint PATH`: videos and metrics JSON for a checkpoint or run directory."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genie.stages.registry import stage_from_checkpoint
from genie.training.runtime import resolve_device


def eval_from_args(stage_name: str, args: argparse.Namespace) -> None:
    device = resolve_device(args.device)
    stage, model, ckpt = stage_from_checkpoint(
        stage_name, args.checkpoint, device, data_dir=args.data_dir, dataset=args.dataset
    )
    report = stage.report(model, ckpt, args.eval_dir)
    print(json.dumps(report["metrics"], indent=2))
    print(f"written to {Path(args.eval_dir) / stage_name}/")
