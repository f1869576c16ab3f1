"""XLA devices through torch_xla's PJRT runtime: Cloud TPUs, or the host CPU with ``PJRT_DEVICE=CPU``.

The CPU runtime runs the same lazy-tensor, compile-and-execute code path as a TPU, which is how this backend is
tested without one. torch_xla lives in its own environment (``make setup-xla``): importing it next to fastai
breaks fastai's ``to_bf16()``, and it needs exactly its lock's torch (constraints-xla.txt).

Describing the devices never starts the runtime. Only one process at a time may open a TPU chip (libtpu: "The TPU is
already in use by process with pid N"), so a PJRT client in ``bench run``, the parent that expands suites, checks
cells and records the environment of unsupported ones, would make every cell's worker fail. The parent counts
devices as Lightning does, from the VM's PCI devices and metadata (``torch_xla._internal.tpu``); a worker, whose
runtime is running, asks the runtime.
"""

from __future__ import annotations

import os
import re

from bench.backends import Backend
from bench.run.env import version

SETUP_HINT = "use the XLA environment (`make setup-xla`, then .venv-xla/bin/bench) with PJRT_DEVICE=TPU or CPU"
RUNTIMES = ("TPU", "CPU")  # the PJRT devices this backend runs and counts without a client
# A slice's accelerator type names its generation as Google names the chips, but for v5e's (v5litepod-8).
GENERATIONS = {"v5litepod": "v5e"}
# How every XLA cell's batches reach the device (env.backend.input_transfer): the loader's batch copied with a
# blocking .to(device) each step, in every workload and on one device or several (bench.backends.xla_lightning), so
# that scaling compares one input pipeline; torch_xla's MpDeviceLoader (a background transfer) is used by none.
INPUT_TRANSFER = "blocking"
LIBTPU = ("libtpu", "libtpu-nightly")  # the packages that bring libtpu.so (torch-xla[tpu] installs the first)


def _xla():
    import torch_xla
    import torch_xla.core.xla_model as xm
    import torch_xla.runtime as xr

    return torch_xla, xm, xr


def _runtime_started() -> bool:
    """Whether this process has a PJRT client (a cell's worker); asking does not start one."""
    return bool(_xla()[0]._XLAC._xla_runtime_is_initialized())


