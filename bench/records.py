"""Records: one JSON object per line per cell × repeat in ``<results>/<run-id>/records.jsonl``.

Each line goes to the file in a single ``write`` on an O_APPEND descriptor and is fsynced, so a killed
process leaves at most one torn last line; readers skip it with a warning, and the next writer cuts it off.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

SCHEMA_VERSION = 2  # 2: phases, loader-only throughput, weights, lr_found, artifacts
STATUSES = ("ok", "unsupported", "failed", "timeout", "diverged")
FAILED = ("failed", "timeout", "diverged")
FIELDS = (
    "schema_version",
    "run_id",
    "cell_id",
    "fingerprint",
    "workload",
    "framework",
    "backend",
    "device_name",
    "device_count",
    "precision",
    "precision_effective",
    "precision_evidence",  # dtypes seen in the first training forward pass
    "status",
    "reason",
    "repeat",
    "seed",
    "batch_size",
    "lr",  # the setting: a number, or "find"
    "lr_found",  # the learning-rate finder's suggestion, where the workload runs one
    "lr_used",
    "num_workers",
    "pretrained",
    "weights",  # the starting weights: random initialisation, or the file used and its checksum
    "global_batch_size",
    "epochs",
    "epochs_run",
    "limit_train",
    "limit_test",
    "train_samples",
    "test_samples",
    "throughput_samples_per_s",
    "phase_throughput",  # steady-state samples/s per training phase (fastai: frozen, unfrozen)
    "loader_samples_per_s",  # one pass of the training loader with no model: the input pipeline's ceiling
    "step_time_ms_median",
    "step_time_ms_p90",
    "steady_steps",
    "warmup_steps",
    "final_accuracy",
    "tta_target",
    "tta_seconds",
    "stop_at_target",
    "setup_seconds",
    "warmup_seconds",
    "train_seconds",
    "eval_seconds",
    "total_seconds",
    "phase_seconds",  # setup, loader, lr_find, warmup, training phases, eval, artifacts
    "process_seconds",
    "compilations",  # XLA graph compilations in the cell (null where nothing is compiled)
    "compile_seconds",
    "compilations_after_warmup",  # compilations inside steady-state training (in its time): a report warning
    "peak_memory_bytes",
    "peak_memory_kind",
    "curve",
    "artifacts",  # files in the cell's folder worth looking at, relative to the run folder
    "started_at",
    "env",
)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def repair(path: Path) -> None:
    """Cut a torn last line (left by a killed writer) so that the next append starts on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    keep = data.rfind(b"\n") + 1
    warn(f"{path}: dropping a torn last line ({len(data) - keep} bytes) left by an interrupted run")
    with open(path, "r+b") as f:
        f.truncate(keep)


def append(path: Path, record: dict) -> None:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"record lacks fields {missing}")
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, default=str) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path} ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> list[dict]:
    """The records of one file; torn or corrupt lines are skipped with a warning."""
    out = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                warn(f"{path}:{number}: skipping a torn or corrupt line")
                continue
            if isinstance(record, dict):
                out.append(record)
    return out


def read_all(results_dir: Path) -> list[dict]:
    """Every record under ``results_dir``: many runs and machines merge into one list.

    Each record gets ``_run_dir``, the folder its file is in, which its ``artifacts`` paths are relative to.
    The committed ``reference/`` runs below ``results_dir`` are left out: a machine's own report shows its own
    runs, and a reference is compared by copying it in or by pointing ``results_dir`` at it.
    """
    out = []
    for path in sorted(Path(results_dir).rglob("records.jsonl")):
        if "reference" in path.relative_to(results_dir).parts:
            continue
        out += [{**r, "_run_dir": str(path.parent)} for r in read(path)]
    return out
