"""Trackers: each fills one section of a record by hooking the meter's lifecycle (bench.run.meter).

A tracker is one file here defining ``TRACKER`` (a ``Tracker`` subclass whose ``SECTION`` names its record section)
and, optionally, ``report(sections) -> dict[str, str]``: the columns it adds to a row of the report, from that row's
sections over repeats; and its section's model in bench/records/schema.py (``SECTIONS``, which also gives the section's
place in the record). Adding both adds the section to every record, checked on write and read, and the columns to
the report; a tracker without a model fails tests/test_trackers.py. The meter itself fills ``timing`` and
``accuracy``.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from bench.records import schema


class Tracker:
    """Every hook is a no-op; a tracker overrides the ones it needs and ``section``."""

    SECTION = ""

    def __init__(self, job, backend, cell_dir: Path) -> None:
        self.job, self.cell, self.backend, self.cell_dir = job, job.cell, backend, cell_dir

    def start(self) -> None:
        """Before the workload's setup (seeds set, precision applied)."""

    def train_start(self) -> None:
        """Training begins (the first epoch's start, device synchronised): time to accuracy counts from here."""

    def steady_start(self) -> None:
        """A steady-state segment of training begins (after warmup, at an epoch's start), device synchronised."""

    def steady_end(self, samples: int) -> None:
        """The segment ends (evaluation starts) after ``samples`` samples (global), device synchronised."""

    def steady_cancel(self) -> None:
        """The segment is left out (a graph compiled in it, bench.run.meter): drop what was measured since its start."""

    def target_reached(self) -> None:
        """The evaluation that first reached the accuracy target has ended: time to accuracy stops here."""

    def window_steps(self) -> int:
        """Training steps this tracker wants in the measurement window after training (0: none)."""
        return 0

    def window_start(self) -> None:
        """The window after training begins: the workload's own loop runs ``window_steps`` more steps."""

    def window_step(self) -> None:
        """A training step of the window has ended."""

    def window_end(self, error: BaseException | None) -> None:
        """The window is over; ``error`` is what stopped the loop early, if anything did."""

    def section(self) -> dict:
        raise NotImplementedError


def modules() -> list[ModuleType]:
    """The tracker modules in this package, in the order of their sections in the record (bench.records.schema)."""
    found = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    order = {name: i for i, name in enumerate(schema.sections())}
    return sorted(found, key=lambda m: (order.get(m.TRACKER.SECTION, len(order)), m.__name__))


def create(job, backend, cell_dir: Path) -> list[Tracker]:
    return [m.TRACKER(job, backend, cell_dir) for m in modules()]


def report_columns() -> list:
    """``report(sections)`` of every tracker that has one, with its section name and the report's table its columns
    go to (the module's ``REPORT_TABLE``: "diagnostics" unless it says otherwise)."""
    return [
        (m.TRACKER.SECTION, m.report, getattr(m, "REPORT_TABLE", "diagnostics"))
        for m in modules()
        if hasattr(m, "report")
    ]
