"""The XLA backend on PJRT's CPU runtime (``make test-xla``): the TPU code path, both workloads, every precision.

Runs in the XLA environment only (torch_xla must stay out of the main one); elsewhere the module is skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch_xla", reason="the XLA environment runs these: make test-xla")

from tests.conftest import bench_cli, bench_env
from tests.test_runner import run_records

SUITE = """
backend = "xla"
workloads = {workloads}
precisions = {precisions}
devices = {devices}
epochs = {epochs}
limit_train = {limit_train}
limit_test = 256
warmup_steps = 3
tta_target = 0.5
pretrained = false
"""


@pytest.fixture
def env(mnist_dir, session_cache) -> dict[str, str]:
    return {**bench_env(mnist_dir, session_cache), "PJRT_DEVICE": os.environ.get("PJRT_DEVICE", "CPU")}


def run_suite(tmp_path, env, workloads, precisions, limit_train=320, devices=(1,), epochs=1):
    path = tmp_path / "xla.toml"
    path.write_text(
        SUITE.format(
            workloads=json.dumps(workloads),
            precisions=json.dumps(precisions),
            limit_train=limit_train,
            devices=json.dumps(list(devices)),
            epochs=epochs,
        )
    )
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(path), "--results-dir", str(results), "--run-id", "x"], env, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    return {(r["workload"], r["precision"]): r for r in run_records(results)}, results


def test_backend_discovery(env):
    code = "from bench import backends; b = backends.get('xla'); print(b.device_name(), b.device_count(), b.env())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("XLA:CPU 1 ")
    assert "'mat_mul_precision'" in out.stdout and "'torch_xla': '2.9.0'" in out.stdout


def test_convnets_every_precision_compile_outside_the_steady_state(tmp_path, env):
    precisions = ["fp32", "bf16-mixed", "bf16-true", "fp16-mixed"]
    recs, results = run_suite(
        tmp_path, env, ["lightning-convnet", "torch-convnet"], precisions, limit_train=192, epochs=2
    )
    for w in ("lightning-convnet", "torch-convnet"):
        assert recs[w, "fp16-mixed"]["status"] == "unsupported" and "bf16" in recs[w, "fp16-mixed"]["reason"]
        for p in ("fp32", "bf16-mixed", "bf16-true"):
            r = recs[w, p]
            assert r["status"] == "ok", r["reason"]
            assert r["precision_effective"] == p  # dtypes seen in a real forward pass on the XLA device
            assert r["device_name"] == "XLA:CPU" and r["env"]["backend"]["mat_mul_precision"] == "highest"
            assert r["compilations"] > 0 and r["compile_seconds"] > 0
            assert r["compilations_after_warmup"] == 0  # the second epoch reuses the first one's graphs
            assert r["throughput_samples_per_s"] > 0 and r["step_time_ms_median"] is None  # no step clock on XLA
    assert (results / "report" / "REPORT.md").is_file()


def test_fastai_on_xla_with_lr_find(tmp_path, env):
    recs, _ = run_suite(tmp_path, env, ["fastai-resnet18"], ["bf16-mixed"], limit_train=256)
    r = recs["fastai-resnet18", "bf16-mixed"]
    assert r["status"] == "ok", r["reason"]
    assert r["precision_effective"] == "bf16-mixed" and r["lr_found"] > 0
    assert r["compilations"] > 0 and [c["phase"] for c in r["curve"]] == ["frozen", "unfrozen"]


def test_several_devices_on_the_cpu_runtime_are_recorded_unsupported(tmp_path, env):
    recs, _ = run_suite(tmp_path, {**env, "CPU_NUM_DEVICES": "2"}, ["lightning-convnet"], ["fp32"], devices=[2])
    r = recs["lightning-convnet", "fp32"]
    assert r["status"] == "unsupported" and "pytorch/xla#9496" in r["reason"] and r["device_count"] == 2


def _write_rank(index: int, folder) -> None:
    import torch_xla.runtime as xr

    (folder / f"rank{xr.global_ordinal()}").write_text(f"{index} {xr.world_size()}")


def test_several_devices_start_one_process_per_device(tmp_path, env):
    """The worker's own launch for data-parallel XLA cells (the collectives themselves need TPUs, see above)."""
    code = (
        "import sys, pathlib; from bench import backends; from tests.test_xla import _write_rank;"
        "backends.get('xla').spawn(_write_rank, (pathlib.Path(sys.argv[1]),))"
    )
    env = {**env, "CPU_NUM_DEVICES": "2", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sorted(p.read_text() for p in tmp_path.glob("rank*")) == ["0 2", "1 2"]
    from bench.workloads import lightning_xla

    args = lightning_xla.trainer_args("fp32", 2)
    args["strategy"]._configure_launcher()
    assert args["strategy"].launcher is None  # the ranks are already running: Lightning must not fork its own
    assert lightning_xla.trainer_args("fp32", 1)["strategy"] == "auto"


def test_devices_between_one_and_all_are_recorded_unsupported(tmp_path, env):
    recs, _ = run_suite(tmp_path, {**env, "CPU_NUM_DEVICES": "3"}, ["lightning-convnet"], ["fp32"], devices=[2])
    assert "one device or all 3" in recs["lightning-convnet", "fp32"]["reason"]
