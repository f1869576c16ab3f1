"""End to end on real MNIST: `bench run` subprocess per cell, records, resume, failures, interruption, report."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import records
from bench.backends.cpu import bf16_kernels
from bench.records import schema
from bench.trackers import profile
from tests.conftest import bench_cli, bench_env

pytestmark = pytest.mark.slow

SMALL = """
backend = "cpu"
workloads = {workloads}
precisions = {precisions}
epochs = 1
limit_train = 640
limit_test = 1000
warmup_steps = 5
profile_steps = 4
tta_target = 0.5
"""


def suite_file(tmp_path: Path, workloads=("lightning-convnet", "torch-convnet"), precisions=("fp32",), extra=""):
    path = tmp_path / "small.toml"
    path.write_text(
        SMALL.format(workloads=json.dumps(list(workloads)), precisions=json.dumps(list(precisions))) + extra
    )
    return path


@pytest.fixture
def env(mnist_dir, session_cache) -> dict[str, str]:
    return bench_env(mnist_dir, session_cache)


def run_records(results: Path) -> list[dict]:
    """Every record under ``results``, each checked against the schema, as one flat dict (bench.records.flat)."""
    out = []
    for path in results.rglob("records.jsonl"):
        for r in records.read(path):
            assert schema.written(r) == [], r
            out.append(records.flat(r))
    return out


def workers_of(results: Path) -> list[int]:
    """PIDs of live worker processes running cells under ``results``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bench.run.worker" in cmd and any(str(results).encode() in c for c in cmd):
            pids.append(int(proc.name))
    return pids


def wait_for(predicate, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.2)


