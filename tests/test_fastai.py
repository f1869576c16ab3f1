"""The fastai workload on real MNIST PNGs: a tiny real run per precision, artifacts, pretrained weights, lr_find."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

from bench.backends.cpu import bf16_kernels
from bench.run import weights
from bench.run.weights import WeightsError
from bench.trackers import profile
from tests.conftest import Loopback, bench_cli, bench_env, loopback
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


@pytest.fixture
def env(mnist_dir, session_cache, tmp_path) -> dict[str, str]:
    # an empty torch hub cache and an address that refuses connections: offline, whatever the machine
    return {
        **bench_env(mnist_dir, session_cache),
        "TORCH_HOME": str(tmp_path / "torch-home"),
        "BENCH_WEIGHTS_URL": "http://127.0.0.1:1/resnet18-f37072fd.pth",
    }


def test_offline_without_cached_weights_names_both_fixes(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("BENCH_WEIGHTS_URL", "http://127.0.0.1:1/resnet18-f37072fd.pth")
    with pytest.raises(WeightsError) as info:
        weights.ensure_resnet18()
    message = str(info.value)
    assert str(weights.resnet18_path()) in message and "TORCH_HOME" in message
    assert "pretrained = false" in message and "--no-pretrained" in message
    assert not weights.resnet18_path().exists()


class _Junk(Loopback):
    def do_GET(self):
        self.reply(b"not a checkpoint" * 100)


def test_downloaded_weights_with_a_wrong_checksum_are_refused(tmp_path, monkeypatch):
    with loopback(_Junk) as url:
        monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
        monkeypatch.setenv("BENCH_WEIGHTS_URL", f"{url}/resnet18.pth")
        with pytest.raises(WeightsError, match="hash"):
            weights.ensure_resnet18()
        assert not any(weights.resnet18_path().parent.iterdir())  # nothing half-written left in the cache


def test_bench_run_stops_before_any_cell_when_weights_are_missing(tmp_path, env):
    suite = tiny_suite(tmp_path, ["fastai-resnet18"], ["fp32"], fastai="pretrained = true")
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(suite), "--results-dir", str(results)], env, timeout=120)
    assert out.returncode == 2
    assert "--no-pretrained" in out.stderr and "pretrained = false" in out.stderr
    assert not results.exists()


@pytest.mark.slow
def test_tiny_real_run_every_precision_artifacts_and_report(tmp_path, env):
    suite = tiny_suite(
        tmp_path, ["fastai-resnet18", "torch-resnet18"], ["fp32", "bf16-mixed", "bf16-true", "fp16-mixed"]
    )
    results = tmp_path / "results"
    # --no-pretrained over a suite whose default (pretrained) would stop offline: the flag must win
    args = ["run", "--suite", str(suite), "--no-pretrained", "--results-dir", str(results), "--run-id", "r"]
    # make test runs beside other tests: the host is busy, and the report compares its cells all the same
    out = bench_cli([*args, "--include-busy"], env, timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    recs = {(r["workload"], r["precision"]): r for r in run_records(results)}
    assert "fp16" in recs["fastai-resnet18", "fp16-mixed"]["reason"]
    assert recs["fastai-resnet18", "fp16-mixed"]["status"] == "unsupported"
    bf16 = ("bf16-mixed", "bf16-true") if bf16_kernels() else ()
    if not bf16:  # a CPU without AVX-512: hours of reference convolutions, refused up front
        assert recs["fastai-resnet18", "bf16-true"]["status"] == "unsupported"
    for p in ("fp32", *bf16):
        r = recs["fastai-resnet18", p]
        assert r["status"] == "ok", r["reason"]
        assert r["precision_effective"] == p  # a real forward pass of the body's first conv ran in it
        assert r["weights"] == {"source": "random initialisation", "pretrained": False}
        assert (r["train_samples"], r["test_samples"]) == (320, 200)
        assert [c["phase"] for c in r["curve"]] == ["frozen", "unfrozen"]
        assert r["phase_throughput"]["frozen"] > 0 and r["phase_throughput"]["unfrozen"] > 0
        assert {"setup", "loader", "lr_find", "frozen", "unfrozen", "eval", "artifacts"} <= set(r["phase_seconds"])
        assert r["loader_samples_per_s"] > r["throughput_samples_per_s"] > 0
        assert r["lr_found"] > 0 and r["lr_used"] == 0.0209
        cell = results / "r" / "cells" / f"fastai-resnet18.cpux1.{p}.r0"
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
    if bf16:
        assert recs["fastai-resnet18", "bf16-true"]["precision_evidence"]["param_dtype"] == "torch.bfloat16"
    assert recs["torch-resnet18", "fp32"]["status"] == "ok"
    report = (results / "report" / "REPORT.md").read_text()
    assert "fastai-resnet18 vs torch-resnet18" in report  # the framework-overhead row
    link = "../r/cells/fastai-resnet18.cpux1.fp32.r0/top_losses.png"
    assert f"[top_losses]({link})" in report and (results / "report" / link).is_file()


@pytest.mark.slow
def test_pretrained_weights_from_the_hub_cache_and_lr_find(tmp_path, env):
    # A pre-seeded cache, as an image or an offline user has it (random weights here: the test is offline).
    path = Path(env["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    suite = tiny_suite(tmp_path, ["fastai-resnet18"], ["fp32"], fastai='pretrained = true\nlr = "find"')
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(suite), "--results-dir", str(results)], env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (r,) = run_records(results)
    assert r["status"] == "ok", r["reason"]
    assert r["weights"]["pretrained"] and r["weights"]["file"] == str(path)
    assert r["weights"]["checksum_ok"] is False  # not the real ImageNet file, and the record says so
    assert r["lr"] == "find" and r["lr_used"] == r["lr_found"] > 0
