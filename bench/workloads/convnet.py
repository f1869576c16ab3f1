"""The seed's MNIST ConvNet (Mastering PyTorch, ch. 14) and its data, shared by the Lightning and plain loops."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset

from bench.run import adapters, data, ddp, inputs
from bench.run.inputs import DeviceBatches

EVAL_BATCH_SIZE = 1000  # evaluation batch size changes no result, only how long evaluation takes


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.cn1 = nn.Conv2d(1, 16, 3, 1)
        self.cn2 = nn.Conv2d(16, 32, 3, 1)
        self.dp1 = nn.Dropout2d(0.10)
        self.dp2 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(4608, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.cn1(x))
        x = F.relu(self.cn2(x))
        x = F.max_pool2d(x, 2)
        x = self.dp1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dp2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def loss_fn(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    # The seed applies cross-entropy to log-probabilities; log_softmax is idempotent, so this is the NLL.
    return F.cross_entropy(output, target)


def optimizer(params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adadelta(params, lr=lr)  # the seed's lr is 0.5, the workloads' default


def loaders(cell, data_dir: str | None, device=None, world: ddp.World = ddp.ONE) -> tuple[DataLoader, DataLoader]:
    """Train loader in the seed's order (no shuffling), test loader over the 10,000 test images; with
    ``input = "device"``, the same batches from tensors resident on ``device`` (bench.run.inputs). In a data-parallel
    cell, this rank's shards of both (bench.run.ddp)."""
    x, y = data.tensors("train", data_dir, cell.limit_train)
    tx, ty = data.tensors("test", data_dir, cell.limit_test)
    rows = ddp.test_rows(len(tx), world)
    drop_last = adapters.drop_last(cell)
    if cell.input == "device":
        train = DeviceBatches(x, y, cell.batch_size, device, drop_last=drop_last, world=world)
        test_rows = slice(rows.start, None, rows.step)
        return train, DeviceBatches(tx[test_rows], ty[test_rows], EVAL_BATCH_SIZE, device)
    kw = inputs.loader_settings(cell)
    dataset = TensorDataset(x, y)
    sampler = ddp.train_sampler(dataset, world, shuffle=False, seed=cell.seed)
    train = DataLoader(dataset, batch_size=cell.batch_size, sampler=sampler, drop_last=drop_last, **kw)
    test_set = TensorDataset(tx, ty) if not world.distributed else Subset(TensorDataset(tx, ty), rows)
    test = DataLoader(test_set, batch_size=EVAL_BATCH_SIZE, shuffle=False, **kw)
    return train, test
