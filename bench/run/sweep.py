"""A sweep: every cell of the plan in its order, each run once (``launch_cell``) or recorded unsupported, one record
appended per cell × repeat as it ends; then, with ``repeats = auto``, rounds of more repeats (bench.run.auto).

Running the same command again resumes: cells whose fingerprint already has a record are skipped (bench.run.planning).
What the sweep does is told to a listener (bench.run.events; the display is bench.run.progress). In a run of several
nodes, node 0 records and the other nodes follow its plan (``_follow``, bench.cluster).
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
from collections.abc import Iterator
from pathlib import Path

from bench import backends, records
from bench.cluster import ONE_NODE, Cluster, Sync
from bench.plan import allocator
from bench.plan.cell import Cell
from bench.records import schema
from bench.run import env, planning, runner
from bench.run.auto import Auto
from bench.run.events import Listener
from bench.run.planning import Retry
from bench.run.progress import Progress


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _stopped_as_by_ctrl_c() -> Iterator[None]:
    """SIGTERM (docker stop, a batch scheduler) stops a sweep as cleanly as Ctrl-C does; the handlers before it are
    back afterwards."""
    previous = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclasses.dataclass
class _Sweep:
    """What every cell of one sweep shares, and one cell's turn in it (``record``)."""

    plan: planning.Plan
    path: Path  # the run's records.jsonl
    run_id: str
    data_dir: str | None
    cluster: Cluster
    sync: Sync | None  # node 0's store, in a run of several nodes
    listener: Listener
    ordering: dict  # the run section's order (and order_seed)
    price: dict | None
    auto: Auto | None

    def record(self, position: int, cell: Cell, why: str) -> dict:
        """The cell's record, appended: unsupported here (said before any process starts), or what its run left."""
        p = self.plan
        fp = cell.fingerprint
        reason = p.reasons[fp] if fp in p.reasons else planning.unsupported_reason(cell, self.cluster)
        if reason:
            record = records.new(
                "unsupported",
                reason,
                cell=runner.cell_section(cell, self.run_id),
                run={"started_at": runner.started_at()},
                env=env.collect(backends.get(cell.backend), allocator.child_env(cell.allocator)[1]),
            )
        else:
            self.listener.started(position, cell, p.retried.get(fp), p.estimator.seconds(cell)[0])
            record = runner.launch_cell(cell, self.path.parent, self.run_id, self.data_dir, self.listener, self.cluster)
            if self.sync and cell.multinode:
                _other_nodes(record, self.sync.reports(fp, cell.nodes), cell.nodes)
        # where the cell ran in the sweep, why, and at what price (its fingerprint ignores them)
        retried = {"retry": p.retried[fp]} if fp in p.retried else {}
        automatic = {"auto": self.auto.record()} if self.auto else {}
        record["run"].update(
            self.ordering, position=position, price=self.price, repeat_reason=why, **retried, **automatic
        )
        record = schema.admit(record)  # a section no reader would take fails the cell, naming it
        records.append(self.path, record)
        p.done[fp] = record  # a cell listed twice runs once
        if not reason and record["status"] == "ok":
            p.estimator.add(cell, record["run"]["process_seconds"])
        self.listener.recorded(position, cell, record, None if reason else p.eta(after=position))
        return record


def sweep(
    cells: list[Cell],
    results_dir: Path,
    run_id: str,
    data_dir: str | None = None,
    order: str = "interleaved",
    order_seed: int = 0,
    cluster: Cluster = ONE_NODE,
    price: dict | None = None,
    retry: Retry | None = None,
    auto: Auto | None = None,
    listener: Listener | None = None,
) -> int:
    """Run every cell not yet recorded (or recorded but to be retried, ``retry``), in the order given
    (``order``/``order_seed`` say how it was made, for the records; ``price`` is what a node-hour costs,
    bench.plan.cost), then, with ``auto``, rounds of more repeats where the interval is still wide; returns the exit
    status (1 if any cell of the sweep failed). ``listener`` is told what happens (default: the display,
    bench.run.progress). On a node other than node 0, run the cells of several nodes that node 0 publishes
    (bench.cluster) and record nothing."""
    run_dir = Path(results_dir) / run_id
    if cluster.node_rank > 0:
        return _follow(cells, run_dir / f"node{cluster.node_rank}", run_id, data_dir, cluster)
    path = run_dir / "records.jsonl"
    records.repair(path)
    p = planning.plan(cells, results_dir, run_id, cluster, retry or Retry())
    sync = Sync(cluster) if cluster.nnodes > 1 else None
    if sync:
        sync.publish([c.fingerprint for _, c in p.to_run if c.multinode])
    listener = listener or Progress(len(cells))
    ordering = {"order": order, **({"order_seed": order_seed} if order == "random" else {})}
    one = _Sweep(p, path, run_id, data_dir, cluster, sync, listener, ordering, price, auto)
    listener.planned(p, auto)
    statuses = []
    queue = [(cell, "auto: the first repeats, before the interval decides" if auto else "planned") for cell in cells]
    swept: list[Cell] = []
    interrupted = False
    with _stopped_as_by_ctrl_c():
        try:
            while queue:
                for cell, why in queue:
                    swept.append(cell)
                    if cell.fingerprint in p.done:
                        listener.skipped(len(swept), cell, p.done[cell.fingerprint])
                        statuses.append(p.done[cell.fingerprint]["status"])
                    else:
                        statuses.append(one.record(len(swept), cell, why)["status"])
                queue = auto.more(swept, p.done) if auto else []
                listener.joined(len(queue))
            if auto and (said := auto.end(swept, p.done)):
                listener.said(said)
        except KeyboardInterrupt:
            interrupted = True
            listener.said(f"\ninterrupted: finished records are in {path}; run the same command again to resume")
        finally:
            listener.ended()
    if interrupted:
        return 130
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
    with _stopped_as_by_ctrl_c():
        try:
            for i, cell in enumerate(mine, 1):
                label = f"[{i}/{len(mine)}] {cell.cell_id} repeat {cell.repeat}"
                print(f"{label}: running", flush=True)
                record = runner.launch_cell(cell, node_dir, run_id, data_dir, None, cluster)
                try:
                    sync.report(cell.fingerprint, record["status"], record["reason"])
                except RuntimeError as e:
                    raise ClusterError(f"node 0's store is gone ({e}): node 0 stopped, so this node stops too") from e
                bad += record["status"] in schema.FAILED
                print(
                    f"{label}: {record['status']}" + (f": {record['reason']}" if record["reason"] else ""), flush=True
                )
        except KeyboardInterrupt:
            print(f"\ninterrupted: node {cluster.node_rank} stops; node 0 holds the records", flush=True)
            return 130
    return 1 if bad else 0
