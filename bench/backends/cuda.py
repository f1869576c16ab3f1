"""NVIDIA GPUs through torch.cuda: synchronised clocks, allocator peak memory, TF32 switched explicitly."""

from __future__ import annotations

import subprocess

import torch

from bench.backends import Backend


def _driver_version() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return None


class CUDA(Backend):
    name = "cuda"
    lightning_accelerator = "gpu"
    peak_memory_kind = "device"

    def available(self) -> bool:
        return torch.cuda.is_available()

    def device_count(self) -> int:
        return torch.cuda.device_count()

    def device_name(self) -> str:
        return torch.cuda.get_device_name(0)

    def torch_device(self):
        return torch.device("cuda", torch.cuda.current_device())

    def synchronize(self) -> None:
        torch.cuda.synchronize()

    def mark(self) -> torch.cuda.Event:
        # An event on the device timeline: step times without draining the queue every step.
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def seconds_between(self, a: torch.cuda.Event, b: torch.cuda.Event) -> float:
        return a.elapsed_time(b) / 1000  # both recorded and synchronised by the caller

    def device_reason(self, devices: int) -> str | None:
        if not self.available():
            return "no CUDA GPU visible (check the NVIDIA driver, or `--gpus all` for Docker)"
        if devices > self.device_count():
            return f"{devices} GPUs requested, {self.device_count()} visible"
        return None

    def precision_reason(self, precision: str, allow_emulated: bool) -> str | None:
        major, _ = torch.cuda.get_device_capability(0)
        if precision == "tf32" and major < 8:
            return "TF32 needs an Ampere (sm_80) or newer GPU"
        if precision.startswith("bf16") and not torch.cuda.is_bf16_supported():
            return "this GPU has no bf16 support"
        return None

    def take_device(self, local_rank: int) -> None:
        torch.cuda.set_device(local_rank)

    def apply_precision(self, precision: str) -> None:
        # PyTorch leaves cuDNN's TF32 on by default: fp32 must switch it off to be fp32. The older switches, not
        # torch 2.9's per-backend fp32_precision: once that is set to tf32, torch.get_float32_matmul_precision()
        # (which Lightning calls on Ampere and newer GPUs) raises "mix of the legacy and new APIs" (seen on an H100).
        tf32 = precision == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32

    def reset_peak_memory(self) -> None:
        torch.cuda.reset_peak_memory_stats()

    def peak_memory_bytes(self) -> int | None:
        return torch.cuda.max_memory_allocated()

    def env(self) -> dict:
        if not self.available():
            return {"device_kind": "cuda", "cuda_available": False}
        props = torch.cuda.get_device_properties(0)
        return {
            "device_kind": "cuda",
            "gpu_name": props.name,
            "gpu_count": torch.cuda.device_count(),
            "gpu_memory_bytes": props.total_memory,
            "compute_capability": f"{props.major}.{props.minor}",
            "driver_version": _driver_version(),
            "cuda_version": torch.version.cuda,
            "cudnn_version": torch.backends.cudnn.version(),
            "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
        }


BACKEND = CUDA()
