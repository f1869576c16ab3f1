"""bench export: MLPerf-style event logs read back by mlperf-logging's own parser; the Bencher Metric Format."""

from __future__ import annotations

import json
import shutil

from mlperf_logging.compliance_checker.mlp_parser import parse_file

from bench import cli
from tests.conftest import ROOT

RECORDS = ROOT / "tests" / "data" / "report-before"  # real records of this harness (tests/test_report.py)


def test_each_measured_cell_has_an_mlperf_event_log_that_mlperf_logging_parses(tmp_path):
    shutil.copytree(RECORDS / "h100", tmp_path / "h100")
    assert cli.main(["export", "--format", "mllog", "--results-dir", str(tmp_path), "--out", str(tmp_path / "ml")]) == 0
    logs = sorted((tmp_path / "ml").glob("*.mllog.txt"))
    records = [json.loads(line) for line in (RECORDS / "h100" / "records.jsonl").read_text().splitlines()]
    assert len(logs) == sum(r.get("status") == "ok" for r in records) == 3  # tf32 failed before training
    for log in logs:
        lines, errors = parse_file(str(log), ruleset="6.1.0")
        assert errors == []
        keys = [line.key for line in lines]
        assert keys[:4] == ["submission_benchmark", "global_batch_size", "eval_target", "run_start"]
        assert keys[-1] == "run_stop" and "eval_accuracy" in keys
        accuracy = [line for line in lines if line.key == "eval_accuracy"]
        target = next(line.value["value"] for line in lines if line.key == "eval_target")
        stop = lines[-1]
        reached = [a for a in accuracy if a.value["value"] >= target]
        # an MLPerf run stops where it first reaches its target: success there; else aborted at the last evaluation
        assert stop.value["metadata"]["status"] == ("success" if reached else "aborted")
        assert stop.timestamp == accuracy[-1].timestamp  # no evaluation after the stop
        assert all(a.value["value"] < target for a in accuracy[:-1])
        assert all(isinstance(a.value["metadata"]["epoch_num"], int) for a in accuracy)


def test_the_bencher_metric_format_has_throughput_with_its_interval_and_tta(tmp_path):
    for folder in ("alone-0-free", "alone-1-free", "alone-2-free"):
        shutil.copytree(RECORDS / folder, tmp_path / folder)
    assert cli.main(["export", "--format", "bmf", "--results-dir", str(tmp_path), "--out", str(tmp_path / "b")]) == 0
    bmf = json.loads((tmp_path / "b" / "bmf.json").read_text())
    assert len(bmf) == 2  # torch-convnet and lightning-convnet, three quiet repeats each
    for name, measures in bmf.items():
        t = measures["throughput"]
        assert name.split("/")[0] in ("torch-convnet", "lightning-convnet")
        assert 0 < t["lower_value"] < t["value"] < t["upper_value"]
