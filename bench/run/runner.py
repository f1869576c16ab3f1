"""Runs cells, each in its own subprocess with a timeout, and appends one record per cell × repeat.

A crash, out-of-memory kill, hang or NaN loss becomes a record with a reason, and the sweep goes on.
Running the same command again resumes: cells whose fingerprint already has a record are skipped.
A cell of several processes runs under torchrun (bench.run.launchers); in a run of several nodes, node 0 records and the
other nodes follow its plan (bench.cluster).
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
from bench.cluster import ONE_NODE, Cluster, Sync
from bench.plan import allocator, workloads
from bench.plan.cell import Cell
from bench.plan.job import Job
from bench.plan.settings import AUTO_FIRST
from bench.records import files, schema, stats
from bench.run import adapters, env, estimate, launchers, process
from bench.run.progress import Progress
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


def _started() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def _read_curve(path: Path) -> list[dict]:
    """The epochs the worker finished (the meter replaces curve.csv whole after each, so a read never sees half)."""
    with open(path, newline="") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _wait(proc: subprocess.Popen, deadline: float, curve: Path, progress: Progress | None) -> int:
    """``proc.wait`` until ``deadline`` (then TimeoutExpired, as before), waking every POLL_S to show the epochs
    the worker has finished: one stat of curve.csv a second, nothing the cell's own timing could feel."""
    seen = None
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, deadline)
        try:
            code = proc.wait(timeout=min(POLL_S, left))
        except subprocess.TimeoutExpired:
            code = None
        if progress is not None:
            # The display must never cost the cell its record: a file it cannot read is shown at the next look.
            with contextlib.suppress(OSError, ValueError, TypeError, csv.Error):
                if (mtime := curve.stat().st_mtime_ns) != seen:
                    progress.curve(_read_curve(curve))  # also once after the end: the epochs since the last look
                    seen = mtime
            progress.tick()
        if code is not None:
            return code


def run_cell(cell: Cell, run_dir: Path, run_id: str, data_dir: str | None, progress: Progress | None = None,
             cluster: Cluster = ONE_NODE) -> dict:  # fmt: skip
    """Run one cell in a subprocess and return its record (never raises for a failing cell). ``progress`` is
    shown the epochs as they finish. On a node other than node 0 of a cell of several nodes, the record holds
    only this node's status and reason (bench.run.launchers writes them)."""
    # what an interrupted run left there is removed: never mix its files with this one's
    cell_dir = files.fresh_folder(files.folder(run_dir / "cells") / cell.dirname, own="cell.json")
    alloc_env, alloc_name = allocator.child_env(cell.allocator)
    rendezvous = cluster.rendezvous if cell.multinode else None
    job = Job(cell, run_id, data_dir, alloc_name, cluster.node_rank, rendezvous)
    (cell_dir / "cell.json").write_text(job.to_json())
    log = cell_dir / "log.txt"
    run = {"started_at": _started()}
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
            code = _wait(proc, time.perf_counter() + cell.timeout_s, cell_dir / "curve.csv", progress)
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
        curve = _read_curve(cell_dir / "curve.csv")
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


def unsupported_reason(cell: Cell, cluster: Cluster = ONE_NODE) -> str | None:
    """Why this cell cannot run honestly here, or None. Decided before any process starts."""
    spec, backend = workloads.get(cell.workload), backends.get(cell.backend)
    return (
        launchers.of(cell).refuses(spec)
        or cluster.unsupported(cell)
        or adapters.unsupported(cell, spec)
        or backend.unsupported(cell.precision, cell.devices, cell.allow_emulated)
        or backend.hosts_reason(cell.nodes, cell.devices, cluster.nnodes)
    )


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@dataclasses.dataclass(frozen=True)
class Retry:
    """Which recorded cells run again on resume: those of ``statuses`` (``bench run --retry``), and, always, a
    timeout recorded under a smaller ``timeout_s`` than the cell has now. The new record supersedes the old one in
    the report; both stay in records.jsonl."""

    statuses: tuple[str, ...] = ()

    def why(self, record: dict, cell: Cell) -> str | None:
        """Why ``record`` of ``cell`` runs again, or None."""
        status = record.get("status")
        if status in self.statuses:
            return f"--retry {status}"
        before = (record.get("cell") or {}).get("timeout_s")
        if status == "timeout" and isinstance(before, int | float) and before < cell.timeout_s:
            return f"timed out under timeout_s = {before}, now {cell.timeout_s}"
        return None


