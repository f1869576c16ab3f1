"""The seed's fastai recipe (Mastering PyTorch, ch. 14) on fastai 2.8: resnet18 fine-tuned on the MNIST PNG folders.

``ImageDataLoaders`` over ``mnist_png`` (label = parent folder), ``vision_learner(dls, resnet18, metrics=accuracy)``,
``lr_find()``, ``fine_tune(epochs=2, base_lr=0.0209, freeze_epochs=1)``, then ``show_results()``,
``plot_top_losses(9)`` and a confusion matrix saved as PNGs. Deviations from the seed: docs/workloads.md.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # plots go to files
import matplotlib.pyplot as plt
import torch
from fastai.callback.fp16 import MixedPrecision
from fastai.callback.progress import ProgressCallback
from fastai.callback.tensorboard import TensorBoardCallback
from fastai.vision.all import (
    Callback,
    CancelFitException,
    CancelValidException,
    CategoryBlock,
    ClassificationInterpretation,
    DataBlock,
    GrandparentSplitter,
    ImageBlock,
    ImageDataLoaders,
    Recorder,
    accuracy,
    parent_label,
    resnet18,
    vision_learner,
)

from bench import workloads
from bench.plan import precision
from bench.plan.precision import Probe
from bench.plan.workloads import WORKLOADS
from bench.run import adapters, data, inputs, micro, weights

SPEC = WORKLOADS["fastai-resnet18"]  # its defaults and what it can run (lr = "find" fits with lr_find's suggestion)
ARTIFACTS = ("show_batch.png", "lr_find.png", "show_results.png", "top_losses.png", "confusion_matrix.png")


def _files(root: Path, split: str, limit: int | None) -> list[Path]:
    # In index order, so that a limit takes the same first images as the ConvNet workloads do.
    files = sorted((root / split).glob("*/*.png"), key=lambda p: int(p.stem))
    return files[:limit] if limit else files


def loaders(cell, root: Path, device: torch.device):
    """The DataBlock ``ImageDataLoaders.from_path_func`` builds, with the fixed training/testing split."""
    files = _files(root, "training", cell.limit_train) + _files(root, "testing", cell.limit_test)
    dblock = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_y=parent_label,  # the seed's label_func: the parent folder's name
        splitter=GrandparentSplitter(train_name="training", valid_name="testing"),
    )
    return ImageDataLoaders.from_dblock(
        dblock, files, path=root, bs=cell.batch_size, device=device, **inputs.loader_settings(cell)
    )


class AnyDeviceMixedPrecision(MixedPrecision):
    """fastai's MixedPrecision with autocast on the model's device: fastai hard-codes ``autocast("cuda")``,
    which silently does nothing on a CPU or XLA device. The grad scaler runs for fp16 only, as in fastai."""

    def __init__(self, device_type: str, dtype: torch.dtype) -> None:
        super().__init__(amp_mode="fp16" if dtype == torch.float16 else "bf16")
        self.device_type, self.dtype = device_type, dtype

    def before_fit(self) -> None:
        self.autocast = torch.autocast(self.device_type, dtype=self.dtype)
        self.learn.scaler = torch.amp.GradScaler(self.device_type, enabled=self.dtype == torch.float16)
        self.scales = []


def _true_dtype(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """bf16-true: parameters in ``dtype``, inputs cast on entry; logits go back to fp32 for the loss and metrics,
    as fastai's MixedPrecision does."""
    model.to(dtype)
    model.register_forward_pre_hook(lambda m, args: tuple(a.to(dtype) for a in args))
    model.register_forward_hook(lambda m, args, out: out.float())


class CutGraph(Callback):
    """One graph per training step and per evaluation batch: a no-op in eager mode, ``torch_xla.sync()`` on XLA."""

    def __init__(self, backend) -> None:
        self.backend = backend

    def after_step(self) -> None:
        self.backend.cut_graph()

    def after_batch(self) -> None:
        if not self.training:
            self.backend.cut_graph()


