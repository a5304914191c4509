"""The metric keys every part of genie agrees on: the stages write them, the loop logs them, the report,
the demo and `genie plot` read them.

Keys made of parts (a horizon step, an object, a window) are built and taken apart here, so a reader
never parses a key back with a pattern of its own and a renamed key cannot leave one behind.
"""

from __future__ import annotations

from collections.abc import Iterable

SE = "_se"  # a metric's standard error over clips sits at its key plus this

# --- tokenizer ---
PSNR = "val/psnr"  # also the LAM's next-frame PSNR
SSIM = "val/ssim"
BACKGROUND_PSNR = "val/background_psnr"  # the per-pixel median frame: the reconstruction to beat
OBJECT_RECALL = "val/object_recall"
PERPLEXITY = "val/perplexity"  # of code usage; the LAM's too
CODES_USED = "val/codes_used"
DEAD_CODES = "val/dead_codes"

# --- LAM ---
PSNR_CHANGED = "val/psnr_changed"  # next-frame PSNR on the pixels that change
PSNR_CHANGED_SHUFFLED = "val/psnr_changed_shuffled"  # the same frames with the actions shuffled
COPY_PSNR_CHANGED = "val/copy_psnr_changed"  # x_t repeated
ACTION_GAIN = "val/action_gain_db"  # PSNR_CHANGED minus PSNR_CHANGED_SHUFFLED
ACTION_STD = "val/action_std"  # spread of the action vectors before quantisation: ~0 when collapsed
ACTION_COS_DIST = "val/action_cos_dist"
PROBE_ACC_IDENTIFIABLE = "val/probe_acc_identifiable"  # a linear probe of the action vectors
# each code -> its most common movement, read on half of the validation episodes, scored on the others: the
# measure for more codes than movements (an overcomplete codebook), where one-to-one leaves codes unmatched
MANY_TO_ONE_ACC_IDENTIFIABLE = "val/many_to_one_acc_identifiable"
USAGE = "val/usage_"  # + code: the share of transitions given that latent action


def agreement(part: str, measure: str) -> str:
    """The key of one agreement measure (`acc`, `nmi`, `majority`) of an agreement part (`action`, `move`,
    `move_identifiable`): val/move_acc_identifiable, ..."""
    base, _, subset = part.partition("_")
    return f"val/{base}_{measure}" + (f"_{subset}" if subset else "")


MOVE_ACC_IDENTIFIABLE = agreement("move_identifiable", "acc")
MOVE_CHANCE_IDENTIFIABLE = agreement("move_identifiable", "majority")  # a LAM that ignores the frames
MOVE_NMI_IDENTIFIABLE = agreement("move_identifiable", "nmi")

# --- dynamics ---
TOKEN_ACC = "val/token_acc"
ROLLOUT_PSNR = "val/rollout_psnr"  # over all generated frames; picks the best checkpoint
ROLLOUT_SSIM = "val/rollout_ssim"
# measured at every horizon step t (frames after the prompt): key + "_t" + t
ROLLOUT_PSNR_AT, DELTA_PSNR_AT, DELTA_PSNR_MOVING_AT = ROLLOUT_PSNR, "val/delta_psnr", "val/delta_psnr_moving"
HORIZON_FAMILIES = (ROLLOUT_PSNR_AT, DELTA_PSNR_AT, DELTA_PSNR_MOVING_AT)


def at_horizon(family: str, step: int) -> str:
    """val/delta_psnr + 4 -> val/delta_psnr_t4."""
    return f"{family}_t{step}"


def horizon_of(key: str) -> int | None:
    """The horizon step of a per-step key (val/delta_psnr_t4 -> 4, its standard error too), else None."""
    key = key.removesuffix(SE)
    _, sep, step = key.rpartition("_t")
    return int(step) if sep and step.isdigit() and key.startswith(HORIZON_FAMILIES) else None


def horizons(metrics: Iterable[str]) -> list[int]:
    """The horizon steps a dynamics evaluation measured, in order."""
    return sorted({h for k in metrics if (h := horizon_of(k)) is not None and k.startswith(ROLLOUT_PSNR_AT)})


# --- long rollouts (the dynamics evaluation): objects seen in the last frames ---
LONG = "long/"
FOREGROUND_SHARE = "foreground_share"  # pixels off the empty court: junk is seen too
LONG_SOURCES = ("", "_tokenizer", "_real")  # generated, the tokenizer's reconstruction, real


def long_seen(name: str, source: str = "") -> str:
    """long/ball_seen, long/ball_seen_real, ...; `name` FOREGROUND_SHARE gives long/foreground_share..."""
    return f"{LONG}{name}{'' if name == FOREGROUND_SHARE else '_seen'}{source}"


def long_objects(metrics: Iterable[str]) -> list[str]:
    """The objects a long-rollout evaluation looked for (then FOREGROUND_SHARE, where measured)."""
    keys = list(metrics)
    names = [k[len(LONG) : -len("_seen")] for k in keys if k.startswith(LONG) and k.endswith("_seen")]
    return names + ([FOREGROUND_SHARE] if long_seen(FOREGROUND_SHARE) in keys else [])


# --- long play: objects counted in 1,000 played frames ---
PLAY = "play/"
PLAY_HORIZON = "play/horizon"
PLAY_ROLLOUTS = "play/rollouts"
REAL = "real"  # a share measured on the real validation frames, where a window's last frame would be


def play_share(name: str, count: str, window: int | str) -> str:
    """The share of frames with exactly one (`count` "one") or two or more ("many") of an object, in the
    window of played frames ending at `window` or in the REAL frames: play/ball_one_t1000, .._one_real."""
    where = REAL if window == REAL else f"t{window}"
    return f"{PLAY}{name}_{count}_{where}"


def play_objects(metrics: Iterable[str]) -> list[str]:
    """The objects long play counted."""
    suffix = play_share("", "one", REAL)[len(PLAY) :]
    return [k[len(PLAY) : -len(suffix)] for k in metrics if k.startswith(PLAY) and k.endswith(suffix)]


def is_detail(key: str) -> bool:
    """A key shown in a table of its own (per horizon step, long rollouts, long play), not the main one."""
    return horizon_of(key) is not None or key.startswith((LONG, PLAY))
