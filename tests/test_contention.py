"""A quiet host, measured: the same real cell alone, then beside two busy loops, in one run: the second is flagged
busy, the first is not.

This test must have the machine to itself ("alone" must mean alone): ``make test`` runs it after the parallel tests,
in a process of its own (marker ``alone``). bench run's own look at the host is tested in tests/test_trackers.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import records
from tests.conftest import bench_env
from tests.test_runner import wait_for

pytestmark = [pytest.mark.alone, pytest.mark.slow]

SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
repeats = 2
epochs = 1
limit_train = 192
limit_test = 200
warmup_steps = 2
profile_steps = 0
tta_target = 0.5
"""


def test_a_cell_beside_two_busy_loops_is_flagged_and_alone_it_is_not(tmp_path, mnist_dir, session_cache):
    suite = tmp_path / "quiet.toml"
    suite.write_text(SUITE)
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
    assert not quiet["busy"] and quiet["why"] is None and quiet["other_cpu_pct"] < 10, quiet
    assert busy["busy"] and busy["other_cpu_pct"] >= 10 and busy["why"].startswith("other processes used"), busy
    assert {o["pid"] for o in busy["top_others"][:2]} == {loop.pid for loop in loops}, busy["top_others"]
