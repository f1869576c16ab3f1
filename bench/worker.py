"""One cell in its own process: ``python -m bench.worker <cell-dir>/cell.json``.

Writes ``result.json`` into the cell's folder (the meter writes ``curve.csv`` there after every epoch);
the runner turns it into a record.
Isolation per process keeps one cell's allocator state, compiled graphs and crashes away from the next.
"""

from __future__ import annotations

import json
import os
import random
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from bench import backends, env, workloads
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


def run_cell(cell: Cell, cell_dir: Path, data_dir: str | None, rank: int = 0) -> dict:
    import numpy as np
    import torch

    backend = backends.get(cell.backend)
    backend.apply_precision(cell.precision)
    random.seed(cell.seed)
    np.random.seed(cell.seed)
    torch.manual_seed(cell.seed)
    backend.reset_peak_memory()
    curve = cell_dir / "curve.csv" if rank == 0 else None  # one rank's file, as one rank's record
    meter = Meter(backend, cell.warmup_steps, cell.tta_target, curve_path=curve)
    ctx = Context(cell, backend, meter, cell_dir, data_dir)
    try:
        result = workloads.get(cell.workload).run(ctx)
    except Exception as e:
        traceback.print_exc()
        result = {"status": "failed", "reason": f"{type(e).__name__}: {e}"}
    effective = result.get("precision_effective")
    if result["status"] == "ok" and effective != cell.precision:
        # Never report a number under a precision that did not run.
        result["status"] = "failed"
        result["reason"] = f"asked for {cell.precision} but the training forward pass ran as {effective}"
    return {
        **result,
        **meter.summary(),
        "epochs_run": len(meter.curve),
        "curve": meter.curve,
        "device_name": backend.device_name(),
        "peak_memory_bytes": backend.peak_memory_bytes(),
        "peak_memory_kind": backend.peak_memory_kind,
        "env": env.collect(backend),
    }


def run_rank(index: int, cell_file: Path) -> None:
    """Run the cell in this process; only global rank 0 of a data-parallel run writes the result.

    ``index`` is torch_xla's global ordinal in the processes that ``backend.spawn`` starts, else 0; the ranks that
    Lightning's DDP launcher starts for CUDA re-run this module with their rank in LOCAL_RANK."""
    rank = index or int(os.environ.get("LOCAL_RANK", "0"))
    cell = Cell.from_json(cell_file.read_text())
    result = run_cell(cell, cell_file.parent, os.environ.get("BENCH_DATA_DIR"), rank)
    if rank == 0:
        _write_json(cell_file.parent / "result.json", result)


def main(argv: list[str] | None = None) -> int:
    cell_file = Path((argv or sys.argv[1:])[0])
    cell = Cell.from_json(cell_file.read_text())
    if cell.backend == "xla" and cell.devices > 1:
        # torch_xla trains data-parallel with one process per device, started before the runtime is touched.
        backends.get("xla").spawn(run_rank, (cell_file,))
    else:
        run_rank(0, cell_file)  # CUDA DDP ranks are started by Lightning, re-running this module per GPU
    return 0


if __name__ == "__main__":
    sys.exit(main())
