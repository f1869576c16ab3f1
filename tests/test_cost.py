"""Cost: the packaged price table, the price settings (suite and command line), and $ to target and $ per million
samples in the report, from records with a known TTA and price."""

from __future__ import annotations

import datetime

import pandas as pd
import pytest

from bench import cli, records, report
from bench.plan import cost, suite
from bench.plan.suite import SuiteError
from bench.records import schema


def test_the_packaged_table_has_dated_sourced_entries_for_each_kind_of_hardware():
    entries = cost.table()
    for name, e in entries.items():
        assert e["on_demand_usd_per_hour"] > 0 and e["source"].startswith(("https://", "github:")), name
        assert e["retrieved"] <= datetime.date.today(), name
        assert e.get("spot_usd_per_hour") is None or e["spot_usd_per_hour"] < e["on_demand_usd_per_hour"], name
    accelerators = " ".join(e["accelerator"] for e in entries.values())
    assert "H100" in accelerators and "TPU v5e" in accelerators and "TPU v6e" in accelerators
    assert any(e["accelerator_count"] == 0 for e in entries.values())  # a CPU VM


def settings(**over) -> dict:
    return suite.validate("t", {"workloads": ["torch-convnet"], **over})


def test_price_settings_resolve_or_fail_naming_the_fix():
    name, entry = next(iter(cost.table().items()))
    price = cost.resolve(name, "on-demand", None, "cpu")
    assert price["usd_per_hour"] == entry["on_demand_usd_per_hour"] and price["entry"] == name
    assert price["retrieved"] == entry["retrieved"].isoformat() and price["source"] == entry["source"]
    assert cost.resolve({"cuda": name}, "on-demand", None, "cuda")["entry"] == name
    assert cost.resolve(None, "on-demand", 3.5, "cpu") == {
        "usd_per_hour": 3.5, "plan": "given", "entry": None, "source": "price_per_hour"
    }  # fmt: skip
    assert cost.resolve(None, "on-demand", None, "cpu") is None
    with pytest.raises(SuiteError, match="unknown price entry 'aws/nothing'; valid: "):
        settings(price="aws/nothing")
    with pytest.raises(SuiteError, match="price_plan 'reserved'; valid: on-demand, spot"):
        settings(price=name, price_plan="reserved")
    with pytest.raises(SuiteError, match="not both"):
        settings(price=name, price_per_hour=2.0)
    with pytest.raises(SuiteError, match=r"price_per_hour = -1 should be a number in \(0, 1,000,000\]"):
        settings(price_per_hour=-1)
    with pytest.raises(SuiteError, match="price names backend 'gpu'; valid: cpu, cuda, xla"):
        settings(price={"gpu": name})
    with pytest.raises(cost.PriceError, match="price names entries for cuda, not for this run's backend cpu"):
        cost.resolve({"cuda": name}, "on-demand", None, "cpu")
    no_spot = next(n for n, e in cost.table().items() if e.get("spot_usd_per_hour") is None)
    with pytest.raises(SuiteError, match=r"no spot price in bench/plan/prices\.toml; use price_plan on-demand"):
        settings(price=no_spot, price_plan="spot")


def test_the_command_line_replaces_the_suites_price():
    args = ["run", "--suite", "smoke", "--workload", "torch-convnet"]
    _, s, _, _ = cli.build_cells(cli.parser().parse_args(args))
    assert isinstance(s["price"], dict) and s["price_per_hour"] is None  # the smoke suite names an entry per backend
    _, s, _, _ = cli.build_cells(cli.parser().parse_args([*args, "--price-per-hour", "2.5"]))
    assert s["price"] is None and s["price_per_hour"] == 2.5
    entry = next(iter(cost.table()))
    _, s, _, _ = cli.build_cells(cli.parser().parse_args([*args, "--price", entry, "--price-plan", "on-demand"]))
    assert s["price"] == entry
    assert cli.main([*args, "--price", "nowhere", "--dry-run"]) == 2


def record(repeat: int, tta: float | None, tput: float, price: dict | None, nodes: int = 2, host: str = "box"):
    r = records.new("ok", None, **{name: {} for name in schema.sections()})
    r["cell"] = {
        "run_id": "r", "cell_id": f"torch-convnet/{nodes}xcpux1/fp32", "workload": "torch-convnet",
        "backend": "cpu", "device_count": 1, "nodes": nodes, "precision": "fp32", "repeat": repeat,
        "batch_size": 32, "lr": 0.5, "epochs": 2, "tta_target": 0.99, "mode": "eager", "input": "loader",
    }  # fmt: skip
    r["run"] = {"started_at": "2026-11-28T00:00:00+00:00", "process_seconds": 10.0, "price": price}
    r["timing"] = {"throughput_samples_per_s": tput}
    curve = [{"epoch": 0, "elapsed_seconds": tta or 100.0, "test_accuracy": 0.995 if tta else 0.98}]
    r["accuracy"] = {"final_accuracy": curve[-1]["test_accuracy"], "tta_seconds": tta, "curve": curve}
    r["env"] = {"host": host, "device_name": f"CPU of {host}"}
    return r


def test_dollars_to_target_and_per_million_samples_from_a_known_tta_and_price(tmp_path):
    price = cost.resolve(None, "on-demand", 4.0, "cpu")
    path = tmp_path / "run" / "records.jsonl"
    for i in range(3):  # 30 minutes to the target on 2 nodes at $4 a node-hour: $4; 1000 samples/s: $2.22 per M
        records.append(path, record(i, 1800.0, 1000.0, price))
        records.append(path, record(i, None, 500.0, None, host="unpriced"))
    md = report.write(tmp_path).read_text()
    csv = pd.read_csv(tmp_path / "report" / "summary.csv").set_index("host")
    assert csv.loc["box", "usd_to_target"] == pytest.approx(4.0)
    assert csv.loc["box", "usd_per_M_samples"] == pytest.approx(1e6 / (1000 * 3600) * 4 * 2)
    assert csv.loc["box", "price"] == "$4.00/h as given"
    assert pd.isna(csv.loc["unpriced", "usd_to_target"]) and csv.loc["unpriced", "price"] == "no price named"
    assert report.COST_NOTE in md
    table = md.split("\n## torch-convnet\n")[1].split("### Cost and energy")[1]
    row = next(line for line in table.splitlines() if "@box" in line)
    assert "| $4.00 " in row and "| $2.22 " in row and "| $4.00/h as given " in row


def test_a_table_entry_is_labelled_with_its_instance_plan_and_date(tmp_path):
    name, e = next((n, e) for n, e in cost.table().items() if e.get("spot_usd_per_hour"))
    price = cost.resolve(name, "spot", None, "cpu")
    path = tmp_path / "run" / "records.jsonl"
    records.append(path, record(0, 3600.0, 100.0, price, nodes=1))
    records.append(path, record(1, None, 100.0, price, nodes=1))  # the other repeat never reached the target
    md = report.write(tmp_path).read_text()
    label = f"{e['provider']} {e['instance']} {e['region']}, spot ${e['spot_usd_per_hour']:,.2f}/h"
    assert f"{label}, list price of {e['retrieved'].isoformat()}" in md
    csv = pd.read_csv(tmp_path / "report" / "summary.csv")
    assert csv.loc[0, "usd_per_hour"] == pytest.approx(e["spot_usd_per_hour"])
