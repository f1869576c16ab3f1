"""A quiet host, measured: a real cell beside two busy loops is flagged busy, the same cell alone is not.

These tests must have the machine to themselves ("alone" must mean alone): ``make test`` runs them after the
parallel tests, in a process of their own (marker ``alone``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bench import records
from tests.conftest import bench_cli, bench_env

pytestmark = [pytest.mark.alone, pytest.mark.slow]

SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
epochs = 1
limit_train = 320
limit_test = 200
warmup_steps = 3
profile_steps = 0
tta_target = 0.5
"""


def test_a_cell_beside_two_busy_loops_is_flagged_and_alone_it_is_not(tmp_path, mnist_dir, session_cache):
    env = bench_env(mnist_dir, session_cache)
    suite = tmp_path / "quiet.toml"
    suite.write_text(SUITE)
    results = tmp_path / "results"

    def run(run_id: str) -> subprocess.CompletedProcess:
        args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", run_id, "--no-report"]
        out = bench_cli(args, env, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out

    alone = run("alone")
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        beside = run("beside")
    finally:
        for loop in loops:
            loop.kill()
            loop.wait()
    (quiet,) = records.read(results / "alone" / "records.jsonl")
    (busy,) = records.read(results / "beside" / "records.jsonl")
    q, b = quiet["contention"], busy["contention"]
    assert q["status"] == b["status"] == "ok" and q["cores"] == b["cores"]
    assert not q["busy"] and q["why"] is None and q["other_cpu_pct"] < 10, q
    assert "warning: this host is busy" not in alone.stdout
    assert b["busy"] and b["other_cpu_pct"] >= 10 and b["why"].startswith("other processes used"), b
    assert {o["pid"] for o in b["top_others"][:2]} == {loop.pid for loop in loops}, b["top_others"]
    assert "warning: this host is busy" in beside.stdout and f"(pid {loops[0].pid})" in beside.stdout
