"""What a sweep tells whoever follows it, as events: the display (bench.run.progress) is one such listener, and the
sweep itself shows nothing. In order: ``planned``; then for each cell ``skipped`` (recorded before), or ``started``
(then ``epochs`` and ``waiting`` while it runs) and ``recorded``, or ``recorded`` alone (unsupported here); ``joined``
when repeats = auto adds a round; ``said`` for what the sweep concludes; ``ended`` last, also on an interrupt."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.plan.cell import Cell
    from bench.run.auto import Auto
    from bench.run.estimate import Eta
    from bench.run.planning import Plan


class Listener:
    """Ignores every event: a listener overrides those it follows."""

    def planned(self, plan: Plan, auto: Auto | None) -> None:
        """Before the first cell: the sweep's plan (bench.run.planning.Plan) and its auto rule, if any."""

    def skipped(self, position: int, cell: Cell, record: dict) -> None:
        """A cell recorded before (this run resumes): ``record`` stands."""

    def started(self, position: int, cell: Cell, again: str | None, seconds: float | None) -> None:
        """A cell starts: ``again`` says why a recorded cell runs again, ``seconds`` is its estimate."""

    def epochs(self, rows: list[dict]) -> None:
        """The running cell's epochs so far (its curve.csv)."""

    def waiting(self) -> None:
        """About once a second while a cell runs."""

    def recorded(self, position: int, cell: Cell, record: dict, eta: Eta | None = None) -> None:
        """A cell's record is written; ``eta`` (bench.run.estimate.Eta): the estimate of the cells after it, where
        the cell ran."""

    def joined(self, cells: int) -> None:
        """More cells join the sweep (repeats = auto)."""

    def said(self, text: str) -> None:
        """What the sweep concludes (auto's end)."""

    def ended(self) -> None:
        """The sweep is over, or interrupted."""
