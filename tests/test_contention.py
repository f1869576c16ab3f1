"""A quiet host, measured: the same real cell alone, then beside two busy loops, in one run: the second is flagged
busy, the first is not.

This test must have the machine to itself ("alone" must mean alone): ``make test`` runs it after the parallel tests,
in a process of its own (marker ``alone``), and waits until the host is quiet (CI installs the XLA environment
meanwhile). bench run's own look at the host is tested in tests/test_trackers.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from bench import records
from bench.trackers import contention
from tests.conftest import bench_env
from tests.test_runner import wait_for

pytestmark = [pytest.mark.alone, pytest.mark.slow]

SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
repeats = 2
epochs = 1
limit_train = 1920
limit_test = 200
warmup_steps = 2
profile_steps = 0
tta_target = 0.5
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


def test_a_cell_beside_two_busy_loops_is_flagged_and_alone_it_is_not(tmp_path, mnist_dir, session_cache):
    suite = tmp_path / "quiet.toml"
    suite.write_text(SUITE)
    wait_for_a_quiet_host()
    results = tmp_path / "results"
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--no-report"]
    run = subprocess.Popen([sys.executable, "-m", "bench", *args], env=bench_env(mnist_dir, session_cache),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    path = results / "r" / "records.jsonl"
    wait_for(lambda: path.exists() and path.read_bytes().count(b"\n") == 1, timeout=300)  # repeat 0 ran alone
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]  # before repeat 1 trains
    try:
        output, _ = run.communicate(timeout=600)
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    assert run.returncode == 0, output
    quiet, busy = (r["contention"] for r in records.read(path))
    assert quiet["status"] == busy["status"] == "ok" and quiet["cores"] == busy["cores"]
    assert not quiet["busy"] and quiet["why"] is None, repr(quiet)  # repr: pytest would shorten the dict
    assert busy["busy"] and busy["other_cpu_pct"] >= 10 and busy["why"].startswith("other processes used"), repr(busy)
    assert {o["pid"] for o in busy["top_others"][:2]} == {loop.pid for loop in loops}, busy["top_others"]
