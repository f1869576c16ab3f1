"""Each workload's static facts, read without importing it (as TorchBench's metadata.yaml beside each model): its
defaults, its framework, what it can and cannot run, and the module whose ``run(ctx) -> dict`` trains a cell and
whose ``steps(cell, backend, data_dir)`` gives its step micro-benchmarks (bench.workloads)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from importlib import metadata
from types import ModuleType

from bench.errors import UnknownName


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    module: str  # the dotted path of the module that runs it
    package: str  # the framework's distribution: the record names it with its installed version
    defaults: dict = field(default_factory=dict)  # epochs, batch_size, num_workers, lr[, pretrained, lr_find_steps]
    single_device: str | None = None  # why it runs on one device only; None: data-parallel under torchrun
    xla_data_parallel: bool = False  # it also runs over several XLA devices (torch_xla's spawn)
    device_input: str | None = None  # why it cannot take input = "device" (bench.run.inputs); None: it can
    lr_finder: bool = False  # lr = "find": its learning-rate finder picks the rate
    freeze_epochs: int = 0  # epochs it trains before the cell's own (fastai's fine_tune: frozen ones)
    reference: str | None = None  # the plain-PyTorch workload it is compared against ("Framework overhead")

    @property
    def pretrained(self) -> bool:
        """Whether it starts from pretrained weights (then the ``pretrained`` setting applies to it)."""
        return "pretrained" in self.defaults

    @property
    def framework(self) -> str:
        """``fastai 2.8.12``: the installed version of its framework's distribution."""
        try:
            return f"{self.package} {metadata.version(self.package)}"
        except metadata.PackageNotFoundError:
            return f"{self.package} (not installed)"

    def load(self) -> ModuleType:
        """Its module, framework and all: for the worker and the micro-benchmarks."""
        return importlib.import_module(self.module)


CONVNET = {"epochs": 10, "batch_size": 32, "num_workers": 0, "lr": 0.5}  # the book's recipe (Adadelta)
WORKLOADS = {
    spec.name: spec
    for spec in (
        WorkloadSpec(
            "fastai-resnet18",
            "bench.workloads.fastai_resnet18",
            "fastai",
            # epochs: fine_tune's unfrozen epochs, after its frozen one; batch 64 is fastai's default
            {"epochs": 2, "batch_size": 64, "num_workers": 0, "lr": 0.0209, "pretrained": True, "lr_find_steps": 100},
            # distrib_ctx needs Hugging Face accelerate (not in the lock) and hard-codes CUDA and NCCL
            single_device="fastai's distrib_ctx needs Hugging Face accelerate and CUDA/NCCL (fastai/distributed.py)",
            device_input="fastai's recipe decodes PNG files through its own DataLoaders; there is no device-resident "
            "form of it",
            lr_finder=True,
            freeze_epochs=1,
            reference="torch-resnet18",
        ),
        WorkloadSpec(
            "lightning-convnet",
            "bench.workloads.lightning_convnet",
            "pytorch-lightning",
            CONVNET,
            xla_data_parallel=True,  # Lightning's DDP over torchrun's world, its XLA strategy over XLA devices
            reference="torch-convnet",
        ),
        WorkloadSpec("torch-convnet", "bench.workloads.torch_convnet", "torch", CONVNET),
        WorkloadSpec(
            "torch-resnet18",
            "bench.workloads.torch_resnet18",
            "torch",
            # 1 + 2 epochs, batch 64: the fastai recipe's epochs and fastai's default batch size; Adam's usual lr
            {"epochs": 3, "batch_size": 64, "num_workers": 0, "lr": 1e-3},
        ),
    )
}


# The plain-PyTorch loop each framework workload is compared against ("Framework overhead" in the report).
REFERENCE = {name: spec.reference for name, spec in WORKLOADS.items() if spec.reference}


def get(name: str) -> WorkloadSpec:
    if name not in WORKLOADS:
        raise UnknownName(f"unknown workload {name!r}; valid: {', '.join(WORKLOADS)}")
    return WORKLOADS[name]