@dataclasses.dataclass(frozen=True)
class Auto:
    """``repeats = "auto"``: after the first interleaved repeats, round after round, one more repeat of every
    configuration (a block: whatever slows the host slows every configuration of the round alike, and the report
    pairs them by block), until every configuration's 95% interval on throughput over its quiet repeats reaches no
    further than ``target`` either side, at least ``AUTO_FIRST`` of them, or ``cap`` repeats (as pyperf
    calibrates its runs and criterion its samples; the stopping rule and its coverage: bench.records.stats.settled)."""

    cap: int
    target: float

    def text(self) -> str:
        return (
            f"repeats = auto: then rounds of one more repeat of every configuration until each has {AUTO_FIRST} quiet "
            f"repeats and a 95% interval on samples/s within ±{self.target:.1%}, up to {self.cap} repeats"
        )

    def record(self) -> dict:
        """The record's ``run.auto``."""
        return {"target": self.target, "cap": self.cap}

    def _rounds(self, cells: list[Cell], done: dict[str, dict]) -> dict[str, list[tuple[Cell, dict]]]:
        """The configurations that take part in more rounds: every one of ``cells`` whose repeats are all ok (a
        failure is not noise, and an unsupported cell never runs), with its repeats and their records."""
        groups: dict[str, list[Cell]] = {}
        for cell in cells:
            groups.setdefault(cell.configuration, []).append(cell)
        out = {}
        for key, members in groups.items():
            recs = [done.get(c.fingerprint) for c in members]
            if all(r is not None and r.get("status") == "ok" for r in recs):
                out[key] = list(zip(members, recs))
        return out

    def more(self, cells: list[Cell], done: dict[str, dict]) -> list[tuple[Cell, str]]:
        """The next round: (the next repeat, why it runs) of every taking part, or none once the rule is met or the
        cap reached."""
        rounds = self._rounds(cells, done)
        if not rounds or self.settled(rounds) or max(len(m) for m in rounds.values()) >= self.cap:
            return []
        n = max(len(m) for m in rounds.values())
        why = f"auto: round {n + 1}, one more repeat of every configuration ({self.missing(rounds)})"
        out = []
        for members in rounds.values():
            last = max((c for c, _ in members), key=lambda c: c.repeat)
            out.append((last.again(last.repeat + 1), why))
        return out

    def settled(self, rounds: dict[str, list[tuple[Cell, dict]]]) -> bool:
        return stats.settled([_quiet_rates(members) for members in rounds.values()], self.target)

    def missing(self, rounds: dict[str, list[tuple[Cell, dict]]]) -> str:
        """What keeps the rule from being met: the configuration furthest from it."""
        worst, text = -1.0, ""
        for members in rounds.values():
            rates, cell = _quiet_rates(members), members[0][0]
            spread = stats.spread(rates)
            if len(rates) < AUTO_FIRST and worst < 0:
                worst, text = 0.0, f"{cell.cell_id}: {len(rates)} quiet repeats, fewer than {AUTO_FIRST}"
            if spread is not None and spread > self.target and spread > worst:
                worst, text = spread, f"{cell.cell_id}: ±{spread:.1%} over {len(rates)} quiet repeats"
        return text or "the rule is met"

    def end(self, cells: list[Cell], done: dict[str, dict]) -> str | None:
        """What to say when the rounds end: None when the rule was met, else that the cap came first."""
        rounds = self._rounds(cells, done)
        if not rounds or self.settled(rounds):
            return None
        return f"auto: target not reached at the cap ({self.cap} repeats): {self.missing(rounds)}"


def _quiet_rates(members: list[tuple[Cell, dict]]) -> list[float]:
    """The throughputs of the repeats measured on a quiet host (those the report compares)."""
    return [
        (r.get("timing") or {}).get("throughput_samples_per_s")
        for _, r in members
        if contention.verdict_of(r.get("contention"))[0] == "quiet"
    ]


@dataclasses.dataclass
class Plan:
    """What a sweep of ``cells`` will do: what it skips, what is unsupported here, what runs, and its estimate."""

    cells: list[Cell]
    done: dict[str, dict]  # this run's records by fingerprint: skipped when the run resumes
    reasons: dict[str, str | None]  # every cell not yet recorded: why it cannot run here, or None
    to_run: list[tuple[int, Cell]]  # (position in the sweep, cell)
    estimator: estimate.Estimator
    retried: dict[str, str] = dataclasses.field(default_factory=dict)  # fingerprint: why its record runs again

    def eta(self, after: int = 0) -> estimate.Eta:
        """The estimate of the cells to run after position ``after``."""
        return estimate.eta([c for i, c in self.to_run if i > after], self.estimator)

    @property
    def skipped(self) -> int:
        return len(self.cells) - len(self.reasons)

    @property
    def unsupported(self) -> int:
        return sum(bool(why) for why in self.reasons.values())


