"""Step micro-benchmarks (bench.run.micro) on the backend this environment detects: every workload's training step and
forward-only step on a fixed batch already on the device, through the workload's own loop, and its loader's next
batch. ``make bench-micro`` times them with pytest-benchmark and saves the JSON under the results folder; ``make
test`` runs each once (``--benchmark-disable`` in pyproject's addopts) so that they cannot rot.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import torch

from bench import backends, workloads
from bench.plan import suite
from bench.plan import workloads as spec_workloads
from bench.plan.precision import PRECISIONS, Probe
from bench.run import env, micro
from tests.conftest import ROOT, expand

BACKEND = backends.detect()
# Enough images for a few loader epochs' worth of batches; a step's time does not depend on the data set's size.
LIMITS = {"limit_train": 6400, "limit_test": 1000}
WARMUP_STEPS = 10  # first steps, allocator growth, XLA compilation: before the timed rounds, reported apart


def _cell(workload: str, precision: str):
    backend = backends.get(BACKEND)
    if why := backend.unsupported(precision, 1):
        pytest.skip(f"{BACKEND} {precision}: {why}")
    raw = {"backend": BACKEND, "workloads": [workload], "precisions": [precision], "pretrained": False, **LIMITS}
    return expand("micro", suite.validate("micro", raw))[0], backend


@pytest.fixture
def data_dir(benchmark, mnist_dir, session_cache, monkeypatch) -> str:
    """Real MNIST; derived data in the test session's cache unless benchmarking (then the user's, as `bench run`)."""
    if not benchmark.enabled:
        monkeypatch.setenv("BENCH_CACHE_DIR", str(session_cache))
    return str(mnist_dir)


def _steps(workload: str, precision: str, data_dir: str):
    cell, backend = _cell(workload, precision)
    backend.apply_precision(precision)
    torch.manual_seed(cell.seed)
    return cell, backend, workloads.load(workload).steps(cell, backend, data_dir)


def _info(benchmark, kind: str, cell, backend, samples: int, **extra) -> None:
    """The record's keys, so that the report can put a micro-benchmark next to the cell it explains."""
    environment = env.collect(backend)
    benchmark.extra_info.update(
        kind=kind,
        workload=cell.workload,
        framework=spec_workloads.get(cell.workload).framework,
        backend=cell.backend,
        device_name=backend.device_name(),
        device_count=1,
        host=environment["host"],
        batch_size=cell.batch_size,
        samples_per_call=samples,
        num_workers=cell.num_workers,
        **extra,
        env=environment,
    )


def _loop(benchmark, kind: str, workload: str, precision: str, data_dir: str, per_call: int = 1) -> None:
    cell, backend, steps = _steps(workload, precision, data_dir)
    probe = Probe(steps.probe_layer)
    warmup = WARMUP_STEPS if benchmark.enabled else 2  # Lightning's first step only fetches (see micro.Feed)
    seen = {}

    def measure(feed: micro.Feed) -> None:
        # This thread never touches the device while the loop may be running (an XLA sync here would race the
        # loop's tracing): between steps the loop waits inside the feed, with its device work finished.
        t0 = time.perf_counter()
        for _ in range(warmup):
            feed.step()
        seen["warmup_seconds"], seen["compile_warm"] = time.perf_counter() - t0, backend.compile_stats()
        benchmark(feed.step)

    loop = steps.eval if kind == "eval" else steps.train
    backends.now(backend)  # the set-up's device work is done before the warmup clock starts
    start = backend.compile_stats()
    micro.drive(loop, micro.Feed(steps.batch, backend.synchronize, per_call), measure)
    compiles = [(s or {}).get("compilations") for s in (start, seen["compile_warm"])]
    end = (backend.compile_stats() or {}).get("compilations")
    _info(
        benchmark,
        kind,
        cell,
        backend,
        len(steps.batch[0]) * per_call,
        precision=precision,
        precision_effective=probe.effective(),
        steps_per_call=per_call,
        flops_per_step=steps.flops_per_step if kind != "eval" else None,
        warmup_steps=warmup,
        warmup_seconds=seen["warmup_seconds"],
        compilations_warmup=None if end is None else compiles[1] - compiles[0],
        compilations_timed=None if end is None else end - compiles[1],
    )
    assert probe.effective() == precision, f"asked for {precision}, the forward pass ran as {probe.effective()}"
    assert steps.flops_per_step > 0


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("workload", list(spec_workloads.WORKLOADS))
def test_train_step(benchmark, workload, precision, data_dir):
    """Forward, loss, backward and optimizer step on a fixed batch, inside the workload's own training loop."""
    _loop(benchmark, "train", workload, precision, data_dir)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("workload", list(spec_workloads.WORKLOADS))
