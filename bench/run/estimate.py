"""How long cells will take: per-cell seconds from what this host has measured before, and the sweep's ETA.

A cell's estimate comes, in this order, from an earlier ``ok`` record with the same fingerprint on this host (its
``run.process_seconds``), from another repeat of the same configuration in this run, or from finished cells of the
same workload in this run scaled by epochs × training images (rough: precision and mode change the cost). Anything
else is unknown and said to be, never guessed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import json
import statistics
from collections import defaultdict
from pathlib import Path

from bench import records
from bench.plan import workloads
from bench.plan.cell import Cell
from bench.plan.settings import SPLIT_SIZES
from bench.records import files, schema
from bench.run import data

# Where an estimate came from, best first.
RECORD, REPEAT, WORKLOAD = "record", "repeat", "workload"


def epochs(cell: Cell) -> int:
    """The epochs the cell trains in all: fastai's fine_tune adds its frozen epochs to the cell's unfrozen ones."""
    return cell.epochs + workloads.get(cell.workload).freeze_epochs


def _work(cell: Cell) -> int:
    return epochs(cell) * (cell.limit_train or SPLIT_SIZES["train"])


def history(results_dir: Path, host: str) -> dict[str, list[float]]:
    """process_seconds of every ok record on ``host`` under ``results_dir``, by cell fingerprint (the committed
    ``reference/`` runs left out, as bench.records.read_all leaves them)."""
    out: dict[str, list[float]] = defaultdict(list)
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return out
    for path in files.find(results_dir, lambda name: name == "records.jsonl"):
        if "reference" not in path.relative_to(results_dir).parts:
            for on, fingerprint, seconds in _seconds(path):
                if on == host:
                    out[fingerprint].append(seconds)
    return out


def _seconds(path: Path) -> list[list]:
    """[host, fingerprint, process seconds] of the ok records of one records.jsonl that pass their schema (one that
    fails gives no estimate). Kept in the cache folder (bench.run.data.cache_dir) with the file's size and modification
    time, and read there while both are the same: a year of nightly runs is read and checked once, not at every
    ``bench run``."""
    try:
        st = path.stat()
    except OSError:
        return []
    where = str(path.resolve())
    cache = data.cache_dir() / "history" / (hashlib.sha256(where.encode()).hexdigest()[:24] + ".json")
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        kept = json.loads(cache.read_text())
        if (kept["path"], kept["size"], kept["mtime_ns"], kept["schema"]) == (
            where, st.st_size, st.st_mtime_ns, schema.SCHEMA_VERSION
        ):  # fmt: skip
            entries = kept["entries"]
            if all(isinstance(h, str) and isinstance(f, str) and isinstance(s, float) for h, f, s in entries):
                return entries
    usable, _ = schema.split(records.located(path))
    entries = []
    for r in usable:
        r = schema.upgrade(r)
        seconds, host = (r.get("run") or {}).get("process_seconds"), (r.get("env") or {}).get("host")
        fingerprint = (r.get("cell") or {}).get("fingerprint")
        if r.get("status") == "ok" and isinstance(host, str) and isinstance(fingerprint, str) and seconds:
            entries.append([host, fingerprint, float(seconds)])
    with contextlib.suppress(OSError):  # no cache (a read-only home): read again next time
        files.folder(cache.parent)
        files.replace(cache, json.dumps({"path": where, "size": st.st_size, "mtime_ns": st.st_mtime_ns,
                                         "schema": schema.SCHEMA_VERSION, "entries": entries}))  # fmt: skip
    return entries


class Estimator:
    """Per-cell seconds; learns from the cells this run finishes (``add``)."""

    def __init__(self, earlier: dict[str, list[float]] | None = None) -> None:
        self.earlier = earlier or {}
        self._repeats: dict[str, list[float]] = defaultdict(list)
        self._per_work: dict[str, list[float]] = defaultdict(list)  # workload -> seconds per epoch-image

    def add(self, cell: Cell, seconds: float) -> None:
        """A cell of this run finished ok in ``seconds``."""
        self._repeats[cell.configuration].append(seconds)
        self._per_work[cell.workload].append(seconds / _work(cell))

    def seconds(self, cell: Cell) -> tuple[float | None, str | None]:
        """The cell's estimated seconds and their source (RECORD, REPEAT, WORKLOAD), or (None, None)."""
        if self.earlier.get(cell.fingerprint):
            return statistics.median(self.earlier[cell.fingerprint]), RECORD
        if self._repeats.get(cell.configuration):
            return statistics.median(self._repeats[cell.configuration]), REPEAT
        if self._per_work.get(cell.workload):
            return statistics.median(self._per_work[cell.workload]) * _work(cell), WORKLOAD
        return None, None


