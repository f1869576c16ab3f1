"""Plain-PyTorch reference: the seed's ConvNet, data, batch and optimizer in a hand-written loop.

It exists so every report can show what Lightning adds on top of the same computation.
"""

from __future__ import annotations

from bench.run import micro
from bench.workloads import convnet, plain


def run(ctx) -> dict:
    train, test = convnet.loaders(ctx.cell, ctx.data_dir, ctx.backend.torch_device(), ctx.world)
    return plain.train(
        ctx,
        convnet.ConvNet(),
        lambda params: convnet.optimizer(params, ctx.cell.lr),
        convnet.loss_fn,
        train,
        test,
    )


def steps(cell, backend, data_dir: str | None) -> micro.Steps:
    train, _ = convnet.loaders(cell, data_dir)
    model = convnet.ConvNet()
    return plain.steps(model, lambda params: convnet.optimizer(params, cell.lr), convnet.loss_fn, train, cell, backend)