def test_smoke_run_records_report_and_resume(tmp_path, env):
    results = tmp_path / "results"
    suite = suite_file(tmp_path, precisions=("fp32", "fp16-mixed"))
    # make test runs beside other tests: the host is busy, and the report compares its cells all the same
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--include-busy"]
    out = bench_cli(args, env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = run_records(results)
    assert sorted((r["workload"], r["precision"], r["status"]) for r in recs) == [
        ("lightning-convnet", "fp16-mixed", "unsupported"),
        ("lightning-convnet", "fp32", "ok"),
        ("torch-convnet", "fp16-mixed", "unsupported"),
        ("torch-convnet", "fp32", "ok"),
    ]
    for r in recs:
        assert r["schema_version"] == schema.SCHEMA_VERSION and r["cell"]["fingerprint"] and r["run"]["started_at"]
        assert r["env"]["host"] and r["env"]["packages"]["torch"] and r["env"]["allocator"]["name"]
    for r in (r for r in recs if r["status"] == "ok"):
        assert r["precision_effective"] == "fp32"
        assert r["precision_evidence"]["param_dtype"] == r["precision_evidence"]["activation_dtype"] == "torch.float32"
        assert r["train_samples"] == 640 and r["test_samples"] == 1000
        assert r["throughput_samples_per_s"] > 0 and r["steady_steps"] == 20 - 5
        assert 0.5 <= r["final_accuracy"] <= 1 and r["tta_seconds"] > 0
        assert r["setup_seconds"] > 0 and r["warmup_seconds"] > 0 and r["eval_seconds"] > 0
        cell = results / "r" / "cells" / f"{r['workload']}.cpux1.fp32.r0"
        assert (cell / "curve.csv").read_text().startswith("epoch,phase,elapsed_seconds")
        assert list(cell.rglob("events.out.tfevents.*")), "TensorBoard event files"
        assert r["loader_samples_per_s"] > 0  # Lightning's loader-only pass too
        assert r["run"]["exit_code"] == 0 and r["steady_samples"] == 15 * 32  # no field is filtered out
        p = r["profile"]
        assert p["status"] == "ok" and p["steps"] == 4 and p["activities"] == ["CPU"], p
        assert 0 < p["device_busy_pct"] <= 100 and 0 <= p["loader_pct"] < 100 and p["host_ms_per_step"] > 0
        assert p["top_host_ops"][0]["ms_per_step"] > 0 and p["top_device_ops"] is None
        # the saved trace parses back to the same window: Perfetto and TensorBoard open this file
        events = profile.read_trace(results / "r" / p["trace"])["traceEvents"]
        assert profile.analyse(events, device=False)["device_busy_pct"] == pytest.approx(p["device_busy_pct"])
        assert sum(e.get("name", "").startswith("ProfilerStep#") for e in events) == 4
        assert "profile" in r["phase_seconds"] and r["steady_steps"] == 15  # the window is outside throughput
    unsupported = next(r for r in recs if r["status"] == "unsupported")
    assert "bf16-mixed" in unsupported["reason"]

    md = (results / "report" / "REPORT.md").read_text()  # written by `bench run` at the end
    assert "## lightning-convnet" in md and "Framework overhead" in md and "unsupported" in md
    assert md.count("% ATen |") >= 2 and "host ms/step" in md  # busy % and host time on every ok row (profile table)
    assert "## At a glance" in md and "## Support matrix" in md
    (results / "report" / "REPORT.md").unlink()

    again = bench_cli([*args, "--no-report"], env, timeout=600)
    assert again.returncode == 0 and again.stdout.count("already recorded") == 4
    assert len(run_records(results)) == 4 and not (results / "report" / "REPORT.md").exists()

    rep = bench_cli(["report", "--results-dir", str(results)], env, timeout=300)
    assert rep.returncode == 0, rep.stderr
    assert (results / "report" / "report.html").read_text().count("data:image/png;base64,") == 4


def test_ctrl_c_then_sigkill_mid_sweep_then_rerun_completes_without_duplicates(tmp_path, env):
    results = tmp_path / "results"
    suite = suite_file(tmp_path, workloads=("torch-convnet",), extra="repeats = 3\n")
    args = [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r"]
    path = results / "r" / "records.jsonl"

    def records_and_a_worker(lines: int) -> bool:
        return path.exists() and path.read_bytes().count(b"\n") >= lines and bool(workers_of(results))

    # Ctrl-C while repeat 1 runs: a clean stop that keeps repeat 0
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: records_and_a_worker(1))
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "run the same command again to resume" in output
    assert not workers_of(results)
    assert [r["cell"]["repeat"] for r in records.read(path)] == [0]

    # resumed, then killed outright while repeat 2 runs, as the kernel's OOM killer or a lost session would
    proc = subprocess.Popen([*args, "--no-report"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: records_and_a_worker(2))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not workers_of(results), timeout=30)  # the running cell died with the sweep
    with open(path, "ab") as f:
        f.write(b'{"fingerprint": "torn')  # what a writer killed mid-line would leave

    out = subprocess.run([*args, "--no-report"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dropping a torn last line" in out.stderr
    lines = path.read_text().splitlines()
    recs = [json.loads(line) for line in lines]  # every line is whole
    assert sorted(r["cell"]["repeat"] for r in recs) == [0, 1, 2]
    assert len({r["cell"]["fingerprint"] for r in recs}) == 3
    assert all(r["status"] == "ok" and r["outcome"]["precision_effective"] == r["cell"]["precision"] for r in recs)


def test_timeout_and_crash_become_records_and_the_sweep_goes_on(tmp_path, env):
    results = tmp_path / "results"
    extra = "repeats = 2\n[workload.lightning-convnet]\ntimeout_s = 2\n"
    suite = suite_file(tmp_path, extra=extra)
    args = [sys.executable, "-m", "bench", "run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r"]
    args.append("--no-report")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # Cell 1 (Lightning) times out; then kill the worker of cell 2 as the kernel's OOM killer would; cell 3
    # (Lightning) times out again, and cell 4 runs.
    cell2 = results / "r" / "cells" / "torch-convnet.cpux1.fp32.r0"
    wait_for(lambda: cell2.exists() and workers_of(results), timeout=180)
    for pid in workers_of(results):
        os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=600)
    assert proc.returncode == 1, output
    recs = {(r["workload"], r["repeat"]): r for r in run_records(results)}
    assert recs[("lightning-convnet", 0)]["status"] == "timeout"
    assert recs[("lightning-convnet", 1)]["status"] == "timeout"
    crashed = recs[("torch-convnet", 0)]
    assert crashed["status"] == "failed" and "killed by signal 9" in crashed["reason"]
    assert crashed["env"]["host"]
    assert recs[("torch-convnet", 1)]["status"] == "ok"  # the sweep went on
    assert "1 ok, 0 unsupported, 3 failed/timeout/diverged" in output


def test_unknown_names_fail_before_anything_runs(tmp_path, env):
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", "smoke", "--workload", "nope", "--results-dir", str(results)], env)
    assert out.returncode == 2
    assert "unknown workload 'nope'; valid: fastai-resnet18, lightning-convnet" in out.stderr
    out = bench_cli(["run", "--suite", "nosuite", "--results-dir", str(results)], env)
    assert out.returncode == 2 and "valid: cpu, fastest, gpu, gpu-modes, gpu-reference, smoke" in out.stderr
    assert not results.exists()


def test_dry_run_lists_cells_and_runs_nothing(tmp_path, env):
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", "cpu", "--repeats", "1", "--dry-run", "--results-dir", str(results)], env)
    assert out.returncode == 0, out.stderr
    # 4 workloads, torch-convnet also compiled and lightning-convnet also fed from memory: 6 ways × 5 precisions
    assert "30 cells in suite cpu" in out.stdout
    # tf32 and fp16-mixed for each way; bf16 too on a CPU without bf16 kernels
    assert out.stdout.count("[unsupported here:") == (12 if bf16_kernels() else 24)
    assert not results.exists()


def test_missing_data_is_one_clear_error(tmp_path, env):
    env = {**env, "BENCH_DATA_DIR": str(tmp_path / "nothing"), "BENCH_CACHE_DIR": str(tmp_path / "cache"),
           "BENCH_MNIST_MIRRORS": "http://127.0.0.1:9/"}  # fmt: skip
    out = bench_cli(["run", "--suite", "smoke", "--results-dir", str(tmp_path / "results")], env, timeout=120)
    assert out.returncode == 2
    assert "Set BENCH_DATA_DIR" in out.stderr or "set BENCH_DATA_DIR" in out.stderr
    assert "Traceback" not in out.stderr


def test_nan_loss_is_recorded_as_diverged_by_the_harness_of_bench_run_whatever_folder_it_starts_in(tmp_path, env):
    # A folder that holds a package named bench (a checkout of another version, a hostile one) changes nothing: the
    # workers run the harness that `bench run` runs.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "worker.py").write_text("open('hijacked', 'w').close()\nraise SystemExit(3)\n")
    results = tmp_path / "results"
    suite = suite_file(tmp_path, extra="lr = 1e30\n")  # Adadelta with this step size overflows at once
    # -P: `bench run` itself from the installed harness, as the `bench` command runs it
    cmd = [sys.executable, "-P", "-m", "bench", "run", "--suite", str(suite), "--results-dir", str(results)]
    out = subprocess.run([*cmd, "--no-report"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stdout + out.stderr
    assert not (tmp_path / "hijacked").exists()
    recs = run_records(results)
    assert [r["status"] for r in recs] == ["diverged", "diverged"]
    assert all("train loss nan" in r["reason"] and r["lr"] == 1e30 for r in recs)


def test_a_stopped_cell_leaves_no_process_of_its_group_behind(monkeypatch):
    from bench.run import runner

    # a worker that stops at SIGTERM, and a rank of its that ignores it (as a rank blocked in a collective may)
    rank = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    worker = f"import subprocess, sys, time; p = subprocess.Popen([sys.executable, '-c', {rank!r}]); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", worker], start_new_session=True)
    wait_for(lambda: len(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()) == 1, timeout=30)
    (child,) = map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
    time.sleep(0.5)  # the rank's SIGTERM handler is in place
    monkeypatch.setattr(runner, "KILL_GRACE_S", 1.0)
    runner._kill(proc)
    assert proc.returncode is not None and not runner._group_alive(proc.pid)
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]


def test_another_nodes_done_never_replaces_a_result_a_rank_of_it_wrote(tmp_path):
    from bench.run import launchers

    launchers.node_done(tmp_path)
    assert json.loads((tmp_path / "result.json").read_text()) == {"status": "ok", "reason": None}
    launchers.write_result(tmp_path / "result.json", {"status": "ok", "reason": None, "timing": {}})  # process 0's
    launchers.node_done(tmp_path)
    assert "timing" in json.loads((tmp_path / "result.json").read_text())
