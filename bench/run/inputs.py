"""Device-resident input (``input = "device"``): the whole data set on the training device, batches gathered there.

What a loop fed this way measures is the hardware and the training step without the host's per-sample
``DataLoader`` (collation of 32 tensors per step, host-to-device copies). Same samples, same order as the seed's
loader: in index order, or shuffled by a seeded generator on the device where the loader shuffles (another
random order than the loader's, from the same seed). In a data-parallel cell each rank gathers its shard of
that order, cut as ``DistributedSampler`` cuts it (bench.run.ddp).
"""

from __future__ import annotations

import torch

from bench.run import ddp


class DeviceBatches:
    """An iterable of ``(x, y)`` batches sliced from tensors that live on ``device``; ``dataset`` is there for its
    length, as a DataLoader's is."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device, *, shuffle: bool = False,
                 drop_last: bool = False, seed: int = 0, world: ddp.World = ddp.ONE) -> None:  # fmt: skip
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size, self.shuffle, self.drop_last, self.world = batch_size, shuffle, drop_last, world
        self.dataset = range(len(self.x))
        self.generator = torch.Generator(device=self.x.device).manual_seed(seed) if shuffle else None

    def __len__(self) -> int:
        n, b = -(-len(self.x) // self.world.size), self.batch_size  # this rank's shard
        return n // b if self.drop_last else -(-n // b)

    def __iter__(self):
        n = len(self.x)
        if self.shuffle:
            order = torch.randperm(n, device=self.x.device, generator=self.generator)
        else:
            # A DataLoader without a generator draws its workers' base seed from the global generator on every
            # iter(): draw it too, so that dropout sees the same random stream as with the loader (parity).
            torch.empty((), dtype=torch.int64).random_()
            order = torch.arange(n, device=self.x.device) if self.world.distributed else None
        if order is not None:
            order = ddp.train_order(order, self.world)
        for i in range(len(self)):
            rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
            index = rows if order is None else order[rows]  # a slice: views, no copy, the seed's order
            yield self.x[index], self.y[index]


def loader_settings(cell) -> dict:
    """The DataLoader settings users tune, from the suite (persistent workers need worker processes)."""
    return {
        "num_workers": cell.num_workers,
        "pin_memory": cell.pin_memory,
        "persistent_workers": cell.persistent_workers and cell.num_workers > 0,
    }