@dataclasses.dataclass
class Eta:
    """The sum over the cells still to run: known seconds, and how many cells have which source or none."""

    seconds: float = 0.0
    sources: dict[str, int] = dataclasses.field(default_factory=dict)
    unknown: int = 0

    @property
    def known(self) -> int:
        return sum(self.sources.values())

    @property
    def cells(self) -> int:
        return self.known + self.unknown


def eta(cells: list[Cell], estimator: Estimator) -> Eta:
    """Sum the estimates of ``cells`` (those still to run: no skipped or unsupported ones)."""
    out = Eta()
    for cell in cells:
        seconds, source = estimator.seconds(cell)
        if seconds is None:
            out.unknown += 1
        else:
            out.seconds += seconds
            out.sources[source] = out.sources.get(source, 0) + 1
    return out


FAR = 30 * 86_400  # seconds beyond which an ETA gives no time of day


def duration(seconds: float) -> str:
    """Seconds as a person reads them: "45 s", "12 min", "1 h 20 min"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def _which(e: Eta, left: str) -> str:
    """ "for the 12 cells left", or "for 9 of the 12 cells left", and which of them are rough."""
    text = f"for the {_cells(e.cells)} {left}" if not e.unknown else f"for {e.known} of the {_cells(e.cells)} {left}"
    if e.sources.get(WORKLOAD):
        text += f", {e.sources[WORKLOAD]} of them rough (scaled from other cells of the same workload)"
    return text


def eta_text(e: Eta, now: datetime.datetime | None = None) -> str:
    """One line: "ETA 1 h 20 min (about 14:32) for the 12 cells left", with what is rough or unknown."""
    if not e.cells:
        return "nothing left to run"
    if not e.known:
        return f"ETA unknown for {_cells(e.cells)}"
    if e.seconds < FAR:
        at = (now or datetime.datetime.now()) + datetime.timedelta(seconds=e.seconds)
        when = f"about {at:%H:%M}"
    else:  # an earlier record's seconds can be anything up to the schema's bound: no clock reaches it
        when = f"more than {FAR // 86_400} days"
    text = f"ETA {duration(e.seconds)} ({when}) {_which(e, 'left')}"
    return text + (f"; ETA unknown for {_cells(e.unknown)}" if e.unknown else "")


def plan_text(e: Eta, skipped: int = 0, unsupported: int = 0) -> str:
    """The estimate before a sweep (``bench run --dry-run`` and the sweep's first line), e.g. "estimated 1 h 20 min
    for 24 of the 30 cells to run, from earlier records on this host; 6 without an estimate"."""
    if not e.cells:
        text = "nothing to run"
    elif not e.known:
        text = f"no estimate for the {_cells(e.cells)} to run: no earlier records of them on this host"
    else:
        text = f"estimated {duration(e.seconds)} {_which(e, 'to run')}, from earlier records on this host"
        text += f"; {e.unknown} without an estimate" if e.unknown else ""
    aside = [f"{n} {what}" for n, what in ((skipped, "recorded in this run"), (unsupported, "unsupported here")) if n]
    return text + (f" (skipped: {', '.join(aside)})" if aside else "")
