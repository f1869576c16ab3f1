"""The measurement rules: warmup and evaluation out of throughput, one clock for time-to-accuracy."""

from __future__ import annotations

import statistics

import pytest

from bench import backends, trackers
from bench.run import meter


class Clock:
    def __init__(self) -> None:
        self.t = 100.0
        self.syncs = 0

    def __call__(self) -> float:
        return self.t


class FakeDevice:
    """A backend whose clock the test moves; counts synchronisations."""

    name = "fake"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def synchronize(self) -> None:
        self.clock.syncs += 1

    def mark(self) -> float:
        return self.clock.t

    def seconds_between(self, a: float, b: float) -> float:
        return b - a

    def compile_stats(self) -> None:
        return None


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(meter.time, "perf_counter", c)
    monkeypatch.setattr(backends.time, "perf_counter", c)
    return c


def summary(m: meter.Meter) -> dict:
    sections = m.sections()
    return {**sections["timing"], **sections["accuracy"]}


def train(m: meter.Meter, clock: Clock, epochs: int, steps: int, step_s: float, eval_s: float, accs) -> None:
    for epoch in range(epochs):
        m.epoch_start()
        for _ in range(steps):
            clock.t += step_s
            m.step_end(32)
        m.eval_start()
        clock.t += eval_s
        m.eval_end(accs[epoch])
        m.epoch_end(epoch, 0.1)


def test_warmup_and_eval_are_excluded_from_throughput(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=5, tta_target=0.99)
    clock.t += 2.0  # setup
    m.epoch_start()
    for i in range(10):
        clock.t += 1.0 if i < 5 else 0.1  # slow warmup steps, then steady ones
        m.step_end(32)
    m.eval_start()
    clock.t += 3.0
    m.eval_end(0.5)
    m.epoch_end(0, 1.0)
    s = summary(m)
    assert s["setup_seconds"] == pytest.approx(2.0)
    assert s["warmup_seconds"] == pytest.approx(5.0)
    assert s["steady_steps"] == 5
    assert s["throughput_samples_per_s"] == pytest.approx(5 * 32 / 0.5)
    assert s["step_time_ms_median"] == pytest.approx(100.0)
    assert s["eval_seconds"] == pytest.approx(3.0)
    assert s["tta_seconds"] is None


def test_time_to_accuracy_counts_training_and_evaluation(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=0.99)
    train(m, clock, epochs=3, steps=10, step_s=0.5, eval_s=1.0, accs=[0.98, 0.991, 0.995])
    s = summary(m)
    assert s["tta_seconds"] == pytest.approx(2 * (10 * 0.5 + 1.0))  # first evaluation at or above target
    assert s["throughput_samples_per_s"] == pytest.approx(32 / 0.5)
    assert [c["test_accuracy"] for c in m.curve] == [0.98, 0.991, 0.995]
    assert m.curve[1]["elapsed_seconds"] == pytest.approx(12.0)
    assert m.curve[0]["train_seconds"] == pytest.approx(5.0)


def test_step_time_percentiles(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=1.0)
    m.epoch_start()
    for ms in [10] * 8 + [20, 30]:
        clock.t += ms / 1000
        m.step_end(32)
    m.eval_start()
    m.eval_end(0.0)
    s = summary(m)
    assert s["step_time_ms_median"] == pytest.approx(10.0)
    assert s["step_time_ms_p90"] == pytest.approx(20.0)


def test_device_is_synchronised_at_boundaries_only(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=3, tta_target=1.0)
    train(m, clock, epochs=1, steps=100, step_s=0.01, eval_s=0.1, accs=[0.5])
    # epoch start, end of warmup, eval start, eval end: never once per step.
    assert clock.syncs == 4