def plan(
    cells: list[Cell], results_dir: Path, run_id: str, cluster: Cluster = ONE_NODE, retry: Retry = Retry()
) -> Plan:
    """The sweep's plan, read without writing anything (``bench run --dry-run`` shows it)."""
    path = Path(results_dir) / run_id / "records.jsonl"
    recorded = {}
    readable, _ = schema.usable(records.located(path)) if path.exists() else ([], [])  # the others: warned, left out
    checked: set[str] = set()  # fingerprints a record's own fields gave (schema.problems held it to them)
    for r in readable:
        r = schema.upgrade(r)  # a run started by an older version resumes too
        fp = (r["cell"] or {}).get("fingerprint")
        if schema.checked(r["cell"]):
            checked.add(fp)
        elif fp in checked:
            continue  # a record without the fields to check it never stands for one that has them
        recorded[fp] = r  # the newest record of a cell is the one that stands
    cell_of = {c.fingerprint: c for c in cells}
    retried = {fp: why for fp, r in recorded.items() if fp in cell_of and (why := retry.why(r, cell_of[fp]))}
    done = {fp: r for fp, r in recorded.items() if fp not in retried}
    reasons = {cell.fingerprint: unsupported_reason(cell, cluster) for cell in cells if cell.fingerprint not in done}
    to_run = [(i, c) for i, c in enumerate(cells, 1) if c.fingerprint in reasons and not reasons[c.fingerprint]]
    estimator = estimate.Estimator(estimate.history(Path(results_dir), env.host()))
    for cell in cells:  # this run's cells recorded before an interruption teach the estimate too
        seconds = (done.get(cell.fingerprint, {}).get("run") or {}).get("process_seconds")
        if done.get(cell.fingerprint, {}).get("status") == "ok" and seconds:
            estimator.add(cell, seconds)
    return Plan(cells, done, reasons, to_run, estimator, retried)


def sweep(
    cells: list[Cell],
    results_dir: Path,
    run_id: str,
    data_dir: str | None = None,
    order: str = "interleaved",
    order_seed: int = 0,
    cluster: Cluster = ONE_NODE,
    price: dict | None = None,
    retry: Retry = Retry(),
    auto: Auto | None = None,
) -> int:
    """Run every cell not yet recorded (or recorded but to be retried, ``retry``), in the order given
    (``order``/``order_seed`` say how it was made, for the records; ``price`` is what a node-hour costs,
    bench.plan.cost), then, with ``auto``, rounds of more repeats where the interval is still wide; returns the exit
    status (1 if any cell of the sweep failed). On a node other than node 0, run the cells of several nodes that
    node 0 publishes (bench.cluster) and record nothing."""
    run_dir = Path(results_dir) / run_id
    if cluster.node_rank > 0:
        return _follow(cells, run_dir / f"node{cluster.node_rank}", run_id, data_dir, cluster)
    path = run_dir / "records.jsonl"
    records.repair(path)
    p = plan(cells, results_dir, run_id, cluster, retry)
    done, reasons, estimator = p.done, p.reasons, p.estimator
    sync = Sync(cluster) if cluster.nnodes > 1 else None
    if sync:
        sync.publish([c.fingerprint for _, c in p.to_run if c.multinode])
    ordering = {"order": order, **({"order_seed": order_seed} if order == "random" else {})}
    automatic = {"auto": auto.record()} if auto else {}
    progress = Progress(len(cells))
    progress.plan(p.eta(), p.skipped, p.unsupported)
    if auto:
        progress.line(auto.text())
    statuses = []
    queue = [(cell, "auto: the first repeats, before the interval decides" if auto else "planned") for cell in cells]
    swept: list[Cell] = []
    # SIGTERM (docker stop, a batch scheduler) stops the sweep as cleanly as Ctrl-C does.
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue:
            for cell, why in queue:
                swept.append(cell)
                i = len(swept)
                label = f"[{i}/{progress.total}] {cell.cell_id} repeat {cell.repeat}"
                if cell.fingerprint in done:
                    progress.cell_end()
                    progress.line(f"{label}: already recorded ({done[cell.fingerprint]['status']}), skipped")
                    statuses.append(done[cell.fingerprint]["status"])
                    continue
                reason = reasons[cell.fingerprint] if cell.fingerprint in reasons else unsupported_reason(cell, cluster)
                if reason:
                    record = records.new(
                        "unsupported",
                        reason,
                        cell=cell_section(cell, run_id),
                        run={"started_at": _started()},
                        env=env.collect(backends.get(cell.backend), allocator.child_env(cell.allocator)[1]),
                    )
                else:
                    again = p.retried.get(cell.fingerprint)
                    progress.line(f"{label}: running" + (f" again ({again})" if again else ""))
                    progress.cell_start(label, estimate.epochs(cell), estimator.seconds(cell)[0])
                    record = run_cell(cell, run_dir, run_id, data_dir, progress, cluster)
                    if sync and cell.multinode:
                        _other_nodes(record, sync.reports(cell.fingerprint, cell.nodes), cell.nodes)
                # where the cell ran in the sweep, why, and at what price (its fingerprint ignores them)
                retried = {"retry": p.retried[cell.fingerprint]} if cell.fingerprint in p.retried else {}
                record["run"].update(ordering, position=i, price=price, repeat_reason=why, **retried, **automatic)
                record = schema.admit(record)  # a section no reader would take fails the cell, naming it
                records.append(path, record)
                done[cell.fingerprint] = record  # a cell listed twice runs once
                statuses.append(record["status"])
                progress.cell_end()
                progress.line(f"{label}: {_summary(record)}")
                if not reason:
                    if record["status"] == "ok":
                        estimator.add(cell, record["run"]["process_seconds"])
                    progress.eta(p.eta(after=i))
            queue = auto.more(swept, done) if auto else []
            progress.add(len(queue))
        if auto and (said := auto.end(swept, done)):
            progress.line(said)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted: finished records are in {path}; run the same command again to resume", flush=True)
        return 130
    finally:
        progress.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    bad = sum(s in schema.FAILED for s in statuses)
    print(
        f"{len(statuses)} cells: {statuses.count('ok')} ok, {statuses.count('unsupported')} unsupported, "
        f"{bad} failed/timeout/diverged. Records: {path}"
    )
    return 1 if bad else 0


