"""Nothing of the harness's own reads a device value inside a steady window (docs/methodology.md, Clocks): a read
(``.item()``, ``float()``, ``.cpu()``, ...) makes the host wait for the device, which the meter allows only at the
window's edges. Each training loop (the plain one, Lightning's, fastai's) trains a tiny real cell in this process,
with a tracker that counts every read of a tensor between the start and the end of each steady segment and names
whose it is by the code that called it: the harness's (bench/, and the TensorBoard logging the harness adds) or the
framework's own (fastai's Recorder moves each step's loss to the host, as every fastai user's loop does; torch's
optimizers read their step counters, host tensors). On a CPU a read does not wait, but it is made all the same: the
counting holds the code path that would wait on a GPU or TPU. What is counted cannot tell a host tensor from a device
one on a CPU: the framework's counts are shown, not held to zero."""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import pytest

from bench import trackers
from bench.plan import suite
from bench.plan.job import Job
from bench.run import worker
from tests.conftest import ROOT, expand

READS = {"item", "tolist", "numpy", "cpu", "__float__", "__int__", "__bool__", "__index__", "__array__", "__format__",
         "__repr__"}  # fmt: skip
# Where a read goes through torch's own plumbing on its way to the mode: the caller is the frame before these.
PLUMBING = ("/torch/overrides.py", "/torch/_tensor.py", "/torch/utils/_device.py")
# Logging the harness adds to a recipe: its reads are the harness's, wherever their code lives.
ADDED = ("/torch/utils/tensorboard/", "/fastai/callback/tensorboard.py", "/pytorch_lightning/loggers/")


def _whose() -> str | None:
    """The file of the code that called the read (the innermost frame outside torch's plumbing and this test); None
    for the DataLoader's own work, which reads tensors of the host (its sampler, its seed) whatever the device."""
    stack = traceback.extract_stack()[:-1]
    if any("/torch/utils/data/" in frame.filename for frame in stack):
        return None
    for frame in reversed(stack):
        if not frame.filename.endswith(PLUMBING) and frame.filename != __file__:
            return frame.filename
    return "?"


class Reads(trackers.Tracker):
    """Counts reads of a tensor's value inside the steady segments, by the file that made them."""

    SECTION = "reads"

    def __init__(self, *args) -> None:
        from torch.overrides import TorchFunctionMode

        super().__init__(*args)
        self.where: Counter = Counter()
        where = self.where

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                if getattr(func, "__name__", "") in READS and (who := _whose()):
                    where[who] += 1
                return func(*args, **(kwargs or {}))

        self.mode, self.on = Mode(), False

    def steady_start(self) -> None:
        self.mode.__enter__()
        self.on = True

    def steady_end(self, samples: int) -> None:
        self._off()

    def steady_cancel(self) -> None:
        self._off()

    def _off(self) -> None:
        if self.on:
            self.mode.__exit__(None, None, None)
            self.on = False

    def section(self) -> dict:
        return dict(self.where)


def harness(path: str) -> bool:
    """The harness's own code, or logging it adds to the recipe."""
    return path.startswith(str(ROOT / "bench")) or any(part in path for part in ADDED)


@pytest.mark.slow
# torch-resnet18 trains in the plain loop that torch-convnet's cell holds here (bench/workloads/plain.py)
@pytest.mark.parametrize("workload", ["torch-convnet", "lightning-convnet", "fastai-resnet18"])
def test_no_read_of_a_device_value_by_the_harness_inside_a_steady_window(workload, tmp_path, cache, mnist_dir,
                                                                          monkeypatch):  # fmt: skip
    raw = {"backend": "cpu", "workloads": [workload], "epochs": 1, "batch_size": 16, "limit_train": 320,
           "limit_test": 200, "warmup_steps": 3, "profile_steps": 0, "pretrained": False,
           "lr_find_steps": 10}  # fmt: skip
    (cell,) = expand("t", suite.validate("t", raw))
    made = []

    def create(job, backend, cell_dir: Path) -> list:
        made.append(Reads(job, backend, cell_dir))
        return [*trackers.modules_create(job, backend, cell_dir), made[-1]]

    monkeypatch.setattr(trackers, "modules_create", trackers.create, raising=False)
    monkeypatch.setattr(trackers, "create", create)
    result = worker.train_cell(Job(cell, "t", str(mnist_dir), "glibc"), tmp_path)
    assert result["status"] == "ok", result["reason"]
    steps = result["timing"]["steady_steps"]
    assert steps >= 10  # enough steps that a per-step read would show
    reads = made[0].where
    ours = {path: n for path, n in reads.items() if harness(path)}
    assert ours == {}, f"the harness read a device value inside the steady window: {ours} over {steps} steps"
    theirs = {Path(path).name: round(n / steps, 2) for path, n in reads.items()}
    print(f"{workload}: the framework's own reads per steady step, by file: {theirs}")
    if workload == "fastai-resnet18":  # fastai's Recorder moves each step's loss to the host: to_detach(cpu=True)
        assert theirs.get("torch_core.py") == pytest.approx(1.0, abs=0.1), theirs
