"""Where and how a run executes: device, mixed precision, and torchrun/DDP process groups.

Everything about distribution lives here, so models and stages never import torch.distributed.
The same code path runs single-process, or under `torchrun` (env RANK/WORLD_SIZE/LOCAL_RANK) with
NCCL on GPUs and gloo on CPU, as DDP or as FSDP2 (`fully_shard`, which gloo also runs in this torch).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import resource
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.tensor import DTensor, distribute_tensor

from genie.errors import GenieError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """'auto' picks cuda, then mps, then cpu; asking for a device that is absent is a GenieError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise GenieError("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu or auto)")
        return torch.device("cuda", local_rank)
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise GenieError("--device mps: Apple MPS is not available here (use --device cpu or auto)")
        return torch.device("mps")
    if name == "cpu":
        return torch.device("cpu")
    raise GenieError(f"--device {name!r}: expected auto, cpu, cuda or mps")


def amp_dtype(device: torch.device, enabled: bool) -> torch.dtype | None:
    """bf16 where the GPU supports it, else fp16 (with a GradScaler); none on CPU/MPS or when disabled.

    On CPU, bf16 autocast gave no speed-up at our sizes (measured), and fp32 keeps CPU runs exact.
    """
    if not enabled or device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class Runtime:
    """One process's place in a run, and every collective the loop and the stages need.

    Stages call `all_sum` / `cat` / `full_param` without knowing whether they run alone, under DDP or
    under FSDP; single-process, each is the identity.
    """

    device: torch.device
    rank: int = 0
    world_size: int = 1
    dtype: torch.dtype | None = None  # autocast dtype, None for fp32
    strategy: str = "ddp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def sharded(self) -> bool:
        return self.strategy == "fsdp"

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    # --- the model ---

    def wrap(self, model: nn.Module) -> nn.Module:
        """DDP (a full copy per process, gradients all-reduced) or FSDP2 (parameters, gradients and optimizer
        state sharded: each transformer block, i.e. every module held in an nn.ModuleList, is its own unit,
        the rest goes with the root). Build the optimizer after this: FSDP replaces the parameters."""
        if self.sharded:
            from torch.distributed.fsdp import fully_shard

            # FSDP warns about outputs that are views, in case a caller edits them in place; no stage does.
            warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")

            for module in list(model.modules()):
                if isinstance(module, nn.ModuleList):
                    for block in module:
                        fully_shard(block)
            fully_shard(model)
            return model
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def grad_sync(self, model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """Wrap a micro-batch's forward and backward: gradients are reduced across ranks only when `sync`
        (the step's last micro-batch); the others accumulate locally, so accumulation costs no traffic."""
        if self.sharded:
            model.set_requires_gradient_sync(sync)
            return contextlib.nullcontext()
        if self.distributed and not sync:
            return model.no_sync()
        return contextlib.nullcontext()

    def clip_grad_norm(self, model: nn.Module, max_norm: float) -> Tensor:
        """Clip to `max_norm` over all (possibly sharded) gradients; returns the plain total norm."""
        norm = nn.utils.clip_grad_norm_(model.parameters(), max_norm)
        return norm.full_tensor() if isinstance(norm, DTensor) else norm

    @contextlib.contextmanager
    def unsharded(self, model: nn.Module) -> Iterator[None]:
        """Gather FSDP's shards for work outside `forward` (validation, rollouts call other methods)."""
        if not self.sharded:
            yield
            return
        from torch.distributed.fsdp import FSDPModule

        units = [m for m in model.modules() if isinstance(m, FSDPModule)]
        blocks = [u for u in units if u is not model]  # the root keeps its own (unsharded) default
        for unit in blocks:  # else a block's forward would shard it again, under a later non-forward call
            unit.set_reshard_after_forward(False, recurse=False)
        for unit in units:
            unit.unshard()
        try:
            yield  # no collective runs in here: ranks may run different numbers of batches
        finally:
            for unit in blocks:
                unit.set_reshard_after_forward(True, recurse=False)
            for unit in units:
                unit.reshard()

    @contextlib.contextmanager
    def full_param(self, param: nn.Parameter) -> Iterator[Tensor]:
        """A parameter as one full tensor to edit in place (dead-code restarts); FSDP's shard is refreshed
        from it afterwards. Every rank must make the same edit."""
        if not isinstance(param.data, DTensor):
            yield param.data
            return
        full = param.data.full_tensor()
        yield full
        shard = distribute_tensor(full, param.data.device_mesh, param.data.placements)
        param.data.to_local().copy_(shard.to_local())

    def model_state(self, model: nn.Module) -> dict[str, Tensor]:
        """The full state dict, plain keys (no `module.`), on CPU; a collective under FSDP (call on every
        rank). It loads into the bare model in any world size."""
        return get_model_state_dict(model, options=_FULL)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
        """The full optimizer state keyed by parameter name, so it resumes in any world size or strategy."""
        return get_optimizer_state_dict(model, optimizer, options=_FULL)

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
        set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))

    # --- collectives ---

    def sum_tensor(self, t: Tensor) -> Tensor:
        """Sum a tensor over ranks (a copy; the input is left alone)."""
        t = t.clone()
        if self.distributed:
            dist.all_reduce(t)
        return t

    def all_sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum numbers over ranks in float64. A key some rank lacks counts as 0 there."""
        if not self.distributed:
            return values
        every: list[list[str] | None] = [None] * self.world_size
        dist.all_gather_object(every, sorted(values))
        keys = sorted({k for ks in every for k in ks or []})
        if not keys:
            return {}
        t = torch.tensor([values.get(k, 0.0) for k in keys], dtype=torch.float64, device=self.device)
        return dict(zip(keys, self.sum_tensor(t).tolist(), strict=True))

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        return {k: v / self.world_size for k, v in self.all_sum(values).items()}

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (so all ranks stop together)."""
        if not self.distributed:
            return flag
        return bool(self.sum_tensor(torch.tensor([float(flag)], device=self.device)).item())

    def cat(self, tensors: list[Tensor]) -> Tensor:
        """Concatenate tensors along dim 0: this rank's list, then all ranks in rank order. Ranks may hold
        different lengths. With contiguous shards this rebuilds the global batch in single-process order."""
        local = torch.cat(tensors) if tensors else torch.zeros(0)
        if not self.distributed:
            return local
        parts: list[Tensor | None] = [None] * self.world_size
        dist.all_gather_object(parts, local.cpu())
        full = [p for p in parts if p is not None and p.numel()]
        return torch.cat(full).to(local.device) if full else local

    def sharded_rows(self) -> ShardedRows:
        """This rank's rows of a global batch seen as one list (for dead-code restarts)."""
        return ShardedRows(self)

    def broadcast(self, obj: object) -> object:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


