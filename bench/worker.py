"""One cell in its own process: ``python -m bench.worker <cell-dir>/cell.json`` (a bench.job.Job).

Assembles the cell's record once: the workload's own fields (``outcome``), the meter's timing and accuracy,
and a section from every tracker (bench.trackers); writes it as ``result.json`` into the cell's folder (the meter
writes ``curve.csv`` there after every epoch). The runner adds only what it alone knows (the process, its end).
Isolation per process keeps one cell's allocator state, compiled graphs and crashes away from the next.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench import adapters, backends, trackers, workloads
from bench.job import Job
from bench.meter import Meter
from bench.suite import Cell


@dataclass
class Context:
    cell: Cell
    backend: backends.Backend
    meter: Meter
    cell_dir: Path
    data_dir: str | None


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, default=str, indent=1))
    os.replace(tmp, path)


def run_cell(job: Job, cell_dir: Path, rank: int = 0) -> dict:
    """Train the cell here and return its worker sections: status, reason, outcome (the workload's own fields),
    timing, accuracy and one section per tracker."""
    import numpy as np
    import torch

    cell = job.cell
    backend = backends.get(cell.backend)
    backend.apply_precision(cell.precision)
    random.seed(cell.seed)
    np.random.seed(cell.seed)
    torch.manual_seed(cell.seed)
    tracking = trackers.create(job, backend, cell_dir)
    for tracker in tracking:
        tracker.start()
    curve = cell_dir / "curve.csv" if rank == 0 else None  # one rank's file, as one rank's record
    meter = Meter(backend, cell.warmup_steps, cell.tta_target, curve_path=curve, trackers=tracking)
    ctx = Context(cell, backend, meter, cell_dir, job.data_dir)
    try:
        result = workloads.get(cell.workload).run(ctx)
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


def run_rank(index: int, cell_file: Path) -> None:
    """Run the cell in this process; only global rank 0 of a data-parallel run writes the result.

    ``index`` is torch_xla's global ordinal in the processes that ``backend.spawn`` starts, else 0; the ranks that
    Lightning's DDP launcher starts for CUDA re-run this module with their rank in LOCAL_RANK (Lightning's contract,
    as torchrun's)."""
    rank = index or int(os.environ.get("LOCAL_RANK", "0"))
    job = Job.from_json(cell_file.read_text())
    result = run_cell(job, cell_file.parent, rank)
    if rank == 0:
        _write_json(cell_file.parent / "result.json", result)


def main(argv: list[str] | None = None) -> int:
    cell_file = Path((argv or sys.argv[1:])[0])
    cell = Job.from_json(cell_file.read_text()).cell
    if cell.backend == "xla" and cell.devices > 1:
        # torch_xla trains data-parallel with one process per device, started before the runtime is touched.
        backends.get("xla").spawn(run_rank, (cell_file,))
    elif cell.mode in adapters.COMPILED and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        # A cold compile cache of the cell's own: compile seconds are what a first run costs, alike in every repeat.
        # A cache the user names (TORCHINDUCTOR_CACHE_DIR) is used as it is; the record's cache hits say so.
        with tempfile.TemporaryDirectory(prefix="inductor-") as cache:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache
            run_rank(0, cell_file)
    else:
        run_rank(0, cell_file)  # CUDA DDP ranks are started by Lightning, re-running this module per GPU
    return 0


if __name__ == "__main__":
    sys.exit(main())
