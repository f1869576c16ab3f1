"""input = "device": the data set resident on the device, batches gathered there; the same losses as the loader."""

from __future__ import annotations

import pytest
import torch

from bench.plan.job import Job
from bench.plan.suite import SuiteError, validate
from bench.records import schema
from bench.run import planning, worker
from bench.run.inputs import DeviceBatches
from tests.conftest import expand


def cells(**over):
    raw = {"backend": "cpu", "workloads": ["torch-convnet"], "epochs": 1, "limit_train": 320, "limit_test": 200,
           "warmup_steps": 2, "profile_steps": 0, "tta_target": 0.5, "allocator": "glibc",
           "inputs": ["loader", "device"], **over}  # fmt: skip
    return expand("t", validate("t", raw))


def test_batches_in_order_or_shuffled_by_a_seeded_generator():
    x, y = torch.arange(10.0).reshape(10, 1), torch.arange(10)
    ordered = list(DeviceBatches(x, y, 4, "cpu"))
    assert [len(b[0]) for b in ordered] == [4, 4, 2] and torch.equal(torch.cat([b[1] for b in ordered]), y)
    dropped = DeviceBatches(x, y, 4, "cpu", drop_last=True)
    assert len(dropped) == 2 and len(dropped.dataset) == 10
    a = [b[1].tolist() for b in DeviceBatches(x, y, 4, "cpu", shuffle=True, drop_last=True, seed=3)]
    b = [b[1].tolist() for b in DeviceBatches(x, y, 4, "cpu", shuffle=True, drop_last=True, seed=3)]
    assert a == b and [i for batch in a for i in batch] != list(range(8))  # same seed, same order; not 0..7
    shuffled = DeviceBatches(x, y, 5, "cpu", shuffle=True, seed=3)
    first, second = [torch.cat([b[1] for b in shuffled]).tolist() for _ in range(2)]
    assert sorted(first) == list(range(10)) and first != second  # every sample once per epoch, a new order each


def test_the_input_axis_names_cells_and_keeps_the_seeds_fingerprints():
    loader, device = cells()
    assert (loader.input, device.input) == ("loader", "device")
    assert loader.cell_id == "torch-convnet/cpux1/fp32" and device.cell_id == "torch-convnet/cpux1/fp32/input-device"
    assert device.dirname == "torch-convnet.cpux1.fp32.input-device.r0" and loader.fingerprint != device.fingerprint
    with pytest.raises(SuiteError, match="inputs entry 'disk'; valid: loader, device"):
        cells(inputs=["disk"])


def test_fastai_and_xla_say_why_they_take_no_device_input():
    fastai = cells(workloads=["fastai-resnet18"], pretrained=False)[1]
    assert "PNG" in planning.unsupported_reason(fastai)
    xla = cells(backend="xla")[1]
    assert "not built for XLA" in planning.unsupported_reason(xla)


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["torch-convnet", "lightning-convnet"])
def test_device_input_trains_the_same_losses_as_the_loader(workload, tmp_path, mnist_dir, cache):
    """The ConvNets read the seed's order either way: with one seed, the same batches, the same losses."""
    results = {}
    for cell in cells(workloads=[workload], epochs=2):
        cell_dir = tmp_path / cell.dirname
        cell_dir.mkdir()
        results[cell.input] = worker.train_cell(Job(cell, "r", str(mnist_dir), "glibc"), cell_dir)
    for r in results.values():
        assert r["status"] == "ok", r["reason"]
    loader, device = ([e["train_loss"] for e in results[i]["accuracy"]["curve"]] for i in ("loader", "device"))
    assert device == pytest.approx(loader, rel=1e-5)
    assert results["device"]["accuracy"]["final_accuracy"] == pytest.approx(
        results["loader"]["accuracy"]["final_accuracy"]
    )
    assert results["device"]["outcome"]["train_samples"] == 320


def test_the_report_keeps_inputs_apart_and_measures_speedups_from_the_loader(tmp_path):
    from bench.report import aggregate

    def rec(placement: str, tput: float) -> dict:
        flat = {"schema_version": 2, "status": "ok", "workload": "torch-convnet", "backend": "cpu", "device_count": 1,
                "precision": "fp32", "repeat": 0, "batch_size": 32, "throughput_samples_per_s": tput,
                "env": {"host": "box"}, "device_name": "CPU"}  # fmt: skip
        r = schema.upgrade(flat)
        r["cell"]["input"] = placement
        return r

    s = aggregate.summarise(aggregate.frame([rec("device", 3000.0), rec("loader", 1000.0)]), "cpu/fp32", True)
    s = s.set_index("input")
    assert s.loc["loader", "speedup"] == 1.0 and s.loc["device", "speedup"] == pytest.approx(3.0)
