"""Several processes per cell on this CPU (torchrun, gloo): records, a killed rank, two nodes on loopback."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from bench.run import ddp, launchers
from tests.conftest import bench_cli, bench_env
from tests.test_runner import run_records, wait_for, workers_of

pytestmark = pytest.mark.slow

SUITE = """
backend = "cpu"
workloads = {workloads}
devices = {devices}
nodes = {nodes}
epochs = {epochs}
limit_train = {limit_train}
limit_test = 2000
warmup_steps = 10
profile_steps = 4
tta_target = 0.9
timeout_s = 300
"""
# After 2 epochs on 3,200 images, two processes (global batch 64, half the optimizer steps) reached 0.920 and 0.925
# where one reached 0.942 and 0.943; on the full training set the gap closes (docs/methodology.md#several-processes).
TOLERANCE = 0.03


def suite(tmp_path: Path, workloads=("torch-convnet",), devices=(2,), nodes=(1,), epochs=2, limit_train=3200) -> Path:
    path = tmp_path / "ddp.toml"
    text = SUITE.format(workloads=json.dumps(list(workloads)), devices=list(devices), nodes=list(nodes), epochs=epochs,
                        limit_train=limit_train)  # fmt: skip
    path.write_text(text)
    return path


@pytest.fixture
def env(mnist_dir, session_cache) -> dict[str, str]:
    return bench_env(mnist_dir, session_cache)


def free_ports() -> int:
    """A port that is free, with the next one free too (the store and each cell's rendezvous, bench.cluster)."""
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
                    return port
            except OSError:
                continue


def test_device_batches_cut_the_order_as_distributed_sampler_does():
    for n, size in ((10, 2), (11, 3), (5, 4)):
        for rank in range(size):
            w = ddp.World(rank=rank, size=size)
            expected = list(DistributedSampler(range(n), num_replicas=size, rank=rank, shuffle=False))
            assert ddp.train_order(torch.arange(n), w).tolist() == expected
    rows = [i for r in range(3) for i in ddp.test_rows(11, ddp.World(rank=r, size=3))]
    assert sorted(rows) == list(range(11))  # every test image once


def test_a_worker_never_inherits_a_rank():
    env = {
        "RANK": "3",
        "WORLD_SIZE": "8",
        "MASTER_ADDR": "h",
        "TORCHELASTIC_RUN_ID": "x",
        "PET_NNODES": "2",
        "PATH": "/bin",
    }
    assert launchers.worker_env(env) == {"PATH": "/bin"}  # a `bench run` under a scheduler's torchrun, or Kubeflow's


def two_processes(record: dict) -> None:
    """What every cell of two processes on one node records: its launch, and the batch each rank trains."""
    assert record["status"] == "ok", record["reason"]
    assert record["distributed"] == {
        "launcher": "torchrun", "world_size": 2, "nodes": 1, "processes_per_node": 2, "collective": "gloo",
        "rendezvous": "standalone", "omp_num_threads": record["distributed"]["omp_num_threads"],
    }  # fmt: skip
    assert (record["global_batch_size"], record["per_device_batch_size"], record["test_samples"]) == (64, 32, 2000)
    assert record["profile"]["status"] == "ok" and record["profile"]["steps"] == 4  # rank 0's window


def test_two_processes_give_one_record_close_to_one_process(tmp_path, env):
    # the plain loop, whose ranks the harness cuts the data for (bench.run.ddp); Lightning's two processes (its
    # DistributedSampler): the next test
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(suite(tmp_path, devices=(1, 2))), "--results-dir", str(results),
                     "--no-report"], env)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {r["device_count"]: r for r in run_records(results)}
    one, two = recs[1], recs[2]
    two_processes(two)
    assert one["status"] == "ok" and one["distributed"]["world_size"] == 1 and one["global_batch_size"] == 32
    assert abs(two["final_accuracy"] - one["final_accuracy"]) <= TOLERANCE, (one, two)
    assert two["steady_steps"] < one["steady_steps"]  # each rank trains on half the images
    assert not workers_of(results)