class ShardedRows:
    """Rows spread over ranks as one list in rank order, moving only per-row values and chosen rows: a
    restart needs every row's error but only a few rows, so it ships N numbers, not N x D."""

    def __init__(self, rt: Runtime) -> None:
        self.rt, self.offset = rt, 0

    def gather(self, values: Tensor) -> Tensor:
        sizes = self.rt.cat([torch.tensor([values.shape[0]])])
        self.offset = int(sizes[: self.rt.rank].sum())
        return self.rt.cat([values])

    def rows(self, picks: Tensor, local: Tensor) -> Tensor:
        mine = (picks >= self.offset) & (picks < self.offset + local.shape[0])
        out = local.new_zeros(picks.numel(), local.shape[1])
        out[mine.to(local.device)] = local[(picks[mine] - self.offset).to(local.device)]
        return self.rt.sum_tensor(out)  # each chosen row comes from the one rank that holds it


_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


_process_group_started = False  # set by setup_runtime, read by exit_process


def setup_runtime(device_name: str, mixed_precision: bool, strategy: str = "ddp") -> Runtime:
    global _process_group_started
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if strategy == "fsdp" and device.type == "mps":
        raise GenieError(
            "--strategy fsdp needs CUDA (NCCL) or CPU (gloo) processes; it is not supported on MPS"
        )
    if (world_size > 1 or strategy == "fsdp") and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if world_size == 1:  # FSDP alone still needs a process group (of one)
            os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
            os.environ.setdefault("MASTER_PORT", str(_free_port()))
            os.environ.setdefault("RANK", "0")
            os.environ.setdefault("WORLD_SIZE", "1")
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        _process_group_started = True
    return Runtime(device, rank, world_size, amp_dtype(device, mixed_precision), strategy)


def exit_process(code: int) -> NoReturn:
    """End the process. One that ran a process group skips Python's teardown (`os._exit`, after flushing):
    gloo's worker threads may still be freeing a finished collective's tensors, which takes the GIL, and a
    thread that takes it while the interpreter finalizes aborts the process ("terminate called without an
    active exception", SIGABRT; 1 in ~30 two-rank FSDP runs here, more under load). `destroy_process_group`
    does not stop those threads while FSDP still holds the group. Every file a run writes is closed by now."""
    if _process_group_started:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LOCAL = Runtime(torch.device("cpu"))  # a single process: every collective is the identity


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP (FSDP2 shards in place: there the model is its own module)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has malloc_trim), else None (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _glibc()


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc's malloc_trim; a no-op elsewhere).

    A validation allocates its batches and activations and frees them, but glibc keeps the freed pages, and
    fragmentation makes the next one take more: three validations in a row of the tiny tokenizer in one
    process took its anonymous memory 244 -> 292 -> 299 -> 334 MB, and a trim after each brought it back to
    244 MB (benchmarks/README.md, "Memory over a long run"; in a whole training run the effect is within one
    run's noise). The loop calls it after each validation and checkpoint save; it takes milliseconds."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far: CUDA allocator peak on GPU; on CPU the process peak RSS and the current
    anonymous RSS (heap and tensors: the number that shows a leak) and the file-backed pages (shared
    libraries; frames are read from the dataset's file, so its pages stay in the OS's cache)."""
    if device.type == "cuda":
        return {"mem/peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    out = {"mem/peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("RssAnon:"):
                out["mem/anon_mb"] = int(line.split()[1]) / 1024
            elif line.startswith("RssFile:"):
                out["mem/file_mb"] = int(line.split()[1]) / 1024
    return out
