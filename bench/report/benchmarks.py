"""The step micro-benchmarks that ``make bench-micro`` saved (pytest-benchmark's JSON, tests/test_micro.py), as the
report reads them, and the devices' peak throughput that turns their FLOP/s into utilisation."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench import records
from bench.records import files, schema
from bench.report import aggregate

# Dense peak tensor throughput, TFLOP/s, from the vendors' data sheets (no sparsity), keyed by the device name the
# backends record. fp32 on an NVIDIA GPU is its CUDA-core rate. TPUs run fp32 matmuls as several bf16 passes, so only
# their bf16 peak is listed (the backend names a TPU by its chip: TPU v4, v5e, v5p, v6e; Google's data sheets). CPUs
# have none: their peak depends on the SKU, clocks and vector units, so no utilisation is shown for them.
_H100_SXM = {"fp32": 67.0, "tf32": 494.7, "fp16-mixed": 989.4, "bf16-mixed": 989.4, "bf16-true": 989.4}
_H100_PCIE = {"fp32": 51.2, "tf32": 378.0, "fp16-mixed": 756.0, "bf16-mixed": 756.0, "bf16-true": 756.0}
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "NVIDIA H100 80GB HBM3": _H100_SXM,
    "NVIDIA H100 PCIe": _H100_PCIE,
    "NVIDIA H200": _H100_SXM,  # the H100 SXM's compute with more and faster memory
    "TPU v4": {"bf16-mixed": 275.0, "bf16-true": 275.0},
    "TPU v5e": {"bf16-mixed": 197.0, "bf16-true": 197.0},
    "TPU v5p": {"bf16-mixed": 459.0, "bf16-true": 459.0},
    "TPU v6e": {"bf16-mixed": 918.0, "bf16-true": 918.0},  # Trillium
}


# What the report joins a micro-benchmark on.
_KEYS = ("kind", "workload", "precision", "host", "device_name", "backend", "samples_per_call")
MAX_FILE = 64 << 20  # a saved run of every workload × precision is ~1 MB


class Info(BaseModel):
    """What the report reads of one benchmark's ``extra_info`` (tests/test_micro.py writes it); more is let through."""

    model_config = ConfigDict(strict=True, extra="allow")
    kind: schema.Name
    workload: schema.Name
    precision: schema.Name | None
    host: Annotated[str, Field(max_length=schema.MAX_TEXT)]
    device_name: Annotated[str, Field(max_length=schema.MAX_TEXT)]
    backend: schema.Name
    samples_per_call: schema.AtLeastOne
    flops_per_step: schema.NonNeg | None = None
    env: dict | None = None


def run_file(path: Path) -> tuple[str | None, list[dict]]:
    """One saved run (pytest-benchmark's JSON): its time and its benchmarks, each with a positive finite median, as
    dicts of ``name``, ``median_s`` and ``extra_info``. A file that cannot be read, or a benchmark that does not hold
    what its fields should, is left out with a warning naming it (never an exception)."""
    try:
        run = files.read_json(path, MAX_FILE)
    except ValueError as e:
        records.warn(f"skipping a micro-benchmark file: {e}")
        return None, []
    if not isinstance(run, dict) or not isinstance(run.get("benchmarks"), list):
        records.warn(f"{path}: skipping a micro-benchmark file without a list of benchmarks")
        return None, []
    out = []
    for i, b in enumerate(run["benchmarks"]):
        median = (b.get("stats") or {}).get("median") if isinstance(b, dict) else None
        name = b.get("name") or b.get("fullname") if isinstance(b, dict) else None
        if not isinstance(name, str) or isinstance(median, bool) or not isinstance(median, int | float):
            records.warn(f"{path}: benchmark {i}: skipped (no name, or no median in seconds)")
            continue
        if not (0 < median < schema.MAX_NUMBER):
            records.warn(f"{path}: benchmark {i}: skipped (median {median!r} is not a time)")
            continue
        out.append({"name": name[: schema.MAX_TEXT], "median_s": float(median), "extra_info": b.get("extra_info")})
    when = run.get("datetime")
    return (when if isinstance(when, str) else None), out


def read(results_dir: Path) -> list[dict]:
    """Every micro-benchmark saved under a ``micro`` folder of ``results_dir`` (pytest-benchmark's JSON, as
    ``make bench-micro`` stores it): one dict per benchmark, its ``extra_info`` plus the median seconds per call
    and the run's time; benchmarks without the report's keys (other suites') are skipped, and those whose keys do
    not hold what they should are skipped with a warning. The committed ``reference/`` runs are left out, as
    records.read_all does."""
    out = []
    for path in files.find(Path(results_dir), lambda name: name.endswith(".json")):
        parts = path.relative_to(results_dir).parts
        if "micro" not in parts or "reference" in parts:
            continue
        when, benchmarks = run_file(path)
        for b in benchmarks:
            info = b["extra_info"]
            if not isinstance(info, dict) or not all(k in info for k in _KEYS):
                continue  # a benchmark of another suite
            try:
                info = Info.model_validate(info).model_dump()
            except ValidationError as e:
                records.warn(f"{path}: benchmark {b['name']}: skipped ({e.errors()[0]['loc']}: {e.errors()[0]['msg']})")
                continue
            env = info.pop("env") or {}
            packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
            # the stack it ran on, as the records': a host's runs under two torch versions are two rows
            stack = aggregate.stack(packages) if packages else "unknown"
            out.append({**info, "stack": stack, "median_s": b["median_s"], "datetime": when})
    return out
