"""What is timed and how: the measurement rules of docs/methodology.md, shared by every workload's loop.

A workload calls ``epoch_start`` at the start of each epoch (the first call starts the time-to-accuracy clock),
``step_end`` after every optimizer step, ``eval_start``/``eval_end`` around evaluation, then ``epoch_end``.
Work outside training (the loader-only pass, fastai's ``lr_find``, saving plots) is timed as a named
``phase``: it is reported on its own and counted neither in setup nor in throughput or time-to-accuracy.
Interval boundaries take a wall-clock timestamp after synchronising the device. Steps in between get a
device-side mark (``backend.mark``: a CUDA event, a plain timestamp on CPU) so the queue is never drained
mid-epoch, except at the end of a warmup. Warmup comes again after every change of training phase (fastai's
unfreeze), and a steady segment in which a graph compiles is left out and warmed up after (``left_out``): compile
time never lands in steady throughput. After training, ``window`` runs a few more steps of the workload's own loop
for the trackers that measure them (the profile), as the phase "profile".

The meter fills the record's ``timing`` and ``accuracy`` sections and drives the other trackers' hooks
(bench.trackers): steady segments start and end, the window after training.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import statistics
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench.backends import Backend, now
from bench.records import files
from bench.trackers import Tracker

CALIBRATION_STEPS = 2000  # steps of the burst that times the meter's own work per step (``Meter.own_cost``)


@dataclass
class Window:
    """The steps a workload's loop runs after training for the trackers (0: skip the loop)."""

    steps: int
    done_steps: int = 0

    @property
    def done(self) -> bool:
        return self.done_steps >= self.steps


