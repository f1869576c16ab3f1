"""Pretrained weights: offline without them names both fixes, a wrong checksum is refused, a run stops before any
cell without them unless --no-pretrained says so (a run from the hub cache: tests/test_fastai.py)."""

from __future__ import annotations

import pytest

from bench import cli
from bench.run import weights
from bench.run.weights import WeightsError
from tests.conftest import Loopback, bench_cli, loopback
from tests.test_fastai import tiny_suite


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
    # the flag wins over the suite's per-workload setting: no cell needs the weights
    _, _, cells, _ = cli.build_cells(cli.parser().parse_args(["run", "--suite", str(suite), "--no-pretrained"]))
    assert [c.pretrained for c in cells] == [False]
    assert weights.describe(cells[0].pretrained) == {"source": "random initialisation", "pretrained": False}
