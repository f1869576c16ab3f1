"""Each backend's static facts, read without importing it (its implementation, bench.backends.<name>, imports torch
or torch_xla): how several of its devices start, the collective between them, what torch.profiler and NVML can
see of it. Code outside bench/backends and bench/adapters asks these, never a backend's name."""

from __future__ import annotations

from dataclasses import dataclass, field

from bench.errors import UnknownName

TORCHRUN, XLA_SPAWN = "torchrun", "xla-spawn"

# Why a precision or execution mode never runs on a backend: said once, named by each backend it holds for
TF32 = "TF32 is an NVIDIA tensor-core mode"
GRAPHS = "mode = graphs replays CUDA graphs: CUDA only (compile is the mode for other devices)"


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # its implementation (a bench.backends.Backend as BACKEND)
    collective: str  # the process group's backend between its ranks
    spawn: str  # what starts one process per device: torchrun, or torch_xla's own spawn (bench.plan.launcher)
    gpu: bool = False  # an NVIDIA GPU: NVML sees it (energy, other processes on it, clocks)
    device_trace: bool = False  # torch.profiler records its kernels (ProfilerActivity.CUDA)
    profiler: str | None = None  # why torch.profiler cannot measure its steps; None: it can
    energy: str | None = None  # why its devices' energy is not measured; None: NVML (zeus)
    shares_cores: bool = (
        False  # its devices are the host's cores: torchrun's ranks share them out (bench.run.launchers)
    )
    compiler: str | None = "inductor"  # torch.compile's backend for mode = compile; None: no compiled mode (adapters)
    static_shapes: bool = False  # it compiles a graph per batch shape: the last partial batch is dropped (adapters)
    # precisions and execution modes it never runs, each with why (what depends on the machine, such as a CPU's bf16
    # kernels or a GPU's generation, its implementation's unsupported() says)
    precisions: dict[str, str] = field(default_factory=dict)
    modes: dict[str, str] = field(default_factory=dict)


BACKENDS = {
    spec.name: spec
    for spec in (
        BackendSpec(
            "cpu",
            "bench.backends.cpu",
            "gloo",
            TORCHRUN,
            energy="no GPU in this cell",
            shares_cores=True,
            precisions={
                "tf32": f"{TF32}; CPUs have no TF32 math",
                "fp16-mixed": "no honest fp16 mixed precision on CPU: Lightning silently runs 16-mixed as bf16-mixed "
                "there, and CPUs without AVX512-FP16/AMX-FP16 emulate fp16 math; bf16-mixed is the CPU's mixed "
                "precision",
            },
            modes={"graphs": GRAPHS},
        ),
        BackendSpec("cuda", "bench.backends.cuda", "nccl", TORCHRUN, gpu=True, device_trace=True),
        BackendSpec(
            "xla",
            "bench.backends.xla",
            "xla",
            XLA_SPAWN,
            profiler="torch_xla's profiler writes XPlane protobufs for TensorBoard; the harness reads no device time "
            "from them yet, and torch.profiler sees only the host tracing lazy tensors",
            energy="TPU chips expose no public energy counter",
            compiler=None,
            static_shapes=True,
            precisions={
                "tf32": f"{TF32}; XLA's fp32 matmul precision is recorded in env instead",
                "fp16-mixed": "no fp16 autocast on XLA: TPUs compute in bf16 (use bf16-mixed), and Lightning's XLA has "
                "no 16-mixed",
            },
            modes={
                "graphs": GRAPHS,
                "compile": "mode = compile on XLA: the lazy-tensor default (eager) already traces and compiles every "
                "step into one XLA graph; torch.compile(backend='openxla') is not built here",
            },
        ),
        # Unverified: no TPU has run it yet (bench/backends/torchtpu.py, docs/tpu.md).
        BackendSpec(
            "torchtpu",
            "bench.backends.torchtpu",
            "tpu",
            TORCHRUN,
            profiler="TorchTPU's profiler (torch.tpu.profiler) writes XPlane traces for TensorBoard; the harness reads "
            "no device time from them yet",
            energy="TPU chips expose no public energy counter",
            compiler="tpu",
            static_shapes=True,
            precisions={
                "tf32": f"{TF32}; fp32 on TorchTPU is fp32 matmul precision 'highest'",
                "fp16-mixed": "TPUs compute in bf16: bf16-mixed is their mixed precision (fp16's grad scaler is "
                "unverified there)",
            },
            modes={"graphs": GRAPHS},
        ),
    )
}


def get(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise UnknownName(f"unknown backend {name!r}; valid: {', '.join(BACKENDS)}")
    return BACKENDS[name]
