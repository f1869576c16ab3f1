"""Trackers: a new one is one file; the profile's arithmetic on CUDA-shaped traces; the smaller trackers."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from bench import records, report, trackers
from bench.plan.job import Job
from bench.plan.suite import validate
from bench.records import schema
from bench.run import runner, worker
from bench.trackers import compile as compile_tracker
from bench.trackers import contention, profile
from tests.conftest import expand

SEGMENTS = '''
"""Counts steady-state segments: a tracker written as a user would, in one file."""
from bench.trackers import Tracker


class Segments(Tracker):
    SECTION = "segments"

    def start(self):
        self.count = 0

    def steady_start(self):
        self.count += 1

    def section(self):
        return {"steady_segments": self.count}


TRACKER = Segments


def report(sections):
    return {"segments": str(max(s["steady_segments"] for s in sections))}
'''


def small_cell(**over):
    raw = {"backend": "cpu", "workloads": ["torch-convnet"], "epochs": 2, "limit_train": 320, "limit_test": 200,
           "warmup_steps": 2, "profile_steps": 3, "tta_target": 0.5, "allocator": "glibc", **over}  # fmt: skip
    return expand("t", validate("t", raw))[0]


@pytest.mark.slow
def test_a_new_tracker_is_one_file_and_its_model_and_adds_its_section_and_report_columns(
    tmp_path, monkeypatch, mnist_dir, cache
):
    folder = tmp_path / "more"
    folder.mkdir()
    (folder / "segments.py").write_text(SEGMENTS)
    monkeypatch.setattr(trackers, "__path__", [*trackers.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "bench.trackers.segments", raising=False)
    with pytest.raises(AssertionError, match="segments"):  # without its model, the tracker is refused
        test_every_tracker_has_its_sections_model()

    class Segments(schema.Section):
        steady_segments: schema.Count

    monkeypatch.setitem(schema.SECTIONS, "segments", Segments)
    test_every_tracker_has_its_sections_model()
    assert "segments" in schema.sections()

    cell = small_cell()
    run_dir = tmp_path / "results" / "r"
    cell_dir = run_dir / "cells" / cell.dirname
    cell_dir.mkdir(parents=True)
    result = worker.train_cell(Job(cell, "r", str(mnist_dir), "glibc"), cell_dir)  # the worker, in this process
    record = records.new(**result, cell=runner.cell_section(cell, "r"), run={})
    records.append(run_dir / "records.jsonl", record)
    assert record["status"] == "ok", record["reason"]
    assert record["segments"] == {"steady_segments": 2}  # one per epoch after warmup
    assert record["profile"]["status"] == "ok"
    section = report.write(tmp_path / "results").read_text().split("\n## torch-convnet\n")[1].split("\n## ")[0]
    columns = {}  # the workload's tables, each a header, a rule and one row
    for block in section.split("\n\n"):
        lines = block.strip().splitlines()
        if len(lines) == 3 and lines[1].startswith("|---"):
            columns.update(zip((c.strip() for c in lines[0].split("|")), (c.strip() for c in lines[2].split("|"))))
    assert columns["segments"] == "2" and columns["bound (profile)"]
    monkeypatch.delitem(sys.modules, "bench.trackers.segments", raising=False)


def test_every_tracker_has_its_sections_model():
    """The record's shape is stated once (bench.records.schema.SECTIONS): every tracker's section has its model there,
    and the worker's sections are the meter's and the trackers', in the schema's order."""
    missing = [m.__name__ for m in trackers.modules() if m.TRACKER.SECTION not in schema.SECTIONS]
    assert not missing, f"trackers without a model in bench.records.schema.SECTIONS: {missing}"
    written = ["cell", "run", "outcome", "timing", "accuracy", *(m.TRACKER.SECTION for m in trackers.modules())]
    assert written == list(schema.sections()), "a section no one writes, or out of the schema's order"


def span(name, ts, dur, cat="cpu_op", **kw):
    return {"ph": "X", "name": name, "cat": cat, "ts": ts, "dur": dur, **kw}


def test_device_busy_is_the_union_of_kernel_intervals_over_the_window():
    """A CUDA-shaped trace: two steps of 100 µs; kernels overlap on two streams (counted once), one runs past the
    window's end (clipped); the host waits 30 µs in a synchronisation; the loader takes 20 µs of each step."""
    events = [
        span("ProfilerStep#3", 1000, 100, "user_annotation"),
        span("ProfilerStep#4", 1100, 100, "user_annotation"),
        span("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 1000, 20, "user_annotation"),
        span("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 1100, 20, "user_annotation"),
        span("volta_sgemm", 1020, 40, "kernel"),
        span("elementwise", 1040, 40, "kernel"),  # overlaps the one above: busy 1020–1080, not 80 µs twice
        span("Memcpy HtoD", 1120, 10, "gpu_memcpy"),
        span("conv", 1150, 100, "kernel"),  # runs past the window's end at 1200
        span("cudaStreamSynchronize", 1160, 30, "cuda_runtime"),
        span("aten::mm", 900, 50),  # before the window: not counted
        {"ph": "M", "name": "process_name"},
    ]
    m = profile.analyse(events, device=True)
    assert m["steps"] == 2 and m["window_ms_per_step"] == pytest.approx(0.1)
    assert m["device_busy_pct"] == pytest.approx(100 * (60 + 10 + 50) / 200)
    assert m["host_ms_per_step"] == pytest.approx((200 - 30) / 2 / 1000)
    assert m["loader_pct"] == pytest.approx(20.0) and m["ops_per_step"] == 1.5
    assert m["busy_kind"].startswith("CUDA")


def test_on_a_cpu_busy_is_aten_time_outside_the_loader():
    events = [
        span("ProfilerStep#3", 0, 100, "user_annotation"),
        span("enumerate(DataLoader)#_SingleProcessDataLoaderIter.__next__", 0, 20, "user_annotation"),
        span("aten::stack", 5, 10),  # collation, inside the loader: the loader's time, not the model's
        span("aten::convolution", 30, 40),
        span("aten::mkldnn_convolution", 35, 30),  # nested in the one above
    ]
    m = profile.analyse(events, device=False)
    assert m["device_busy_pct"] == pytest.approx(40.0) and m["loader_pct"] == pytest.approx(20.0)
    assert m["host_ms_per_step"] == pytest.approx(0.1) and m["ops_per_step"] == 3


def test_no_profiled_step_gives_no_measurement():
    assert profile.analyse([span("aten::mm", 0, 10)], device=False) is None


def test_interval_arithmetic():
    assert profile.union([(5, 7), (0, 2), (1, 3), (7, 8), (9, 9)]) == [(0, 3), (5, 8)]
    assert profile.subtract([(0, 10), (20, 30)], [(2, 4), (8, 22)]) == [(0, 2), (4, 8), (22, 30)]


def backend(name="cpu", stats=None):
    return SimpleNamespace(name=name, compile_stats=lambda: stats() if stats else None, synchronize=lambda: None)


def tracker(module, cell, be, tmp_path):
    t = module.TRACKER(Job(cell, "r", None, "glibc"), be, tmp_path)
    t.start()
    return t


def test_the_profile_says_why_it_did_not_run(tmp_path):
    off = tracker(profile, small_cell(profile_steps=0), backend(), tmp_path)
    xla = tracker(profile, dataclasses.replace(small_cell(), backend="xla"), backend("xla"), tmp_path)
    assert off.window_steps() == xla.window_steps() == 0
    assert off.section()["status"] == "off" and "XPlane" in xla.section()["reason"]
    assert profile.report([xla.section()]) == {"profile": f"unsupported: {xla.section()['reason']}"}


def test_a_window_that_records_nothing_is_a_failed_profile(tmp_path):
    t = tracker(profile, small_cell(profile_steps=5), backend(), tmp_path)
    assert t.window_steps() == profile.WARMUP + 5
    t.window_start()
    t.window_step()  # the loop ran out after one step, inside the profiler's warmup
    t.window_end(None)
    assert t.section() == {"status": "failed", "reason": "no profiled steps: the loop stopped after 1 steps"}


def test_profile_report_columns_and_verdicts():
    ok = {"status": "ok", "busy_kind": "CUDA kernels and copies", "host_ms_per_step": 3.8, "loader_pct": 20.0}
    cols = profile.report([{**ok, "device_busy_pct": b} for b in (10.0, 12.0, 90.0)])
    assert cols == {"busy %": "12% CUDA", "host ms/step": "3.80", "loader %": "20%",
                    "bound (profile)": "host-bound (88% device idle)"}  # fmt: skip
    assert profile.profile_bound(85.0, 5.0, device=True) == "compute-bound"
    assert profile.profile_bound(85.0, 60.0, device=False) == "input-bound (loader 60%)"
    assert profile.profile_bound(60.0, 5.0, device=False) == "host-bound (40% outside ATen ops)"


def test_the_compile_counter_reads_the_backend(tmp_path):
    be = backend("xla", stats=lambda: {"compilations": 9, "compile_seconds": 1.5})
    assert compile_tracker.counter(small_cell(), be)() == 9  # what the meter reads after every step (bench.run.meter)
    assert compile_tracker.counter(small_cell(), backend("cpu")) is None  # eager: nothing compiles
    assert tracker(compile_tracker, small_cell(), be, tmp_path).section() == {"compilations": 9, "compile_seconds": 1.5}
    # records made before the meter left such segments out warn in the row's notes (tests/test_modes.py)
    assert compile_tracker.report([{"compilations": 9, "compile_seconds": 1.5}]) == {
        "compile s": "1.5",
        "compilations": "9",
    }


def snapshot(busy, steal, total, procs):
    """A contention.Snapshot: ``procs`` is {pid: (parent, own seconds, own + reaped children's seconds)}."""
    return contention.cpu.Snapshot(
        busy, steal, total, 2, {p: v[0] for p, v in procs.items()}, {p: (f"p{p}", v[1], v[2]) for p, v in procs.items()}
    )


def test_the_host_is_what_the_cores_did_less_the_cells_process_tree():
    # the cell: worker 10, its rank 11 and a DataLoader worker 12 that ends (reaped by 11) before the second look;
    # 20 is another process, 1 is init
    a = snapshot(100.0, 1.0, 400.0, {1: (0, 0, 0), 10: (1, 5, 5), 11: (10, 50, 50), 12: (11, 10, 10), 20: (1, 7, 7)})
    b = snapshot(190.0, 3.0, 600.0, {1: (0, 0, 0), 10: (1, 6, 6), 11: (10, 100, 130), 20: (1, 27, 27)})
    u = contention.usage(a, b, root=10)
    assert u.total == 200.0 and u.steal == 2.0
    assert u.cell == pytest.approx((6 + 130) - (5 + 50 + 10))  # the reaped worker's time is in its parent's
    assert u.others == pytest.approx(90 - 71) and u.others_pct == pytest.approx(9.5)
    assert u.top == {(20, "p20"): 20.0}
    # counters that tick apart never make the cell busier than the cores were
    tick = contention.usage(snapshot(0, 0, 2, {10: (1, 5, 5)}), snapshot(1, 0, 4, {10: (1, 8, 8)}), root=10)
    assert tick.cell == 1 and tick.others == 0
    assert u.resolution == pytest.approx(5 * contention.cpu.TICK_S)  # a tick per core (2) and per process of the tree


QUIET_READINGS = {"run_queue": {"value": 0.6, "resolution": 0.0}, "others_cpu": {"value": 0.6, "resolution": 0.45},
                  "steal": {"value": 0.1, "resolution": 0.45}, "psi": {"value": 0.8, "resolution": 0.0}}  # fmt: skip


def test_three_verdicts_quiet_only_over_a_long_enough_span_with_every_needed_measure():
    judge = contention.judge
    assert judge(QUIET_READINGS, 5.0) == ("quiet", None)
    # five steps of a ConvNet: every measure low, and still no verdict of quiet
    verdict, why = judge(QUIET_READINGS, 0.07)
    assert verdict == "undetermined" and why.startswith("0.07 s of steady span, under the 1 s")
    # a needed measure not measured: undetermined, never quiet; one that is not needed (PSI) is only left out
    missing = {**QUIET_READINGS, "others_cpu": {"reason": "no /proc/stat"}}
    assert judge(missing, 5.0) == ("undetermined", "other processes' CPU not measured (no /proc/stat)")
    assert judge({**QUIET_READINGS, "psi": {"reason": "no PSI"}}, 5.0) == ("quiet", None)
    # a share within its resolution of the threshold cannot be told either way
    coarse = {**QUIET_READINGS, "others_cpu": {"value": 1.0, "resolution": 1.0}}
    assert judge(coarse, 5.0) == (
        "undetermined", "other processes' CPU 1.0 ± 1.0%, too coarse to tell from 1.5%"
    )  # fmt: skip
    # busy beats a short span: a neighbour that shows over 5 steps showed
    busy = {**QUIET_READINGS, "others_cpu": {"value": 35.0, "resolution": 3.0}, "throttled": {"value": 20.0}}
    assert judge(busy, 0.07) == (
        "busy", "other processes' CPU 35.0% (busy from 1.5%); cgroup throttling 20.0% (busy from 1%)"
    )  # fmt: skip
    # waiting for a CPU is recorded, not a verdict: a cell's own DataLoader workers make its threads wait
    assert judge({**QUIET_READINGS, "run_queue": {"value": 14.0, "resolution": 0.0}}, 5.0) == ("quiet", None)
    assert judge(QUIET_READINGS, 5.0, "bench run x (pid 1) shares the host (--share-host)") == (
        "undetermined", "bench run x (pid 1) shares the host (--share-host)"
    )  # fmt: skip
    assert judge({**QUIET_READINGS, "gpu_others": {"value": 1.0, "resolution": 0.0}}, 5.0)[0] == "busy"
    # a GPU cell whose GPU neighbours NVML could not read is not quiet
    assert judge({**QUIET_READINGS, "gpu_others": {"reason": "NVML unavailable: no driver"}}, 5.0) == (
        "undetermined", "other processes on the GPU not measured (NVML unavailable: no driver)"
    )  # fmt: skip


def test_what_was_not_measured_is_never_quiet_and_old_records_are_judged_by_todays_rule():
    verdict_of = contention.verdict_of
    assert verdict_of(None)[0] == verdict_of({})[0] == "undetermined"
    assert verdict_of({"status": "not measured", "reason": "no steady segment"}) == (
        "undetermined", "not measured: no steady segment"
    )  # fmt: skip
    assert verdict_of({"status": "ok", "verdict": "busy", "why": "steal 9%"}) == ("busy", "steal 9%")
    # before the three verdicts: others' CPU and steal, with the counters' resolution
    old = {"status": "ok", "busy": False, "why": None, "other_cpu_pct": 0.5, "steal_pct": 0.0, "resolution_pct": 0.4}
    assert verdict_of(old) == ("quiet", None)
    assert verdict_of({**old, "resolution_pct": 10.0})[0] == "undetermined"  # a short span read "quiet" then
    assert verdict_of({**old, "busy": True, "why": "other processes used 48% of 2 cores"})[0] == "busy"


def busy_loop() -> int:
    """A Python busy loop outside this process's tree (the shell that starts it exits at once), as another user's
    would be; its pid."""
    loop = f'"{sys.executable}" -c "while True: pass" >/dev/null 2>&1 & echo $!'
    return int(subprocess.run(["sh", "-c", loop], capture_output=True, text=True, check=True).stdout)


def test_bench_runs_look_at_the_host_warns_naming_the_busiest_others(capsys):
    loops = [busy_loop() for _ in range(2)]
    try:
        why = contention.HostCheck().finish()
    finally:
        for pid in loops:
            os.kill(pid, signal.SIGKILL)
    out = capsys.readouterr().out
    # two loops on these cores are busy whatever else runs beside this test
    assert "other processes' CPU" in why and out.startswith(f"warning: this host is busy ({why} over ")
    assert "(pid " in out and "the report flags such cells and leaves them out of speedups" in out


def test_a_five_step_span_measured_for_real_is_never_quiet(tmp_path):
    """The tracker's own reads around a span as short as five ConvNet steps (50 ms of work): not quiet, however
    quiet the host, since a neighbour can fall between two reads; and a section with no span is not measured."""
    t = tracker(contention, small_cell(), backend(), tmp_path)
    assert t.section()["verdict"] == "undetermined" and t.section()["status"] == "not measured"
    t.steady_start()
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:
        pass
    t.steady_end(5 * 32)
    s = t.section()
    assert s["status"] == "ok" and s["span_s"] < contention.MIN_SPAN_S and s["verdict"] != "quiet", repr(s)
    assert {"run_queue", "others_cpu", "steal"} <= {k for k, r in s["measures"].items() if "value" in r}
    if s["verdict"] == "undetermined":  # busy where a neighbour showed even so
        assert s["why"].startswith(f"{s['span_s']:.2f} s of steady span, under the 1 s")