def test_a_killed_rank_fails_its_cell_by_name_and_the_sweep_goes_on(tmp_path, env):
    results = tmp_path / "results"
    path = suite(tmp_path, epochs=8)
    path.write_text(path.read_text() + "\n[workload.lightning-convnet]\nepochs = 1\n")
    cmd = [sys.executable, "-m", "bench", "run", "--suite", str(path), "--results-dir", str(results), "--no-report"]
    cmd += ["--workload", "torch-convnet,lightning-convnet"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True).start()

    def rank_one() -> int | None:  # the torch-convnet cell's rank 1, once its first epoch is done
        if not list(results.rglob("torch-convnet.cpux2.*/curve.csv")):
            return None
        for pid in workers_of(results):
            try:
                if b"RANK=1" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                    return pid
            except OSError:
                continue
        return None

    wait_for(lambda: rank_one() is not None or proc.poll() is not None, timeout=240)
    victim = rank_one()
    assert victim, "".join(output)
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=300) == 1, "".join(output)  # a failed cell: exit status 1
    recs = {r["cell_id"]: r for r in run_records(results)}
    failed = recs["torch-convnet/cpux2/fp32"]
    assert failed["status"] == "failed"
    where = f"local rank 1 on {socket.gethostname()}, pid {victim}"
    # rank 0 fails too, in its collective, if it exits before torchrun's next look: named after the killed rank
    first = rf"[12] of 2 ranks failed: rank 1 \({re.escape(where)}\) killed by signal SIGKILL"
    assert re.match(first, failed["reason"]), failed["reason"]
    assert failed["epochs_run"] >= 1  # the epochs it finished are kept
    lightning = recs["lightning-convnet/cpux2/fp32"]  # the sweep went on
    two_processes(lightning)
    assert lightning["final_accuracy"] > 0.5  # one epoch of 50 global steps: far from chance (0.1), both ranks learn
    assert not workers_of(results)  # no rank outlived its cell


# A pool of ranks as torch_xla's spawn starts one (processes in the worker's process group, which waits for them all;
# on a TPU, one per chip): rank 1 fails, rank 0 waits as it would in its next collective with rank 1.
POOL = """
import multiprocessing, sys, time
from pathlib import Path
from bench.run import worker

def rank(index, cell_file):
    if index == 0:
        time.sleep(600)
    worker.train_rank(index, Path(cell_file), writer=False)

if __name__ == "__main__":
    ranks = [multiprocessing.get_context("spawn").Process(target=rank, args=(i, sys.argv[1])) for i in range(2)]
    for r in ranks:
        r.start()
    for r in ranks:
        r.join()
"""


def test_a_rank_of_a_spawned_pool_that_fails_ends_the_pool_with_its_reason(tmp_path, env):
    from bench.plan.job import Job
    from bench.plan.suite import validate
    from tests.conftest import expand

    cell = expand("t", validate("t", {"backend": "cpu", "workloads": ["torch-convnet"]}))[0]
    cell_dir = tmp_path / "cell"
    cell_dir.mkdir()
    (cell_dir / "cell.json").write_text(Job(cell, "r", str(tmp_path / "no-mnist"), "glibc").to_json())
    env = {**env, "BENCH_CACHE_DIR": str(tmp_path / "cache"), "BENCH_MNIST_MIRRORS": "http://127.0.0.1:9/"}
    (tmp_path / "pool.py").write_text(POOL)
    # a session of its own, as the runner starts a cell's worker: the failed rank ends this group, not pytest's
    pool = subprocess.run([sys.executable, str(tmp_path / "pool.py"), str(cell_dir / "cell.json")], env=env,
                          start_new_session=True, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert pool.returncode == -signal.SIGTERM, pool.stderr  # long before rank 0's 600 s
    result = json.loads((cell_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["reason"].startswith("rank 1: DataError"), result["reason"]
    assert launchers.write_first(cell_dir / "result.json", {"status": "ok"}) is False  # the first failure stays
    assert json.loads((cell_dir / "result.json").read_text())["reason"] == result["reason"]


def test_two_nodes_on_loopback_run_a_cell_to_one_record(tmp_path, env):
    results = tmp_path / "results"
    path = suite(tmp_path, devices=(1,), nodes=(2,), epochs=1, limit_train=1280)  # 10 steady steps a rank
    port = free_ports()
    base = [sys.executable, "-m", "bench", "run", "--suite", str(path), "--results-dir", str(results), "--no-report"]
    base += ["--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}"]
    other = subprocess.Popen([*base, "--node-rank", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        first = subprocess.run([*base, "--node-rank", "0"], env=env, capture_output=True, text=True, timeout=300)
        log = other.communicate(timeout=120)[0].decode()
    finally:
        other.kill()
    assert first.returncode == 0 and other.returncode == 0, first.stdout + first.stderr + log
    (record,) = run_records(results)  # node 0 alone writes records
    assert (record["status"], record["cell_id"]) == ("ok", "torch-convnet/2xcpux1/fp32")
    section = record["distributed"]
    assert (section["world_size"], section["nodes"], section["processes_per_node"]) == (2, 2, 1)
    assert section["rendezvous"] == f"127.0.0.1:{port + 1}"
    assert "node 1 of 2 (flags): 1 cells span this node" in log
    assert list(results.glob("*/node1/cells/torch-convnet.2xcpux1.fp32.r0/log.txt"))
