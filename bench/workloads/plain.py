"""The plain-PyTorch training loop shared by the reference workloads (``torch-convnet``, ``torch-resnet18``).

A reference shows what a framework adds on top of the same computation, so this loop is what a careful user
writes by hand: autocast for the mixed precisions (a GradScaler for fp16), a bf16 model and bf16 inputs for
bf16-true, the loss summed on the device and read once per epoch. In a data-parallel cell (torchrun's world,
bench.run.ddp) the model is wrapped in ``DistributedDataParallel`` and each rank trains on its shard.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch.utils.tensorboard import SummaryWriter

from bench import workloads
from bench.plan import precision
from bench.plan.precision import Probe
from bench.run import adapters, ddp, micro, weights


def train(ctx, model: torch.nn.Module, make_optimizer: Callable, loss_fn: Callable, train_loader, test_loader) -> dict:
    """Train for ``cell.epochs`` epochs, evaluating on the test loader after each; returns the result fields."""
    cell, meter, device, world = ctx.cell, ctx.meter, ctx.backend.torch_device(), ctx.world
    meter.loader_pass(train_loader, device)
    step = Step(model, make_optimizer, loss_fn, cell, device, world)
    probe = Probe(first_layer(step.model))
    writer = SummaryWriter(ctx.cell_dir / "tensorboard")
    diverged = None
    for epoch in range(cell.epochs):
        step.model.train()
        # Created before the epoch's synchronised start, so it is device data in every step's graph: a lazy
        # zeros() would make the first step of each epoch a new graph for XLA to compile.
        loss_sum, batches = torch.zeros((), device=device), 0
        ddp.set_epoch(train_loader, epoch)
        meter.epoch_start()
        for x, y in train_loader:
            loss = step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            loss_sum += loss.detach().float()
            ctx.backend.cut_graph()  # XLA: one graph per step, dispatched without waiting
            batches += 1
            meter.step_end(len(x) * world.size, loss_sum)  # the ranks step together: the world's samples
        meter.eval_start()
        accuracy = evaluate(step, test_loader, device, ctx.backend, world)
        reached = meter.eval_end(accuracy)
        train_loss = world_ratio(loss_sum, batches, world)
        meter.epoch_end(epoch, train_loss)
        writer.add_scalar("train_loss", train_loss, epoch)
        writer.add_scalar("test_accuracy", accuracy, epoch)
        if not math.isfinite(train_loss):
            diverged = f"train loss {train_loss} in epoch {epoch}"
            break
        if reached and cell.stop_at_target:
            break
    writer.close()
    if not diverged:
        with meter.window() as window:  # the profile: more steps of this same loop, after training
            step.model.train()
            for x, y in cycle(train_loader, window.steps):
                step(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                ctx.backend.cut_graph()
                meter.step_end(len(x) * world.size)
    test_samples = ddp.total(len(test_loader.dataset), world, device)
    return workloads.outcome(diverged, probe, len(train_loader.dataset), test_samples, cell.batch_size, world.size,
                             cell.lr, weights.describe(False))  # fmt: skip


def cycle(loader, steps: int):
    """The next ``steps`` batches of ``loader``, starting it again as often as needed."""
    return itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps)


class Step:
    """One training step as a careful user writes it: forward under the precision, loss, backward, optimizer
    step. The model is moved to ``device`` (and to bf16 for bf16-true); batches must already be there. In a
    compiled mode the model and the optimizer step are compiled (bench.run.adapters); in a data-parallel world the
    model is wrapped in DistributedDataParallel first, which averages the gradients over the ranks."""

    def __init__(self, model: torch.nn.Module, make_optimizer: Callable, loss_fn: Callable, cell, device,
                 world: ddp.World = ddp.ONE):  # fmt: skip
        name = cell.precision
        self.dtype, self.precision, self.device_type = precision.true_dtype(name), name, device.type
        self.model = model.to(device)
        if self.dtype:
            self.model = self.model.to(self.dtype)
        if world.distributed:
            ids = None if device.index is None else [device.index]  # a GPU rank's own device; none on a CPU
            self.model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        adapters.compile_model(self.model, cell)
        self.opt = make_optimizer(self.model.parameters())
        self.opt_step = adapters.optimizer_step(self.opt, cell)
        self.scaler = torch.amp.GradScaler(device.type, enabled=name == "fp16-mixed")
        self.loss_fn = loss_fn

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step on a batch; returns the loss (not read: reading it would wait for the device)."""
        if self.dtype:
            x = x.to(self.dtype)
        with precision.autocast(self.device_type, self.precision):
            loss = self.loss_fn(self.model(x), y)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.scaler.is_enabled():  # fp16: the scaler skips the step when the gradients overflowed
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt_step()
        return loss

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Forward only, as evaluation runs it: the predicted classes of a batch."""
        if self.dtype:
            x = x.to(self.dtype)
        with precision.autocast(self.device_type, self.precision):
            return self.model(x).argmax(1)


def first_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The first layer with weights: the one whose dtypes the precision probe watches."""
    return next(m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor))


def evaluate(step: Step, test_loader, device: torch.device, backend, world: ddp.World = ddp.ONE) -> float:
    """Accuracy over the test set: each rank counts its slice, the counts are summed over the world."""
    return world_ratio(count_correct(step, test_loader, device, backend), len(test_loader.dataset), world)


def world_ratio(total: torch.Tensor, count: int, world: ddp.World) -> float:
    """``total / count`` over the world (each rank's total and count summed first), read once."""
    if not world.distributed:
        return total.item() / max(count, 1)
    both = torch.stack([total.double(), torch.tensor(float(count), dtype=torch.double, device=total.device)])
    total_, count_ = ddp.all_sum(both, world).tolist()
    return total_ / max(count_, 1)


def count_correct(step: Step, batches, device: torch.device, backend) -> torch.Tensor:
    """Correct predictions over ``batches``, summed on the device (each batch's result stays live, so that XLA
    runs the forward pass instead of dropping it as unused)."""
    step.model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        correct += (step.predict(x) == y).sum()
        backend.cut_graph()
    return correct


def steps(
    model: torch.nn.Module, make_optimizer: Callable, loss_fn: Callable, train_loader, cell, backend
) -> micro.Steps:
    """The reference's step micro-benchmarks (bench.run.micro): this loop's step and forward pass on one fixed batch."""
    device = backend.torch_device()
    x, y = next(iter(train_loader))
    flops = micro.train_flops(model, x, y, loss_fn)
    step = Step(model, make_optimizer, loss_fn, cell, device)

    def train(batches) -> None:  # the body of train()'s loop, without the meter
        step.model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in batches:
            loss_sum += step(x, y).detach().float()
            backend.cut_graph()

    def evaluate(batches) -> None:
        count_correct(step, batches, device, backend)

    batch = (x.to(device), y.to(device))
    return micro.Steps(batch, train, evaluate, train_loader, first_layer(step.model), flops)