def _other_nodes(record: dict, reports: dict[int, dict], nodes: int) -> None:
    """Node 0's record of a cell of several nodes, with what went wrong on the others."""
    failures = [f"node {k}: {r['status']}: {r['reason']}" for k, r in sorted(reports.items()) if r["status"] != "ok"]
    failures += [f"node {k}: no outcome reported" for k in range(1, nodes) if k not in reports]
    if failures:
        record["status"] = "failed" if record["status"] == "ok" else record["status"]
        record["reason"] = "; ".join(filter(None, [record["reason"], *failures]))


def _follow(cells: list[Cell], node_dir: Path, run_id: str, data_dir: str | None, cluster: Cluster) -> int:
    """A node other than node 0: run the cells node 0 publishes that span this node, report each outcome to it."""
    from bench.cluster import ClusterError

    sync = Sync(cluster)
    by_fingerprint = {c.fingerprint: c for c in cells}
    try:
        published = sync.plan()
    except RuntimeError as e:  # the store's timeout or lost connection (DistStoreError)
        raise ClusterError(f"no plan from node 0 at {cluster.host}:{cluster.port} ({e}): is node 0 running?") from e
    unknown = [fp for fp in published if fp not in by_fingerprint]
    if unknown:
        raise ClusterError(
            f"node 0 runs {len(unknown)} cells this node's suite does not have: start every node with the same "
            "suite and options"
        )
    mine = [by_fingerprint[fp] for fp in published if by_fingerprint[fp].nodes > cluster.node_rank]
    print(f"node {cluster.node_rank} of {cluster.nnodes} ({cluster.source}): {len(mine)} cells span this node; "
          f"node 0 ({cluster.host}) writes the records", flush=True)  # fmt: skip
    bad = 0
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, cell in enumerate(mine, 1):
            label = f"[{i}/{len(mine)}] {cell.cell_id} repeat {cell.repeat}"
            print(f"{label}: running", flush=True)
            record = run_cell(cell, node_dir, run_id, data_dir, None, cluster)
            try:
                sync.report(cell.fingerprint, record["status"], record["reason"])
            except RuntimeError as e:
                raise ClusterError(f"node 0's store is gone ({e}): node 0 stopped, so this node stops too") from e
            bad += record["status"] in schema.FAILED
            print(f"{label}: {record['status']}" + (f": {record['reason']}" if record["reason"] else ""), flush=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: node {cluster.node_rank} stops; node 0 holds the records", flush=True)
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 1 if bad else 0


def _summary(record: dict) -> str:
    r = records.flat(record)
    if r["status"] != "ok":
        return f"{r['status']}: {r['reason']}"
    if not r["throughput_samples_per_s"]:
        return f"ok, accuracy {r['final_accuracy']}, no steady-state steps (raise epochs or lower warmup_steps)"
    tta = f"{r['tta_seconds']:.1f} s" if r["tta_seconds"] is not None else "not reached"
    verdict, why = contention.verdict_of(record.get("contention"))
    # what the report will leave out, and the first reason why (the record holds them all)
    host = "" if verdict == "quiet" else f"; host {verdict}: {(why or '').split('; ')[0]}"
    return f"ok, {r['throughput_samples_per_s']:,.0f} samples/s, accuracy {r['final_accuracy']:.4f}, TTA {tta}{host}"
