"""Pretrained weights: offline without them names both fixes, a wrong checksum is refused, a run stops before any
cell without them, and a run from the hub cache with lr_find (the fastai workload's, tests/test_fastai.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from bench.run import weights
from bench.run.weights import WeightsError
from tests.conftest import Loopback, bench_cli, loopback
from tests.test_fastai import tiny_suite
from tests.test_runner import run_records


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


def test_bench_run_stops_before_any_cell_when_weights_are_missing(tmp_path, offline_env):
    suite = tiny_suite(tmp_path, ["fastai-resnet18"], ["fp32"], fastai="pretrained = true")
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(suite), "--results-dir", str(results)], offline_env, timeout=120)
    assert out.returncode == 2
    assert "--no-pretrained" in out.stderr and "pretrained = false" in out.stderr
    assert not results.exists()


@pytest.mark.slow
def test_pretrained_weights_from_the_hub_cache_and_lr_find(tmp_path, offline_env):
    # A pre-seeded cache, as an image or an offline user has it (random weights here: the test is offline).
    path = Path(offline_env["TORCH_HOME"]) / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.save(torchvision.models.resnet18().state_dict(), path)
    suite = tiny_suite(tmp_path, ["fastai-resnet18"], ["fp32"], fastai='pretrained = true\nlr = "find"')
    results = tmp_path / "results"
    out = bench_cli(["run", "--suite", str(suite), "--results-dir", str(results)], offline_env, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    (r,) = run_records(results)
    assert r["status"] == "ok", r["reason"]
    assert r["weights"]["pretrained"] and r["weights"]["file"] == str(path)
    assert r["weights"]["checksum_ok"] is False  # not the real ImageNet file, and the record says so
    assert r["lr"] == "find" and r["lr_used"] == r["lr_found"] > 0
