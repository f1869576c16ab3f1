"""A sweep's plan, read without writing anything (``bench run --dry-run`` shows it): which cells were recorded before
and are skipped, which run again (``Retry``), which cannot run honestly here and why (``unsupported_reason``), what
runs, and the estimate of it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bench import backends, records
from bench.cluster import ONE_NODE, Cluster
from bench.plan import workloads
from bench.plan.cell import Cell
from bench.records import schema
from bench.run import adapters, env, estimate, launchers


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
