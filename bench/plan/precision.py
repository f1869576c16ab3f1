"""The harness's own precision names, and how each one is recognised in a running model.

Each backend maps these names to what its frameworks accept and says which ones it cannot run honestly.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.errors import UnknownName

PRECISIONS = ("fp32", "tf32", "fp16-mixed", "bf16-mixed", "bf16-true")

# What Lightning's Trainer is given for each name. tf32 is fp32 with TF32 math switched on by the backend.
LIGHTNING = {
    "fp32": "32-true",
    "tf32": "32-true",
    "fp16-mixed": "16-mixed",
    "bf16-mixed": "bf16-mixed",
    "bf16-true": "bf16-true",
}


# How a plain loop (and the fastai workload) applies each name: autocast dtype for the mixed ones, the dtype
# of parameters and inputs for the true ones. tf32 is fp32 math with TF32 switched on by the backend.
AUTOCAST_DTYPE = {"fp16-mixed": "float16", "bf16-mixed": "bfloat16"}
TRUE_DTYPE = {"bf16-true": "bfloat16"}


def autocast(device_type: str, name: str):
    """``torch.autocast`` for a mixed precision, a null context otherwise."""
    import contextlib

    import torch

    dtype = autocast_dtype(name)
    return torch.autocast(device_type, dtype=dtype) if dtype else contextlib.nullcontext()


def autocast_dtype(name: str):
    """The dtype a ``*-mixed`` precision autocasts to, or None."""
    import torch

    return getattr(torch, AUTOCAST_DTYPE[name]) if name in AUTOCAST_DTYPE else None


def true_dtype(name: str):
    """The dtype a ``*-true`` precision puts parameters and inputs in, or None."""
    import torch

    return getattr(torch, TRUE_DTYPE[name]) if name in TRUE_DTYPE else None


def check(name: str) -> str:
    if name not in PRECISIONS:
        raise UnknownName(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return name


@dataclass
class Observed:
    """Dtypes seen in a real training forward pass: a layer's parameter and its output activation."""

    param_dtype: str
    activation_dtype: str
    tf32_enabled: bool

    def effective(self) -> str:
        """The harness precision name that these dtypes amount to."""
        p, a = self.param_dtype, self.activation_dtype
        if p == "torch.float32" and a == "torch.float32":
            return "tf32" if self.tf32_enabled else "fp32"
        if p == "torch.float32" and a == "torch.float16":
            return "fp16-mixed"
        if p == "torch.float32" and a == "torch.bfloat16":
            return "bf16-mixed"
        if p == "torch.bfloat16" and a == "torch.bfloat16":
            return "bf16-true"
        return f"other(params={p}, activations={a})"


class Probe:
    """Watches the first forward pass of a layer during training and records the dtypes it ran in.

    Under ``torch.compile`` the layer's hook is traced into the graph: there it records the dtypes of the traced
    tensors once, at compile time (``comptime``), so that the compiled graph holds no hook, graph break or guard."""

    def __init__(self, module) -> None:
        self.observed: Observed | None = None
        self.module = module
        self._handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        import torch

        if torch.compiler.is_compiling():
            from torch._dynamo.comptime import comptime

            comptime(_observe_traced)
            return
        self.observe(output.dtype)
        self._handle.remove()

    def observe(self, activation_dtype) -> None:
        import torch

        if self.observed is not None:  # the first forward pass is training's; later ones may be evaluation's
            return
        weight = self.module.weight
        tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32  # as backends/cuda.py sets
        on_cuda = weight.device.type == "cuda"
        self.observed = Observed(str(weight.dtype), str(activation_dtype), tf32_enabled=on_cuda and tf32)

    def effective(self) -> str | None:
        return self.observed.effective() if self.observed else None


def _observe_traced(ctx) -> None:
    """Runs inside dynamo while it traces ``Probe._hook``: the probe and the traced output's dtype."""
    probe = ctx.get_local("self")._i_will_not_complain_if_bc_breaks_VariableTracker().value
    probe.observe(ctx.get_local("output").as_fake().dtype)