def test_train_pipelined(benchmark, workload, precision, data_dir):
    """``micro.PIPELINED`` training steps between two synchronisations: the host queues steps while the device runs
    earlier ones, so on an accelerator this is above the synchronised step's rate (on a CPU, the same)."""
    if not benchmark.enabled and (precision != "fp32" or BACKEND == "xla"):
        # untimed, the path is the feed's, the same on every backend; each precision's step runs in test_train_step
        pytest.skip("untimed (make test): the pipelined path runs at fp32 on the CPU or GPU only")
    per_call = micro.PIPELINED if benchmark.enabled else 2  # make test: the path, not the figure
    _loop(benchmark, "train-pipelined", workload, precision, data_dir, per_call=per_call)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("workload", list(spec_workloads.WORKLOADS))
def test_eval_step(benchmark, workload, precision, data_dir):
    """A forward-only step on a fixed batch, inside the workload's own evaluation loop."""
    _loop(benchmark, "eval", workload, precision, data_dir)


@pytest.mark.parametrize("workload", list(spec_workloads.WORKLOADS))
def test_loader(benchmark, workload, data_dir):
    """The next batch of the workload's real training DataLoader, moved to the device: the input pipeline alone."""
    cell, backend, steps = _steps(workload, "fp32", data_dir)
    step = micro.loader_step(steps.loader, backend.torch_device(), backend.synchronize)
    for _ in range(WARMUP_STEPS if benchmark.enabled else 1):
        step()
    samples = benchmark(step)
    _info(benchmark, "loader", cell, backend, samples, precision=None)
    assert samples == cell.batch_size


def test_feed_hands_one_batch_per_step_and_errors_end_both_sides():
    batch, seen = (torch.ones(2), torch.zeros(2)), []

    def loop(batches):
        for b in batches:  # not list(batches): the feed's length is sys.maxsize
            seen.append(b)

    micro.drive(loop, micro.Feed(batch, lambda: None), lambda f: [f.step() for _ in range(3)])
    assert len(seen) == 3 and seen[0] is batch

    seen.clear()
    syncs = []
    micro.drive(loop, micro.Feed(batch, lambda: syncs.append(len(seen)), 4), lambda f: [f.step() for _ in range(3)])
    assert len(seen) == 12 and syncs == [4, 8, 12]  # pipelined: one synchronisation per 4 steps

    def failing_loop(batches):
        next(iter(batches))
        raise ZeroDivisionError("the loop failed")

    with pytest.raises(ZeroDivisionError):  # the measuring side is released, not left waiting for a step
        micro.drive(failing_loop, micro.Feed(batch, lambda: None), lambda f: [f.step() for _ in range(3)])

    def failing_measure(feed):
        raise KeyError("the benchmark failed")

    with pytest.raises(KeyError):  # the loop is stopped, not left waiting for a batch
        micro.drive(loop, micro.Feed(batch, lambda: None), failing_measure)


# A step whose duration the test sets: the comparison's threshold is what is tested, so the step must be steady.
SLEEP_STEP = """
import os, time

def test_step(benchmark):
    benchmark(time.sleep, float(os.environ["STEP_SECONDS"]))
"""


def test_bench_compare_passes_then_fails_on_a_slowed_step(tmp_path):
    (tmp_path / "test_step.py").write_text(SLEEP_STEP)

    def make(target: str, seconds: float) -> subprocess.CompletedProcess:
        args = ["make", "--no-print-directory", target, f"RESULTS={tmp_path}", f"MICRO_TESTS={tmp_path}/test_step.py",
                "MICRO_ARGS=--benchmark-max-time=0.3"]  # fmt: skip
        # not an xdist worker's environment: pytest-benchmark would disable itself in the child
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")} | {"STEP_SECONDS": str(seconds)}
        return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)

    first = make("bench-compare", 0.02)  # nothing saved before: these runs become the baseline
    assert first.returncode == 0 and "the baseline of the next comparison" in first.stdout, first.stdout + first.stderr
    assert len(list((tmp_path / "micro").rglob("000[1-3]_*.json"))) == 3
    same = make("bench-compare", 0.02)  # three runs against the three saved before
    assert same.returncode == 0, same.stdout + same.stderr
    assert "runs 0001, 0002, 0003; new: runs 0004, 0005, 0006" in same.stdout
    # three times slower than the three runs before: a 50% slowdown (once asked here) went unflagged once in CI, under
    # the load of the tests beside it
    slowed = make("bench-compare", 0.06)
    assert slowed.returncode != 0, slowed.stdout + slowed.stderr
    assert "Performance has regressed" in slowed.stderr and "SLOWER by more than 10%" in slowed.stdout
