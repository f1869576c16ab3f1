"""What one rank of a data-parallel cell needs: its place in the world, the process group, and its share of the data.

The world is torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_WORLD_SIZE for the
nodes): bench.launch starts the ranks with torchrun, and a process that torchrun did not start is a world of one.
Every rank trains on its own shard of the training set, as ``DistributedSampler`` cuts it (the DataLoader gets the
sampler; device-resident batches cut their index order the same way), and evaluates its own strided slice of the
test set; the correct counts are summed over the world, so the accuracy is over every test image exactly once.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

COLLECTIVE = {"cpu": "gloo", "cuda": "nccl", "xla": "xla"}  # the collective backend of each device backend
TIMEOUT = datetime.timedelta(minutes=10)  # a rank whose peer vanished fails in minutes, not the default 30


@dataclass(frozen=True)
class World:
    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1
    nodes: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1


ONE = World()  # a single process


def world() -> World:
    """This process's place in the world: torchrun's environment, or a world of one."""
    if "TORCHELASTIC_RUN_ID" not in os.environ:  # not started by torchrun (a single-process cell, or XLA's spawn)
        return ONE
    env = os.environ
    return World(
        rank=int(env["RANK"]),
        local_rank=int(env["LOCAL_RANK"]),
        size=int(env["WORLD_SIZE"]),
        local_size=int(env["LOCAL_WORLD_SIZE"]),
        nodes=int(env["GROUP_WORLD_SIZE"]),
    )


def init(backend_name: str, w: World) -> None:
    """Join the process group (idempotent; Lightning joins it itself in ``fit``). A CUDA rank first takes its own
    GPU, so that everything it allocates, the data included, lands there."""
    if backend_name == "cuda":
        torch.cuda.set_device(w.local_rank)
    if w.distributed and not dist.is_initialized():
        dist.init_process_group(COLLECTIVE[backend_name], timeout=TIMEOUT)


def sum_(t: torch.Tensor, w: World) -> torch.Tensor:
    """``t`` summed over the world (in place), or ``t`` itself in a world of one."""
    if w.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def total(n: int, w: World, device) -> int:
    """A per-rank count summed over the world (every rank must call it)."""
    return int(sum_(torch.tensor(n, device=device), w)) if w.distributed else n


def train_sampler(dataset, w: World, shuffle: bool, seed: int):
    """The training DataLoader's sampler: this rank's shard (padded so that every rank takes the same number of
    steps, as DDP needs); None in a world of one (the loader's own order)."""
    if not w.distributed:
        return None
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=w.size, rank=w.rank, shuffle=shuffle, seed=seed)


def train_order(order: torch.Tensor, w: World) -> torch.Tensor:
    """``DistributedSampler``'s cut of an index order, for batches gathered on the device: padded from its start to
    a multiple of the world size, then every ``size``-th index from ``rank``."""
    if not w.distributed:
        return order
    total = -(-len(order) // w.size) * w.size
    return torch.cat([order, order[: total - len(order)]])[w.rank :: w.size]


def test_rows(n: int, w: World) -> range:
    """This rank's test images: a strided slice, no padding (evaluation has no collective per batch)."""
    return range(w.rank, n, w.size)


def set_epoch(loader, epoch: int) -> None:
    """A shuffling DistributedSampler draws each epoch's order from its seed and the epoch: tell it the epoch."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
