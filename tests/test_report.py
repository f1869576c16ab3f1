"""The report from fixture records: grouping, medians, reasons, comparability, speedup, files written."""

from __future__ import annotations

import copy
import json
import re
import shutil

import pandas as pd
import pytest

from bench import records, report
from bench.records import schema
from bench.report import aggregate, benchmarks, plots, verdicts
from tests.conftest import QUIET, ROOT


def rec(workload="torch-convnet", precision="fp32", status="ok", tput=1000.0, repeat=0, **over) -> dict:
    """A flat record of schema 2, as the committed H100 reference has them: the report reads them still."""
    r = {}
    r.update(
        schema_version=2, run_id="fixture", cell_id=f"{workload}/cpux1/{precision}", workload=workload,
        backend="cpu", device_name="Test CPU", device_count=1, precision=precision, status=status,
        repeat=repeat, batch_size=32, lr=0.5, epochs=10, limit_train=None, limit_test=None, tta_target=0.99,
        throughput_samples_per_s=tput if status == "ok" else None, step_time_ms_median=10.0,
        step_time_ms_p90=12.0, final_accuracy=0.991 if status == "ok" else None, tta_seconds=50.0,
        peak_memory_bytes=2**30, peak_memory_kind="process-rss", precision_effective=precision,
        curve=[{"epoch": 0, "elapsed_seconds": 10.0, "test_accuracy": 0.98},
               {"epoch": 1, "elapsed_seconds": 20.0, "test_accuracy": 0.991}],
        env={"host": "box", "cpu_model": "Test CPU", "allocator": {"name": "glibc-tuned"}, "packages": {}},
    )  # fmt: skip
    r.update(over)
    return r


