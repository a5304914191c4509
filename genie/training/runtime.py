"""Where and how a run executes: device, mixed precision, and torchrun/DDP process groups.

Everything about distribution lives here, so models and stages never import torch.distributed.
The same code path runs single-process, or under `torchrun` (env RANK/WORLD_SIZE/LOCAL_RANK) with
NCCL on GPUs and gloo on CPU.
"""

from __future__ import annotations

import contextlib
import os
import resource
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

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
    device: torch.device
    rank: int = 0
    world_size: int = 1
    dtype: torch.dtype | None = None  # autocast dtype, None for fp32

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def wrap(self, model: nn.Module) -> nn.Module:
        if not self.distributed:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=ids)

    def all_mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average metrics over ranks (each rank evaluated an equal shard)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return {k: float(v) / self.world_size for k, v in zip(keys, t.tolist(), strict=True)}

    def broadcast(self, obj: object) -> object:
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def setup_runtime(device_name: str, mixed_precision: bool) -> Runtime:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Runtime(device, rank, world_size, amp_dtype(device, mixed_precision))


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP, so saved keys carry no `module.` prefix."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def memory_mb(device: torch.device) -> dict[str, float]:
    """Peak memory so far: CUDA allocator peak on GPU; on CPU the process peak RSS and the current
    anonymous RSS (heap and tensors; excludes the memory-mapped dataset's file pages, which grow as
    clips are read and are reclaimable, so this is the number that shows a leak)."""
    if device.type == "cuda":
        return {"mem/peak_mb": torch.cuda.max_memory_allocated(device) / 2**20}
    out = {"mem/peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("RssAnon:"):
                out["mem/anon_mb"] = int(line.split()[1]) / 1024
    return out
