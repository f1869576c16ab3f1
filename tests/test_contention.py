"""A quiet host, measured: the same real cell alone, then beside a neighbour that spins part of every 100 ms (one the
calibration in docs/methodology.md shows costing more than 3% of its throughput), in one run: the second is busy,
the first is not (quiet, or undetermined where CI's host is noisy: never a false busy); and a cell under a cgroup's
CPU quota is busy by throttling.

This test must have the machine to itself ("alone" must mean alone): ``make test`` runs it after the parallel tests,
in a process of its own (marker ``alone``), and waits until the host is quiet (CI installs the XLA environment
meanwhile). bench run's own look at the host is tested in tests/test_trackers.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import records
from bench.trackers import contention
from tests.conftest import bench_env
from tests.test_runner import wait_for

pytestmark = [pytest.mark.alone, pytest.mark.slow]

SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
repeats = {repeats}
epochs = 1
limit_train = 3840
limit_test = 200
warmup_steps = 5
profile_steps = 0
tta_target = 0.5
"""
# The neighbour: what the calibration shows costing a ConvNet well over 3% (and flagged there in every round)
DUTY = 0.2
NEIGHBOUR = """
import sys, time
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < float(sys.argv[1]) * 0.1:
        pass
    time.sleep(0.1 * (1 - float(sys.argv[1])))
"""


QUIET_PCT = 3.0  # others below this over two 2 s looks in a row: the host is quiet enough to start
QUIET_WAIT_S = 1200


def wait_for_a_quiet_host() -> None:
    cores, quiet, t0 = contention.cores(), 0, time.monotonic()
    while quiet < 2:
        a = contention.take(cores)
        time.sleep(2)
        u = contention.usage(a, contention.take(cores), os.getpid())
        quiet = quiet + 1 if u.others_pct < QUIET_PCT and u.steal_pct < QUIET_PCT else 0
        busy = f"others {u.others_pct:.0f}%, steal {u.steal_pct:.0f}%: {contention.top_text(u.top, u.total)}"
        assert time.monotonic() - t0 < QUIET_WAIT_S, f"the host never went quiet in {QUIET_WAIT_S} s ({busy})"


def run(tmp_path: Path, mnist_dir: Path, cache: Path, repeats: int, **popen) -> tuple[subprocess.Popen, Path]:
    suite = tmp_path / "quiet.toml"
    suite.write_text(SUITE.format(repeats=repeats))
    results = tmp_path / "results"
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--no-report"]
    p = subprocess.Popen([sys.executable, "-m", "bench", *args], env=bench_env(mnist_dir, cache),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)  # fmt: skip
    return p, results / "r" / "records.jsonl"


def test_a_cell_beside_a_duty_cycle_neighbour_is_busy_and_alone_it_is_not(tmp_path, mnist_dir, session_cache):
    wait_for_a_quiet_host()
    bench, path = run(tmp_path, mnist_dir, session_cache, repeats=2)
    wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") == 1, timeout=300)  # repeat 0 ran alone
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(DUTY)])  # before repeat 1 trains
    try:
        output, _ = bench.communicate(timeout=600)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert bench.returncode == 0, output
    alone, beside = (r["contention"] for r in records.read(path))
    assert alone["status"] == beside["status"] == "ok" and alone["cores"] == beside["cores"]
    assert alone["verdict"] != "busy", repr(alone)  # repr: pytest would shorten the dict
    assert beside["verdict"] == "busy" and beside["why"], repr(beside)
    assert neighbour.pid in {o["pid"] for o in beside["top_others"]}, beside["top_others"]


def quota_cgroup(name: str) -> tuple[Path, str]:
    """A cgroup with a CPU quota of one core (v1's cpu controller, else v2's), and the file its processes go in;
    skipped where this test may not make one."""
    v1, v2 = Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")
    with contextlib.suppress(OSError):
        if (v1 / "cpu.cfs_quota_us").exists():
            group = v1 / name
            group.mkdir()
            (group / "cpu.cfs_period_us").write_text("100000")
            (group / "cpu.cfs_quota_us").write_text("100000")
            return group, "cgroup.procs"
        if "cpu" in (v2 / "cgroup.subtree_control").read_text().split():
            group = v2 / name
            group.mkdir()
            (group / "cpu.max").write_text("100000 100000")
            return group, "cgroup.procs"
    pytest.skip("no cgroup here in which this test may set a CPU quota")


def test_a_cell_under_a_cpu_quota_is_busy_by_throttling(tmp_path, mnist_dir, session_cache):
    if len(contention.cores()) < 2:
        pytest.skip("a quota of one core throttles only a cell that runs on more")
    group, procs = quota_cgroup(f"bench-test-{os.getpid()}")
    try:
        bench, path = run(tmp_path, mnist_dir, session_cache, repeats=1,
                          preexec_fn=lambda: (group / procs).write_text(str(os.getpid())))  # fmt: skip
        output, _ = bench.communicate(timeout=600)
        assert bench.returncode == 0, output
    finally:
        wait_for(lambda: not (group / procs).read_text().strip(), timeout=30)
        group.rmdir()
    (r,) = records.read(path)
    throttled = r["contention"]["measures"]["throttled"]
    assert throttled["value"] >= contention.BY_KEY["throttled"].busy_from, repr(r["contention"])
    assert r["contention"]["verdict"] == "busy" and "cgroup throttling" in r["contention"]["why"]
