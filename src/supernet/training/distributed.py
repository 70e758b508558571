"""Process-group setup for training under ``torchrun`` (DDP: gloo on CPU, nccl on CUDA)."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    """Where this process stands: rank, world size, local rank, and whether we created the group."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and shows the progress bar."""
        return self.rank == 0


def setup_distributed(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1), if any.

    An existing process group is reused. On CUDA each process uses ``cuda:LOCAL_RANK``.
    """
    if dist.is_available() and dist.is_initialized():
        info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), False)
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return DistInfo(), device
        if not dist.is_available():
            raise RuntimeError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
        backend = "nccl" if device.type == "cuda" else "gloo"
        # DDP imports torch._dynamo on first use; imported after the group exists, it keeps references to the group
        # for good, so destroying the group could not stop the group's threads (see _destroy_at_exit).
        import torch._dynamo

        dist.init_process_group(backend=backend)
        # Later `train` calls in this process reuse the group. It is destroyed before the interpreter finalizes:
        # otherwise a gloo worker thread may free a finished collective's tensors during finalization, and the
        # Python reference it then drops kills the process ("terminate called without an active exception",
        # SIGABRT after the work is done; seen about once in 30 two-process runs).
        atexit.register(_destroy_at_exit)
        info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), True)
    if info.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return info, device


def _destroy_at_exit() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op on one process)."""
    if info.world_size > 1:
        dist.barrier()


def mean_over_ranks(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of a scalar over ranks (for logging)."""
    if info.world_size == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / info.world_size
