"""TPUs through TorchTPU (``torch_tpu``, Google's PyTorch backend for Cloud TPUs, which replaces torch_xla): a
``tpu`` device of PyTorch's own (PrivateUse1), eager by default, ``torch.compile(backend="tpu")`` for graphs.

UNVERIFIED: no TPU has run this file yet (docs/tpu.md, TorchTPU, lists what waits for one and how to check it).
What is known comes from the torch-tpu 0.2.0 wheel, read and imported on a machine without a TPU:

- ``import torch`` loads it (a ``torch.backends`` entry point); it registers the ``tpu`` device only when the PCI
  bus has a TPU chip, and even then opens no runtime until a tensor goes to the device. The parent that checks
  cells counts chips as TorchTPU does before its runtime starts (``hardware``: Google's PCI devices that VFIO
  exposes), so it never holds a chip that a cell's worker needs.
- Autograd's first ``backward()`` in any process asks every device type for its count, and TorchTPU's answer starts
  its runtime: off a TPU that took 640 s (libtpu retrying the GCP metadata server); on a TPU it would open the
  chips. The parent runs no backward.
- Its device-module calls (``torch.tpu.device_count``, ``synchronize``) are internal from torch 2.11 on and raise
  when called from outside: it points to ``torch.accelerator``, which this file uses.
- Its environment is torch 2.11-2.15 with ``torch-tpu`` and ``libtpu`` (``make setup-torchtpu``), apart from the
  XLA environment's torch 2.9.0.
"""

from __future__ import annotations

import contextlib
import importlib.util
import time

from bench.backends import Backend
from bench.run.env import version

SETUP_HINT = (
    "TorchTPU runs in its own environment (make setup-torchtpu, then .venv-torchtpu/bin/bench) or image (make "
    "bench-tpu STACK=torchtpu) on a Cloud TPU VM (docs/tpu.md)"
)


def _installed() -> bool:
    return importlib.util.find_spec("torch_tpu") is not None


def _hardware():
    """TorchTPU's hardware discovery: PCI reads, no runtime (importing torch_tpu loads no PJRT client)."""
    from torch_tpu._internal.utils import hardware

    return hardware


def _runtime_started() -> bool:
    """Whether this process has a TPU runtime (a cell's worker that has put a tensor on its chip)."""
    import torch

    tpu = getattr(torch, "tpu", None)
    try:
        return bool(tpu and tpu.is_initialized())
    except RuntimeError:  # its device-ops backend is not there: no chip, so no runtime
        return False


class TorchTPU(Backend):
    name = "torchtpu"
    lightning_accelerator = None  # a small Accelerator of the harness's: backends/torchtpu_lightning.py
    peak_memory_kind = "device"
    _read_back_wait: float | None = None  # the longest read_back past synchronize in this process, seconds

    def chips(self) -> int:
        """The TPU devices on this machine's PCI bus that VFIO exposes, counted without a runtime."""
        return _hardware().get_tpu_device_count() if _installed() else 0

    def available(self) -> bool:
        return self.chips() > 0

    def device_count(self) -> int:
        chips = self.chips()
        if chips and _runtime_started():
            import torch

            return torch.accelerator.device_count()
        return chips

    def device_name(self) -> str:
        """ "TPU v6e", "TPU v5e", "TPU v5p" from the chip's PCI device id (the names PEAK_TFLOPS uses)."""
        return _hardware().get_tpu_device_name() if _installed() else "TPU (TorchTPU)"

    def torch_device(self):
        import torch

        return torch.device("tpu", 0)

    def synchronize(self) -> None:
        import torch

        torch.accelerator.synchronize()

    def read_back(self, last) -> None:
        """A host read of a value the last step produced, after ``synchronize``: TorchTPU documents
        torch.accelerator.synchronize() as waiting for pending device-to-host copies, and with deferred ("fused")
        eager execution it may return before the step's compute has run; the read cannot. How long it waited past
        synchronize is kept for the record (``env.backend.read_back_wait_ms_max``): about 0 where synchronize already
        waited for the compute, and so the check, on a TPU, that both clocks agree (docs/tpu.md)."""
        t = time.perf_counter()
        last.detach().reshape(-1)[0].item()
        self._read_back_wait = max(self._read_back_wait or 0.0, time.perf_counter() - t)

    def cut_graph(self) -> None:
        pass  # eager ops are dispatched as they come; a compiled step is one graph already

    def compile_stats(self) -> dict | None:
        return None  # dynamo's own counters count torch.compile(backend="tpu") graphs, as inductor's

    def mark(self) -> None:
        return None  # torch.tpu.Event is experimental: per-step device times wait for a TPU (throughput is measured)

    def seconds_between(self, a, b) -> None:
        return None

    def device_reason(self, devices: int) -> str | None:
        if not _installed():
            return f"torch_tpu is not installed in this environment: {SETUP_HINT}"
        count = self.chips()
        if count == 0:
            return (
                "no TPU chip on this machine's PCI bus (none that VFIO exposes: TorchTPU runs TPU v5e and newer; v4 "
                "and older are torch_xla's, --device xla): run on a Cloud TPU VM (docs/tpu.md)"
            )
        if not version("libtpu"):
            return "torch_tpu is installed without libtpu: pip install -c constraints.txt libtpu (make setup-torchtpu)"
        if devices > count:
            return f"{devices} TPU devices requested, {count} visible"
        if devices > 1:
            return (
                "data-parallel training on TorchTPU is not built yet (its launch environment, "
                "torch.tpu.distributed.set_tpu_launch_env, and its 'tpu' process group need a TPU to verify): "
                "--devices 1"
            )
        return None

    def hosts_reason(self, nodes: int, devices: int, nnodes: int) -> str | None:
        if nodes > 1 or nnodes > 1:
            return "TorchTPU on several hosts of a pod slice is not built yet: one host, one device"
        return None

    def apply_precision(self, precision: str) -> None:
        # TPUs run fp32 matmuls as bf16 passes by default; fp32 here means full fp32, as on torch_xla (TorchTPU maps
        # torch's "highest" to its own Precision.HIGHEST).
        import torch

        torch.set_float32_matmul_precision("highest")
        self.precision_set = True

    def reset_peak_memory(self) -> None:
        import torch

        with contextlib.suppress(RuntimeError, NotImplementedError):  # peak_memory_bytes says None then
            torch.accelerator.reset_peak_memory_stats()

    def peak_memory_bytes(self) -> int | None:
        import torch

        try:
            return int(torch.accelerator.max_memory_allocated())
        except (RuntimeError, NotImplementedError):
            return None  # the device's allocator keeps no statistics through torch.accelerator

    def env(self) -> dict:
        out = {
            "device_kind": "torchtpu",
            "torch_tpu": version("torch-tpu"),
            "libtpu": version("libtpu"),
            "tpu_chips": self.chips(),
        }
        if not out["tpu_chips"]:
            return out
        import torch

        return {
            **out,
            "tpu_name": self.device_name(),
            "eager_mode": str(getattr(torch.tpu, "eager_mode", None)),
            "float32_matmul_precision": torch.get_float32_matmul_precision() if self.precision_set else None,
            "read_back_wait_ms_max": None if self._read_back_wait is None else round(self._read_back_wait * 1e3, 3),
        }


BACKEND = TorchTPU()
