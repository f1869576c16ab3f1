"""The plain-PyTorch training loop shared by the reference workloads (``torch-convnet``, ``torch-resnet18``).

A reference shows what a framework adds on top of the same computation, so this loop is what a careful user
writes by hand: autocast for the mixed precisions (a GradScaler for fp16), a bf16 model and bf16 inputs for
bf16-true, the loss summed on the device and read once per epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.utils.tensorboard import SummaryWriter

from bench import precision
from bench.precision import Probe


def train(ctx, model: torch.nn.Module, make_optimizer: Callable, loss_fn: Callable, train_loader, test_loader) -> dict:
    """Train for ``cell.epochs`` epochs, evaluating on the test loader after each; returns the result fields."""
    cell, meter, device = ctx.cell, ctx.meter, ctx.backend.torch_device()
    meter.loader_pass(train_loader, device)
    model = model.to(device)
    dtype = precision.true_dtype(cell.precision)
    if dtype:
        model = model.to(dtype)
    opt = make_optimizer(model.parameters())
    scaler = torch.amp.GradScaler(device.type, enabled=cell.precision == "fp16-mixed")
    probe = Probe(first_layer(model))
    writer = SummaryWriter(ctx.cell_dir / "tensorboard")
    status, reason = "ok", None
    for epoch in range(cell.epochs):
        model.train()
        # Created before the epoch's synchronised start, so it is device data in every step's graph: a lazy
        # zeros() would make the first step of each epoch a new graph for XLA to compile.
        loss_sum, batches = torch.zeros((), device=device), 0
        meter.epoch_start()
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if dtype:
                x = x.to(dtype)
            with precision.autocast(device.type, cell.precision):
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach().float()
            ctx.backend.cut_graph()  # XLA: one graph per step, dispatched without waiting
            batches += 1
            meter.step_end(len(x))
        meter.eval_start()
        accuracy = evaluate(model, test_loader, device, cell.precision, ctx.backend)
        reached = meter.eval_end(accuracy)
        train_loss = (loss_sum / max(batches, 1)).item()
        meter.epoch_end(epoch, train_loss)
        writer.add_scalar("train_loss", train_loss, epoch)
        writer.add_scalar("test_accuracy", accuracy, epoch)
        if not math.isfinite(train_loss):
            status, reason = "diverged", f"train loss {train_loss} in epoch {epoch}"
            break
        if reached and cell.stop_at_target:
            break
    writer.close()
    return {
        "status": status,
        "reason": reason,
        "precision_effective": probe.effective(),
        "precision_evidence": vars(probe.observed) if probe.observed else None,
        "final_accuracy": meter.accuracy,
        "train_samples": len(train_loader.dataset),
        "test_samples": len(test_loader.dataset),
        "global_batch_size": cell.batch_size,
    }


def first_layer(model: torch.nn.Module) -> torch.nn.Module:
    """The first layer with weights: the one whose dtypes the precision probe watches."""
    return next(m for m in model.modules() if isinstance(getattr(m, "weight", None), torch.Tensor))


@torch.no_grad()
def evaluate(model: torch.nn.Module, test_loader, device: torch.device, precision_name: str, backend) -> float:
    model.eval()
    dtype = precision.true_dtype(precision_name)
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in test_loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if dtype:
            x = x.to(dtype)
        with precision.autocast(device.type, precision_name):
            correct += (model(x).argmax(1) == y).sum()
        backend.cut_graph()
    return correct.item() / len(test_loader.dataset)
