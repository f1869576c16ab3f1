"""Lightning on TorchTPU: the Trainer arguments for each harness precision on the ``tpu`` device. UNVERIFIED on a TPU.

Lightning 2.6's ``accelerator="tpu"`` is torch_xla's (XLAAccelerator), and it has nothing for TorchTPU. Its
documented way to add a device is an ``Accelerator`` of one's own: the one below hands Lightning the one device it is
given, inside Lightning's SingleDeviceStrategy, which runs on any torch device. The precisions are Lightning's own
plugins, built here with the device's type: from the precision string alone Lightning would build its MixedPrecision
for "cuda" or "cpu", and bf16 autocast would do nothing on the TPU. tests/test_torchtpu.py runs this same code on the
CPU device (all that this machine has): the plumbing, not the TPU.
"""

from __future__ import annotations

from typing import Any

import torch
from lightning_fabric.utilities.exceptions import MisconfigurationException
from pytorch_lightning.accelerators import Accelerator
from pytorch_lightning.plugins.precision import HalfPrecision, MixedPrecision, Precision
from pytorch_lightning.strategies import SingleDeviceStrategy


class OneDeviceAccelerator(Accelerator):
    """A Lightning accelerator for one device of ``device_type`` (TorchTPU's ``tpu``). Lightning asks some of its
    questions of the class, not of the instance: the device type is the class's (``of`` makes one per type)."""

    device_type = "tpu"

    @classmethod
    def of(cls, device_type: str) -> OneDeviceAccelerator:
        return type(f"OneDeviceAccelerator[{device_type}]", (cls,), {"device_type": device_type})()

    def setup_device(self, device: torch.device) -> None:
        if device.type != self.device_type:
            raise MisconfigurationException(f"this accelerator runs on {self.device_type}, not {device}")

    def get_device_stats(self, device) -> dict[str, Any]:
        return {}  # Lightning's DeviceStatsMonitor only; the harness measures memory itself (backend)

    def teardown(self) -> None:
        pass

    @staticmethod
    def parse_devices(devices) -> int:
        return int(devices)

    @classmethod
    def get_parallel_devices(cls, devices) -> list[torch.device]:
        return [torch.device(cls.device_type, i) for i in range(int(devices))]

    @staticmethod
    def auto_device_count() -> int:
        return 1  # one device: the backend refuses more

    @staticmethod
    def is_available() -> bool:
        return True  # the harness's backend has checked the device before any Trainer is made

    @staticmethod
    def name() -> str:
        return "one-device"


def trainer_args(precision: str, device: torch.device) -> dict:
    """The strategy (with its accelerator) and the precision plugin for ``pl.Trainer`` on ``device`` (one device)."""
    plugin = {
        "fp32": Precision(),
        "bf16-mixed": MixedPrecision("bf16-mixed", device=device.type),
        "bf16-true": HalfPrecision("bf16-true"),
    }[precision]
    # The accelerator through the strategy alone: Lightning refuses it given twice.
    strategy = SingleDeviceStrategy(device=device, accelerator=OneDeviceAccelerator.of(device.type))
    return {"strategy": strategy, "plugins": [plugin]}
