"""Trackers: each fills one section of a record by hooking the meter's lifecycle (bench.meter).

A tracker is one file here defining ``TRACKER`` (a ``Tracker`` subclass whose ``SECTION`` names its record section),
``ORDER`` (its place in the record) and, optionally, ``report(sections) -> dict[str, str]``: the columns it adds to
a row of the report, from that row's sections over repeats. Adding a file adds the section to every record and the
columns to the report; nothing else needs to change. The meter itself fills ``timing`` and ``accuracy``.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

METER_SECTIONS = ("timing", "accuracy")


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
        """The segment is left out (a graph compiled in it, bench.meter): drop what was measured since its start."""

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
    """The tracker modules in this package, in record order."""
    found = [importlib.import_module(f"{__name__}.{m.name}") for m in pkgutil.iter_modules(__path__)]
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def sections() -> tuple[str, ...]:
    return (*METER_SECTIONS, *(m.TRACKER.SECTION for m in modules()))


def create(job, backend, cell_dir: Path) -> list[Tracker]:
    return [m.TRACKER(job, backend, cell_dir) for m in modules()]


def report_columns() -> list:
    """``report(sections)`` of every tracker that has one, with its section name."""
    return [(m.TRACKER.SECTION, m.report) for m in modules() if hasattr(m, "report")]
