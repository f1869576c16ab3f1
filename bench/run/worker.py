"""One cell in its own process, the child side of the runner's ``launch_cell``: ``python -m bench.run.worker
<cell-dir>/cell.json`` (a bench.plan.job.Job).

Assembles the cell's record once: the workload's own fields (``outcome``), the meter's timing and accuracy,
and a section from every tracker (bench.trackers); writes it as ``result.json`` into the cell's folder (the meter
writes ``curve.csv`` there after every epoch). The runner adds only what it alone knows (the process, its end).
Isolation per process keeps one cell's allocator state, compiled graphs and crashes away from the next.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench import backends, trackers, workloads
from bench.plan.cell import Cell
from bench.plan.job import Job
from bench.plan.launcher import inside_torchrun
from bench.records import files
from bench.run import adapters, ddp, launchers, process
from bench.run.meter import Meter
from bench.trackers import compile as compile_tracker
from bench.trackers import contention


@dataclass
class Context:
    cell: Cell
    backend: backends.Backend
    meter: Meter
    cell_dir: Path
    data_dir: str | None
    world: ddp.World  # this rank's place in a data-parallel cell (a world of one otherwise)


def train_cell(job: Job, cell_dir: Path, writer: bool = True) -> dict:
    """Train the cell here and return its worker sections: status, reason, outcome (the workload's own fields),
    timing, accuracy and one section per tracker. The ``writer`` (one rank of a cell) keeps the per-epoch curve."""
    import numpy as np
    import torch
    import torch._dynamo  # torch imports it with the first optimizer: 1 s that is not the cell's setup

    cell = job.cell
    world = ddp.world()
    backend = backends.get(cell.backend)
    ddp.init(backend, world)  # before anything touches the device: a CUDA rank takes its own GPU first
    backend.apply_precision(cell.precision)
    random.seed(cell.seed)
    np.random.seed(cell.seed)
    torch.manual_seed(cell.seed)
    tracking = trackers.create(job, backend, cell_dir)
    for tracker in tracking:
        tracker.start()
    ddp.barrier(world)  # no rank trains before every rank's trackers are set up
    curve = cell_dir / "curve.csv" if writer else None  # one rank's file, as one rank's record
    compilations = compile_tracker.counter(cell, backend)
    # in training only the writer's trackers measure (Meter.measures): its record is the cell's
    meter = Meter(backend, cell.warmup_steps, cell.tta_target, curve_path=curve, trackers=tracking,
                  compilations=compilations, measures=writer)  # fmt: skip
    ctx = Context(cell, backend, meter, cell_dir, job.data_dir, world)
    try:
        result = workloads.load(cell.workload).run(ctx)
    except Exception as e:
        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    status, reason = result.pop("status"), result.pop("reason", None)
    effective = result.get("precision_effective")
    if status == "ok" and effective != cell.precision:
        # Never report a number under a precision that did not run.
        status, reason = "failed", f"asked for {cell.precision} but the training forward pass ran as {effective}"
    return {
        "status": status,
        "reason": reason,
        "outcome": result,
        **meter.sections(),
        **{t.SECTION: t.section() for t in tracking},
    }


def train_rank(index: int, cell_file: Path, writer: bool | None = None) -> None:
    """Train the cell in this process, as one rank of it (the whole of it in one process). The writer (global rank 0,
    unless ``backend.spawn`` names another) writes the cell's result; every other rank keeps its files, its result
    included, in a folder of its own (bench.run.launchers.rank_dir).

    ``index`` is torch_xla's global ordinal in the processes that ``backend.spawn`` starts, else 0; the ranks that
    torchrun starts (bench.run.launchers) have theirs in RANK. A torchrun rank that failed exits 1, so that torchrun
    names it and stops the others; a rank of backend.spawn's pool stops them itself (``end_pool``)."""
    world = ddp.world()
    rank = index or world.rank
    spawned = writer is not None  # a rank of backend.spawn's pool
    writer = rank == 0 if writer is None else writer
    job = Job.from_json(cell_file.read_text())
    cell_dir = cell_file.parent if writer else launchers.rank_dir(cell_file.parent, rank)
    files.folder(cell_dir)
    result = train_cell(job, cell_dir, writer)
    launchers.write_result(cell_dir / "result.json", result)
    if result["status"] != "failed" or not (spawned or inside_torchrun()):
        return
    print(f"rank {rank}: {result['reason']}", file=sys.stderr, flush=True)
    if inside_torchrun():
        sys.exit(1)
    if spawned:
        end_pool(cell_file.parent, rank, result)


def end_pool(cell_dir: Path, rank: int, result: dict) -> None:
    """A failed rank of ``backend.spawn``'s pool ends it: torch_xla's spawn waits for every rank, and the others
    wait in their next collective for this one until the cell's timeout, which would be recorded instead of this
    reason. The cell's result names the first rank that failed (never replaced: the writer's own, or an earlier
    rank's, stays); then the worker's process group (the worker and every rank of this host) is terminated, and the
    runner records that result."""
    launchers.write_first(cell_dir / "result.json", {**result, "reason": f"rank {rank}: {result['reason']}"})
    os.killpg(0, signal.SIGTERM)


def main(argv: list[str] | None = None) -> int:
    cell_file = Path((argv or sys.argv[1:])[0])
    # the root of the cell's process tree, for what measures the rest of the machine (bench.trackers.contention);
    # the ranks that torchrun and torch_xla start below it inherit it
    os.environ.setdefault(contention.ROOT_VAR, str(os.getpid()))
    job = Job.from_json(cell_file.read_text())
    launcher = launchers.of(job.cell)
    if job.cell.mode in adapters.COMPILED and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A cold compile cache of the cell's own: compile seconds are what a first run costs, alike in every repeat.
        # A cache the user names (TORCHINDUCTOR_CACHE_DIR) is used as it is; the record's cache hits say so. The
        # ranks of a data-parallel cell inherit the launcher's.
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            return launcher.run(job, cell_file, train_rank)
    return launcher.run(job, cell_file, train_rank)


if __name__ == "__main__":
    process.run(main)
