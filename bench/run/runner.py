"""One cell's run, the parent's side: ``launch_cell`` starts the cell's worker in a subprocess of its own (the child's
side is bench.run.worker's ``train_cell``), waits for it within the cell's timeout while showing its finished
epochs, and turns what it left into the cell's record (never raises for a failing cell).

A crash, out-of-memory kill, hang or NaN loss becomes a record with a reason. A cell of several processes runs under
its launcher (bench.run.launchers); the sweep of many cells is bench.run.sweep.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import backends, records
from bench.cluster import ONE_NODE, Cluster
from bench.plan import allocator, workloads
from bench.plan.cell import Cell
from bench.plan.job import Job
from bench.records import files
from bench.run import env, launchers, process
from bench.run.events import Listener
from bench.trackers import contention

KILL_GRACE_S = 10
POLL_S = 1.0  # how often the runner looks at a running cell's finished epochs


def _kill(proc: subprocess.Popen) -> None:
    """Stop a cell: SIGTERM to its whole process group (the worker and the ranks torchrun or torch_xla started), then
    SIGKILL after the grace, and wait until every process of the group is gone, not the worker alone: a rank left
    behind keeps its device (a TPU chip opens in one process at a time) and slows the next cell."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline:
            proc.poll()  # reaps the worker: a zombie leader would keep the group alive
            if not _group_alive(proc.pid):
                return
            time.sleep(0.05)
    proc.wait()


def _group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs; zombies do not count (their parent, or init, reaps them)."""
    import psutil

    for p in psutil.process_iter(["status"]):
        try:
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.pid) == pgid:
                return True
        except ProcessLookupError:
            continue  # gone while we looked
    return False


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def cell_section(cell: Cell, run_id: str) -> dict:
    """The record's ``cell`` section: the configuration as the suite set it, and where it belongs."""
    return {
        "run_id": run_id,
        "cell_id": cell.cell_id,
        "fingerprint": cell.fingerprint,
        "framework": workloads.get(cell.workload).framework,
        **{k: v for k, v in dataclasses.asdict(cell).items() if k != "devices"},
        "device_count": cell.devices,
    }


def started_at() -> str:
    """The record's ``run.started_at``: now, in UTC."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def read_curve(path: Path) -> list[dict]:
    """The epochs the worker finished (the meter replaces curve.csv whole after each, so a read never sees half)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _wait(proc: subprocess.Popen, deadline: float, curve: Path, listener: Listener | None) -> int:
    """``proc.wait`` until ``deadline`` (then TimeoutExpired, as before), waking every POLL_S to tell ``listener``
    the epochs the worker has finished: one stat of curve.csv a second, nothing the cell's own timing could feel."""
    seen = None
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, deadline)
        try:
            code = proc.wait(timeout=min(POLL_S, left))
        except subprocess.TimeoutExpired:
            code = None
        if listener is not None:
            # The display must never cost the cell its record: a file it cannot read is shown at the next look.
            with contextlib.suppress(OSError, ValueError, TypeError, csv.Error):
                if (mtime := curve.stat().st_mtime_ns) != seen:
                    listener.epochs(read_curve(curve))  # also once after the end: the epochs since the last look
                    seen = mtime
            listener.waiting()
        if code is not None:
            return code


def launch_cell(cell: Cell, run_dir: Path, run_id: str, data_dir: str | None, listener: Listener | None = None,
                cluster: Cluster = ONE_NODE) -> dict:  # fmt: skip
    """Run one cell in a subprocess and return its record (never raises for a failing cell). ``listener`` is
    told the epochs as they finish. On a node other than node 0 of a cell of several nodes, the record holds
    only this node's status and reason (bench.run.launchers writes them)."""
    # what an interrupted run left there is removed: never mix its files with this one's
    cell_dir = files.fresh_folder(files.folder(run_dir / "cells") / cell.dirname, own="cell.json")
    alloc_env, alloc_name = allocator.child_env(cell.allocator)
    rendezvous = cluster.rendezvous if cell.multinode else None
    job = Job(cell, run_id, data_dir, alloc_name, cluster.node_rank, rendezvous)
    (cell_dir / "cell.json").write_text(job.to_json())
    log = cell_dir / "log.txt"
    run = {"started_at": started_at()}
    t0 = time.perf_counter()
    child_env = {k: v for k, v in {**launchers.worker_env(os.environ), **alloc_env}.items() if k != contention.ROOT_VAR}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.run.worker", str(cell_dir / "cell.json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # what acts at process start; the rest is in cell.json. The worker is the root of its cell's processes.
            env=process.same_code(child_env),
            start_new_session=True,
            preexec_fn=process.die_with_parent,
        )
        try:
            code = _wait(proc, time.perf_counter() + cell.timeout_s, cell_dir / "curve.csv", listener)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = None
        except BaseException:  # Ctrl-C: stop the cell with the sweep
            _kill(proc)
            raise
    run.update(process_seconds=time.perf_counter() - t0, exit_code=code, log=f"cells/{cell.dirname}/log.txt")
    result_file = cell_dir / "result.json"
    if code is None:
        record = records.new("timeout", f"no result after {cell.timeout_s} s (suite timeout_s); log: {log}")
    elif result_file.exists():
        record = records.new(**json.loads(result_file.read_text()))  # every section the worker wrote, unfiltered
        if record["status"] == "failed":
            record["reason"] = f"{record['reason']} (log: {log})"
    elif code < 0:
        hint = " (killed by the kernel: out of memory?)" if code == -signal.SIGKILL else ""
        record = records.new("failed", f"worker killed by signal {-code}{hint}; log: {log}")
    else:
        record = records.new("failed", f"worker exited {code}: {_tail(log)}")
    if record["accuracy"] is None and (cell_dir / "curve.csv").exists():  # epochs finished before it stopped
        curve = read_curve(cell_dir / "curve.csv")
        record["accuracy"] = {"curve": curve, "epochs_run": len(curve)}
    if record["env"] is None:
        record["env"] = env.collect(backends.get(cell.backend), alloc_name)
    record.update(cell=cell_section(cell, run_id), run=run)
    return record


def _number(text: str) -> float | int | str | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text  # a label such as the epoch's phase
    return int(value) if value.is_integer() and "." not in text else value
