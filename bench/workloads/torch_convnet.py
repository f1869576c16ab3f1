"""Plain-PyTorch reference: the seed's ConvNet, data, batch and optimizer in a hand-written loop.

It exists so every report can show what Lightning adds on top of the same computation.
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch.utils.tensorboard import SummaryWriter

from bench.precision import Probe
from bench.workloads import convnet

NAME = "torch-convnet"
FRAMEWORK = f"torch {torch.__version__}"
DEFAULTS = {"epochs": 10, "batch_size": 32, "num_workers": 0, "lr": 0.5}
MULTI_DEVICE = False  # a plain single-device loop: the reference, not a data-parallel implementation


def _autocast(device: torch.device, precision: str):
    dtype = {"fp16-mixed": torch.float16, "bf16-mixed": torch.bfloat16}.get(precision)
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def run(ctx) -> dict:
    cell, meter, device = ctx.cell, ctx.meter, ctx.backend.torch_device()
    train, test = convnet.loaders(cell, ctx.data_dir)
    model = convnet.ConvNet().to(device)
    true_dtype = torch.bfloat16 if cell.precision == "bf16-true" else None
    if true_dtype:
        model = model.to(true_dtype)
    opt = convnet.optimizer(model.parameters(), cell.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=cell.precision == "fp16-mixed")
    probe = Probe(model.fc1)
    writer = SummaryWriter(ctx.cell_dir / "tensorboard")
    status, reason = "ok", None
    for epoch in range(cell.epochs):
        model.train()
        meter.epoch_start()
        loss_sum, batches = torch.zeros((), device=device), 0
        for x, y in train:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if true_dtype:
                x = x.to(true_dtype)
            with _autocast(device, cell.precision):
                loss = convnet.loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            loss_sum += loss.detach().float()
            batches += 1
            meter.step_end(len(x))
        meter.eval_start()
        accuracy = evaluate(model, test, device, cell.precision, true_dtype)
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
        "train_samples": len(train.dataset),
        "test_samples": len(test.dataset),
        "global_batch_size": cell.batch_size,
    }


@torch.no_grad()
def evaluate(model, test, device, precision: str, true_dtype) -> float:
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    for x, y in test:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if true_dtype:
            x = x.to(true_dtype)
        with _autocast(device, precision):
            correct += (model(x).argmax(1) == y).sum()
    return correct.item() / len(test.dataset)
