"""Process-group set-up for `torchrun ... -m pose3dfr.cli train`, the device each process runs on, and the two
collective checks the loop needs.

One process (WORLD_SIZE unset or 1) needs none of this: DistInfo() describes it and nothing here is called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from pose3dfr.errors import CheckpointError


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device a config's `device` names: "auto" is this process's GPU (its local rank) when CUDA is
    there, else the CPU; any other name is taken as torch spells it ("cpu", "cuda:1")."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the run: rank 0 of 1 when not distributed."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_name: str) -> DistInfo:
    """Join the process group torchrun describes (WORLD_SIZE > 1): nccl on GPU, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank)


def check_same_start(start: int, out: Path) -> None:
    """Every rank must resume from the same step (the run folder must be visible to every node)."""
    steps = torch.tensor([start, -start], dtype=torch.int64)
    dist.all_reduce(steps, op=dist.ReduceOp.MAX)
    if int(steps[0]) != start or int(-steps[1]) != start:
        raise CheckpointError(f"{out}: ranks found different checkpoints to resume from (steps "
                              f"{int(-steps[1])}..{int(steps[0])}); put --out on a file system every node sees")


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BN statistics, AdaFace norm EMA): DDP syncs them at the start of
    each forward, so after the last step each rank still holds the statistics of its own last batch."""
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=0)
