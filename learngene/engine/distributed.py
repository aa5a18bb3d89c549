"""Process setup for one-process and ``torchrun`` training (DDP reads RANK / WORLD_SIZE / LOCAL_RANK)."""
from __future__ import annotations

import dataclasses
import os

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from learngene.errors import LearngeneError


@dataclasses.dataclass
class Processes:
    device: torch.device
    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.distributed:
            return [obj]
        gathered = [None] * self.world_size
        dist.all_gather_object(gathered, obj)
        return gathered

    def any(self, flags: list[bool]) -> list[bool]:
        """Element-wise OR of boolean flags over ranks, so every rank takes the same branch."""
        if not self.distributed:
            return flags
        t = torch.tensor(flags, dtype=torch.int32, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [bool(v) for v in t.tolist()]

    def close(self) -> None:
        if self.distributed and dist.is_initialized():
            dist.destroy_process_group()


def init_processes(device: str) -> Processes:
    """Pick the device ("auto" | "cpu" | "cuda") and join the process group when run under torchrun."""
    if device == "cuda" and not torch.cuda.is_available():
        raise LearngeneError("device=cuda but CUDA is not available: use device=cpu or device=auto")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(torch.device("cuda" if use_cuda else "cpu"))
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    target = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    return Processes(target, rank=dist.get_rank(), world_size=dist.get_world_size())


def shard_loader(loader: DataLoader, procs: Processes) -> DataLoader:
    """The same loader over this rank's strided share of the dataset (for evaluation: no padding, no repeats)."""
    if not procs.distributed:
        return loader
    indices = range(procs.rank, len(loader.dataset), procs.world_size)
    return DataLoader(loader.dataset, sampler=list(indices), batch_size=loader.batch_size,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)
