"""The seed's ConvNet on PyTorch Lightning 2.x: Trainer(accelerator, devices, precision), Adadelta(lr=0.5), batch 32.

Deviations from the seed (evaluation on the test set, no checkpointing, no progress bar) are in docs/workloads.md.
"""

from __future__ import annotations

import math

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger

from bench import workloads
from bench.plan.precision import Probe
from bench.run import adapters, ddp, micro, weights
from bench.workloads import convnet


class LitConvNet(pl.LightningModule):
    def __init__(self, lr: float) -> None:
        super().__init__()
        self.lr = lr
        self.model = convnet.ConvNet()
        self.loss_sum = self.batches = self.correct = self.seen = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self) -> None:
        self._start_loss_sum()

    def _start_loss_sum(self) -> None:
        self.loss_sum, self.batches = torch.zeros((), device=self.device), 0

    def epoch_loss(self) -> float:
        """The epoch's mean training loss over all devices; starts the next epoch's sum here, before that epoch's
        synchronised start, so that XLA sees it as device data instead of compiling the next first step anew."""
        loss = self.trainer.strategy.reduce(self.loss_sum / max(self.batches, 1), reduce_op="mean").item()
        self._start_loss_sum()
        return loss

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = convnet.loss_fn(self(x), y)
        self.loss_sum += loss.detach().float()
        self.batches += 1
        return loss

    def on_validation_epoch_start(self) -> None:
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)
        self.seen = torch.zeros((), dtype=torch.long, device=self.device)

    def validation_step(self, batch, batch_idx) -> None:
        x, y = batch
        self.correct += (self(x).argmax(1) == y).sum()
        self.seen += len(y)

    def configure_optimizers(self):
        return convnet.optimizer(self.parameters(), self.lr)


class WindowSteps(pl.Callback):
    """The profile window after training (bench.run.meter.Meter.window): Lightning's own loop, ended once it is done."""

    def __init__(self, meter, window, world_size: int) -> None:
        self.meter, self.window, self.world_size = meter, window, world_size

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.meter.step_end(len(batch[0]) * self.world_size)
        if self.window.done:
            trainer.should_stop = True


class Timing(pl.Callback):
    """Feeds Lightning's loop events to the harness meter; validation runs before on_train_epoch_end."""

    def __init__(self, meter, stop_at_target: bool) -> None:
        self.meter, self.stop_at_target = meter, stop_at_target
        self.diverged: str | None = None
        self.world_size = 1

    def on_train_start(self, trainer, module) -> None:
        # Read while the strategy runs: once fit() returns, Lightning's XLAStrategy.teardown makes every rank
        # report a world size of 1.
        self.world_size = trainer.world_size

    def on_train_epoch_start(self, trainer, module) -> None:
        self.meter.epoch_start()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs  # training_step's: this step's
        self.meter.step_end(len(batch[0]) * self.world_size, loss)

    def on_validation_epoch_start(self, trainer, module) -> None:
        self.meter.eval_start()

    def on_validation_epoch_end(self, trainer, module) -> None:
        correct = trainer.strategy.reduce(module.correct, reduce_op="sum")
        seen = trainer.strategy.reduce(module.seen, reduce_op="sum")
        accuracy = (correct / seen).item()
        module.log("test_accuracy", accuracy, sync_dist=False)
        if self.meter.eval_end(accuracy) and self.stop_at_target:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer, module) -> None:
        loss = module.epoch_loss()
        # Logged once per epoch, as the plain loop does: per-step logging would be extra work only one side does.
        module.log("train_loss", loss)
        self.meter.epoch_end(trainer.current_epoch, loss)
        if not math.isfinite(loss):
            self.diverged = f"train loss {loss} in epoch {trainer.current_epoch}"
            trainer.should_stop = True


def make_trainer(cell, backend, world: ddp.World = ddp.ONE, **kwargs) -> pl.Trainer:
    """The Trainer on the cell's backend, devices and precision, with nothing that runs inside timed steps. In
    torchrun's world, DDP over its nodes: Lightning reads torchrun's environment and starts no process of its own;
    the loaders are sharded already (bench.run.ddp), so Lightning adds no sampler."""
    parallel = {"strategy": "ddp", "num_nodes": world.nodes, "use_distributed_sampler": False}
    return pl.Trainer(
        **adapters.lightning_trainer_args(cell, backend),
        **(parallel if world.distributed else {}),
        devices=cell.devices,
        enable_progress_bar=False,  # a progress bar syncs and prints every step: not in timed regions
        enable_model_summary=False,
        enable_checkpointing=False,  # checkpoint writes are I/O, not training; the seed's output is the record
        num_sanity_val_steps=0,  # evaluation runs once per epoch, inside the time-to-accuracy clock only
        **kwargs,
    )


def run(ctx) -> dict:
    cell = ctx.cell
    train, test = convnet.loaders(cell, ctx.data_dir, ctx.backend.torch_device(), ctx.world)
    ctx.meter.loader_pass(train, ctx.backend.torch_device())  # the input pipeline's ceiling, no model
    module = LitConvNet(cell.lr)
    probe = Probe(module.model.fc1)
    adapters.lightning_module(module, cell)
    timing = Timing(ctx.meter, cell.stop_at_target)
    logger = TensorBoardLogger(ctx.cell_dir, name="tensorboard", version="")
    trainer = make_trainer(cell, ctx.backend, ctx.world, max_epochs=cell.epochs, logger=logger, callbacks=[timing])
    trainer.fit(module, train_dataloaders=train, val_dataloaders=test)
    if not timing.diverged:
        with ctx.meter.window() as window:  # the profile: Lightning's loop again, for window.steps steps
            if window.steps:
                steps = WindowSteps(ctx.meter, window, timing.world_size)
                again = make_trainer(cell, ctx.backend, ctx.world, max_steps=window.steps, logger=False,
                                     callbacks=[steps])  # fmt: skip
                again.fit(module, train_dataloaders=train)
    test_samples = ddp.total(len(test.dataset), ctx.world, ctx.backend.torch_device())
    return workloads.outcome(timing.diverged, probe, len(train.dataset), test_samples, cell.batch_size,
                             timing.world_size, cell.lr, weights.describe(False))  # fmt: skip


def steps(cell, backend, data_dir: str | None) -> micro.Steps:
    """Lightning's own fit and validate loops over one fixed batch (bench.run.micro), each in a fresh Trainer."""
    device = backend.torch_device()  # before train_flops' CPU backward (see there)
    train, _ = convnet.loaders(cell, data_dir)
    x, y = next(iter(train))
    module = LitConvNet(cell.lr)
    flops = micro.train_flops(module.model, x, y, convnet.loss_fn)
    adapters.lightning_module(module, cell)

    def fit(batches) -> None:
        make_trainer(cell, backend, max_epochs=1, logger=False).fit(module, train_dataloaders=batches)

    def validate(batches) -> None:
        make_trainer(cell, backend, logger=False).validate(module, dataloaders=batches, verbose=False)

    return micro.Steps((x.to(device), y.to(device)), fit, validate, train, module.model.fc1, flops)
