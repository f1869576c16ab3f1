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

from tests.conftest import bench_env, expand
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
pretrained = {pretrained}
lr_find_steps = 20  # fastai's 100 take minutes on XLA:CPU
"""


@pytest.fixture
def env(mnist_dir, session_cache) -> dict[str, str]:
    return {**bench_env(mnist_dir, session_cache), "PJRT_DEVICE": os.environ.get("PJRT_DEVICE", "CPU")}


# `bench run` with a C environment in which torch_xla's runtime cannot start: a PJRT client in this process fails as
# a second process fails on a TPU whose chips a first one holds. The workers' environment comes from os.environ, so
# they run normally. Every `bench run` below runs so.
PARENT_WITHOUT_RUNTIME = (
    "import ctypes, sys; ctypes.CDLL(None).setenv(b'PJRT_DEVICE', b'NONE_IN_THE_PARENT', 1);"
    "from bench.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_suite(tmp_path, env, workloads, precisions, limit_train=320, devices=(1,), epochs=1, pretrained=False):
    path = tmp_path / "xla.toml"
    path.write_text(
        SUITE.format(
            workloads=json.dumps(workloads),
            precisions=json.dumps(precisions),
            limit_train=limit_train,
            devices=json.dumps(list(devices)),
            epochs=epochs,
            pretrained=json.dumps(pretrained),
        )
    )
    results = tmp_path / "results"
    args = ["run", "--suite", str(path), "--results-dir", str(results), "--run-id", "x"]
    out = subprocess.run(
        [sys.executable, "-c", PARENT_WITHOUT_RUNTIME, *args], env=env, capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return {(r["workload"], r["precision"]): r for r in run_records(results)}, results


DESCRIBE = (
    "from bench.backends import xla; b = xla.BACKEND;"
    "print(b.device_name(), b.device_count(), b.unsupported('fp32', 1), b.env(), 'started:', xla._runtime_started())"
)


def describe(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", DESCRIBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_backend_discovery_never_starts_the_runtime(env):
    out = describe(env)
    assert out.startswith("XLA:CPU 1 None ")
    assert "'mat_mul_precision'" in out and "'torch_xla': '2.9.0'" in out
    assert out.strip().endswith("started: False")  # on a TPU a client here would keep the chips from the workers


def test_tpu_devices_are_counted_as_lightning_counts_them(env):
    """No TPU here: the VM's metadata comes from the variables torch_xla reads instead, and no chip is on the PCI
    bus, so the count is what TPU_VISIBLE_CHIPS makes visible, times the cores of a chip (two on v2/v3)."""
    tpu = {**env, "PJRT_DEVICE": "TPU", "TPU_SKIP_MDS_QUERY": "1"}
    libtpu = {"TPU_LIBRARY_PATH": "/opt/libtpu.so"}  # as a TPU image names it; nothing loads it before a cell runs
    out = describe({**tpu, **libtpu, "TPU_ACCELERATOR_TYPE": "v4-8", "TPU_VISIBLE_CHIPS": "0"})
    assert out.startswith("TPU v4 1 None ") and "'xla_device_count': 1" in out and out.strip().endswith("False")
    assert "'tpu_accelerator_type': 'v4-8', 'libtpu': '/opt/libtpu.so'" in out  # in every record's env
    assert describe({**tpu, **libtpu, "TPU_ACCELERATOR_TYPE": "v3-8", "TPU_VISIBLE_CHIPS": "0,1,2,3"}).startswith(
        "TPU v3 8 "
    )
    # torch_xla without its [tpu] extra (this environment): every cell unsupported, saying how to add libtpu
    out = describe({**tpu, "TPU_ACCELERATOR_TYPE": "v6e-8", "TPU_VISIBLE_CHIPS": "0"})
    assert out.startswith("TPU v6e 1 PJRT_DEVICE=TPU, but this environment has no libtpu") and "XLA_PIN=" in out
    out = describe({**tpu, "TPU_ACCELERATOR_TYPE": "v5litepod-8"})  # not a TPU VM: one clear reason, no traceback
    assert out.startswith("TPU v5e 0 PJRT_DEVICE=TPU, but no TPU chip is on this machine's PCI bus")
    assert describe({**tpu, "TPU_ACCELERATOR_TYPE": "v5p-8"}).startswith("TPU v5p 0 ")  # v5e and v5p apart


def test_one_host_of_a_pod_slice_is_refused_without_its_nodes_and_a_pod_cell_takes_every_chip(env):
    pod = {**env, "PJRT_DEVICE": "TPU", "TPU_SKIP_MDS_QUERY": "1", "TPU_ACCELERATOR_TYPE": "v4-16"}
    code = "from bench.backends import xla; b = xla.BACKEND; print(b.run_reason(1)); print(b.run_reason(2))"
    code += "; print(b.hosts_reason(2, 1, 2)); print(b.hosts_reason(2, 4, 2))"
    out = subprocess.run([sys.executable, "-c", code], env={**pod, "TPU_WORKER_HOSTNAMES": "w0,w1"},
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    alone, with_nodes, one_chip, every_chip = out.stdout.splitlines()
    assert alone.startswith("this TPU VM is one of 2 hosts of a pod slice") and "--nnodes 2 --node-rank" in alone
    assert with_nodes == "None" and "devices = all, not 1" in one_chip and every_chip == "None"


def test_convnets_every_precision_compile_outside_the_steady_state(tmp_path, env):
    precisions = ["fp32", "bf16-mixed", "bf16-true", "fp16-mixed"]
    recs, results = run_suite(
        tmp_path, env, ["lightning-convnet", "torch-convnet"], precisions, limit_train=192, devices=["all"], epochs=2
    )
    for w in ("lightning-convnet", "torch-convnet"):
        unsupported = recs[w, "fp16-mixed"]  # recorded by the parent, environment included
        assert unsupported["status"] == "unsupported" and "bf16" in unsupported["reason"]
        assert unsupported["env"]["backend"]["xla_device_count"] == 1
        assert unsupported["env"]["backend"]["mat_mul_precision"] is None  # the parent set none: it trains nothing
        for p in ("fp32", "bf16-mixed", "bf16-true"):
            r = recs[w, p]
            assert r["status"] == "ok", r["reason"]
            assert r["device_count"] == 1  # "all", counted by the parent
            assert r["precision_effective"] == p  # dtypes seen in a real forward pass on the XLA device
            assert r["env"]["device_name"] == "XLA:CPU" and r["env"]["backend"]["mat_mul_precision"] == "highest"
            assert r["profile"]["status"] == "unsupported" and "XPlane" in r["profile"]["reason"]
            assert r["compilations"] > 0 and r["compile_seconds"] > 0
            assert r["compilations_after_warmup"] == 0  # the second epoch reuses the first one's graphs
            assert r["throughput_samples_per_s"] > 0 and r["step_time_ms_median"] is None  # no step clock on XLA
    assert (results / "report" / "REPORT.md").is_file()


def test_fastai_on_xla_with_lr_find(tmp_path, env):
    import torch
    import torchvision

    # "Pretrained" weights in the hub cache (random ones: offline), so that vision_learner freezes the body and
    # lr_find and the first epoch train the head only, as in the seed
    path = tmp_path / "torch-home" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    env = {**env, "TORCH_HOME": str(tmp_path / "torch-home")}
    recs, _ = run_suite(tmp_path, env, ["fastai-resnet18"], ["bf16-mixed"], limit_train=256, pretrained=True)
    r = recs["fastai-resnet18", "bf16-mixed"]
    assert r["status"] == "ok", r["reason"]
    assert r["precision_effective"] == "bf16-mixed" and r["lr_found"] > 0 and r["weights"]["pretrained"]
    assert r["compilations"] > 0 and [c["phase"] for c in r["curve"]] == ["frozen", "unfrozen"]
    # the unfreeze changes every parameter's requires_grad: a new step graph, compiled in the unfrozen phase's own
    # warmup, which is left out of its steady throughput (docs/methodology.md#phase-aware-warmup)
    (unfreeze,) = r["left_out"]
    assert unfreeze["phase"] == "unfrozen" and unfreeze["reason"] == "warmup after the phase change to unfrozen"
    assert unfreeze["steps"] == 3 and unfreeze["compilations"] >= 1, r["left_out"]
    assert r["compilations_after_warmup"] == unfreeze["compilations"]  # all of them there, none in a steady segment
    assert set(r["phase_throughput"]) == {"frozen", "unfrozen"}  # each phase steady again


def test_xla_recompilations_after_warmup_are_left_out():
    """The meter with torch_xla's own compilation count on a real XLA device: unfreezing a frozen layer makes a new
    step graph, compiled in the new phase's warmup; a new batch shape in a steady segment compiles inside it, and
    that segment is left out."""
    import torch
    import torch_xla

    from bench import backends
    from bench.plan.suite import validate
    from bench.run.meter import Meter
    from bench.trackers import compile as compile_tracker
    from tests.conftest import expand

    backend = backends.get("xla")
    cell = expand("t", validate("t", {"backend": "xla", "workloads": ["torch-convnet"]}))[0]
    meter = Meter(backend, 2, 1.0, compilations=compile_tracker.counter(cell, backend))
    device = torch_xla.device()
    torch.manual_seed(0)
    body, head = torch.nn.Linear(8, 8).to(device), torch.nn.Linear(8, 2).to(device)
    body.requires_grad_(False)  # frozen, as fastai's first epoch trains the head only
    opt = torch.optim.SGD([*body.parameters(), *head.parameters()], lr=0.1)

    def epoch(phase: str, batches: list[int]) -> None:
        meter.epoch_start(phase)
        for n in batches:
            x, y = torch.randn(n, 8, device=device), torch.randint(0, 2, (n,), device=device)
            torch.nn.functional.cross_entropy(head(body(x).relu()), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            backend.cut_graph()
            meter.step_end(n)
        meter.eval_start()
        meter.eval_end(0.5)
        meter.epoch_end(len(meter.curve), 0.1)

    epoch("frozen", [16] * 6)
    body.requires_grad_(True)  # the unfreeze
    epoch("unfrozen", [16] * 6 + [12, 16, 16])  # a new batch shape after the phase's warmup
    t = meter.timing()
    phase_change, shape = t["left_out"]
    assert phase_change["reason"] == "warmup after the phase change to unfrozen" and phase_change["steps"] == 2
    assert phase_change["compilations"] >= 1, t["left_out"]  # the unfrozen graph, in its warmup
    assert shape["reason"] == "compilation in a steady segment" and shape["compilations"] >= 1, t["left_out"]
    assert shape["steps"] == 4 + 1 + 2  # the segment so far, the step that compiled, the warmup after it
    assert t["compilations_after_warmup"] == phase_change["compilations"] + shape["compilations"]
    assert t["steady_segments"] == 1 and t["phase_throughput"].keys() == {"frozen"}


def test_several_devices_on_the_cpu_runtime_are_recorded_unsupported(tmp_path, env):
    recs, _ = run_suite(tmp_path, {**env, "CPU_NUM_DEVICES": "2"}, ["lightning-convnet"], ["fp32"], devices=[2])
    r = recs["lightning-convnet", "fp32"]
    assert r["status"] == "unsupported" and "pytorch/xla#9496" in r["reason"] and r["device_count"] == 2


def test_several_hosts_are_refused_where_pjrt_cannot_join_them(monkeypatch):
    from bench import cluster
    from bench.plan import suite
    from bench.run import planning

    monkeypatch.setenv("PJRT_DEVICE", "CPU")
    raw = {"workloads": ["lightning-convnet"], "backend": "xla", "nodes": [1, 2]}
    one, two = expand("t", suite.validate("t", raw))
    pod = cluster.resolve(2, 0, "10.0.0.1:29500")  # a slice of two hosts: no cell on fewer
    assert "PJRT's CPU runtime has no multi-host world" in planning.unsupported_reason(two, pod)
    assert "every cell spans them all (nodes = 2)" in planning.unsupported_reason(one, pod)
    assert "torch-convnet runs data-parallel under torchrun" in planning.unsupported_reason(
        expand("t", suite.validate("t", {**raw, "workloads": ["torch-convnet"]}))[1]
    )


def _write_rank(index: int, folder, writer: bool) -> None:
    import torch_xla.runtime as xr

    (folder / f"rank{xr.global_ordinal()}").write_text(f"{index} {xr.world_size()} {writer}")


def test_several_devices_start_one_process_per_device(tmp_path, env):
    """The worker's own launch for data-parallel XLA cells (the collectives themselves need TPUs, see above)."""
    code = (
        "import sys, pathlib; from bench import backends; from tests.test_xla import _write_rank;"
        "backends.get('xla').spawn(_write_rank, (pathlib.Path(sys.argv[1]),))"
    )
    env = {**env, "CPU_NUM_DEVICES": "2", "PYTHONPATH": os.getcwd()}
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    # one writer: the first device of process 0 (both are threads of one process on the CPU runtime)
    assert sorted(p.read_text() for p in tmp_path.glob("rank*")) == ["0 2 True", "1 2 False"]
    from bench.backends import xla_lightning

    args = xla_lightning.trainer_args("fp32", 2)
    args["strategy"]._configure_launcher()
    assert args["strategy"].launcher is None  # the ranks are already running: Lightning must not fork its own
    assert xla_lightning.trainer_args("fp32", 1)["strategy"] == "auto"


