"""Runs cells, each in its own subprocess with a timeout, and appends one record per cell × repeat.

A crash, out-of-memory kill, hang or NaN loss becomes a record with a reason, and the sweep goes on.
Running the same command again resumes: cells whose fingerprint already has a record are skipped.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import datetime
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import allocator, backends, env, records, workloads
from bench.suite import Cell

KILL_GRACE_S = 10


def _die_with_parent() -> None:
    # If `bench run` is killed (even with SIGKILL) its running cell must not live on and skew the next run.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 6) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(text[-lines:])


def base_record(cell: Cell, run_id: str) -> dict:
    record = dict.fromkeys(records.FIELDS)
    record.update(
        schema_version=records.SCHEMA_VERSION,
        run_id=run_id,
        cell_id=cell.cell_id,
        fingerprint=cell.fingerprint,
        workload=cell.workload,
        framework=workloads.get(cell.workload).FRAMEWORK,
        backend=cell.backend,
        device_count=cell.devices,
        precision=cell.precision,
        repeat=cell.repeat,
        seed=cell.seed,
        batch_size=cell.batch_size,
        lr=cell.lr,
        lr_used=None if cell.lr == "find" else cell.lr,
        num_workers=cell.num_workers,
        pretrained=cell.pretrained,
        weights=None if cell.pretrained else {"source": "random initialisation", "pretrained": False},
        global_batch_size=cell.batch_size * cell.devices,
        epochs=cell.epochs,
        limit_train=cell.limit_train,
        limit_test=cell.limit_test,
        tta_target=cell.tta_target,
        stop_at_target=cell.stop_at_target,
        started_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )
    return record


def _host_env(backend, cell: Cell) -> dict:
    e = env.collect(backend)
    e["allocator"] = {"name": allocator.child_env(cell.allocator)[1]}
    return e


def run_cell(cell: Cell, run_dir: Path, run_id: str, data_dir: str | None) -> dict:
    """Run one cell in a subprocess and return its record (never raises for a failing cell)."""
    record = base_record(cell, run_id)
    cell_dir = run_dir / "cells" / cell.dirname
    if cell_dir.exists():
        shutil.rmtree(cell_dir)  # left by an interrupted run: never mix its files with this one's
    cell_dir.mkdir(parents=True)
    (cell_dir / "cell.json").write_text(cell.to_json())
    alloc_env, _ = allocator.child_env(cell.allocator)
    child_env = {**os.environ, **alloc_env}
    if data_dir:
        child_env["BENCH_DATA_DIR"] = str(data_dir)
    log = cell_dir / "log.txt"
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(cell_dir / "cell.json")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            code = proc.wait(timeout=cell.timeout_s)
        except subprocess.TimeoutExpired:
            _kill(proc)
            code = None
        except BaseException:  # Ctrl-C: stop the cell with the sweep
            _kill(proc)
            raise
    record["process_seconds"] = time.perf_counter() - t0
    result_file = cell_dir / "result.json"
    if code is None:
        record.update(status="timeout", reason=f"no result after {cell.timeout_s} s (suite timeout_s); log: {log}")
    elif result_file.exists():
        result = json.loads(result_file.read_text())
        record.update({k: v for k, v in result.items() if k in records.FIELDS})
        if record["status"] == "failed":
            record["reason"] = f"{record['reason']} (log: {log})"
    elif code < 0:
        hint = " (killed by the kernel: out of memory?)" if code == -signal.SIGKILL else ""
        record.update(status="failed", reason=f"worker killed by signal {-code}{hint}; log: {log}")
    else:
        record.update(status="failed", reason=f"worker exited {code}: {_tail(log)}")
    if record["curve"] is None and (cell_dir / "curve.csv").exists():  # epochs finished before it stopped
        with open(cell_dir / "curve.csv", newline="") as f:
            record["curve"] = [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]
        record["epochs_run"] = len(record["curve"])
    if record["env"] is None:
        record["env"] = _host_env(backends.get(cell.backend), cell)
    return record


def _number(text: str) -> float | int | str | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        return text  # a label such as the epoch's phase
    return int(value) if value.is_integer() and "." not in text else value


def unsupported_reason(cell: Cell) -> str | None:
    """Why this cell cannot run honestly here, or None. Decided before any process starts."""
    single = workloads.get(cell.workload).SINGLE_DEVICE
    if cell.devices > 1 and single:
        return f"{cell.workload} runs on one device only: {single}"
    return backends.get(cell.backend).unsupported(cell.precision, cell.devices)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def sweep(cells: list[Cell], results_dir: Path, run_id: str, data_dir: str | None = None) -> int:
    """Run every cell not yet recorded; returns the exit status (1 if any cell of the sweep failed)."""
    run_dir = Path(results_dir) / run_id
    path = run_dir / "records.jsonl"
    records.repair(path)
    done = {r.get("fingerprint"): r for r in (records.read(path) if path.exists() else [])}
    statuses = []
    # SIGTERM (docker stop, a batch scheduler) stops the sweep as cleanly as Ctrl-C does.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, cell in enumerate(cells, 1):
            label = f"[{i}/{len(cells)}] {cell.cell_id} repeat {cell.repeat}"
            if cell.fingerprint in done:
                print(f"{label}: already recorded ({done[cell.fingerprint]['status']}), skipped", flush=True)
                statuses.append(done[cell.fingerprint]["status"])
                continue
            reason = unsupported_reason(cell)
            if reason:
                record = base_record(cell, run_id)
                backend = backends.get(cell.backend)
                record.update(
                    status="unsupported",
                    reason=reason,
                    env=_host_env(backend, cell),
                    device_name=backend.device_name() if backend.available() else None,
                )
            else:
                print(f"{label}: running", flush=True)
                record = run_cell(cell, run_dir, run_id, data_dir)
            records.append(path, record)
            statuses.append(record["status"])
            print(f"{label}: {_summary(record)}", flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished records are in {path}; run the same command again to resume", flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bad = sum(s in records.FAILED for s in statuses)
    print(
        f"{len(statuses)} cells: {statuses.count('ok')} ok, {statuses.count('unsupported')} unsupported, "
        f"{bad} failed/timeout/diverged. Records: {path}"
    )
    return 1 if bad else 0


def _summary(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r['reason']}"
    if not r["throughput_samples_per_s"]:
        return f"ok, accuracy {r['final_accuracy']}, no steady-state steps (raise epochs or lower warmup_steps)"
    tta = f"{r['tta_seconds']:.1f} s" if r["tta_seconds"] is not None else "not reached"
    return f"ok, {r['throughput_samples_per_s']:,.0f} samples/s, accuracy {r['final_accuracy']:.4f}, TTA {tta}"
