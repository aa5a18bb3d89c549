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
    owns_group: bool = True  # False when joining a process group someone else set up (e.g. the benchmark)

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
        if self.distributed and self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def default_cpu_threads() -> int:
    """Set torch's CPU threads for a tool run and return the count: ``OMP_NUM_THREADS`` when set, else half the
    cores (at least one). All the cores, torch's default, oversubscribe a shared machine: on 2 cores with one
    other busy process, 2 threads made the digits trainings 3-14x slower than 1 (docs/training.md)."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // 2))
    return torch.get_num_threads()


def resolve_device(device: str) -> torch.device:
    """"auto" | "cpu" | "cuda" -> this process's device (under torchrun: the GPU of its LOCAL_RANK)."""
    if device == "cuda" and not torch.cuda.is_available():
        raise LearngeneError("device=cuda but CUDA is not available: use device=cpu or device=auto")
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def init_processes(device: str) -> Processes:
    """Pick the device ("auto" | "cpu" | "cuda") and join the process group when run under torchrun."""
    target = resolve_device(device)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(target)
    if dist.is_initialized():  # one group for many trainings: re-creating it after a destroy can hang
        return Processes(target, rank=dist.get_rank(), world_size=dist.get_world_size(), owns_group=False)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    dist.init_process_group(backend="nccl" if target.type == "cuda" else "gloo")
    return Processes(target, rank=dist.get_rank(), world_size=dist.get_world_size())


def shard_loader(loader: DataLoader, procs: Processes) -> DataLoader:
    """The same loader over this rank's strided share of the dataset (for evaluation: no padding, no repeats)."""
    if not procs.distributed:
        return loader
    indices = range(procs.rank, len(loader.dataset), procs.world_size)
    return DataLoader(loader.dataset, sampler=list(indices), batch_size=loader.batch_size,
                      num_workers=loader.num_workers, pin_memory=loader.pin_memory)
