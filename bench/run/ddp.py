"""What one rank of a data-parallel cell needs: its place in the world, the process group, and its share of the data.

The world is torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_WORLD_SIZE for the
nodes): bench.run.launchers starts the ranks with torchrun, and a process that torchrun did not start is a world of one.
Every rank trains on its own shard of the training set, as ``DistributedSampler`` cuts it (the DataLoader gets the
sampler; device-resident batches cut their index order the same way), and evaluates its own strided slice of the
test set; the correct counts are summed over the world, so the accuracy is over every test image exactly once.
"""

from __future__ import annotations

import datetime

import torch
import torch.distributed as dist

from bench.plan import backends
from bench.plan.launcher import ONE, World, world  # noqa: F401 (a rank's place, for the code that trains)

TIMEOUT = datetime.timedelta(minutes=10)  # a rank whose peer vanished fails in minutes, not the default 30


def init(backend, w: World) -> None:
    """Join the process group (idempotent; Lightning joins it itself in ``fit``). A rank first takes its own device
    (a CUDA rank its GPU), so that everything it allocates, the data included, lands there."""
    backend.take_device(w.local_rank)
    if w.distributed and not dist.is_initialized():
        dist.init_process_group(backends.get(backend.name).collective, timeout=TIMEOUT)


def barrier(w: World) -> None:
    """Wait for every rank of the world (nothing in a world of one, or before the process group exists)."""
    if w.distributed and dist.is_initialized():
        dist.barrier()


def all_sum(t: torch.Tensor, w: World) -> torch.Tensor:
    """``t`` summed over the world (in place), or ``t`` itself in a world of one."""
    if w.distributed:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def total(n: int, w: World, device) -> int:
    """A per-rank count summed over the world (every rank must call it)."""
    return int(all_sum(torch.tensor(n, device=device), w)) if w.distributed else n


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
