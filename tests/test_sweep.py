"""A sweep's own rules, end to end: one writer per run folder, retries on purpose, cells once, automatic repeats."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench import report
from bench.plan.suite import validate
from bench.run.auto import Auto
from tests.conftest import QUIET, bench_cli, bench_env, expand
from tests.test_runner import run_records, suite_file


@pytest.fixture
def env(mnist_dir, session_cache) -> dict[str, str]:
    return bench_env(mnist_dir, session_cache)


HOLD = """
import sys, time
from pathlib import Path
from bench.run import runlock
with runlock.hold(Path(sys.argv[1]), "elsewhere"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.mark.slow
def test_a_held_run_folder_refuses_a_second_run_and_the_lock_dies_with_its_holder(tmp_path, env):
    results, run_dir = tmp_path / "results", tmp_path / "results" / "r"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        suite = suite_file(tmp_path, workloads=("torch-convnet",), precisions=("fp16-mixed",))  # unsupported: no worker
        args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--no-report"]
        out = bench_cli(args, env, timeout=120)
        assert out.returncode == 2, out.stdout + out.stderr
        assert f"run folder {run_dir} is in use by bench run pid {holder.pid} on elsewhere, started " in out.stderr
        assert "--wait" in out.stderr and not (run_dir / "records.jsonl").exists()
        waiting = subprocess.Popen([sys.executable, "-m", "bench", *args, "--wait"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)  # fmt: skip
        lines = []
        while not lines or "waiting for" not in lines[-1]:
            lines.append(waiting.stdout.readline())
            assert lines[-1], "".join(lines)  # it ended without waiting
        assert f"waiting for bench run pid {holder.pid} on elsewhere" in lines[-1]
        time.sleep(1)
        assert waiting.poll() is None and not (run_dir / "records.jsonl").exists()  # still waiting for the holder
        holder.kill()  # SIGKILL: the kernel frees the lock with the process
        holder.wait()
        output, _ = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, output
    finally:
        holder.kill()  # a failing test leaves no holder behind
    assert [r["status"] for r in run_records(results)] == ["unsupported"]


@pytest.mark.slow
def test_retry_on_purpose_a_longer_timeout_retries_a_timeout_and_a_cell_runs_once(tmp_path, env):
    results = tmp_path / "results"
    suite = suite_file(
        tmp_path, workloads=("torch-convnet",), precisions=("fp32", "fp16-mixed"), extra="timeout_s = 1\n"
    )
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r"]
    first = bench_cli([*args, "--no-report"], env, timeout=300)
    assert first.returncode == 1, first.stdout + first.stderr
    assert [r["status"] for r in run_records(results)] == ["timeout", "unsupported"]
    suite.write_text(suite.read_text().replace("timeout_s = 1", "timeout_s = 600"))
    again = bench_cli([*args, "--retry", "unsupported", "--precision", "fp32,fp16-mixed,fp32", "--no-report"], env,
                      timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "1 duplicate cells collapsed" in again.stdout
    assert "running again (timed out under timeout_s = 1, now 600)" in again.stdout
    recs = run_records(results)
    assert [r["status"] for r in recs] == ["timeout", "unsupported", "ok", "unsupported"]  # both kept in the file
    assert recs[2]["run"]["retry"] == "timed out under timeout_s = 1, now 600"
    assert recs[3]["run"]["retry"] == "--retry unsupported"
    md = report.write(results).read_text()
    superseded = md.split("## Records superseded")[1]
    assert superseded.count("superseded by") == 2 and "timeout (torch-convnet/cpux1/fp32 repeat 0)" in superseded
    assert "| ok 1/1" in md  # one measurement: the newer record


@pytest.mark.slow
def test_auto_repeats_record_their_rule_and_say_when_the_cap_came_first(tmp_path, env):
    # A cap under the first 5 repeats: the rule cannot be met, which the run says (rounds: the test below, and
    # every sweep of the stop's note)
    results = tmp_path / "results"
    suite = suite_file(tmp_path, workloads=("torch-convnet",))
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--no-report"]
    args += ["--profile-steps", "0", "--limit-train", "320"]
    out = bench_cli([*args, "--repeats", "auto:2", "--target-ci", "0.1%"], env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = run_records(results)
    assert [r["repeat"] for r in recs] == [0, 1] and len({r["seed"] for r in recs}) == 2
    assert {r["run"]["repeat_reason"] for r in recs} == {"auto: the first repeats, before the interval decides"}
    assert recs[1]["run"]["auto"] == {"target": 0.001, "cap": 2}
    # fewer than 5 quiet repeats (or, where the tests busy the host, fewer still)
    assert "auto: target not reached at the cap (2 repeats): torch-convnet/cpux1/fp32: " in out.stdout


def auto_records(rates: dict[str, list], status: str = "ok", busy: tuple = ()) -> tuple[list, dict]:
    """Cells of one configuration per precision, in blocks (repeat by repeat), and their records; ``busy`` the
    (precision, repeat) measured on a busy host."""
    s = validate("t", {"backend": "cpu", "workloads": ["torch-convnet"], "precisions": list(rates)})
    first = {c.precision: c for c in expand("t", s)}
    cells = [first[p].again(i) for i in range(max(map(len, rates.values()))) for p in rates if i < len(rates[p])]
    done = {
        c.fingerprint: {
            "status": status if c.precision == next(iter(rates)) else "ok",
            "timing": {"throughput_samples_per_s": rates[c.precision][c.repeat]},
            "contention": {"status": "ok", "verdict": "busy", "why": "a neighbour"}
            if (c.precision, c.repeat) in busy
            else QUIET,
        }
        for c in cells
    }
    return cells, done


def test_auto_repeats_run_in_blocks_until_every_interval_is_narrow_from_five_quiet_repeats():
    auto = Auto(cap=8, target=0.05)
    wide, narrow = [100.0, 130.0, 80.0, 120.0, 90.0], [100.0, 101.0, 100.5, 100.2, 100.7]
    more = auto.more(*auto_records({"fp32": wide, "bf16-mixed": narrow}))
    # a block: the narrow configuration runs again too, so that drift of the host falls on both alike
    assert [(c.precision, c.repeat, c.seed) for c, _ in more] == [("fp32", 5, 5), ("bf16-mixed", 5, 5)]
    assert more[0][1].startswith("auto: round 6, one more repeat of every configuration (torch-convnet/cpux1/fp32: ±")
    assert auto.more(*auto_records({"fp32": narrow, "bf16-mixed": narrow})) == []  # every interval within ±5%
    assert len(auto.more(*auto_records({"fp32": narrow[:4], "bf16-mixed": narrow[:4]}))) == 2  # fewer than 5
    busy = auto_records({"fp32": narrow, "bf16-mixed": narrow}, busy=(("fp32", 2),))
    assert len(auto.more(*busy)) == 2  # a busy repeat is not one of the five quiet ones
    assert "fp32: 4 quiet repeats, fewer than 5" in auto.more(*busy)[0][1]
    capped = auto_records({"fp32": [*wide, 110.0, 95.0, 125.0], "bf16-mixed": [*narrow, 100.0, 100.0, 100.0]})
    assert auto.more(*capped) == []
    assert auto.end(*capped).startswith("auto: target not reached at the cap (8 repeats): torch-convnet/cpux1/fp32")
    assert auto.end(*auto_records({"fp32": narrow, "bf16-mixed": narrow})) is None
    failed = auto.more(*auto_records({"fp32": wide, "bf16-mixed": wide}, status="failed"))
    assert [c.precision for c, _ in failed] == ["bf16-mixed"]  # a failure is not noise: that one is not run again