def test_a_boundary_reads_the_last_steps_value_after_synchronising_where_the_backend_asks(clock):
    """TorchTPU's synchronize may return before a step's compute has run (bench.backends.torchtpu.read_back): each
    boundary after a training step reads that step's value on the host, after synchronising, never between steps."""
    reads = []

    class Reading(FakeDevice):
        def read_back(self, last) -> None:
            reads.append((self.clock.syncs, last))

    m = meter.Meter(Reading(clock), warmup_steps=2, tta_target=1.0)
    m.epoch_start()  # no step yet: nothing to read
    for i in range(5):
        clock.t += 0.01
        m.step_end(32, f"loss {i}")
    m.eval_start()
    m.eval_end(0.5)
    # the end of warmup (after step 2), eval start and eval end, each after its synchronisation
    assert reads == [(2, "loss 1"), (3, "loss 4"), (4, "loss 4")]
    assert clock.syncs == 4


def test_no_steady_steps_gives_null_throughput(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=50, tta_target=1.0)
    train(m, clock, epochs=1, steps=10, step_s=0.01, eval_s=0.1, accs=[0.5])
    assert summary(m)["throughput_samples_per_s"] is None


def test_curve_file_is_written_after_every_epoch(clock, tmp_path):
    path = tmp_path / "curve.csv"
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=1.0, curve_path=path)
    train(m, clock, epochs=1, steps=3, step_s=0.1, eval_s=0.1, accs=[0.5])
    header = "epoch,phase,elapsed_seconds,train_seconds,samples,train_loss,test_accuracy"
    assert path.read_text().splitlines()[0] == header
    train(m, clock, epochs=2, steps=3, step_s=0.1, eval_s=0.1, accs=[0.6, 0.7])
    assert len(path.read_text().splitlines()) == 1 + 3


class Loader:
    """Batches that take the clock forward as they are produced, like decoding does."""

    def __init__(self, clock: Clock, batches: int, seconds: float) -> None:
        self.clock, self.batches, self.seconds = clock, batches, seconds

    def __iter__(self):
        for _ in range(self.batches):
            self.clock.t += self.seconds
            yield [0] * 64, [0] * 64


def test_named_phases_are_out_of_setup_throughput_and_tta(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=0.5)
    clock.t += 1.0  # setup
    assert m.loader_pass(Loader(clock, batches=10, seconds=0.5)) == pytest.approx(640 / 5.0)
    with m.phase("lr_find"):
        clock.t += 7.0
    m.epoch_start("frozen")
    for _ in range(4):
        clock.t += 0.1
        m.step_end(64)
    m.eval_start()
    clock.t += 1.0
    m.eval_end(0.6)
    m.epoch_end(0, 0.2)
    m.epoch_start("unfrozen")
    for _ in range(4):
        clock.t += 0.2
        m.step_end(64)
    m.eval_start()
    m.eval_end(0.7)
    m.epoch_end(1, 0.1)
    with m.phase("artifacts"):
        clock.t += 3.0
    s = summary(m)
    assert s["setup_seconds"] == pytest.approx(1.0)  # the loader pass and lr_find are phases of their own
    assert s["tta_seconds"] == pytest.approx(0.4 + 1.0)
    assert s["phase_seconds"] == pytest.approx(
        {"setup": 1.0, "loader": 5.0, "lr_find": 7.0, "artifacts": 3.0, "warmup": 0.0, "frozen": 0.4,
         "unfrozen": 0.8, "eval": 1.0}
    )  # fmt: skip
    assert s["phase_throughput"] == pytest.approx({"frozen": 640.0, "unfrozen": 320.0})
    assert s["throughput_samples_per_s"] == pytest.approx(512 / 1.2)
    assert [c["phase"] for c in m.curve] == ["frozen", "unfrozen"]


class Hooks(trackers.Tracker):
    """A tracker that logs the lifecycle events it gets and wants a window of 3 steps."""

    SECTION = "hooks"

    def __init__(self, clock: Clock) -> None:
        self.clock, self.events = clock, []

    def steady_start(self) -> None:
        self.events.append(("steady_start", self.clock.t))

    def steady_end(self, samples: int) -> None:
        self.events.append(("steady_end", self.clock.t))

    def window_steps(self) -> int:
        return 3

    def window_start(self) -> None:
        self.events.append(("window_start", self.clock.t))

    def window_step(self) -> None:
        self.events.append(("window_step", self.clock.t))

    def window_end(self, error) -> None:
        self.events.append(("window_end", repr(error) if error else None))


