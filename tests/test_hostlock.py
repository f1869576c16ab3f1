"""One bench run per host (bench.run.hostlock): a second run is refused, waits, or shares the host and then no cell of
either run is quiet; runs on different GPUs go on side by side. The holder is another process, as a second `bench
run` would be (flock conflicts between open files, so one process could hold both, but only across processes does it
say what a user sees)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

from bench import records
from bench.run import hostlock
from tests.conftest import ROOT, bench_cli, bench_env

HOLD = """
import sys, time
from bench.run import hostlock
with hostlock.hold_host(sys.argv[1], [k for k in sys.argv[2].split(",") if k], share=sys.argv[3] == "share"):
    print("held", flush=True)
    time.sleep(float(sys.argv[4]))
"""


def holder(run_id: str, gpus: str = "", seconds: float = 60.0, share: bool = False) -> subprocess.Popen:
    """Another process that holds the host (or ``gpus``) for ``seconds``, once it has said so."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, run_id, gpus, "share" if share else "", str(seconds)],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)  # fmt: skip
    lines = [p.stdout.readline().strip()]
    while lines[-1] not in ("held", ""):  # a sharer warns first
        lines.append(p.stdout.readline().strip())
    assert lines[-1] == "held", lines
    return p


def refusal(run_id: str, gpus: tuple = ()) -> str:
    """What ``hold_host`` says as it refuses."""
    with pytest.raises(hostlock.HostLocked) as e, hostlock.hold_host(run_id, list(gpus)):
        pass
    return str(e.value)


def test_a_second_run_is_refused_naming_the_first_and_gpus_apart_go_side_by_side(host_locks):
    first = holder("nightly-box")
    try:
        assert re.match(r"this host is in use by bench run nightly-box \(pid \d+, the host", refusal("second"))
        # a run on a GPU needs the host too (shared): refused while a CPU run holds it
        assert "--wait to run after it, or --share-host" in refusal("gpu-run", ("gpu-0",))
        with hostlock.hold_host("beside", [], share=True) as (waited, sharing):
            assert not waited and sharing.startswith("this run shares this host with bench run nightly-box")
            assert hostlock.shared().startswith("this run shares the host")  # what its own cells see
    finally:
        first.kill()
        first.wait()
    # per-GPU runs: two GPUs side by side, one GPU once
    gpu0 = holder("on-gpu0", "gpu-0")
    try:
        with hostlock.hold_host("on-gpu1", ["gpu-1"]) as (_, sharing):
            assert sharing is None
        assert refusal("also-gpu0", ("gpu-0",)).startswith("GPU 0 is in use by bench run on-gpu0")
    finally:
        gpu0.kill()
        gpu0.wait()
    # the holder died (SIGKILL): the kernel freed its lock, and its note reads as gone
    assert hostlock.runs_here() == []
    with hostlock.hold_host("after", []) as (waited, sharing):
        assert (waited, sharing) == (False, None)
        assert [n["run_id"] for n in hostlock.runs_here()] == ["after"]


def test_a_sharing_run_makes_the_holders_cells_unquiet_and_the_gpus_are_named_from_the_environment(monkeypatch):
    first = holder("first")
    sharer = holder("second", share=True)
    try:
        monkeypatch.setenv("BENCH_RUN_PID", "1")  # as a cell of the first run (not the sharer) sees it
        assert hostlock.shared() == f"bench run second (pid {sharer.pid}) shares the host (--share-host)"
    finally:
        for p in (sharer, first):
            p.kill()
            p.wait()
    assert hostlock.shared() is None
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,GPU-1f/x")
    assert hostlock.gpu_keys({"cuda"}) == ["gpu-0", "gpu-GPU-1f_x"]
    assert hostlock.gpu_keys({"cuda", "cpu"}) == []  # a CPU cell takes the whole host
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert hostlock.gpu_keys({"cuda"}) == []  # every GPU: the whole host


SUITE = """
backend = "cpu"
workloads = ["torch-convnet"]
epochs = 1
limit_train = 640
limit_test = 200
warmup_steps = 5
profile_steps = 0
tta_target = 0.5
"""


@pytest.mark.slow
def test_bench_run_beside_another_refuses_waits_or_shares(tmp_path, mnist_dir, session_cache):
    suite = tmp_path / "s.toml"
    suite.write_text(textwrap.dedent(SUITE))
    env = bench_env(mnist_dir, session_cache)
    args = ["run", "--suite", str(suite), "--results-dir", str(tmp_path / "results"), "--no-report"]
    first = holder("nightly")
    try:
        refused = bench_cli([*args, "--run-id", "refused"], env, timeout=120)
        assert refused.returncode == 2 and "this host is in use by bench run nightly" in refused.stderr
        assert not (tmp_path / "results" / "refused" / "records.jsonl").exists()
        # a cell this host refuses (fp16 on a CPU): its record, written once the host is free, trains nothing
        waited = [*args, "--run-id", "waited", "--wait", "--precision", "fp16-mixed"]
        waiting = subprocess.Popen([sys.executable, "-m", "bench", *waited], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines = [waiting.stdout.readline()]
        while lines[-1] and not lines[-1].startswith("waiting for bench run nightly"):
            lines.append(waiting.stdout.readline())
        assert lines[-1], "".join(lines)
    finally:
        first.kill()  # the first run ends: the waiting one goes on
        first.wait()
    output, _ = waiting.communicate(timeout=300)
    assert waiting.returncode == 0 and (tmp_path / "results" / "waited" / "records.jsonl").exists(), output
    second = holder("nightly-2")
    try:
        shared = bench_cli([*args, "--run-id", "shared", "--share-host"], env, timeout=300)
        assert shared.returncode == 0, shared.stderr
        assert "warning: this run shares this host with bench run nightly-2" in shared.stdout
    finally:
        second.kill()
        second.wait()
    (r,) = records.read(tmp_path / "results" / "shared" / "records.jsonl")
    c = r["contention"]
    assert c["verdict"] != "quiet" and c["shared_host"].startswith("this run shares the host"), repr(c)
    if c["verdict"] == "undetermined":  # busy, beside the other tests, says so first
        assert "shares the host" in c["why"]
