"""The fastai workload on real MNIST PNGs: a tiny real run at fp32 (fp16-mixed refused; each precision's step:
tests/test_micro.py) and its artifacts (pretrained weights and lr_find: tests/test_weights.py, a file of its own so
that make test's processes share the two long runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.trackers import profile
from tests.conftest import bench_cli
from tests.test_runner import run_records

TINY = """
backend = "cpu"
workloads = {workloads}
precisions = {precisions}
limit_train = 320
limit_test = 200
warmup_steps = 5
profile_steps = 4
tta_target = 0.5

# batch 16 and 20 lr_find steps: seconds; what is tested depends on neither
[workload.fastai-resnet18]
epochs = 1
batch_size = 16
lr_find_steps = 20
{fastai}

# the framework-overhead row: the same model in plain PyTorch, at fp32 (its other precisions: tests/test_micro.py)
[workload.torch-resnet18]
precisions = ["fp32"]
epochs = 1
batch_size = 16
"""
PNG = b"\x89PNG\r\n\x1a\n"


def tiny_suite(tmp_path: Path, workloads, precisions, fastai: str = "") -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(workloads=json.dumps(workloads), precisions=json.dumps(precisions), fastai=fastai))
    return path


@pytest.mark.slow
def test_tiny_real_run_every_precision_artifacts_and_report(tmp_path, offline_env):
    suite = tiny_suite(
        tmp_path, ["fastai-resnet18", "torch-resnet18"], ["fp32", "fp16-mixed"]
    )  # bf16-mixed's and bf16-true's fastai steps: tests/test_micro.py (the forward pass's dtypes, params included)
    results = tmp_path / "results"
    # --no-pretrained over a suite whose default (pretrained) would stop offline: the flag must win
    args = ["run", "--suite", str(suite), "--no-pretrained", "--results-dir", str(results), "--run-id", "r"]
    # make test runs beside other tests: the host is busy, and the report compares its cells all the same
    out = bench_cli([*args, "--include-busy"], offline_env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {(r["workload"], r["precision"]): r for r in run_records(results)}
    assert "fp16" in recs["fastai-resnet18", "fp16-mixed"]["reason"]
    assert recs["fastai-resnet18", "fp16-mixed"]["status"] == "unsupported"
    r = recs["fastai-resnet18", "fp32"]
    assert r["status"] == "ok", r["reason"]
    assert r["precision_effective"] == "fp32"  # a real forward pass of the body's first conv ran in it
    assert r["weights"] == {"source": "random initialisation", "pretrained": False}
    assert (r["train_samples"], r["test_samples"]) == (320, 200)
    assert [c["phase"] for c in r["curve"]] == ["frozen", "unfrozen"]
    assert r["phase_throughput"]["frozen"] > 0 and r["phase_throughput"]["unfrozen"] > 0
    assert {"setup", "loader", "lr_find", "frozen", "unfrozen", "eval", "artifacts"} <= set(r["phase_seconds"])
    assert r["loader_samples_per_s"] > r["throughput_samples_per_s"] > 0
    assert r["lr_found"] > 0 and r["lr_used"] == 0.0209
    cell = results / "r" / "cells" / "fastai-resnet18.cpux1.fp32.r0"
    names = [Path(a).name for a in r["artifacts"]]
    assert names == ["show_batch.png", "lr_find.png", "show_results.png", "top_losses.png", "confusion_matrix.png"]
    for a in r["artifacts"]:
        assert (results / "r" / a).read_bytes().startswith(PNG)
    assert list((cell / "tensorboard").glob("events.out.tfevents.*"))
    assert list(r["phase_seconds"])[-2:] == ["artifacts", "profile"]  # the plots show the trained model
    for w in ("fastai-resnet18", "torch-resnet18"):
        p = recs[w, "fp32"]["profile"]  # fastai's own loop, its TensorBoard writes and DataLoader included
        assert p["status"] == "ok" and p["steps"] == 4 and 0 < p["device_busy_pct"] <= 100, p
        events = profile.read_trace(results / "r" / p["trace"])["traceEvents"]
        assert profile.analyse(events, device=False)["loader_pct"] == pytest.approx(p["loader_pct"])
    assert recs["torch-resnet18", "fp32"]["status"] == "ok"
    report = (results / "report" / "REPORT.md").read_text()
    assert "fastai-resnet18 vs torch-resnet18" in report  # the framework-overhead row
    link = "../r/cells/fastai-resnet18.cpux1.fp32.r0/top_losses.png"
    assert f"[top_losses]({link})" in report and (results / "report" / link).is_file()
