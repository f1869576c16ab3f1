"""Step micro-benchmarks: one training step, one forward-only step and one loader step of a workload, in isolation.

A workload's ``steps(cell, backend, data_dir)`` returns its ``Steps``: a fixed batch already on the device, and
its *own* training and evaluation loops (the plain step, Lightning's ``Trainer``, fastai's ``Learner``) as
functions over an iterable of batches. ``drive`` runs such a loop on a ``Feed`` of that one batch, so one call
of ``Feed.step`` is one whole step of the framework's loop, hooks and all, with the device synchronised before it
returns (or ``PIPELINED`` steps between two synchronisations: the pipelined figure); pytest-benchmark times those
calls (tests/test_micro.py). The FLOPs of a training step are counted once
with ``torch.utils.flop_counter``. The report reads the saved runs (bench.report.benchmarks).
"""

from __future__ import annotations

import copy
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_STOP, _ENDED = object(), object()
PIPELINED = 10  # steps per synchronisation in the pipelined micro-benchmark


@dataclass
class Steps:
    batch: tuple  # (inputs, targets) on the device, of the workload's batch size
    train: Callable[[Iterable], None]  # the workload's own training loop over the given batches
    eval: Callable[[Iterable], None]  # its forward-only (evaluation) loop
    loader: Iterable  # the workload's real training DataLoader, as its training reads it
    probe_layer: torch.nn.Module  # the layer whose dtypes show the precision that ran (precision.Probe)
    flops_per_step: int  # FLOPs of one training step (forward + backward), counted on the CPU


class Feed:
    """A never-ending iterable of one fixed batch, handed to a training loop ``per_call`` steps at a time.

    The loop runs in one thread and iterates the feed; ``step()``, called from another thread, lets it take
    ``per_call`` batches and returns when the loop asks for the next one after them, i.e. when the loop has done
    everything it does per step, and the device has finished. With ``per_call`` 1 every step is synchronised: its
    time is the host's work plus the device's, in series. With more, the host queues the next steps while the
    device runs the earlier ones, as a training loop does between its synchronisations: the pipelined step.
    A framework that fetches a batch ahead (Lightning) is one step behind: its first ``step()`` does one step less,
    which the warmup absorbs.
    """

    def __init__(self, batch: tuple, synchronize: Callable[[], None], per_call: int = 1) -> None:
        self.batch, self.synchronize, self.per_call = batch, synchronize, per_call
        self._go: queue.SimpleQueue = queue.SimpleQueue()
        self._done: queue.SimpleQueue = queue.SimpleQueue()

    def __len__(self) -> int:
        return sys.maxsize  # fastai sizes its epoch with len(); the feed ends when stop() is called

    def __iter__(self) -> Iterator[tuple]:
        while self._go.get() is not _STOP:
            for _ in range(self.per_call - 1):
                yield self.batch  # queued without waiting for the device
            yield self.batch
            self.synchronize()  # the loop is back for the next batch: the steps are done, on the device too
            self._done.put(None)

    def step(self) -> None:
        self._go.put(None)
        if self._done.get() is _ENDED:
            raise RuntimeError("the training loop stopped taking batches before the benchmark ended")

    def stop(self) -> None:
        self._go.put(_STOP)

    def ended(self) -> None:
        self._done.put(_ENDED)


def drive(loop: Callable[[Iterable], None], feed: Feed, measure: Callable[[Feed], None]) -> None:
    """Run ``loop(feed)`` in this thread (frameworks expect their main thread) while ``measure(feed)`` calls
    ``feed.step()`` from another; an error on either side ends both and is raised here."""
    errors: list[BaseException] = []

    def measuring() -> None:
        try:
            measure(feed)
        except BaseException as e:
            errors.append(e)
        finally:
            feed.stop()

    thread = threading.Thread(target=measuring, name="micro-benchmark")
    thread.start()
    try:
        loop(feed)
    finally:
        feed.ended()
        thread.join()
    if errors:
        raise errors[0]


def loader_step(loader: Iterable, device: torch.device, synchronize: Callable[[], None]) -> Callable[[], int]:
    """A function that takes the next batch from ``loader`` (starting it again when it ends), moves it to
    ``device`` and waits for the copy; returns the batch's size."""
    it = iter(loader)

    def step() -> int:
        nonlocal it
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        x, y = batch[0], batch[1]
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        synchronize()
        return len(x)

    return step


def train_flops(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Callable) -> int:
    """FLOPs of one forward and backward pass of ``model`` on ``(x, y)``, counted on a CPU copy in fp32 (the count
    depends on shapes only). Matmuls and convolutions; elementwise work and the optimizer are not counted.

    Call it after the backend's device exists: a first backward pass on the CPU before torch_xla's device does leaves
    the autograd engine without a queue for XLA, and every later XLA backward fails an internal assert (torch 2.9)."""
    from torch.utils.flop_counter import FlopCounterMode

    model = copy.deepcopy(model).cpu().float()
    with FlopCounterMode(display=False) as counter:
        loss_fn(model(x.cpu().float()), y.cpu()).backward()
    return counter.get_total_flops()
