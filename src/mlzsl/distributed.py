"""torchrun (PyTorch distributed) set-up shared by training, evaluation and feature extraction.

Under ``torchrun`` (``WORLD_SIZE > 1``) a process joins the process group with NCCL on GPUs and
gloo on CPUs and runs on ``cuda:LOCAL_RANK`` when CUDA is available; a single process gets a
:class:`DistInfo` of rank 0 of 1 and never touches ``torch.distributed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["SINGLE_PROCESS", "DistInfo", "barrier", "setup_distributed", "torchrun_world", "unwrap"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in a (possibly single-process) job."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0


SINGLE_PROCESS = DistInfo()
"""A job of one process on the CPU: rank 0 of 1."""


def torchrun_world() -> int:
    """``WORLD_SIZE`` as torchrun sets it; 1 outside torchrun."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup_distributed(timeout: timedelta | None = None) -> DistInfo:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; pick this rank's device.

    ``timeout`` bounds every collective (PyTorch's default, 30 minutes, when ``None``); a group
    that is already initialised is joined as it is.
    """
    world = torchrun_world()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if cuda else "gloo"
        if timeout is None:
            dist.init_process_group(backend=backend)
        else:
            dist.init_process_group(backend=backend, timeout=timeout)
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank=rank, world=world, device=device)


def barrier(info: DistInfo) -> None:
    """Wait for every rank (NCCL must be told this rank's GPU); nothing for one process."""
    if info.world <= 1 or not dist.is_initialized():
        return
    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[info.device.index or 0])
    else:
        dist.barrier()


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
