"""The measurement rules: warmup and evaluation out of throughput, one clock for time-to-accuracy."""

from __future__ import annotations

import pytest

from bench import backends, meter


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
    s = m.summary()
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
    s = m.summary()
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
    s = m.summary()
    assert s["step_time_ms_median"] == pytest.approx(10.0)
    assert s["step_time_ms_p90"] == pytest.approx(20.0)


def test_device_is_synchronised_at_boundaries_only(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=3, tta_target=1.0)
    train(m, clock, epochs=1, steps=100, step_s=0.01, eval_s=0.1, accs=[0.5])
    # epoch start, end of warmup, eval start, eval end: never once per step.
    assert clock.syncs == 4


def test_no_steady_steps_gives_null_throughput(clock):
    m = meter.Meter(FakeDevice(clock), warmup_steps=50, tta_target=1.0)
    train(m, clock, epochs=1, steps=10, step_s=0.01, eval_s=0.1, accs=[0.5])
    assert m.summary()["throughput_samples_per_s"] is None


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
    s = m.summary()
    assert s["setup_seconds"] == pytest.approx(1.0)  # the loader pass and lr_find are phases of their own
    assert s["tta_seconds"] == pytest.approx(0.4 + 1.0)
    assert s["phase_seconds"] == pytest.approx(
        {"setup": 1.0, "loader": 5.0, "lr_find": 7.0, "artifacts": 3.0, "warmup": 0.0, "frozen": 0.4,
         "unfrozen": 0.8, "eval": 1.0}
    )  # fmt: skip
    assert s["phase_throughput"] == pytest.approx({"frozen": 640.0, "unfrozen": 320.0})
    assert s["throughput_samples_per_s"] == pytest.approx(512 / 1.2)
    assert [c["phase"] for c in m.curve] == ["frozen", "unfrozen"]