class Timing(Callback):
    """Feeds fastai's loop events to the harness meter; runs after the Recorder has summed the metrics."""

    order = Recorder.order + 1

    def __init__(self, meter, stop_at_target: bool) -> None:
        self.meter, self.stop_at_target = meter, stop_at_target
        self.epochs_done, self.stop, self.diverged = 0, False, None

    def before_epoch(self) -> None:
        if self.stop:  # fine_tune calls fit twice: a stop must also skip the second one
            raise CancelFitException()
        self.meter.epoch_start("frozen" if self.opt.frozen_idx else "unfrozen")
        self.loss_sum, self.batches = torch.zeros((), device=self.dls.device), 0

    def after_batch(self) -> None:
        if self.training:
            self.loss_sum += self.loss.detach().float()
            self.batches += 1
            self.meter.step_end(len(self.xb[0]), self.loss_sum)

    def before_validate(self) -> None:
        self.meter.eval_start()

    def after_validate(self) -> None:
        if self.meter.eval_end(float(self.recorder.metrics[0].value)) and self.stop_at_target:
            self.stop = True

    def after_epoch(self) -> None:
        loss = (self.loss_sum / max(self.batches, 1)).item()
        self.meter.epoch_end(self.epochs_done, loss)
        self.epochs_done += 1
        if not math.isfinite(loss):
            self.diverged, self.stop = f"train loss {loss} in epoch {self.epochs_done - 1}", True
        if self.stop:
            raise CancelFitException()


class EpochTensorBoard(TensorBoardCallback):
    """fastai's TensorBoard logging, once per epoch: its ``after_batch`` writes the smoothed loss and every
    hyper-parameter of every parameter group at every step, a dozen scalars serialised by the host inside the
    timed steps (and, before fastai 2.8's Recorder moved the loss to the host, a read of the device). Here the
    epoch's last values are written when the epoch ends, after its evaluation, as the plain loops and the Lightning
    workload log (docs/workloads.md)."""

    def after_batch(self) -> None:
        pass

    def after_epoch(self) -> None:
        self.writer.add_scalar("train_loss", self.smooth_loss, self.train_iter)
        for i, hypers in enumerate(self.opt.hypers):
            for k, v in hypers.items():
                self.writer.add_scalar(f"{k}_{i}", v, self.train_iter)
        super().after_epoch()


def _save(path: Path) -> None:
    plt.gcf().savefig(path, dpi=80, bbox_inches="tight")
    plt.close("all")


def save_artifacts(learn, cell_dir: Path) -> None:
    """The seed's visual checks, as files: a batch, predictions, the nine worst losses, the confusion matrix."""
    learn.dls.show_batch(nrows=3, ncols=3)
    _save(cell_dir / "show_batch.png")
    learn.show_results(max_n=9)
    _save(cell_dir / "show_results.png")
    interp = ClassificationInterpretation.from_learner(learn)  # one prediction pass over the test set
    interp.plot_top_losses(9, figsize=(15, 10))
    _save(cell_dir / "top_losses.png")
    interp.plot_confusion_matrix()
    _save(cell_dir / "confusion_matrix.png")


def learner(dls, cell, backend, path: Path):
    """The seed's ``vision_learner(dls, resnet18, metrics=accuracy)``, made fit for timing on ``backend``."""
    learn = vision_learner(dls, resnet18, metrics=accuracy, pretrained=cell.pretrained, path=path)
    learn.remove_cb(ProgressCallback)  # a progress bar prints every batch: never inside a timed region
    learn.add_cb(CutGraph(backend))
    return learn


def set_precision(learn, name: str, device_type: str) -> None:
    if dtype := precision.true_dtype(name):
        _true_dtype(learn.model, dtype)
    elif dtype := precision.autocast_dtype(name):
        learn.add_cb(AnyDeviceMixedPrecision(device_type, dtype))