class XLA(Backend):
    name = "xla"
    lightning_accelerator = None  # "tpu", or a PJRT accelerator on the CPU runtime: backends/xla_lightning.py
    peak_memory_kind = "device"

    def available(self) -> bool:
        # Without PJRT_DEVICE torch_xla would probe for TPUs and guess.
        if os.environ.get("PJRT_DEVICE", "").split("_")[0] not in RUNTIMES:
            return False
        try:
            _xla()
        except ImportError:
            return False
        return True

    def device_type(self) -> str:
        return _xla()[2].device_type()  # "TPU" or "CPU": PJRT_DEVICE, read without starting the runtime

    def device_count(self) -> int:
        """The devices the runtime has or will have, counted without starting it (see the module's doc)."""
        if not self.available():
            return 0
        if _runtime_started():  # a worker: the runtime's own count, every rank's devices included
            return _xla()[2].global_runtime_device_count()
        if self.device_type() == "CPU":
            return int(os.environ.get("CPU_NUM_DEVICES", "1"))  # what PJRT's CPU client reads (pjrt_registry.cpp)
        from torch_xla._internal import tpu

        # Lightning's count (XLAAccelerator.auto_device_count): chips on the PCI bus × cores per chip (2 on v2/v3,
        # torch_xla's num_logical_cores_per_chip).
        # TPU_VISIBLE_CHIPS, when the user sets it, is what the runtime opens instead.
        visible = os.environ.get("TPU_VISIBLE_CHIPS")
        chips = len(visible.split(",")) if visible else tpu.num_available_chips()
        return chips * (2 if chips and (self.tpu_version() or 4) <= 3 else 1)

    def tpu_version(self) -> int | None:
        """The TPU generation's number, read from the accelerator type as torch_xla reads it (v5litepod-8: 5); None
        off a TPU VM (or without the metadata server)."""
        match = re.match(r"(?:v|tpu)(\d)", self.accelerator_type() or "")
        return int(match.group(1)) if match else None

    def accelerator_type(self) -> str | None:
        """The slice's accelerator type from the VM's metadata (v6e-8, v5litepod-8, v5p-8, v4-8); None off a TPU
        VM (or without the server)."""
        if self.device_type() != "TPU":
            return None
        from torch_xla._internal import tpu

        try:
            return str(tpu.get_tpu_env()["ACCELERATOR_TYPE"])
        except (OSError, KeyError, TypeError):  # requests' errors are OSErrors too
            return None

    def device_name(self) -> str:
        """ "TPU v6e", "TPU v5e", "TPU v5p", "TPU v4": v5e and v5p are different chips of one generation number."""
        generation = (self.accelerator_type() or "").split("-")[0]
        return f"TPU {GENERATIONS.get(generation, generation)}" if generation else f"XLA:{self.device_type()}"

    def libtpu(self) -> str | None:
        """The libtpu this environment would load: TPU_LIBRARY_PATH's file, else its package's version; None:
        none (torch_xla without its [tpu] extra)."""
        if os.environ.get("TPU_LIBRARY_PATH"):
            return os.environ["TPU_LIBRARY_PATH"]
        for name in LIBTPU:
            if found := version(name):
                return f"{name} {found}"
        bundled = os.path.join(os.path.dirname(_xla()[0].__file__), "lib", "libtpu.so")  # older torch_xla wheels
        return bundled if os.path.isfile(bundled) else None

    def torch_device(self):
        return _xla()[0].device()

    def synchronize(self) -> None:
        torch_xla, xm, _ = _xla()
        torch_xla.sync()  # cut and dispatch the pending graph ...
        xm.wait_device_ops()  # ... and wait until the device has executed it

    def cut_graph(self) -> None:
        """End of a training or evaluation step: compile (once) and run the traced graph, without waiting."""
        _xla()[0].sync()

    def spawn(self, fn, args: tuple) -> None:
        """Run ``fn(ordinal, *args, writer=...)`` in one process per device, torch_xla's data-parallel layout.
        ``writer`` is true in one of them: the first device of the runtime's process 0 (``xr.process_index()``,
        which follows the TPU workers: worker 0, where the records are). The global ordinal follows device ids,
        which torch_xla says have no relation to the workers' ids, so its 0 may sit on another host."""
        import torch_xla.distributed.xla_multiprocessing as xmp

        xmp.spawn(_rank, args=(fn, args))  # every device the runtime sees (one or all: unsupported() refuses the rest)

    def mark(self) -> None:
        return None  # no device-side events: per-step times are not measured on XLA (throughput is)

    def seconds_between(self, a, b) -> None:
        return None

    def device_reason(self, devices: int) -> str | None:
        if not self.available():
            return f"torch_xla is not importable here, or PJRT_DEVICE is neither TPU nor CPU: {SETUP_HINT}"
        count = self.device_count()  # on a TPU VM, a metadata-server request: once per check
        if self.device_type() == "TPU" and count == 0:
            return "PJRT_DEVICE=TPU, but no TPU chip is on this machine's PCI bus: run on a Cloud TPU VM (docs/tpu.md)"
        if self.device_type() == "TPU" and not self.libtpu():
            return (
                "PJRT_DEVICE=TPU, but this environment has no libtpu (torch_xla installed without its [tpu] extra): "
                "make setup-xla XLA_PIN='torch-xla[tpu]==2.9.0' adds it (docs/tpu.md)"
            )
        if devices > count:
            return f"{devices} XLA devices requested, {count} visible"
        if 1 < devices < count:
            return (
                f"torch_xla runs data-parallel on one device or all {count} (xmp.spawn): "
                f"--devices 1 or all, not {devices}"
            )
        if devices > 1 and self.device_type() == "CPU":
            # Seen here with CPU_NUM_DEVICES=2: the first all-reduce waits for its rendezvous, then aborts.
            return (
                "data-parallel training on PJRT's CPU runtime aborts in its first all-reduce (rendezvous timeout; "
                "pytorch/xla#9496): several XLA devices need TPUs"
            )
        return None

    def hosts_reason(self, nodes: int, devices: int, nnodes: int) -> str | None:
        """Why a cell of ``nodes`` × ``devices`` cannot run on this run's ``nnodes`` hosts: PJRT joins the chips of
        every host of a TPU pod slice into one runtime, so a cell spans all of them or none, every chip of each
        (xmp.spawn starts a process per chip); PJRT's CPU runtime has no world of several hosts."""
        if nnodes > 1 and nodes != nnodes:
            return f"on a TPU pod slice of {nnodes} hosts every cell spans them all (nodes = {nnodes})"
        if nodes > 1 and self.device_type() == "CPU":
            return "several hosts need a TPU pod slice: PJRT's CPU runtime has no multi-host world"
        if nodes > 1 and devices == 1:
            return (
                "a cell on several hosts of a pod slice runs on every chip of each (xmp.spawn starts one process per "
                "chip, and each would train alone): devices = all, not 1"
            )
        return None

    def run_reason(self, nnodes: int) -> str | None:
        """Why no run can start here: a TPU VM that is one host of a pod slice, run without --nnodes, would wait for
        the other hosts' chips until its cells time out (PJRT joins them all into one runtime)."""
        if nnodes > 1 or not self.available() or self.device_type() != "TPU":
            return None
        from torch_xla._internal import tpu

        try:
            hosts = tpu.num_tpu_workers()  # the slice's workers, from the VM's metadata
        except (OSError, KeyError, TypeError, ValueError):
            return None
        if hosts <= 1:
            return None
        return (
            f"this TPU VM is one of {hosts} hosts of a pod slice, whose chips PJRT joins into one runtime: run bench "
            f"run on every host at once with --nodes {hosts} --nnodes {hosts} --node-rank <its worker number> "
            "--rdzv-endpoint <worker 0>:29500 (docs/tpu.md, TPU pod slices)"
        )

    def take_device(self, local_rank: int) -> None:
        pass  # torch_xla gives each spawned process its device

    def apply_precision(self, precision: str) -> None:
        # TPUs run fp32 matmuls as bf16 passes by default; fp32 here means full fp32, as TF32 is off on CUDA.
        import torch_xla.backends

        torch_xla.backends.set_mat_mul_precision("highest")
        self.precision_set = True

    def reset_peak_memory(self) -> None:
        pass  # each cell is its own process: the runtime's peak covers this cell

    def peak_memory_bytes(self) -> int | None:
        torch_xla, xm, _ = _xla()
        try:
            return int(xm.get_memory_info(torch_xla.device())["peak_bytes_used"])
        except (RuntimeError, KeyError):
            return None  # the CPU runtime keeps no allocator statistics

    def compile_stats(self) -> dict:
        """Graph compilations so far in this process, and the seconds they took (torch_xla's metrics)."""
        import torch_xla.debug.metrics as met

        data = met.metric_data("CompileTime")
        count, total_ns = (data[0], data[1]) if data else (0, 0.0)
        return {"compilations": int(count), "compile_seconds": total_ns / 1e9}

    def env(self) -> dict:
        if not self.available():
            return {"device_kind": "xla", "xla_available": False, "pjrt_device": os.environ.get("PJRT_DEVICE")}
        import torch_xla
        import torch_xla.backends

        return {
            "device_kind": "xla",
            "pjrt_device": os.environ.get("PJRT_DEVICE"),
            "xla_device_type": self.device_type(),
            "xla_device_count": self.device_count(),
            "tpu_version": self.tpu_version(),
            "tpu_accelerator_type": self.accelerator_type(),
            "libtpu": self.libtpu() if self.device_type() == "TPU" else None,
            "torch_xla": torch_xla.__version__,
            "input_transfer": INPUT_TRANSFER,
            # what the cell's process set (a parent that refused the cell never did)
            "mat_mul_precision": torch_xla.backends.get_mat_mul_precision() if self.precision_set else None,
        }


def _rank(ordinal: int, fn, args: tuple) -> None:
    """One process of ``spawn`` (a thread, on PJRT's CPU runtime): it dies with the worker that spawned it (a
    SIGKILLed worker would leave it holding its TPU chip), then runs ``fn``."""
    from bench.run import process

    xr = _xla()[2]
    process.die_with_parent()
    fn(ordinal, *args, writer=(xr.process_index(), xr.local_ordinal()) == (0, 0))


BACKEND = XLA()
