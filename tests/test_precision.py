"""Precision names, what each backend refuses, and recognition of what a forward pass really ran."""

from __future__ import annotations

import pytest
import torch

from bench import backends
from bench.backends.cpu import bf16_kernels
from bench.plan.precision import PRECISIONS, Observed, Probe, UnknownName, check
from bench.run import isa
from bench.run.isa import cpu_isa
from bench.workloads.convnet import ConvNet


def run_probe(precision: str) -> str | None:
    model = ConvNet()
    probe = Probe(model.fc1)
    x = torch.randn(4, 1, 28, 28)
    if precision == "bf16-true":
        model, x = model.to(torch.bfloat16), x.to(torch.bfloat16)
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
        model(x)
    return probe.effective()


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed", "bf16-true"])
def test_probe_sees_what_ran_on_cpu(precision):
    assert run_probe(precision) == precision


def test_probe_removes_itself_after_one_pass():
    model = ConvNet()
    probe = Probe(model.fc1)
    model(torch.randn(2, 1, 28, 28))
    first = probe.observed
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 1, 28, 28))
    assert probe.observed is first


def test_observed_names():
    f32, f16 = "torch.float32", "torch.float16"
    assert Observed(f32, f32, tf32_enabled=True).effective() == "tf32"
    assert Observed(f32, f16, tf32_enabled=False).effective() == "fp16-mixed"
    assert Observed(f16, f16, tf32_enabled=False).effective().startswith("other(")


def test_cpu_refuses_what_it_cannot_run_honestly():
    cpu = backends.get("cpu")
    assert "bf16-mixed" in cpu.unsupported("fp16-mixed", 1)
    assert "TF32" in cpu.unsupported("tf32", 1)
    assert cpu.unsupported("fp32", 2) is None  # two processes (bench.run.launchers)
    assert "at least one core per process" in cpu.unsupported("fp32", 1000)
    bf16 = ["bf16-mixed", "bf16-true"] if bf16_kernels() else []
    assert [p for p in PRECISIONS if cpu.unsupported(p, 1) is None] == ["fp32", *bf16]
    if not bf16:  # a CPU without AVX-512: bf16 would run ATen's reference convolutions
        assert "AVX-512" in cpu.unsupported("bf16-mixed", 1) and "_slow_conv2d" in cpu.unsupported("bf16-true", 1)
        assert "--allow-emulated" in cpu.unsupported("bf16-mixed", 1)
    assert cpu.unsupported("bf16-mixed", 1, allow_emulated=True) is None  # then labelled emulated in the report


def test_what_explains_a_cpus_bf16():
    assert set(cpu_isa()) <= set(isa.ISA_FLAGS)  # read here; empty only where /proc/cpuinfo is unreadable
    avx2 = dict.fromkeys(isa.ISA_FLAGS, False) | {"avx2": True}
    assert "_slow_conv2d" in isa.bf16_emulation(avx2, kernels=False)
    assert "oneDNN converts" in isa.bf16_emulation(avx2 | {"avx512f": True}, kernels=True)
    assert isa.bf16_emulation(avx2 | {"avx512f": True, "amx_bf16": True}, kernels=True) is None
    assert isa.bf16_emulation({}, kernels=None) is None  # a record from before the flags were recorded: unknown


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_gpu_says_why():
    assert "no CUDA GPU visible" in backends.get("cuda").unsupported("fp32", 1)


def test_unknown_precision():
    with pytest.raises(UnknownName, match="valid: fp32, tf32"):
        check("fp64")
