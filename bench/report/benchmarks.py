"""The step micro-benchmarks that ``make bench-micro`` saved (pytest-benchmark's JSON, tests/test_micro.py), as the
report reads them, and the devices' peak throughput that turns their FLOP/s into utilisation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def read(results_dir: Path) -> list[dict]:
    """Every micro-benchmark saved under a ``micro`` folder of ``results_dir`` (pytest-benchmark's JSON, as
    ``make bench-micro`` stores it): one dict per benchmark, its ``extra_info`` plus the median seconds per call
    and the run's time; other benchmarks (without these keys) are skipped. The committed ``reference/`` runs are
    left out, as records.read_all does."""
    out = []
    for path in sorted(Path(results_dir).rglob("*.json")):
        parts = path.relative_to(results_dir).parts
        if "micro" not in parts or "reference" in parts:
            continue
        try:
            run = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            print(f"warning: {path}: skipping an unreadable micro-benchmark file ({e})", file=sys.stderr)
            continue
        for b in run.get("benchmarks", []) if isinstance(run, dict) else []:
            info = b.get("extra_info") or {}
            if all(k in info for k in _KEYS) and (b.get("stats") or {}).get("median"):
                env = info.get("env") if isinstance(info.get("env"), dict) else {}
                packages = env.get("packages") if isinstance(env.get("packages"), dict) else {}
                info = {k: v for k, v in info.items() if k != "env"}
                # the stack it ran on, as the records': a host's runs under two torch versions are two rows
                stack = aggregate.stack(packages) if packages else "unknown"
                out.append({**info, "stack": stack, "median_s": b["stats"]["median"], "datetime": run.get("datetime")})
    return out