def fixture(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    rows = [
        *(rec(tput=t, repeat=i) for i, t in enumerate([900.0, 1000.0, 1200.0])),
        *(rec(precision="bf16-mixed", tput=t, repeat=i) for i, t in enumerate([1800.0, 2000.0, 2100.0])),
        rec(precision="fp16-mixed", status="unsupported", reason="no honest fp16 on CPU"),
        rec(precision="bf16-true", status="timeout", reason="no result after 60 s"),
        rec(workload="lightning-convnet", tput=950.0),
        rec(workload="lightning-convnet", precision="bf16-mixed", tput=1500.0, epochs=2),
    ]
    write(path, rows)
    return tmp_path


def write(path, rows, measured: bool = True) -> None:
    """``rows`` into ``path``; ``measured``: as repeats measured on a quiet host (a flat record of schema 2 predates
    the measure, so it is written sectioned, with a quiet contention section)."""
    if measured:
        rows = [quiet(r) for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def quiet(r: dict) -> dict:
    """``r`` with the contention section of a quiet host where it ran and has none."""
    if r.get("status") != "ok" or (isinstance(r.get("cell"), dict) and r.get("contention")):
        return r
    return {**schema.upgrade(r), "contention": copy.deepcopy(QUIET)}


def test_summary_medians_speedup_and_flags(tmp_path):
    df = aggregate.frame(records.read_all(fixture(tmp_path)))
    s = aggregate.summarise(df, "cpu/fp32").set_index(["workload", "precision"])
    fp32 = s.loc[("torch-convnet", "fp32")]
    assert fp32["throughput_median"] == 1000.0 and (fp32["throughput_min"], fp32["throughput_max"]) == (900, 1200)
    assert fp32["repeats_ok"] == 3 and fp32["speedup"] == 1.0
    bf16 = s.loc[("torch-convnet", "bf16-mixed")]  # geometric means: (1800·2000·2100)^⅓ ÷ (900·1000·1200)^⅓
    assert bf16["speedup"] == pytest.approx((1800 * 2000 * 2100 / (900 * 1000 * 1200)) ** (1 / 3))
    assert bf16["speedup_stats"].significant and bf16["vs_fp32"] == bf16["speedup_stats"]
    assert s.loc[("torch-convnet", "fp16-mixed"), "status"] == "unsupported"
    assert "no honest fp16" in s.loc[("torch-convnet", "fp16-mixed"), "reason"]
    assert s.loc[("torch-convnet", "bf16-true"), "status"] == "timeout"
    assert s.loc[("lightning-convnet", "bf16-mixed"), "configuration"] == "epochs 2"  # what sets it apart
    assert s.loc[("lightning-convnet", "fp32"), "configuration"] == ""


def test_the_report_says_when_a_cpu_emulates_bf16(tmp_path):
    avx2 = {"avx2": True, "avx512f": False, "avx512_bf16": False, "amx_bf16": False}
    env = {"host": "box", "cpu_isa": avx2, "backend": {"bf16_kernels": False}, "packages": {}}
    write(tmp_path / "run" / "records.jsonl", [rec(env=env), rec(precision="bf16-mixed", env=env)])
    md = report.write(tmp_path).read_text()
    assert md.count("bf16 emulated: no bf16 kernels for this CPU") == 1  # the bf16 row only
    assert "| avx2 " in md  # the environment names the flags the CPU has


def test_overhead_against_plain_torch(tmp_path):
    df = aggregate.frame(records.read_all(fixture(tmp_path)))
    ov = verdicts.overhead(aggregate.summarise(df, "cpu/fp32"))
    row = ov[ov["precision"] == "fp32"].iloc[0]
    assert row["ratio"] == "0.950"


def test_report_files(tmp_path):
    out = report.write(fixture(tmp_path))
    md = out.read_text()
    assert "## torch-convnet" in md and "## lightning-convnet" in md
    assert "unsupported" in md and "no honest fp16 on CPU" in md and "timeout" in md
    assert "1,000 (900–1,200)" in md
    assert "Framework overhead" in md
    assert "| box | Test CPU |" in md  # the environment table
    html = (out.parent / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # self-contained: 2 plots per workload
    csv = pd.read_csv(out.parent / "summary.csv")
    assert len(csv) == 6
    assert (out.parent / "torch-convnet-accuracy.png").stat().st_size > 1000


def test_report_without_records_names_the_fix(tmp_path):
    import pytest

    with pytest.raises(ValueError, match="run `bench run` first"):
        report.write(tmp_path)


def test_fastai_against_its_reference_names_the_bottleneck(tmp_path):
    def fastai(precision, full, loader, host="box"):
        phases = {"frozen": full * 1.3, "unfrozen": full}
        return rec(
            "fastai-resnet18", precision, tput=full * 1.1, batch_size=64, lr=0.0209, epochs=2, num_workers=0,
            phase_throughput=phases, loader_samples_per_s=loader, env={"host": host},
            artifacts=[f"cells/fastai-resnet18.cpux1.{precision}.r0/top_losses.png"],
        )  # fmt: skip

    def ref(precision, tput, host="box"):
        return rec("torch-resnet18", precision, tput=tput, batch_size=64, lr=1e-3, epochs=3, num_workers=0,
                   env={"host": host})  # fmt: skip

    path = tmp_path / "run" / "records.jsonl"
    write(path, [
        fastai("fp32", 350.0, 3600.0), ref("fp32", 380.0),  # within 15 %
        fastai("bf16-mixed", 300.0, 3600.0), ref("bf16-mixed", 400.0),  # slower, and not because of the loader
        fastai("bf16-true", 300.0, 400.0), ref("bf16-true", 800.0),  # the loader takes 75 % of each step
        fastai("fp32", 300.0, 1500.0, host="b2"), ref("fp32", 370.0, host="b2"),  # loader explains the gap
    ])  # fmt: skip
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32")
    ov = verdicts.overhead(s).set_index(["hardware", "precision"])
    assert ov.loc[("Test CPU @box", "fp32"), "ratio"] == "0.921"  # unfrozen epochs, not the frozen-inflated mean
    assert ov.loc[("Test CPU @box", "fp32"), "verdict"].startswith("within 15%")
    assert ov.loc[("Test CPU @box", "bf16-mixed"), "verdict"] == "framework overhead"
    assert ov.loc[("Test CPU @box", "bf16-true"), "verdict"] == "input-bound: the loader takes 75% of each step"
    assert ov.loc[("Test CPU @b2", "fp32"), "verdict"].startswith("input pipeline: loading takes 20%")
    md = report.write(tmp_path).read_text()
    assert "fastai-resnet18 vs torch-resnet18" in md
    assert "[top_losses](../run/cells/fastai-resnet18.cpux1.fp32.r0/top_losses.png)" in md


def test_scaling_efficiency_against_one_device(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    write(path, [
        rec("lightning-convnet", backend="xla", device_name="TPU v4", tput=1000.0),
        rec("lightning-convnet", backend="xla", device_name="TPU v4", tput=3000.0, device_count=4,
            global_batch_size=128),
    ])  # fmt: skip
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32").set_index("device_count")
    assert s.loc[4, "scaling"] == pytest.approx(0.75) and pd.isna(s.loc[1, "scaling"])
    assert "| 75%" in report.write(tmp_path).read_text()


def micro_run(path, datetime, benchmarks, packages=None) -> None:
    """A pytest-benchmark JSON file as `make bench-micro` saves it (only the fields the report reads)."""
    import json

    entries = [
        {"name": f"{kind}[{workload}-{precision}]", "stats": {"median": median},
         "extra_info": {"kind": kind, "workload": workload, "precision": precision, "host": host,
                        "device_name": device, "backend": backend, "samples_per_call": batch,
                        "flops_per_step": flops, "env": {"host": host, "packages": packages or {}}}}
        for kind, workload, precision, median, batch, flops, host, device, backend in benchmarks
    ]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"datetime": datetime, "benchmarks": entries}))


def test_decomposition_from_micro_benchmarks(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    write(
        path,
        [
            rec("lightning-convnet", tput=800.0),  # 80% of its fixed-batch step's 1,000: compute-bound
            rec("lightning-convnet", "bf16-mixed", tput=500.0),  # far below its step, and the loader is fast
            rec("torch-convnet", "bf16-true", tput=400.0),  # far below its step, and loading takes the difference
        ],
    )
    box = ("box", "Test CPU", "cpu")
    micro_run(tmp_path / "micro" / "box-cpu" / "m" / "0001_old.json", "2026-01-01T00:00:00", [
        ("train", "lightning-convnet", "fp32", 0.064, 32, 1e9, *box),  # an older run: the newest one wins
    ])  # fmt: skip
    micro_run(tmp_path / "micro" / "box-cpu" / "m" / "0002_new.json", "2026-01-02T00:00:00", [
        ("train", "lightning-convnet", "fp32", 0.032, 32, 1e9, *box),
        ("train-pipelined", "lightning-convnet", "fp32", 0.16, 320, 1e9, *box),  # 10 steps per call
        ("train", "torch-convnet", "fp32", 0.0288, 32, 1e9, *box),
        ("train", "lightning-convnet", "bf16-mixed", 0.016, 32, 1e9, *box),
        ("loader", "lightning-convnet", None, 0.0032, 32, None, *box),
        ("train", "torch-convnet", "bf16-true", 0.016, 32, 1e9, *box),
        ("eval", "torch-convnet", "bf16-true", 0.008, 32, None, *box),
        ("loader", "torch-convnet", None, 0.064, 32, None, *box),
        ("train", "torch-convnet", "fp32", 0.010, 32, 1e9, "gpubox", "NVIDIA H100 80GB HBM3", "cuda"),
    ])  # fmt: skip
    # a newer run on the same host under another torch: a row of its own, which joins no record of the other stack
    micro_run(tmp_path / "micro" / "box-cpu" / "m" / "0003_torch29.json", "2026-01-03T00:00:00", [
        ("train", "lightning-convnet", "fp32", 0.016, 32, 1e9, *box),
    ], packages={"torch": "2.9.0"})  # fmt: skip
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32")
    d = verdicts.decomposition(s, benchmarks.read(tmp_path))
    other = d[d["stack"] == "torch 2.9.0"].iloc[0]
    assert other["compute-only samples/s"] == "2,000" and other["end-to-end samples/s"] == ""
    d = d[d["stack"] == "unknown"].set_index(["workload", "hardware", "precision"])
    fp32 = d.loc[("lightning-convnet", "Test CPU @box", "fp32")]
    assert fp32["compute-only samples/s"] == "1,000" and fp32["end-to-end ÷ compute"] == "0.80"
    assert fp32["bound"] == "compute-bound" and fp32["step ÷ plain PyTorch step"] == "0.90"
    assert fp32["pipelined samples/s"] == "2,000"
    assert fp32["TFLOP/s"] == "0.031" and fp32["utilisation"] == "no peak known"
    # 2 ms per sample end-to-end, 0.5 ms in the step: loading (0.1 ms) explains 7% of the 1.5 ms between them
    bf16 = d.loc[("lightning-convnet", "Test CPU @box", "bf16-mixed")]
    assert bf16["bound"] == "framework-bound (loading explains 7% of the gap)"
    true = d.loc[("torch-convnet", "Test CPU @box", "bf16-true")]
    assert true["bound"] == "input-bound (loading explains 100% of the gap)" and true["loader-only samples/s"] == "500"
    assert true["forward-only samples/s"] == "4,000" and true["step ÷ plain PyTorch step"] == ""
    gpu = d.loc[("torch-convnet", "NVIDIA H100 80GB HBM3 @gpubox", "fp32")]
    assert gpu["end-to-end samples/s"] == "" and gpu["utilisation"] == "0.1%"  # 0.1 TFLOP/s of 67
    md = report.write(tmp_path).read_text()
    assert "## Where the time goes: step micro-benchmarks" in md and "framework-bound" in md


def test_the_committed_h100_reference_of_schema_2_still_renders(tmp_path):
    import shutil

    shutil.copytree(ROOT / "results" / "reference" / "nvidia-h100", tmp_path / "h100")
    md = report.write(tmp_path / "h100", baseline="cuda/fp32").read_text()
    assert "| fastai-resnet18 | NVIDIA H100 80GB HBM3 @vm" in md and "## lightning-convnet" in md
    assert "unfrozen " in md  # schema 2 fastai phases, mapped onto schema 3


def test_repeats_not_on_a_quiet_host_are_flagged_and_left_out_of_comparisons_unless_asked(tmp_path):
    def sectioned(busy: bool, **over) -> dict:
        r = quiet(rec(**over))
        if busy:
            r["contention"] = {**QUIET, "verdict": "busy", "why": "other processes' CPU 48.0% (busy from 1.5%)"}
        return r

    recs = [sectioned(False, tput=t, repeat=i) for i, t in enumerate([900.0, 1000.0, 1100.0])]
    recs += [sectioned(True, tput=300.0, repeat=3)]  # slowed by a neighbour
    recs += [sectioned(True, precision="bf16-mixed", tput=t, repeat=i) for i, t in enumerate([500.0, 600.0])]
    recs += [sectioned(False, workload="lightning-convnet", tput=t, repeat=i) for i, t in enumerate([800.0, 900.0])]
    s = aggregate.summarise(aggregate.frame(recs), "cpu/fp32").set_index(["workload", "precision"])
    fp32, bf16 = s.loc[("torch-convnet", "fp32")], s.loc[("torch-convnet", "bf16-mixed")]
    assert fp32["repeats_ok"] == 4 and fp32["repeats_busy"] == 1
    assert fp32["throughput_median"] == 1000.0 and list(fp32["throughputs"].values()) == [900.0, 1000.0, 1100.0]
    assert fp32["unquiet"] == (
        "1 of 4 repeats not on a quiet host: 1 busy (other processes' CPU 48.0% (busy from 1.5%)): left out"
    )
    assert bf16["throughput_median"] == 550.0 and bf16["throughputs"] == {}  # shown, flagged, compared with nothing
    assert bf16["unquiet"].endswith(": not compared (--include-unquiet compares it)")
    assert bf16["speedup_stats"] is None or bf16["speedup_stats"].estimate is None
    assert verdicts.overhead(s.reset_index()).empty is False  # the quiet rows still compare
    every = aggregate.summarise(aggregate.frame(recs), "cpu/fp32", include_unquiet=True).set_index(
        ["workload", "precision"]
    )
    assert every.loc[("torch-convnet", "bf16-mixed"), "speedup_stats"].estimate is not None
    assert every.loc[("torch-convnet", "fp32"), "unquiet"].endswith("compared all the same (--include-unquiet)")
    # a record without the measure (schema 2, the committed H100 reference's) is undetermined: shown, not compared
    write(tmp_path / "run" / "records.jsonl", [rec(tput=t, repeat=i) for i, t in enumerate([900.0, 1000.0])]
          + [rec(precision="bf16-mixed", tput=2000.0)], measured=False)  # fmt: skip
    md = report.write(tmp_path).read_text()
    assert "ok 2/2, 2 undetermined" in md and "not compared (--include-unquiet compares it)" in md
    assert "Speedup baseline: none: cpu/fp32 ran on no quiet host" in md
    assert "2.11x" not in md and "2.11x" in report.write(tmp_path, include_unquiet=True).read_text()


def test_unstable_steps_and_steps_a_compilation_took_out_are_noted():
    def sectioned(p90: float, cv: float | None, left_out: list, repeat: int) -> dict:
        r = schema.upgrade(rec(repeat=repeat))
        r["timing"].update(step_time_p90_over_median=p90, segment_throughput_cv=cv, left_out=left_out)
        return r

    compiled = [{"phase": "train", "reason": "compilation in a steady segment", "steps": 21, "compilations": 1}]
    unfrozen = [{"phase": "unfrozen", "reason": "warmup after the phase change to unfrozen", "steps": 50}]
    recs = [sectioned(2.0, 0.2, compiled, 0), sectioned(1.9, None, unfrozen, 1), sectioned(1.1, 0.01, [], 2)]
    (row,) = aggregate.summarise(aggregate.frame(recs), "cpu/fp32").to_dict("records")
    assert row["unstable"] == "unstable: step p90/median 1.90"  # the median repeat's; its segments' CV 10.5% is fine
    assert row["left_out"] == "a graph compiled after warmup: 21 steps left out of steady samples/s"
    quiet = [sectioned(1.1, 0.02, unfrozen, i) for i in range(3)]  # a phase's own warmup is no note
    (row,) = aggregate.summarise(aggregate.frame(quiet), "cpu/fp32").to_dict("records")
    assert row["unstable"] == "" and row["left_out"] == ""


def test_two_torch_versions_get_rows_of_their_own_and_a_warning_in_the_report_and_the_comparison(tmp_path):
    from bench.report import compare

    def stack(torch: str, tput: float) -> list[dict]:
        env = {"host": "box", "packages": {"torch": torch}}
        return [rec(tput=tput + i, repeat=i, run_id=torch, env=env) for i in range(3)]

    write(tmp_path / "a" / "records.jsonl", stack("2.9.0", 1000.0))
    write(tmp_path / "b" / "records.jsonl", stack("2.14.1", 1100.0))
    md = report.write(tmp_path).read_text()
    assert "WARNING: these records ran 2 torch versions (2.9.0, 2.14.1)" in md
    assert "| Test CPU @box | torch 2.9.0 |" in md and "| Test CPU @box | torch 2.14.1 |" in md  # a row each
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32")
    assert sorted(s["stack"]) == ["torch 2.14.1", "torch 2.9.0"] and s["vs_fp32"].isna().all()
    result = compare.compare(tmp_path / "a", tmp_path / "b")
    assert "Compared: stack torch 2.9.0 (A) against torch 2.14.1 (B)." in result.header
    warning = "WARNING: A and B ran different torch versions (2.9.0, 2.14.1)"
    assert any(line.startswith(warning) for line in result.header)
    assert result.table["B ÷ A [95% CI]"].iloc[0].startswith("1.10x")


def _allocator(name: str) -> dict:
    return {"env": {"host": "box", "cpu_model": "Test CPU", "allocator": {"name": name}, "packages": {}}}


@pytest.mark.parametrize(
    "setting, a, b",
    [
        ("limit_train", {"limit_train": 1280}, {"limit_train": 3840}),
        ("allocator", _allocator("glibc"), _allocator("tcmalloc")),
        ("tta_target", {"tta_target": 0.9}, {"tta_target": 0.99}),
    ],
)
def test_a_setting_that_changes_the_measurement_makes_two_rows_and_never_one_comparison(tmp_path, setting, a, b):
    from bench.report import compare

    rows = [rec(tput=t, repeat=i, **a) for i, t in enumerate([1000.0, 1010.0, 990.0])]
    rows += [rec(tput=t, repeat=i, run_id="other", **b) for i, t in enumerate([2000.0, 2020.0])]
    write(tmp_path / "run" / "records.jsonl", rows)
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32")
    assert len(s) == 2 and sorted(s["repeats_ok"]) == [2, 3]  # not one row of "5 repeats"
    assert s["speedup_stats"].isna().all() and s["is_baseline"].all()  # each is the baseline of its own kind
    assert sorted(s["configuration"]) == ["", f"{setting} {aggregate.setting_text(b.get(setting, 'tcmalloc'))}"]
    md = report.write(tmp_path).read_text()
    assert "| configuration |" in md
    bars = plots.glance(s[s["workload"] == "torch-convnet"]).axes[0].get_yticklabels()
    assert len({t.get_text() for t in bars}) == 2  # a bar each: one label would draw them as one
    with pytest.raises(compare.CompareError, match=f"they differ in {setting} "):
        compare.compare(tmp_path, tmp_path, {"run_id": "fixture"}, {"run_id": "other"})


def test_a_smoke_run_then_the_cpu_suite_on_one_host_leaves_the_cpu_rows_unpooled(tmp_path):
    smoke = {"limit_train": 2560, "limit_test": 2000, "warmup_steps": 10, "tta_target": 0.9, "epochs": 2}
    write(tmp_path / "smoke-box" / "records.jsonl", [rec(tput=3000.0, run_id="smoke-box", tta_seconds=2.0, **smoke)])
    cpu = {"warmup_steps": 50, "tta_target": 0.99, "epochs": 10}
    write(tmp_path / "cpu-box" / "records.jsonl",
          [rec(tput=t, repeat=i, run_id="cpu-box", **cpu) for i, t in enumerate([1000.0, 1100.0, 900.0])])  # fmt: skip
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32").set_index("epochs")
    full = s.loc["10"]
    assert full["repeats"] == 3 and sorted(full["throughputs"].values()) == [900.0, 1000.0, 1100.0]
    assert (full["tta_s"], full["tta_runs"], full["tta_target"]) == (50.0, 3, "0.99")  # one target, its own runs
    assert s.loc["2", "repeats"] == 1 and s.loc["2", "tta_s"] == 2.0


def test_a_diverged_run_retried_still_counts_in_time_to_accuracy(tmp_path):
    rows = [rec(tput=1000.0, repeat=i, tta_seconds=t) for i, t in enumerate([40.0, 60.0])]
    rows += [rec(status="diverged", reason="NaN loss", repeat=2, tta_seconds=None, fingerprint="r2",
                 run={"started_at": "2026-12-07T01:00:00+00:00"})]  # fmt: skip
    rows += [rec(tput=1000.0, repeat=2, tta_seconds=50.0, fingerprint="r2",
                 run={"started_at": "2026-12-07T02:00:00+00:00", "retry": "--retry diverged"})]  # fmt: skip
    write(tmp_path / "run" / "records.jsonl", rows)
    recs, _, superseded = records.load(tmp_path)
    assert len(superseded) == 1
    (row,) = aggregate.summarise(aggregate.frame(recs), "cpu/fp32").to_dict("records")
    assert (row["tta_reached"], row["tta_runs"]) == (3, 4)  # the draw it replaced is still a run that missed
    assert row["tta_s"] == pytest.approx(55.0)  # 40, 50, 60 and the miss: drop 40 and the miss


def test_a_row_that_reached_the_cap_of_auto_repeats_with_a_wide_interval_says_so():
    def auto(tput: float, repeat: int) -> dict:
        r = quiet(rec(tput=tput, repeat=repeat))
        r["run"] = {"auto": {"target": 0.05, "cap": 5}}
        return r

    (row,) = aggregate.summarise(aggregate.frame([auto(t, i) for i, t in enumerate([9e2, 1e3, 13e2, 7e2, 11e2])]),
                                 "cpu/fp32").to_dict("records")  # fmt: skip
    assert row["cap"].startswith("repeats = auto: target ±5.0% not reached at the cap (5 repeats): ±")
    (row,) = aggregate.summarise(aggregate.frame([auto(1e3 + i, i) for i in range(5)]), "cpu/fp32").to_dict("records")
    assert row["cap"] == ""


def _table_values(markdown: str) -> set[str]:
    """Every value in the body rows of a Markdown page's pipe tables (headers and separators left out)."""
    lines = markdown.splitlines()
    values = set()
    for i, line in enumerate(lines):
        body = line.startswith("|") and not line.startswith("|---")
        if body and not (i + 1 < len(lines) and lines[i + 1].startswith("|---")):
            values.update(cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1])
    return values - {""}


def test_every_figure_the_old_report_showed_is_in_the_new_one(tmp_path):
    """tests/data/report-before holds real records of this harness (a smoke run, the committed H100 reference, the
    quiet-host calibration's runs alone) and the REPORT.md that main wrote from them before the report became one
    document (commit 5302276). Every value of its tables is still shown: the values are compared, not the layout."""
    before = ROOT / "tests" / "data" / "report-before"
    shutil.copytree(before, tmp_path / "r", ignore=shutil.ignore_patterns("REPORT.md"))
    new = report.write(tmp_path / "r").read_text()
    old = _table_values((before / "REPORT.md").read_text())
    assert len(old) > 250  # the fixture's tables, read
    assert sorted(v for v in old if v not in new) == []


def test_the_summary_row_has_the_columns_its_model_declares_and_no_other(tmp_path):
    fixture(tmp_path)
    s = aggregate.summarise(aggregate.frame(records.read_all(tmp_path)), "cpu/fp32")
    assert list(s.columns) == [*aggregate.ROW, *aggregate.SUMMARY]