@dataclass
class Meter:
    backend: Backend
    warmup_steps: int
    tta_target: float
    # start of setup; looked up at call time so a test's fake clock applies
    started: float = field(default_factory=lambda: time.perf_counter())
    train_t0: float | None = None  # first training step: the time-to-accuracy clock starts here
    warmup_end: float | None = None
    steps: int = 0
    eval_seconds: float = 0.0
    tta_seconds: float | None = None
    step_times: list[float] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)
    curve_path: Path | None = None  # rewritten after every epoch: a killed cell keeps its finished epochs
    trackers: list[Tracker] = field(default_factory=list)
    # whether this rank's trackers measure training (the writer's do; another rank's work at a segment's boundary
    # would hold up a collective inside the writer's clock): the window after training is every rank's
    measures: bool = True
    accuracy: float | None = None
    phases: dict[str, float] = field(default_factory=dict)  # named phases outside training, in seconds
    loader_samples_per_s: float | None = None
    _phase: str = "train"  # the training phase the current epoch belongs to (fastai: frozen, unfrozen)
    _by_phase: dict[str, list[float]] = field(default_factory=dict)  # phase -> [steady seconds, steady samples]
    _pre_train_phases: float = 0.0  # seconds of named phases before the first training step
    _post_train_phases: list[str] = field(default_factory=list)  # named phases after it (artifacts, profile)
    _window: Window | None = None
    _epoch: dict = field(default_factory=dict)
    _seg_t0: float | None = None  # start of the current steady-state segment
    _seg_samples: int = 0
    _marks: list = field(default_factory=list)  # device marks of the steady steps in this segment
    # graphs compiled so far in this process (bench.trackers.compile.counter); None: nothing compiles here
    compilations: Callable[[], int] | None = None
    left_out: list[dict] = field(default_factory=list)  # steps after the first warmup left out, and why
    compilations_after_warmup: int = 0  # in training steps after the first warmup: each one's segment left out
    _warm_left: int | None = None  # steps of warmup still to run before a steady segment may begin
    _warming: dict | None = None  # the left_out entry the current warmup (after the first) counts its steps in
    _compiled: int = 0  # the compilation count as last read
    _last: object = None  # a tensor the last training step produced, read at a boundary where a backend needs it
    _segment_rates: list[float] = field(default_factory=list)  # samples/s of each steady segment kept
    _steady_count: int = 0  # steps in the steady segments kept (on every backend, where step times are not)

    def __post_init__(self) -> None:
        self._warm_left = self.warmup_steps

    @property
    def _measuring(self) -> list[Tracker]:
        """The trackers whose hooks run in training (time to accuracy, steady segments)."""
        return self.trackers if self.measures else []

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a block of work outside training as its own phase, device synchronised at both ends."""
        t0 = now(self.backend, self._last)
        try:
            yield
        finally:
            seconds = now(self.backend, self._last) - t0
            self.phases[name] = self.phases.get(name, 0.0) + seconds
            if self.train_t0 is None:
                self._pre_train_phases += seconds
            elif name not in self._post_train_phases:
                self._post_train_phases.append(name)
            if self.warmup_end is not None and self._window is None:
                self._warm_again(f"warmup after {name}")  # work between epochs: training warms up again

    def loader_pass(self, loader, device=None) -> float:
        """Loader-only throughput: one pass over ``loader`` with no model, batches moved to ``device``."""
        samples = 0
        with self.phase("loader"):
            for x, y, *_ in loader:
                if device is not None:
                    x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                samples += len(x)
        self.loader_samples_per_s = samples / self.phases["loader"] if self.phases["loader"] else None
        return self.loader_samples_per_s

    def epoch_start(self, phase: str = "train") -> None:
        """Start an epoch of the training phase ``phase`` (per-phase throughput is reported). A phase other than the
        last epoch's is a new computation (fastai's unfreeze changes every parameter's requires_grad: on XLA and in
        the compiled modes a new graph): it warms up again before its steady segment begins."""
        changed, self._phase = self.train_t0 is not None and phase != self._phase, phase
        if changed and self.warmup_end is not None:
            self._warm_again(f"warmup after the phase change to {phase}")
        t = now(self.backend, self._last)
        if self.train_t0 is None:
            self.train_t0 = t
            for tracker in self._measuring:
                tracker.train_start()
        self._epoch = {"t0": t, "samples": 0}
        self._compiled = self._count()  # what evaluation compiled is not the training steps'
        if self._warm_left == 0:
            if self.warmup_end is None:
                self.warmup_end = t
            self._begin_segment()

    def _count(self) -> int:
        return self.compilations() if self.compilations is not None else 0

    def _new_compilations(self) -> int:
        """Graphs compiled since the last look (after the first warmup only: one cheap counter read per step)."""
        if self.compilations is None or self.warmup_end is None:
            return 0
        count = self.compilations()
        new, self._compiled = count - self._compiled, count
        self.compilations_after_warmup += new
        return new

    def _warm_again(self, reason: str) -> None:
        """Warm up again (``warmup_steps`` steps) before the next steady segment; the steps are left out."""
        self._warm_left = self.warmup_steps
        self._warming = {"phase": self._phase, "reason": reason, "steps": 0, "compilations": 0}
        self.left_out.append(self._warming)

    def _begin_segment(self) -> None:
        """A steady segment starts, the device idle (just synchronised): the trackers first, then its clock."""
        for tracker in self._measuring:
            tracker.steady_start()
        self._seg_samples, self._marks = 0, [self.backend.mark()]
        self._seg_t0 = time.perf_counter()

    def step_end(self, samples: int, last=None) -> None:
        """After an optimizer step over ``samples`` samples (global, across devices); ``last``, a tensor the step
        produced (its loss, or a sum of losses), kept by reference (no read) for the next boundary's clock
        (bench.backends.now)."""
        self._last = last
        if self._window is not None:
            self._window.done_steps += 1
            for tracker in self.trackers:
                tracker.window_step()
            return
        self.steps += 1
        self._epoch["samples"] += samples
        new = self._new_compilations()
        if self._seg_t0 is not None:
            if new:
                self._cancel_segment(new)
                return
            self._seg_samples += samples
            self._marks.append(self.backend.mark())
            return
        if self._warming is not None:
            self._warming["steps"] += 1
            self._warming["compilations"] += new
        self._warm_left = max(0, self._warm_left - 1)
        if self._warm_left == 0:
            self._end_warmup()

    def _end_warmup(self) -> None:
        """Warmup (first steps, compilation, allocator growth) ends here, with an empty device queue."""
        t = now(self.backend, self._last)
        if self.warmup_end is None:
            self.warmup_end = t
            self._compiled = self._count()  # what the first warmup compiled is its own
        self._warming = None
        self._begin_segment()

    def _drop_segment(self) -> None:
        """The steady segment under way is left out; the trackers drop what they measured of it."""
        for tracker in self._measuring:
            tracker.steady_cancel()
        self._seg_t0 = None

    def _cancel_segment(self, compilations: int) -> None:
        """A graph compiled in this step of a steady segment: the segment so far, this step included, is left out,
        and training warms up again."""
        self._drop_segment()
        self._warm_again("compilation in a steady segment")
        self._warming.update(steps=len(self._marks), compilations=compilations)  # the segment's steps and this one
        if self._warm_left == 0:  # no warmup asked for: the next segment starts after this step
            self._end_warmup()

    def eval_start(self) -> None:
        t = now(self.backend, self._last)
        self._epoch["train_seconds"] = t - self._epoch["t0"]
        if self._seg_t0 is not None and not self._seg_samples:  # a segment that began at the epoch's last step
            self._drop_segment()
        if self._seg_t0 is not None:
            seconds = t - self._seg_t0
            by_phase = self._by_phase.setdefault(self._phase, [0.0, 0])
            by_phase[0] += seconds
            by_phase[1] += self._seg_samples
            if seconds > 0:
                self._segment_rates.append(self._seg_samples / seconds)
            for tracker in self._measuring:
                tracker.steady_end(self._seg_samples)
            marks = self._marks
            self._steady_count += len(marks) - 1
            between = (self.backend.seconds_between(a, b) for a, b in itertools.pairwise(marks))
            self.step_times += [d for d in between if d is not None]  # None: the device has no step clock
            self._seg_t0 = None
        self._eval_t0 = t

    def eval_end(self, accuracy: float) -> bool:
        """Evaluation finished; returns True the first time ``accuracy`` reaches the target."""
        t = now(self.backend, self._last)
        self.eval_seconds += t - self._eval_t0
        self.accuracy = accuracy
        self._epoch["elapsed"] = t - self.train_t0
        if self.tta_seconds is None and accuracy >= self.tta_target:
            self.tta_seconds = t - self.train_t0
            for tracker in self._measuring:
                tracker.target_reached()
            return True
        return False

    def epoch_end(self, epoch: int, train_loss: float) -> None:
        e = self._epoch
        self.curve.append(
            {
                "epoch": epoch,
                "phase": self._phase,
                "elapsed_seconds": e.get("elapsed"),
                "train_seconds": e.get("train_seconds"),
                "samples": e["samples"],
                "train_loss": train_loss,
                "test_accuracy": self.accuracy,
            }
        )
        if self.curve_path:
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(self.curve[0]))
            writer.writeheader()
            writer.writerows(self.curve)
            files.replace(self.curve_path, text.getvalue())

    @contextlib.contextmanager
    def window(self) -> Iterator[Window]:
        """After training: the workload's own loop runs ``window.steps`` more steps, calling ``step_end`` after each
        and stopping once ``window.done``, while the trackers measure them. Timed as the phase "profile", out of
        throughput and TTA. An error in the loop costs the trackers' measurement, not the cell, whose training
        is already measured."""
        window = Window(max((t.window_steps() for t in self.trackers), default=0))
        if not window.steps:
            yield window
            return
        with self.phase("profile"):
            error = None
            try:
                for tracker in self.trackers:
                    tracker.window_start()
            except Exception as e:  # no window after all: the loop gets zero steps to run
                traceback.print_exc()
                error, window.steps = e, 0
            self._window = window
            try:
                yield window
            except Exception as e:
                traceback.print_exc()
                error = e
            finally:
                self._window = None
                for tracker in self.trackers:
                    tracker.window_end(error)

    def own_cost(self) -> float:
        """Seconds of the meter's own work per steady step (``step_end``'s: the compilation count, the device mark,
        the bookkeeping), timed over a burst of ``CALIBRATION_STEPS`` steps of a meter of the same backend, after
        training: what the harness adds inside every timed step. The trackers add nothing per step."""
        probe = Meter(self.backend, 0, self.tta_target, compilations=self.compilations)
        probe.epoch_start()  # no warmup: a steady segment from the first step
        t0 = time.perf_counter()
        for _ in range(CALIBRATION_STEPS):
            probe.step_end(1)
        return (time.perf_counter() - t0) / CALIBRATION_STEPS

    def sections(self) -> dict[str, dict]:
        """The record's ``timing`` and ``accuracy`` sections."""
        return {"timing": self.timing(), "accuracy": self.accuracy_section()}

    def accuracy_section(self) -> dict:
        return {
            "final_accuracy": self.accuracy,
            "tta_seconds": self.tta_seconds,
            "epochs_run": len(self.curve),
            "curve": self.curve,
        }

    def timing(self) -> dict:
        """Throughput is null when no step ran past warmup."""
        times = sorted(self.step_times)
        end = time.perf_counter()
        warmup = self.warmup_end - self.train_t0 if self.warmup_end is not None and self.train_t0 else None
        setup = (self.train_t0 or end) - self.started - self._pre_train_phases
        before = {k: v for k, v in self.phases.items() if k not in self._post_train_phases}
        phase_seconds = {"setup": setup, **before, "warmup": warmup}
        phase_seconds.update({name: seconds for name, (seconds, _) in self._by_phase.items()})
        phase_seconds["eval"] = self.eval_seconds
        phase_seconds.update({k: self.phases[k] for k in self._post_train_phases})
        steady_seconds = sum(s for s, _ in self._by_phase.values())
        steady_samples = sum(n for _, n in self._by_phase.values())
        rates = self._segment_rates
        left_out = [e for e in self.left_out if e["steps"]]
        p50, p90 = (statistics.median(times), times[math.ceil(0.9 * len(times)) - 1]) if times else (None, None)
        own = self.own_cost() if self._steady_count else None
        step = steady_seconds / self._steady_count if self._steady_count else None
        return {
            "throughput_samples_per_s": steady_samples / steady_seconds if steady_seconds else None,
            "step_time_ms_median": 1000 * p50 if times else None,
            "step_time_ms_p90": 1000 * p90 if times else None,
            # dispersion: a quiet, stable cell has its p90 step close to the median and segments that agree
            "step_time_p90_over_median": p90 / p50 if p50 else None,
            "segment_throughput_cv": statistics.stdev(rates) / statistics.mean(rates) if len(rates) > 1 else None,
            "steady_segments": len(rates),
            "left_out_steps": sum(e["steps"] for e in left_out),
            "left_out": left_out,
            "compilations_after_warmup": self.compilations_after_warmup if self.compilations is not None else None,
            "steady_steps": len(times),
            "steady_samples": steady_samples,
            "warmup_steps_run": min(self.warmup_steps, self.steps),
            "setup_seconds": setup,
            "warmup_seconds": warmup,
            "train_seconds": steady_seconds,
            "eval_seconds": self.eval_seconds,
            "total_seconds": end - self.started,
            "phase_seconds": phase_seconds,
            "phase_throughput": {name: n / s for name, (s, n) in self._by_phase.items() if s},
            "loader_samples_per_s": self.loader_samples_per_s,
            # the harness's own work per step, and its share of the mean steady step (the goal: under 1%)
            "meter_us_per_step": own * 1e6 if own is not None else None,
            "meter_share_of_step": own / step if own is not None and step else None,
        }
