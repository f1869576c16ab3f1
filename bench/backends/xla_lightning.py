"""Lightning on XLA: the Trainer arguments for each harness precision, on a TPU or on PJRT's CPU runtime.

Lightning's own ``accelerator="tpu"`` probes for TPU chips and refuses the CPU runtime, its XLA precision plugin has
no mixed mode, its ``bf16-true`` only sets the deprecated ``XLA_USE_BF16`` (parameters stay fp32 tensors), and its
data-parallel launcher forks its own workers, whose timings would never reach the harness. The small classes below
close those gaps so that the same code path runs on a TPU VM and here.
"""

from __future__ import annotations

import contextlib

import torch
import torch_xla.runtime as xr
from lightning_utilities import apply_to_collection
from pytorch_lightning.accelerators import XLAAccelerator
from pytorch_lightning.plugins.precision import XLAPrecision
from pytorch_lightning.strategies import XLAStrategy


class PJRTAccelerator(XLAAccelerator):
    """Lightning's XLA accelerator for any PJRT device; the device count comes from ``torch_xla.runtime``."""

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def auto_device_count() -> int:
        return xr.global_runtime_device_count()

    @staticmethod
    def parse_devices(devices) -> int:
        return int(devices)

    @staticmethod
    def get_parallel_devices(devices) -> list[torch.device]:
        return [torch.device("xla", i) for i in range(int(devices))]


class XLABf16Mixed(XLAPrecision):
    """fp32 parameters, forward passes under ``torch.autocast("xla", dtype=torch.bfloat16)``."""

    def __init__(self) -> None:
        super().__init__("32-true")
        self.precision = "bf16-mixed"

    @contextlib.contextmanager
    def forward_context(self):
        with torch.autocast("xla", dtype=torch.bfloat16):
            yield


class XLABf16True(XLAPrecision):
    """bf16 parameters and inputs, as Lightning's HalfPrecision does on other devices."""

    def __init__(self) -> None:
        super().__init__("32-true")
        self.precision = "bf16-true"

    def convert_module(self, module: torch.nn.Module) -> torch.nn.Module:
        return module.to(dtype=torch.bfloat16)

    def convert_input(self, data):
        return apply_to_collection(
            data, torch.Tensor, lambda t: t.to(torch.bfloat16) if torch.is_floating_point(t) else t
        )


class InRankXLAStrategy(XLAStrategy):
    """Lightning's XLA data-parallel strategy, run inside the one-process-per-device ranks that the harness's
    worker starts itself (``backend.spawn``), as DDP runs under torchrun: each rank runs the whole cell with its
    meter, and rank 0 writes the record. Lightning's own launcher would fork the ranks inside ``fit`` instead."""

    def _configure_launcher(self) -> None:
        self._launcher = None

    def process_dataloader(self, dataloader):
        """The loader as it is: each batch copied to the device with a blocking ``.to`` (``batch_to_device``), as
        one-device Lightning, the plain loops and fastai do on XLA. Lightning's XLAStrategy would wrap it in
        torch_xla's MpDeviceLoader (a background transfer), and the scaling column would divide one input pipeline
        by another (bench.backends.xla.INPUT_TRANSFER)."""
        return dataloader


def trainer_args(precision: str, devices: int) -> dict:
    """``accelerator``, ``strategy`` and the precision plugin for ``pl.Trainer`` on XLA."""
    on_tpu = xr.device_type() == "TPU"
    accelerator = "tpu" if on_tpu else PJRTAccelerator()
    plugin = {"fp32": XLAPrecision("32-true"), "bf16-mixed": XLABf16Mixed(), "bf16-true": XLABf16True()}[precision]
    strategy = InRankXLAStrategy() if devices > 1 else "auto"  # one device: Lightning's SingleDeviceXLAStrategy
    return {"accelerator": accelerator, "strategy": strategy, "plugins": [plugin]}
