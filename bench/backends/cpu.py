"""The host CPU. Timing needs no synchronisation; peak memory is the process's peak RSS. ``devices = N`` runs N
processes (gloo between them, bench.run.launchers), sharing the cores out. torch is imported where it is used: bench
run's parent imports it only to ask whether bf16 has kernels here or to describe a cell that died without a record,
so a CPU run starts 1.7 s sooner and its parent holds no torch beside the cells it measures."""

from __future__ import annotations

import os
import resource

from bench.backends import Backend
from bench.run.isa import cpu_model


def bf16_kernels() -> bool:
    """Whether PyTorch has oneDNN's bf16 kernels for this CPU (AVX-512 on x86-64, the BF16 extension on Arm)."""
    import torch

    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


class CPU(Backend):
    name = "cpu"
    lightning_accelerator = "cpu"
    peak_memory_kind = "process-rss"

    def available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1  # one process using torch's intra-op threads (devices = N: N processes, bench.run.launchers)

    def device_name(self) -> str:
        import torch

        # the threads in use on this machine: torchrun's ranks on it (LOCAL_WORLD_SIZE) share its cores out
        ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        return f"{cpu_model()} ({torch.get_num_threads() * ranks} threads)"

    def torch_device(self):
        import torch

        return torch.device("cpu")

    def synchronize(self) -> None:
        pass  # the host's work is done when the call returns

    def device_reason(self, devices: int) -> str | None:
        if devices > len(os.sched_getaffinity(0)):
            return f"{devices} processes on {len(os.sched_getaffinity(0))} cores: at least one core per process"
        return None

    def precision_reason(self, precision: str, allow_emulated: bool) -> str | None:
        if precision.startswith("bf16") and not bf16_kernels() and not allow_emulated:
            import torch

            # Seen on an AVX2-only EPYC: one training step 6x (ConvNet) and 35x (resnet18) slower than fp32, which
            # turns the cpu suite's resnet18 cells into hours of timeouts.
            return (
                f"PyTorch has no bf16 kernels for this CPU ({torch.backends.cpu.get_cpu_capability()}; oneDNN's need "
                "AVX-512 or Arm BF16): bf16 convolutions fall back to ATen's reference loop (aten::_slow_conv2d), "
                "measured 6x (ConvNet) to 35x (resnet18) slower than fp32; allow_emulated = true (--allow-emulated) "
                "runs it anyway, labelled emulated"
            )
        return None

    def apply_precision(self, precision: str) -> None:
        import torch

        # oneDNN can run fp32 matmuls in reduced precision when asked; fp32 here means full fp32.
        torch.backends.mkldnn.matmul.fp32_precision = "ieee"

    def peak_memory_bytes(self) -> int | None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    def env(self) -> dict:
        import torch

        return {
            "device_kind": "cpu",
            "cpu_model": cpu_model(),
            "torch_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "bf16_kernels": bf16_kernels(),
            "mkldnn_matmul_fp32_precision": torch.backends.mkldnn.matmul.fp32_precision,
        }


BACKEND = CPU()