def test_trackers_get_the_steady_segments_and_a_window_outside_throughput_and_tta(clock):
    hooks = Hooks(clock)
    m = meter.Meter(FakeDevice(clock), warmup_steps=2, tta_target=0.5, trackers=[hooks])
    train(m, clock, epochs=1, steps=4, step_s=0.5, eval_s=1.0, accs=[0.6])
    before = summary(m)
    with m.window() as window:
        while not window.done:
            clock.t += 10.0  # slow profiled steps
            m.step_end(32)
    s = summary(m)
    assert window.done_steps == 3 and s["phase_seconds"]["profile"] == pytest.approx(30.0)
    assert s["throughput_samples_per_s"] == before["throughput_samples_per_s"] == pytest.approx(64.0)
    assert s["tta_seconds"] == before["tta_seconds"] and s["steady_steps"] == 2
    assert list(s["phase_seconds"])[-1] == "profile"  # after training's phases, in the order they ran
    names = [e for e, _ in hooks.events]
    assert names == ["steady_start", "steady_end", "window_start", "window_step", "window_step", "window_step",
                     "window_end"]  # fmt: skip


def test_an_error_in_the_window_costs_the_trackers_measurement_not_the_cell(clock):
    hooks = Hooks(clock)
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=0.5, trackers=[hooks])
    train(m, clock, epochs=1, steps=2, step_s=0.5, eval_s=1.0, accs=[0.6])
    with m.window():
        m.step_end(32)
        raise RuntimeError("loader broke")
    assert hooks.events[-1] == ("window_end", "RuntimeError('loader broke')")
    assert summary(m)["final_accuracy"] == 0.6


def test_no_tracker_wanting_a_window_runs_no_window_steps(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=0.5)
    with m.window() as window:
        assert window.steps == 0 and window.done
    assert "profile" not in summary(m)["phase_seconds"]


class BrokenStart(Hooks):
    def window_start(self) -> None:
        raise OSError("no profiler here")


def test_a_tracker_failing_to_start_its_window_runs_no_steps(clock):
    broken = BrokenStart(clock)
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=0.5, trackers=[broken])
    with m.window() as window:
        assert window.done  # the loop runs nothing
    assert broken.events[-1] == ("window_end", "OSError('no profiler here')")


def steps(m: meter.Meter, clock: Clock, seconds: list[float], samples: int = 32) -> None:
    for s in seconds:
        clock.t += s
        m.step_end(samples)


def epoch(m: meter.Meter, clock: Clock, seconds: list[float], phase: str = "train", acc: float = 0.5) -> None:
    m.epoch_start(phase)
    steps(m, clock, seconds)
    m.eval_start()
    clock.t += 1.0
    m.eval_end(acc)
    m.epoch_end(len(m.curve), 0.1)


def test_a_phase_change_warms_up_again_before_its_steady_segment(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=2, tta_target=1.0)
    epoch(m, clock, [1.0, 1.0, 0.1, 0.1, 0.1, 0.1], "frozen")
    # the unfrozen phase compiles anew (XLA, torch.compile) or settles: its first steps are slow
    epoch(m, clock, [3.0, 2.0, 0.2, 0.2, 0.2, 0.2], "unfrozen")
    s = summary(m)
    assert s["phase_throughput"] == pytest.approx({"frozen": 320.0, "unfrozen": 160.0})  # warmup never inside
    assert s["left_out"] == [
        {"phase": "unfrozen", "reason": "warmup after the phase change to unfrozen", "steps": 2, "compilations": 0}
    ]
    assert s["left_out_steps"] == 2 and s["steady_segments"] == 2
    assert s["warmup_seconds"] == pytest.approx(2.0) and s["compilations_after_warmup"] is None


class Events(Hooks):
    def steady_cancel(self) -> None:
        self.events.append(("steady_cancel", self.clock.t))


