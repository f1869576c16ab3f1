"""The fastai workload on real MNIST PNGs: a tiny real run at fp32 (fp16-mixed refused; each precision's step:
tests/test_micro.py) from pretrained weights in the hub cache, with lr_find's suggestion as the learning rate, and its
artifacts (without weights: tests/test_weights.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

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
def test_tiny_real_run_from_cached_weights_with_lr_find_its_artifacts_and_report(tmp_path, offline_env):
    # A pre-seeded hub cache, as an image or an offline user has it (random weights here: the test is offline).
    weights = Path(offline_env["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    weights.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    # bf16-mixed's and bf16-true's fastai steps: tests/test_micro.py (the forward pass's dtypes, params included)
    suite = tiny_suite(tmp_path, ["fastai-resnet18", "torch-resnet18"], ["fp32", "fp16-mixed"], fastai='lr = "find"')
    results = tmp_path / "results"
    # make test runs beside other tests: the host is busy, and the report compares its cells all the same
    args = ["run", "--suite", str(suite), "--results-dir", str(results), "--run-id", "r", "--include-busy"]
    out = bench_cli(args, offline_env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {(r["workload"], r["precision"]): r for r in run_records(results)}
    assert "fp16" in recs["fastai-resnet18", "fp16-mixed"]["reason"]
    assert recs["fastai-resnet18", "fp16-mixed"]["status"] == "unsupported"
    r = recs["fastai-resnet18", "fp32"]
    assert r["status"] == "ok", r["reason"]
    assert r["precision_effective"] == "fp32"  # a real forward pass of the body's first conv ran in it
    assert r["weights"]["pretrained"] and r["weights"]["file"] == str(weights)
    assert r["weights"]["checksum_ok"] is False  # not the real ImageNet file, and the record says so
    assert (r["train_samples"], r["test_samples"]) == (320, 200)
    assert [c["phase"] for c in r["curve"]] == ["frozen", "unfrozen"]
    assert r["phase_throughput"]["frozen"] > 0 and r["phase_throughput"]["unfrozen"] > 0
    assert {"setup", "loader", "lr_find", "frozen", "unfrozen", "eval", "artifacts"} <= set(r["phase_seconds"])
    assert r["loader_samples_per_s"] > r["throughput_samples_per_s"] > 0
    assert r["lr"] == "find" and r["lr_used"] == r["lr_found"] > 0
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
