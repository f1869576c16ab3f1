"""What a sweep shows while it runs: a line per cell, each finished epoch of the running cell, and the sweep's ETA after
each cell. ``Progress`` is a listener of the sweep's events (bench.run.events).

Two forms of the same events. Not a terminal (CI logs, files, pipes): plain lines only, no carriage return and no
escape code, so a log reads and greps like any other. A terminal: live tqdm bars (the sweep with its ETA, the
running cell's epochs) under the lasting lines. The lines the sweep printed before (``[i/N] cell: ...`` and the
summary) go through ``line`` in both forms, unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import TextIO

from bench import records
from bench.run import estimate
from bench.run.estimate import Eta
from bench.run.events import Listener
from bench.text import shown
from bench.trackers import contention


def epoch_text(rows: list[dict], epochs: int) -> str:
    """The running cell after its last finished epoch (``rows``: its curve.csv so far), e.g.
    "epoch 3/10: 4,120 samples/s so far, test accuracy 0.9812"."""
    last = rows[-1]
    # Training seconds of the finished epochs (warmup in, evaluation out): a progress figure; the steady-state
    # samples/s of the final line is the measurement.
    seconds = sum(r.get("train_seconds") or 0 for r in rows)
    samples = sum(r.get("samples") or 0 for r in rows)
    rate = f"{samples / seconds:,.0f} samples/s so far" if seconds else "no samples/s yet"
    accuracy = last.get("test_accuracy")
    phase = f" ({last['phase']})" if last.get("phase") not in (None, "train") else ""
    acc = f"test accuracy {accuracy:.4f}" if isinstance(accuracy, (int, float)) else "no test accuracy"
    return f"epoch {len(rows)}/{epochs}{phase}: {rate}, {acc}"


def _sized_terminal(out: TextIO) -> bool:
    """A terminal that reports its width: bars need one (a pty with no size, as under `script`, gets lines)."""
    try:
        return out.isatty() and os.get_terminal_size(out.fileno()).columns > 0
    except (OSError, ValueError, AttributeError):
        return False


class Progress(Listener):
    """The sweep's display; ``live`` (default: whether ``out`` is a terminal) picks bars over plain lines."""

    def __init__(self, cells: int, out: TextIO | None = None, live: bool | None = None) -> None:
        self.out = out or sys.stdout
        self.total = cells
        self.live = _sized_terminal(self.out) if live is None else live
        self._began = time.monotonic()
        self._epochs, self._shown = 0, 0
        self._eta: Eta | None = None  # the latest estimate, made before the running cell
        self._cell = (0.0, time.monotonic())  # the running cell's estimated seconds and its start
        self._cell_bar = None
        self._sweep_bar = None
        if self.live:
            from tqdm import tqdm

            self._tqdm = tqdm
            # tqdm's own ETA extrapolates the mean rate; cells differ too much for that, so the postfix has ours.
            self._sweep_bar = tqdm(
                total=cells, desc="sweep", file=self.out, position=0, dynamic_ncols=True,
                bar_format="{desc} {n_fmt}/{total_fmt} cells |{bar:20}| {elapsed}{postfix}",
            )  # fmt: skip

    def line(self, text: str) -> None:
        """A line that stays (above the bars in a terminal); what a record or a host holds is shown, never obeyed
        (bench.text.shown: escape sequences, bidi overrides)."""
        text = shown(text, keep="\n")
        if self.live:
            self._tqdm.write(text, file=self.out)
        else:
            print(text, file=self.out, flush=True)

    def plan(self, e: Eta, skipped: int = 0, unsupported: int = 0) -> None:
        """Before the first cell: the estimate from earlier records."""
        self.line(estimate.plan_text(e, skipped, unsupported))
        self._set_eta(e)

    def cell_start(self, label: str, epochs: int, seconds: float | None = None) -> None:
        """A cell starts: ``epochs`` in all, ``seconds`` its estimate (the ETA counts down by at most that)."""
        self._epochs, self._shown = epochs, 0
        self._cell = (seconds or 0.0, time.monotonic())
        if self.live:
            self._cell_bar = self._tqdm(
                total=epochs, desc=label, file=self.out, position=1, leave=False, dynamic_ncols=True,
                bar_format="{desc} |{bar:20}| epoch {n_fmt}/{total_fmt} {elapsed}{postfix}",
            )  # fmt: skip

    def curve(self, rows: list[dict]) -> None:
        """The running cell's curve so far; shows the epochs not shown yet."""
        if len(rows) <= self._shown:
            return
        if self.live and self._cell_bar is not None:
            text = epoch_text(rows, self._epochs)
            self._cell_bar.set_postfix_str(text.split(": ", 1)[1], refresh=False)
            self._cell_bar.update(len(rows) - self._shown)
        else:
            for n in range(self._shown + 1, len(rows) + 1):
                self.line(f"  {epoch_text(rows[:n], self._epochs)}")
        self._shown = len(rows)

    def tick(self) -> None:
        """About once a second while a cell runs: the bars' clocks and the ETA count on."""
        if self.live:
            self._show_eta()
            if self._cell_bar is not None:
                self._cell_bar.refresh()

    def cell_end(self, finished: int = 1) -> None:
        """A cell is done (ran, skipped or unsupported): close its bar before its final line is printed."""
        if self._cell_bar is not None:
            self._cell_bar.close()
            self._cell_bar = None
        if self._sweep_bar is not None:
            self._sweep_bar.update(finished)

    def add(self, cells: int) -> None:
        """More cells join the sweep (repeats = auto)."""
        self.total += cells
        if self._sweep_bar is not None and cells:
            self._sweep_bar.total = self.total
            self._sweep_bar.refresh()

    def eta(self, e: Eta) -> None:
        """After a cell: the ETA of the cells still to run."""
        if not self.live and e.cells:
            self.line(f"  {estimate.eta_text(e)} (elapsed {estimate.duration(time.monotonic() - self._began)})")
        self._set_eta(e)

    def _set_eta(self, e: Eta) -> None:
        self._eta = e
        self._cell = (0.0, time.monotonic())
        self._show_eta()

    def _show_eta(self) -> None:
        if self._sweep_bar is None or self._eta is None:
            return
        # Count down through the running cell's own estimate, no further: a cell that overruns it leaves the rest
        # of the sweep's estimate standing, never an "ETA 0 s" while cells are still to run.
        seconds, started = self._cell
        ran = min(seconds, time.monotonic() - started)
        left = dataclasses.replace(self._eta, seconds=max(0.0, self._eta.seconds - ran))
        self._sweep_bar.set_postfix_str(estimate.eta_text(left), refresh=True)

    def close(self) -> None:
        self.cell_end(finished=0)
        if self._sweep_bar is not None:
            self._sweep_bar.close()
            self._sweep_bar = None

    # The sweep's events (bench.run.events), shown.

    def planned(self, plan, auto) -> None:
        self.plan(plan.eta(), plan.skipped, plan.unsupported)
        if auto:
            self.line(auto.text())

    def _label(self, position: int, cell) -> str:
        return f"[{position}/{self.total}] {cell.cell_id} repeat {cell.repeat}"

    def skipped(self, position: int, cell, record: dict) -> None:
        self.cell_end()
        self.line(f"{self._label(position, cell)}: already recorded ({record['status']}), skipped")

    def started(self, position: int, cell, again: str | None, seconds: float | None) -> None:
        label = self._label(position, cell)
        self.line(f"{label}: running" + (f" again ({again})" if again else ""))
        self.cell_start(label, estimate.epochs(cell), seconds)

    def epochs(self, rows: list[dict]) -> None:
        self.curve(rows)

    def waiting(self) -> None:
        self.tick()

    def recorded(self, position: int, cell, record: dict, eta: Eta | None = None) -> None:
        self.cell_end()
        self.line(f"{self._label(position, cell)}: {summary(record)}")
        if eta is not None:
            self.eta(eta)

    def joined(self, cells: int) -> None:
        self.add(cells)

    def said(self, text: str) -> None:
        self.line(text)

    def ended(self) -> None:
        self.close()


def summary(record: dict) -> str:
    """A recorded cell's line: its status and reason, or its speed, accuracy and TTA, and the host's verdict."""
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
