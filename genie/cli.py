"""The `genie` command: one entry point, one subcommand per job.

Heavy imports (torch, gymnasium) happen inside each handler so `genie --help` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from genie.errors import GenieError, Stopped
from genie.outputs import STAGES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"expected a port in 1..65535, got {value}")
    return value


def _directory(text: str) -> Path:
    """A folder that may not exist yet (it is made), but is not a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file, not a folder")
    return path


def _number_in(accept: Callable[[float], bool], expected: str) -> Callable[[str], float]:
    """An argparse type: a float that `accept`s, else 'expected <expected>, got ...'."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


_fraction = _number_in(lambda v: 0.0 < v < 1.0, "a number in (0, 1)")
_unit_interval = _number_in(lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")
_nonnegative_float = _number_in(lambda v: 0 <= v < float("inf"), "a finite number >= 0")
_nucleus_mass = _number_in(lambda v: 0 < v <= 1, "a number in (0, 1]")


def add_resolution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--height", type=_positive_int, default=72, help="frame rows (default 72)")
    p.add_argument("--width", type=_positive_int, default=128, help="frame columns (default 128)")


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The flags of the user's training scripts; `genie train STAGE` and scripts/train_*.py share them."""
    p.add_argument("--config", type=Path, help="YAML config of this stage (not needed with --resume)")
    p.add_argument("--data_dir", type=_directory, default=Path("data"), help="folder holding datasets")
    p.add_argument(
        "--dataset", default="pong", help="dataset name under --data_dir (an ALE game is collected)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--max_steps", type=_positive_int, help="override training.max_steps")
    p.add_argument(
        "--batch_size", type=_positive_int, help="override data.batch_size: the global batch of one step"
    )
    p.add_argument(
        "--grad_accum",
        type=_positive_int,
        help="micro-batches per step (override training.grad_accum): same global batch, less memory",
    )
    p.add_argument(
        "--strategy",
        choices=["ddp", "fsdp"],
        help="under torchrun: ddp (a model copy per process) or fsdp (sharded, for models that do not fit)",
    )
    p.add_argument(
        "--output_dir", type=_directory, help="runs go to OUTPUT_DIR/STAGE/ (default: output.checkpoint_dir)"
    )
    p.add_argument(
        "--eval_dir", type=_directory, default=Path("evaluations"), help="where eval videos/JSON go"
    )
    p.add_argument(
        "--resume",
        type=Path,
        help="a run directory or checkpoint to continue exactly, with the run's own config",
    )
    p.add_argument("--seed", type=int, help="override training.seed")
    p.add_argument("--no_eval", action="store_true", help="skip the evaluation at the end of training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    lam = p.add_argument_group("LAM stage")
    lam.add_argument(
        "--label_fraction",
        type=_unit_interval,
        help="few-label mode: share of training episodes whose true actions tie codes to movements "
        "(override supervision.label_fraction; 0 = unsupervised, the default)",
    )
    dyn = p.add_argument_group("dynamics stage")
    dyn.add_argument("--tokenizer_path", type=Path, help="tokenizer checkpoint or run directory (its best)")
    dyn.add_argument("--lam_path", type=Path, help="LAM checkpoint or run directory (its best)")
    dyn.add_argument("--lam_config", type=Path, help="the LAM's YAML config; checked against the checkpoint")
    dyn.add_argument(
        "--actions", choices=["lam", "true"], default="lam", help="true: train on true actions (an oracle)"
    )


def _cmd_collect(args: argparse.Namespace) -> None:
    from genie.data.collect import collect

    collect(
        args.game,
        args.data_dir,
        dataset=args.dataset,
        frames=args.frames,
        seed=args.seed,
        height=args.height,
        width=args.width,
        episode_frames=args.episode_frames,
        val_fraction=args.val_fraction,
        max_hold=args.max_hold,
        overwrite=args.overwrite,
        probe=not args.no_probe,
    )


def _cmd_ingest(args: argparse.Namespace) -> None:
    from genie.data.ingest import ingest

    ingest(
        args.path,
        args.data_dir,
        args.dataset,
        height=args.height,
        width=args.width,
        seed=args.seed,
        val_fraction=args.val_fraction,
        overwrite=args.overwrite,
        episode_frames=args.episode_frames,
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from genie.train import train_from_args

    train_from_args(args.stage, args)


def _cmd_eval(args: argparse.Namespace) -> None:
    """Videos and metrics JSON of a checkpoint or run directory: its stage's final evaluation."""
    import json

    from genie.stages.registry import stage_from_checkpoint
    from genie.training.runtime import resolve_device

    stage, model, ckpt = stage_from_checkpoint(
        args.stage, args.checkpoint, resolve_device(args.device), data_dir=args.data_dir, dataset=args.dataset
    )
    report = stage.report(model, ckpt, args.eval_dir)
    print(json.dumps(report["metrics"], indent=2))
    print(f"written to {Path(args.eval_dir) / args.stage}/")


def _cmd_plot(args: argparse.Namespace) -> None:
    from genie.training.curves import plot_run

    print(plot_run(args.run_dir))


def _load_world(args: argparse.Namespace):
    from genie.training.runtime import resolve_device
    from genie.world import WorldModels

    return WorldModels.load(
        args.checkpoint,
        device=resolve_device(args.device),
        data_dir=args.data_dir,
        steps=args.steps,
        temperature=args.temperature,
        guidance=args.guidance,
        top_p=args.top_p,
    )


def _cmd_play(args: argparse.Namespace) -> None:
    from genie.world.server import serve

    models = _load_world(args)
    manifest = models.store.manifest
    native = (
        60 / manifest["frameskip"] if manifest.get("source") == "ale" and manifest.get("frameskip") else None
    )
    default = native or models.trained.fps  # ALE runs at 60 Hz, one frame per frameskip
    fps = default if args.fps is None else args.fps  # serve() refuses 0
    serve(
        models,
        host=args.host,
        port=args.port,
        fps=fps,
        open_browser=not args.no_browser,
        record_dir=args.record_dir,
        prompt=args.prompt,
    )


def _cmd_report(args: argparse.Namespace) -> None:
    from genie.report import write_report

    print(
        write_report(
            args.out,
            checkpoints=args.checkpoints,
            eval_dir=args.eval_dir,
            runs=args.runs,
            gif=not args.no_gif,
        )
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genie", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("collect", help="record an ALE game (frames + true actions) into a dataset")
    p.add_argument("game", help="ALE game id, e.g. pong, breakout")
    p.add_argument("--data_dir", type=_directory, default=Path("data"))
    p.add_argument("--dataset", help="dataset name (default: the game id)")
    p.add_argument("--frames", type=_positive_int, default=None, help="frames to record (default 40000)")
    p.add_argument("--episode_frames", type=_positive_int, help="cut episodes at this length (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="fixes the policy, the recording and the split")
    p.add_argument("--val_fraction", type=_fraction, default=0.1, help="share of episodes for validation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    p.add_argument(
        "--no_probe", action="store_true", help="skip the per-step identifiability probe (~3x faster)"
    )
    p.add_argument(
        "--max_hold",
        type=_positive_int,
        help="the behaviour policy holds each random action for 1..max_hold steps (default 8)",
    )
    add_resolution_args(p)
    p.set_defaults(func=_cmd_collect)

    p = sub.add_parser("ingest", help="import video files, PNG frames or an HDF5/NPZ array as a dataset")
    p.add_argument("path", type=Path, help="a video file, a folder of videos or PNGs, or an .h5/.npz file")
    p.add_argument("--dataset", required=True, help="dataset name to create under --data_dir")
    p.add_argument("--data_dir", type=_directory, default=Path("data"))
    p.add_argument("--episode_frames", type=_positive_int, help="cut each file into episodes of this length")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val_fraction", type=_fraction, default=0.1, help="share of episodes for validation")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that name")
    add_resolution_args(p)
    p.set_defaults(func=_cmd_ingest)

    p = sub.add_parser("train", help="train one stage (tokenizer, lam, dynamics)")
    p.add_argument("stage", choices=STAGES)
    add_train_args(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("eval", help="evaluate a checkpoint or run: videos + metrics JSON")
    p.add_argument("stage", choices=STAGES)
    p.add_argument("--checkpoint", type=Path, required=True, help="a checkpoint file or a run directory")
    p.add_argument("--data_dir", type=_directory, default=Path("data"))
    p.add_argument("--dataset", help="dataset to evaluate on (default: the one the run trained on)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--eval_dir", type=_directory, default=Path("evaluations"))
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("play", help="play a trained world in the browser (local server)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a dynamics checkpoint or run directory")
    p.add_argument("--data_dir", type=_directory, default=Path("data"), help="where the prompt dataset lives")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    p.add_argument("--port", type=_port, default=8000)
    p.add_argument(
        "--fps",
        type=_nonnegative_float,
        help="frames a second (default: the game's, e.g. 15 for Pong's frameskip 4)",
    )
    p.add_argument("--steps", type=_positive_int, help="MaskGIT steps per frame (default: the config's)")
    p.add_argument("--temperature", type=_nonnegative_float, help="sampling temperature (0 = greedy)")
    p.add_argument(
        "--guidance",
        type=_nonnegative_float,
        help="classifier-free guidance on the action (1 = off; default: the config's)",
    )
    p.add_argument(
        "--top_p", type=_nucleus_mass, help="nucleus sampling mass (1 = off; default: the config's)"
    )
    p.add_argument(
        "--prompt", type=Path, help="an image or video file to start from (default: held-out data)"
    )
    p.add_argument(
        "--record_dir", type=_directory, default=Path("evaluations/play"), help="where recordings go"
    )
    p.add_argument("--no_browser", action="store_true", help="do not open a browser tab")
    p.set_defaults(func=_cmd_play)

    p = sub.add_parser(
        "report", help="one HTML page (and JSON) with every stage's curves, metrics and videos"
    )
    p.add_argument("--checkpoints", type=Path, default=Path("checkpoints"), help="runs are read from here")
    p.add_argument(
        "--runs", type=Path, nargs="*", help="run directories to report (default: the latest of each stage)"
    )
    p.add_argument("--eval_dir", type=_directory, default=Path("evaluations"))
    p.add_argument(
        "--out", type=_directory, default=Path("evaluations/report"), help="folder for report.html/.json"
    )
    p.add_argument("--no_gif", action="store_true", help="skip the play GIF (it runs the world model)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("plot", help="redraw loss_curve.png of a run from its metrics.jsonl")
    p.add_argument("run_dir", type=Path)
    p.set_defaults(func=_cmd_plot)
    return parser


def run(handler: Callable[[], None]) -> int:
    """Run a command; bad input becomes one line on stderr and exit code 2."""
    try:
        handler()
    except Stopped as e:
        print(f"stopped: {e}", file=sys.stderr)
        return e.exit_code
    except GenieError as e:
        rank = int(os.environ.get("RANK", "0"))  # under torchrun, say which process failed
        print(f"error{f' (rank {rank})' if rank else ''}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run(lambda: args.func(args))


def entry(argv: Sequence[str] | None = None) -> NoReturn:
    """The `genie` command, `python -m genie.cli` and scripts/: `main`, then an exit that is safe after a
    process group (see `exit_process`; no runtime imported means none was started), also after a crash."""
    try:
        code = main(argv)
    except Exception:
        traceback.print_exc()
        code = 1
    runtime = sys.modules.get("genie.training.runtime")
    if runtime is not None:
        runtime.exit_process(code)
    sys.exit(code)


if __name__ == "__main__":
    entry()