def test_a_segment_in_which_a_graph_compiles_is_left_out_and_warmed_up_after(clock):
    graphs = [0]
    events = Events(clock)
    m = meter.Meter(FakeDevice(clock), warmup_steps=1, tta_target=1.0, trackers=[events],
                    compilations=lambda: graphs[0])  # fmt: skip
    m.epoch_start()
    graphs[0] = 1  # the first step compiles: warmup, as it should
    steps(m, clock, [5.0, 0.1, 0.1])  # warmup, then a steady segment of two steps
    graphs[0] = 2  # a recompilation (a new shape, a guard that failed) in the next step
    steps(m, clock, [4.0, 0.5, 0.1, 0.1])  # it, one step of warmup again, then a new segment
    m.eval_start()
    graphs[0] = 5  # evaluation compiles its own graphs: not the training steps'
    m.eval_end(0.5)
    m.epoch_end(0, 0.1)
    epoch(m, clock, [0.1, 0.1])
    s = summary(m)
    assert s["left_out"] == [{"phase": "train", "reason": "compilation in a steady segment", "steps": 4,
                              "compilations": 1}]  # fmt: skip
    assert s["compilations_after_warmup"] == 1 and s["steady_segments"] == 2
    assert s["throughput_samples_per_s"] == pytest.approx(32 / 0.1)  # neither the 4 s nor the rewarm
    assert s["steady_steps"] == 4
    assert [e for e, _ in events.events] == ["steady_start", "steady_cancel", "steady_start", "steady_end",
                                             "steady_start", "steady_end"]  # fmt: skip


def test_without_warmup_a_compilation_starts_the_next_segment_after_its_step(clock):
    graphs = [0]
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=1.0, compilations=lambda: graphs[0])
    m.epoch_start()
    steps(m, clock, [0.1, 0.1])
    graphs[0] = 1
    steps(m, clock, [3.0, 0.1, 0.1])
    m.eval_start()
    s = summary(m)
    assert s["left_out_steps"] == 3 and s["throughput_samples_per_s"] == pytest.approx(320.0)


def test_dispersion_of_steps_and_segments(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=0, tta_target=1.0)
    epoch(m, clock, [0.1] * 10)
    epoch(m, clock, [0.1] * 7 + [0.3] * 3)
    s = summary(m)
    assert s["step_time_p90_over_median"] == pytest.approx(3.0)  # p90 0.3 s over the median 0.1 s
    rates = [320 / 1.0, 320 / 1.6]
    assert s["segment_throughput_cv"] == pytest.approx(statistics.stdev(rates) / statistics.mean(rates))


def test_a_segment_that_warmup_ends_at_the_epochs_last_step_is_no_segment(clock):
    events = Events(clock)
    m = meter.Meter(FakeDevice(clock), warmup_steps=2, tta_target=1.0, trackers=[events])
    epoch(m, clock, [1.0, 1.0])
    s = summary(m)
    assert s["steady_segments"] == 0 and s["phase_throughput"] == {} and s["throughput_samples_per_s"] is None
    assert [e for e, _ in events.events] == ["steady_start", "steady_cancel"]


def test_the_meters_own_work_per_step_is_measured_and_set_against_the_step():
    """The harness's cost inside every timed step (the device mark, the compilation count, the bookkeeping), timed
    in a burst after training on the real clock: recorded per step and as a share of the mean steady step."""
    m = meter.Meter(backends.get("cpu"), warmup_steps=2, tta_target=0.5)
    m.epoch_start()
    for _ in range(50):
        sum(range(20_000))  # a step of about a millisecond
        m.step_end(32)
    m.eval_start()
    m.eval_end(0.9)
    m.epoch_end(0, 0.1)
    t = m.sections()["timing"]
    assert 0 < t["meter_us_per_step"] < 100 and t["steady_steps"] == 48
    assert t["meter_share_of_step"] == pytest.approx(t["meter_us_per_step"] / 1e6 / (t["train_seconds"] / 48))
    assert t["meter_share_of_step"] < 0.01  # the goal on every backend
