"""Plain-PyTorch reference for ``fastai-resnet18``: torchvision's resnet18 on the same 3×28×28 MNIST batches.

No PNG decoding (the images come from the cached tensors), no fastai: what is left is the network's compute
on this hardware and precision, so the report can show how much of fastai's step time is fastai and its
input pipeline. All epochs train the whole network (fastai's frozen epoch has no counterpart here).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Subset, TensorDataset

from bench.run import data, ddp, inputs, micro
from bench.run.inputs import DeviceBatches
from bench.workloads import plain

EVAL_BATCH_SIZE = 1000


def loaders(cell, data_dir: str | None, device=None, world: ddp.World = ddp.ONE) -> tuple[DataLoader, DataLoader]:
    """Shuffled training batches of 3-channel images, last partial batch dropped, as fastai's loader does; with
    ``input = "device"``, from tensors resident on ``device`` (bench.run.inputs), shuffled there. In a data-parallel
    cell, this rank's shards of both (bench.run.ddp)."""
    x, y = data.tensors("train", data_dir, cell.limit_train)
    tx, ty = data.tensors("test", data_dir, cell.limit_test)
    rows = ddp.test_rows(len(tx), world)
    if cell.input == "device":  # expanded on the device: one channel's memory, three channels' view
        train = DeviceBatches(x.to(device).expand(-1, 3, -1, -1), y, cell.batch_size, device, shuffle=True,
                              drop_last=True, seed=cell.seed, world=world)  # fmt: skip
        tx, ty = tx[rows.start :: rows.step], ty[rows.start :: rows.step]
        return train, DeviceBatches(tx.to(device).expand(-1, 3, -1, -1), ty, EVAL_BATCH_SIZE, device)
    # expand is a view; the collate step stacks each batch into a contiguous (B, 3, 28, 28) tensor
    rgb = TensorDataset(x.expand(-1, 3, -1, -1), y)
    test_rgb = TensorDataset(tx.expand(-1, 3, -1, -1), ty)
    kw = inputs.loader_settings(cell)
    if world.distributed:
        sampler = ddp.train_sampler(rgb, world, shuffle=True, seed=cell.seed)
        train = DataLoader(rgb, batch_size=cell.batch_size, sampler=sampler, drop_last=True, **kw)
        test_rgb = Subset(test_rgb, rows)
    else:
        generator = torch.Generator().manual_seed(cell.seed)
        train = DataLoader(rgb, batch_size=cell.batch_size, shuffle=True, drop_last=True, generator=generator, **kw)
    test = DataLoader(test_rgb, batch_size=EVAL_BATCH_SIZE, **kw)
    return train, test


def run(ctx) -> dict:
    train, test = loaders(ctx.cell, ctx.data_dir, ctx.backend.torch_device(), ctx.world)
    model = torchvision.models.resnet18(num_classes=10)
    return plain.train(ctx, model, _adam(ctx.cell.lr), F.cross_entropy, train, test)


def steps(cell, backend, data_dir: str | None) -> micro.Steps:
    train, _ = loaders(cell, data_dir)
    model = torchvision.models.resnet18(num_classes=10)
    return plain.steps(model, _adam(cell.lr), F.cross_entropy, train, cell, backend)


def _adam(lr: float):
    return lambda params: torch.optim.Adam(params, lr=lr)