def run(ctx) -> dict:
    cell, meter = ctx.cell, ctx.meter
    device = ctx.backend.torch_device()
    if cell.pretrained:
        weights.ensure_resnet18()
    dls = loaders(cell, data.png_folders(ctx.data_dir), device)
    meter.loader_pass(dls.train)  # decoding and batching only, no model: the input pipeline's ceiling
    learn = learner(dls, cell, ctx.backend, ctx.cell_dir)
    set_precision(learn, cell.precision, device.type)
    probe = Probe(learn.model[0][0])  # the body's first convolution
    adapters.fastai_learner(learn, cell, ctx.backend)
    with meter.phase("lr_find"):
        found = learn.lr_find(num_it=cell.lr_find_steps)  # plots the loss curve with its suggestion, as in the seed
    _save(ctx.cell_dir / "lr_find.png")
    with contextlib.suppress(OSError):
        (ctx.cell_dir / "models").rmdir()  # lr_find's scratch folder, empty again: the seed keeps no checkpoint
    lr = found.valley if cell.lr == "find" else cell.lr
    timing = Timing(meter, cell.stop_at_target)
    # fastai's own TensorBoard logging, per epoch; trace_model and log_preds would add model runs inside the epochs
    tensorboard = EpochTensorBoard(ctx.cell_dir / "tensorboard", trace_model=False, log_preds=False)
    learn.add_cbs([timing, tensorboard])
    learn.fine_tune(cell.epochs, base_lr=lr, freeze_epochs=SPEC.freeze_epochs)
    learn.remove_cbs([timing, tensorboard])
    if not timing.diverged:  # nothing worth plotting, and NaN losses would break the plots
        with meter.phase("artifacts"):
            save_artifacts(learn, ctx.cell_dir)
        with meter.window() as window:  # the profile, after the plots: fine_tune's unfrozen loop, TensorBoard too
            if window.steps:
                learn.unfreeze()
                epochs = math.ceil(window.steps / len(dls.train)) + 1
                cbs = [WindowSteps(meter, window), tensorboard]
                learn.fit_one_cycle(epochs, slice(lr / 100, lr), pct_start=0.3, div=5.0, cbs=cbs)
    return workloads.outcome(
        timing.diverged, probe, len(dls.train.dataset), len(dls.valid.dataset), cell.batch_size, 1, lr,
        weights.describe(cell.pretrained), lr_found=found.valley,
        artifacts=[f"cells/{ctx.cell_dir.name}/{name}" for name in ARTIFACTS if (ctx.cell_dir / name).is_file()],
        full_network_phase="unfrozen",  # the phase that trains the whole network, as the reference in every epoch
    )  # fmt: skip


class WindowSteps(Callback):
    """The profile window after training (bench.run.meter.Meter.window): fastai's own loop, without validation,
    ended once the window is done."""

    def __init__(self, meter, window) -> None:
        self.meter, self.window = meter, window

    def after_batch(self) -> None:
        if self.training:
            self.meter.step_end(len(self.xb[0]))
            if self.window.done:
                raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()


class TrainOnly(Callback):
    """Ends ``fit`` after its training batches: the micro-benchmark's fit has no validation."""

    def after_train(self) -> None:
        raise CancelFitException()


def steps(cell, backend, data_dir: str | None) -> micro.Steps:
    """fastai's own loops over one fixed batch (bench.run.micro): ``fit_one_cycle`` of the unfrozen network, as the
    seed's unfrozen epochs run, and ``validate``. The batch is one the real DataLoaders decoded and normalised."""
    device = backend.torch_device()
    dls = loaders(cell, data.png_folders(data_dir), device)
    loader = dls.train
    x, y = loader.one_batch()
    learn = learner(dls, cell, backend, dls.path)  # nothing is saved: no lr_find, no checkpoint
    flops = micro.train_flops(learn.model, x, y, learn.loss_func)
    set_precision(learn, cell.precision, device.type)
    adapters.fastai_learner(learn, cell, backend)
    learn.unfreeze()

    def fit(batches) -> None:
        dls.train = batches
        try:
            # fine_tune's unfrozen schedule: fit_one_cycle(slice(base_lr / 100, base_lr), pct_start=0.3, div=5)
            learn.fit_one_cycle(1, slice(cell.lr / 100, cell.lr), pct_start=0.3, div=5.0, cbs=[TrainOnly()])
        finally:
            dls.train = loader

    def validate(batches) -> None:
        learn.validate(dl=batches)

    return micro.Steps((x, y), fit, validate, loader, learn.model[0][0], flops)
