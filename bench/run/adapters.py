"""Framework × backend × mode special cases, in one place, so that a workload file stays the seed's recipe.

Execution modes (a cell's ``mode``; docs/methodology.md):

- ``eager``: the seed as written.
- ``compile``: ``torch.compile`` (inductor) of the model, in place (``nn.Module.compile``, so that fastai's
  splitter, the precision probe and state dicts still see the plain module), each framework its documented way:
  the plain loops compile the model and their optimizer step; Lightning compiles the LightningModule's network before
  ``fit`` and keeps its own optimizer loop; fastai compiles ``learn.model``. ``dynamic=False``: every batch shape
  gets its own static graph (a last partial batch compiles once more), as CUDA graphs need.
- ``graphs``: the same with ``mode="reduce-overhead"``: inductor's CUDA graph trees replay the forward and backward
  graphs (and the plain loops' optimizer step) as CUDA graphs, with one launch each. CUDA only.

The compiler is the backend's (bench.plan.backends): inductor, or TorchTPU's ``tpu`` (which takes no inductor mode).
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable

from bench.plan import backends
from bench.run import launchers

# torch is imported where a cell is set up, not here: the runner asks ``unsupported`` before any cell runs.
COMPILED = ("compile", "graphs")
INDUCTOR_MODE = {"compile": "default", "graphs": "reduce-overhead"}


def unsupported(cell, spec) -> str | None:
    """Why the cell's mode or input cannot run honestly with its workload (``spec``, bench.plan.workloads), backend
    and precision, or None."""
    if cell.input == "device":
        if spec.device_input:
            return f"input = device: {spec.device_input}"
        if cell.backend == "xla":
            return "input = device is not built for XLA: gathering batches would join every step's graph"
    if refused := backends.get(cell.backend).modes.get(cell.mode):  # a mode the backend never runs
        return refused
    if cell.mode == "graphs" and cell.precision == "fp16-mixed":
        return (
            "mode = graphs cannot capture fp16-mixed: the GradScaler reads the gradients' inf check on the host every "
            "step, a synchronisation a CUDA graph cannot contain"
        )
    if cell.mode in COMPILED and launchers.of(cell).data_parallel:
        return f"mode = {cell.mode} is built for one device; data-parallel runs are eager"
    return None


def drop_last(cell) -> bool:
    """XLA and TorchTPU compile one graph per batch shape: a last partial batch would compile a second training
    graph."""
    return backends.get(cell.backend).static_shapes


def _compile_args(cell) -> dict:
    """``torch.compile``'s arguments for the cell's backend and compiled mode."""
    compiler = backends.get(cell.backend).compiler
    if compiler == "inductor":
        return {"mode": INDUCTOR_MODE[cell.mode], "dynamic": False}
    return {"backend": compiler, "dynamic": False}


def compile_model(model, cell) -> None:
    """Compile ``model``'s forward (and with it, through AOTAutograd, its backward) in place, for a compiled mode."""
    if cell.mode in COMPILED:
        model.compile(**_compile_args(cell))


def optimizer_step(opt, cell) -> Callable[[], None]:
    """The plain loops' ``opt.step()``, compiled in a compiled mode (PyTorch's compiled-optimizer recipe). fp16-mixed
    keeps it eager: the GradScaler decides on the host whether each step runs at all."""
    if cell.mode not in COMPILED or cell.precision == "fp16-mixed":
        return opt.step
    import torch

    @torch.compile(**_compile_args(cell))
    def step() -> None:
        opt.step()

    return step


def lightning_trainer_args(cell, backend) -> dict:
    """``accelerator``, ``precision`` (or the plugins that stand for it) for ``pl.Trainer`` on the cell's backend."""
    from bench.plan.precision import LIGHTNING

    if backend.name == "xla":
        from bench.backends import xla_lightning

        return xla_lightning.trainer_args(cell.precision, cell.devices)
    if backend.name == "torchtpu":
        from bench.backends import torchtpu_lightning

        return torchtpu_lightning.trainer_args(cell.precision, backend.torch_device())
    return {"accelerator": backend.lightning_accelerator, "precision": LIGHTNING[cell.precision]}


def lightning_module(module, cell) -> None:
    """Lightning's documented way: compile before ``fit``. The network, not the LightningModule: compiling its
    ``training_step`` would guard on the Python step counter it keeps and recompile at every step."""
    compile_model(module.model, cell)


def fastai_learner(learn, cell, backend) -> None:
    """fastai on the cell's backend and mode, after its precision is set (its hooks stay outside compiled code)."""
    if backend.name in ("xla", "torchtpu"):
        # lr_find restores the model with Learner.load, which cannot map a checkpoint straight onto an XLA
        # device (nor, unverified, onto TorchTPU's): load onto the CPU, and load_state_dict copies into the
        # device's parameters.
        learn.load = functools.partial(type(learn).load, learn, device="cpu")
    if cell.mode in COMPILED:
        # learn.model is an nn.Sequential, whose own forward dynamo skips as library code: compiled as it is, it ran
        # residual block by block (58 recompilations in one cell). Its forward is given as user code to compile
        # whole; fastai's batches are TensorBase subclasses, whose __torch_function__ dynamo cannot trace, so they
        # become plain tensors first, outside compiled code.
        learn.model.register_forward_pre_hook(_plain_tensors())
        learn.model.forward = types.MethodType(_sequential_forward, learn.model)
        compile_model(learn.model, cell)


def _sequential_forward(self, x):
    for layer in self:
        x = layer(x)
    return x


def _plain_tensors() -> Callable:
    import torch

    @torch.compiler.disable
    def hook(module, args: tuple) -> tuple:
        return tuple(a.as_subclass(torch.Tensor) if isinstance(a, torch.Tensor) else a for a in args)

    return hook