def test_devices_between_one_and_all_are_recorded_unsupported(tmp_path, env):
    recs, _ = run_suite(tmp_path, {**env, "CPU_NUM_DEVICES": "3"}, ["lightning-convnet"], ["fp32"], devices=[2])
    assert "one device or all 3" in recs["lightning-convnet", "fp32"]["reason"]


# Lightning's view of a world of two XLA devices over the one real XLA:CPU device: see the test below.
RANK = """
import pathlib, sys
from lightning_fabric.plugins.environments import XLAEnvironment
from bench.run import worker
rank = int(sys.argv[2])
XLAEnvironment.world_size = lambda self: 2
XLAEnvironment.global_rank = XLAEnvironment.local_rank = lambda self: rank
worker.train_rank(rank, pathlib.Path(sys.argv[1]))
"""


def test_a_several_device_record_is_written_once_by_rank_0_with_the_global_batch(tmp_path, env):
    """Once fit() returns, Lightning's XLAStrategy.teardown (2.6.6) makes every rank report world size 1 and rank 0.
    PJRT's CPU runtime cannot run two ranks' collectives (above), so here each rank trains on the one real device
    while Lightning's cluster environment reports two: the harness's rank processes with Lightning's own XLA
    strategy, teardown included, whose collectives then span one device."""
    from bench.plan.cell import Cell
    from bench.plan.job import Job

    cell = Cell(
        workload="lightning-convnet",
        backend="xla",
        precision="fp32",
        devices=2,
        repeat=0,
        seed=0,
        epochs=1,
        batch_size=32,
        limit_train=128,
        limit_test=64,
        num_workers=0,
        pin_memory=False,
        persistent_workers=True,
        lr=0.5,
        pretrained=None,
        tta_target=0.5,
        stop_at_target=False,
        warmup_steps=1,
        profile_steps=30,
        input="loader",
        mode="eager",
        allocator="glibc",
        timeout_s=600,
        suite="t",
    )
    (tmp_path / "cell.json").write_text(Job(cell, "r", env["BENCH_DATA_DIR"], "glibc").to_json())
    for rank in (1, 0):
        out = subprocess.run(
            [sys.executable, "-c", RANK, str(tmp_path / "cell.json"), str(rank)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stderr
        if rank == 1:  # rank 1's result and files are its own: no result, no curve beside rank 0's
            assert sorted(p.name for p in tmp_path.iterdir()) == ["cell.json", "ranks"]
            assert (tmp_path / "ranks" / "1" / "result.json").is_file()
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["status"] == "ok", result["reason"]
    assert result["outcome"]["global_batch_size"] == 64
    assert result["accuracy"]["curve"][0]["samples"] == 128  # 2 steps × 32 × 2 ranks
    assert result["profile"]["status"] == "unsupported"
    assert result["env"]["backend"]["input_transfer"] == "blocking"  # as on one device: one input pipeline


def test_every_xla_cell_copies_its_batches_one_way():
    """Lightning's XLAStrategy would feed several devices through torch_xla's MpDeviceLoader (a background transfer)
    while one device, the plain loops and fastai copy each batch with a blocking .to: the scaling column would divide
    one input pipeline by another. The harness's strategy keeps the loader as it is, and the record says so."""
    import torch.utils.data

    from bench.backends import xla, xla_lightning

    loader = torch.utils.data.DataLoader(list(range(4)))
    assert xla_lightning.InRankXLAStrategy().process_dataloader(loader) is loader
    assert xla.INPUT_TRANSFER == "blocking"
