"""Hostile input at the command line: every case one clear `bench: error:` line naming the fix, nothing written
where it must not be, and no gate switched off by accident."""

from __future__ import annotations

import copy
import csv
import gzip
import json
import re
from pathlib import Path

import pytest

from bench import cli, records, report
from bench.cluster import k8s, slurm
from bench.plan.suite import validate
from bench.records import files, schema
from bench.report import compare
from bench.run import estimate, planning, runlock, runner
from bench.trackers import contention
from tests.conftest import expand
from tests.test_schema import valid
from tests.test_schema import write as _write_folder

RUN = ["run", "--suite", "smoke", "--dry-run"]
NEWLINE = "/x\n---\nkind: ClusterRoleBinding\n---\n#"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*RUN, "--run-id", "../escape"], "a run id is one folder name"),
        ([*RUN, "--run-id", "/abs/path"], "a run id is one folder name"),
        ([*RUN, "--run-id", ".."], "neither '.' nor '..'"),
        ([*RUN, "--run-id", "reference"], "nor reference, report, micro"),
        ([*RUN, "--run-id", "report"], "nor reference, report, micro"),
        ([*RUN, "--run-id", "compare"], "nor reference, report, micro, compare"),
        ([*RUN, "--run-id", "x" * 101], "(at most 100)"),
        (["slurm", "--print", "--sbatch=--gpus=1\ntouch X", "--", "--suite", "smoke"], "should be one option"),
        (["slurm", "--print", "--sbatch=--gpus=1 --wrap=x", "--", "--suite", "smoke"], "should be one option"),
        (["slurm", "--print", "--", "--suite", "smoke", "--results-dir", "/tmp/a b"], "cannot hold spaces"),
        (["slurm", "--print", "--", "--suite", "smoke", "--data-dir", NEWLINE], "holds a line break (U+000A)"),
        (
            ["slurm", "--print", "--", "--suite", "smoke", "--data-dir", "/x\u2028kind: Secret"],
            "holds a line break (U+2028 LINE SEPARATOR)",
        ),
        (["slurm", "--print", "--sbatch=--comment=a\u2029b", "--", "--suite", "smoke"], "should be one option"),
        (["slurm", "--print", "--image=--privileged", "--", "--suite", "smoke"], "is not an image reference"),
        (["k8s", "--image=--privileged", "--", "--suite", "smoke"], "is not an image reference"),
        (["slurm", "--print", "--sbatch=--comment=a\u202eb", "--", "--suite", "smoke"], "holds a format character"),
        (
            ["slurm", "--print", "--", "--suite", "smoke", "--data-dir", "/x\u202etxt.exe"],
            "holds a format character (U+202E RIGHT-TO-LEFT OVERRIDE)",
        ),
        (["slurm", "--print", "--", "--suite", "smoke", "--run-id", "../x"], "a run id is one folder name"),
        (["k8s", "--", "--suite", "smoke", "--data-dir", NEWLINE], "holds a line break (U+000A)"),
        (
            ["k8s", "--", "--suite", "smoke", "--data-dir", "/x\u2028---\u2028kind: ClusterRoleBinding"],
            "holds a line break (U+2028 LINE SEPARATOR)",
        ),
        (["k8s", "--", "--suite", "smoke", "--data-dir", "/x\x85kind: Secret"], "holds a line break (U+0085"),
        (["k8s", "--", "--suite", "smoke", "--data-dir", "/x\u200b"], "holds a format character (U+200B"),
        (["k8s", "--name", "../../etc/x", "--", "--suite", "smoke"], "RFC 1123"),
        (["k8s", "--name", "Bench", "--", "--suite", "smoke"], "RFC 1123"),
        (["k8s", "--nodes", "0", "--", "--suite", "smoke"], "must be at least 1"),
        (["k8s", "--gpus-per-node", "-1", "--", "--suite", "smoke"], "must be at least 1"),
        (["k8s", "--results-claim", "a/b", "--", "--suite", "smoke"], "PersistentVolumeClaim"),
        (["k8s", "--name", "job", "--", "--suite", "smoke", "--run-id", "other"], "give --name other"),
    ],
)
def test_bad_names_and_values_are_one_line_that_names_the_fix(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and err.count("\n") == 1 and message in err, err
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("value", ["nan", "inf", "-10%", "0", "0%", "100%", "1", "150", "ten"])
def test_the_slowdown_gate_cannot_be_switched_off_by_accident(value, capsys):
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["compare", "a", "b", f"--fail-slower={value}"])
    assert "a slowdown between 0% and 100%" in capsys.readouterr().err
    assert cli.parser().parse_args(["compare", "a", "b", "--fail-slower", "10%"]).fail_slower == pytest.approx(0.1)
    assert cli.parser().parse_args(["compare", "a", "b", "--fail-slower", "0.1"]).fail_slower == pytest.approx(0.1)


def test_a_default_run_id_holds_only_what_a_run_id_may():
    assert records.default_run_id("smoke", "h\udcff|x/../y") == "smoke-h--x-..-y"
    assert records.check_run_id(records.default_run_id("s", "n" * 300)) == "s-" + "n" * 98


def test_a_results_folder_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    args = ["run", "--suite", "smoke", "--workload", "torch-convnet", "--precision", "fp16-mixed"]
    assert cli.main([*args, "--results-dir", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: {tmp_path / 'file'}") and err.count("\n") == 1, err


def test_a_closing_report_that_fails_leaves_the_runs_status(tmp_path, capsys):
    results = tmp_path / "results"
    results.mkdir()
    (results / "report").write_text("")  # the report cannot be written there
    args = ["run", "--suite", "smoke", "--workload", "torch-convnet", "--precision", "fp16-mixed", "--mode", "eager"]
    assert cli.main([*args, "--input", "loader", "--results-dir", str(results)]) == 0  # every cell unsupported here
    assert "the closing report failed" in capsys.readouterr().err
    assert [r["status"] for r in records.read(next(results.glob("*/records.jsonl")))] == ["unsupported"]


def test_links_planted_in_a_results_folder_are_never_written_through(tmp_path, capsys, mnist_dir, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim"
    victim.write_text("keep")
    link = tmp_path / "result.json"  # a file bench replaces whole (result.json, curve.csv, bench.sbatch)
    link.symlink_to(victim)
    files.replace(link, "new")
    assert not link.is_symlink() and link.read_text() == "new"
    cell = tmp_path / "cell"  # a cell's folder that an interrupted run left: the link goes, not what it points to
    cell.symlink_to(elsewhere)
    assert not list(files.fresh_folder(cell, own="cell.json").iterdir()) and not cell.is_symlink()
    run = tmp_path / "results" / "r"
    run.mkdir(parents=True)
    monkeypatch.setenv("BENCH_DATA_DIR", str(mnist_dir))
    monkeypatch.setattr(contention, "CHECK_S", 0.0)
    args = ["run", "--suite", "smoke", "--workload", "torch-convnet", "--precision", "fp32", "--mode", "eager"]
    args += ["--input", "loader", "--results-dir", str(run.parent), "--run-id", "r", "--no-report"]
    for name, message in ((runlock.NAME, "a symbolic link there"), ("cells", "is a symbolic link")):
        (run / name).symlink_to(victim if name == runlock.NAME else elsewhere)
        assert cli.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"bench: error: {run / name}") and message in err and err.count("\n") == 1, err
        (run / name).unlink()
    assert victim.read_text() == "keep" and sorted(p.name for p in elsewhere.iterdir()) == ["victim"]


def test_job_files_quote_what_they_are_given():
    script = slurm.render(["--suite", "smoke", "--data-dir", "/data/my mnist;rm -rf ~"], sbatch=["--gpus=1"])
    assert "'/data/my mnist;rm -rf ~'" in script and "#SBATCH --gpus=1\n" in script
    job = k8s.trainjob("job", "bench:cuda", ["--suite", "smoke", "--run-id", "job"])
    assert job["spec"]["trainer"]["command"].count("--run-id") == 1


CORPUS = sorted((Path(__file__).parent / "hostile").glob("*.json"))
RISKY = ("=", "+", "-", "@", "\t", "\r")


@pytest.mark.parametrize("case", CORPUS, ids=lambda p: p.stem)
def test_a_hostile_record_never_stops_a_reader(case, tmp_path, capsys):
    """tests/hostile/<case>.json: a line of records.jsonl beside a good record, why it is there, and whether it is
    kept or left out. The report, compare, resume's plan and the ETA read the folder; none stops, and no output
    carries markup, a heading or a formula out of its cell."""
    spec = json.loads(case.read_text())
    results = tmp_path / "results"
    path = results / "r" / "records.jsonl"
    path.parent.mkdir(parents=True)
    good = valid(**{"cell.fingerprint": "fedcba9876543210", "cell.repeat": 1})
    path.write_text(json.dumps(good) + "\n" + spec["line"] + "\n")

    md = report.write(results).read_text()
    kept = 2 if spec["expect"] == "kept" else 1
    assert f"{kept} records from" in md, spec["why"]
    assert ("## Records left out" in md) == (spec["expect"] == "left out")  # "unreadable": not a record at all
    text = [line for line in md.splitlines() if not line.startswith("    ")]  # an indented block shows markup as is
    assert not [line for line in text if line.startswith("## Injected") or "<script>" in line or "<img" in line]
    assert "\udc80" not in md
    with open(results / "report" / "summary.csv", newline="") as f:
        assert not [v for row in csv.reader(f) for v in row if v.startswith(RISKY)]
    compare.compare(results, results)
    cells = expand("t", validate("t", {"backend": "cpu", "workloads": ["torch-convnet"]}))
    planning.plan(cells, results, "r")  # resume reads the run's own records
    estimate.history(results, "box")  # the ETA reads every run's
    assert f"{path}:2" in capsys.readouterr().err or kept == 2  # a line left out is named by file:line


def test_a_suite_file_that_is_not_utf8_and_a_corrupt_gzip_are_one_line(tmp_path, capsys, monkeypatch):
    suite = tmp_path / "s.toml"
    suite.write_bytes(b'workloads = ["torch-convnet"]\ndescription = "\xff"\n')
    assert cli.main(["run", "--suite", str(suite), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: suite file") and "save it as UTF-8" in err and err.count("\n") == 1, err

    from bench.run import data

    good = gzip.compress(b"\x00\x00\x08\x01" + (4).to_bytes(4, "big") + b"abcd")
    bad = tmp_path / "labels.gz"
    bad.write_bytes(good[:12] + bytes([good[12] ^ 0xFF]) + good[13:])  # a flipped bit inside, not truncated
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.read_idx(bad)


def test_bench_never_removes_or_overwrites_a_file_it_did_not_write(tmp_path, capsys):
    two = tmp_path / "results"
    from tests.test_stats import two_precisions

    two_precisions(two / "run")
    out = tmp_path / "mine"  # a folder of the user's, named as --out
    (out / "sub").mkdir(parents=True)
    (out / "important.txt").write_text("keep")
    (out / "sub" / "more.txt").write_text("keep")
    args = ["compare", str(two), str(two), "--a", "precision=fp32", "--b", "precision=fp32"]
    assert cli.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"bench: error: {out} holds what bench did not write (important.txt, sub)"), err
    assert (out / "important.txt").read_text() == "keep" and (out / "sub" / "more.txt").read_text() == "keep"
    # bench's own folder is replaced, and stays bench's: a file the user puts in it later is not removed either
    assert cli.main([*args, "--out", str(tmp_path / "cmp")]) == 0
    assert cli.main([*args, "--out", str(tmp_path / "cmp")]) == 0
    assert sorted(p.name for p in (tmp_path / "cmp").iterdir()) == [files.MARK, "compare.html", "compare.md"]
    (tmp_path / "cmp" / "notes.txt").write_text("mine")
    assert cli.main([*args, "--out", str(tmp_path / "cmp")]) == 2
    assert (tmp_path / "cmp" / "notes.txt").read_text() == "mine"
    capsys.readouterr()
    # a report folder written before the mark holds only the report's own names: replaced, then marked
    legacy = two / "report"
    legacy.mkdir()
    (legacy / "REPORT.md").write_text("old")
    (legacy / "torch-convnet-accuracy.png").write_bytes(b"old")
    report.write(two)
    assert (legacy / files.MARK).is_file() and (legacy / "REPORT.md").read_text() != "old"
    (legacy / "my-notes.md").write_text("mine")
    with pytest.raises(ValueError, match=r"holds what bench did not write \(my-notes\.md\)"):
        report.write(two)
    assert (legacy / "my-notes.md").read_text() == "mine"
    # a job file: bench's own is replaced, anyone else's is not
    mine = tmp_path / "job.yaml"
    mine.write_text("apiVersion: v1\nkind: Secret\n")
    assert cli.main(["k8s", "--out", str(mine), "--", "--suite", "smoke"]) == 2
    assert "exists and bench did not write it" in capsys.readouterr().err and mine.read_text().startswith("apiVersion")
    assert cli.main(["k8s", "--out", str(tmp_path / "trainjob.yaml"), "--", "--suite", "smoke"]) == 0
    assert cli.main(["k8s", "--out", str(tmp_path / "trainjob.yaml"), "--", "--suite", "smoke"]) == 0
    sbatch = tmp_path / "bench.sbatch"
    sbatch.write_text("#!/bin/bash\necho mine\n")
    with pytest.raises(ValueError, match="exists and bench did not write it"):
        files.own_file(sbatch, slurm.render(["--suite", "smoke"]), slurm.HEADER)
    files.own_file(tmp_path / "new.sbatch", slurm.render(["--suite", "smoke"]), slurm.HEADER)
    files.own_file(tmp_path / "new.sbatch", slurm.render(["--suite", "smoke"]), slurm.HEADER)
    # a cell's folder that is not bench's
    cell = tmp_path / "cells" / "x.r0"
    cell.mkdir(parents=True)
    (cell / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="holds files bench did not write"):
        files.fresh_folder(cell, own="cell.json")
    (cell / "cell.json").write_text("{}")  # an interrupted run's: bench's to clear
    assert not list(files.fresh_folder(cell, own="cell.json").iterdir())


def test_the_gate_fails_when_a_cell_ok_in_a_failed_or_is_missing_in_b(tmp_path, capsys):
    from tests.test_report import rec, write

    a = [rec(tput=t, repeat=i) for i, t in enumerate([1000.0, 1010.0, 990.0])]
    a += [rec(workload="lightning-convnet", tput=t, repeat=i) for i, t in enumerate([800.0, 810.0, 790.0])]
    write(tmp_path / "a" / "records.jsonl", a)
    b = [rec(tput=t, repeat=i) for i, t in enumerate([1000.0, 1010.0, 990.0])]
    b += [rec(workload="lightning-convnet", status="failed", reason="CUDA error", repeat=i) for i in range(3)]
    write(tmp_path / "b" / "records.jsonl", b)
    args = ["compare", str(tmp_path / "a"), str(tmp_path / "b")]
    assert cli.main(args) == 1
    out = capsys.readouterr()
    assert "1 cells ok in A are lost in B, the comparison fails" in out.err
    assert "lightning-convnet torch-convnet" not in out.err and "failed in B" in out.err
    assert "## Cells lost in B" in (tmp_path / "b" / "compare" / "compare.md").read_text()
    assert cli.main([*args, "--allow-missing"]) == 0
    write(tmp_path / "c" / "records.jsonl", b[:3])  # no record at all of lightning-convnet
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "c")]) == 1
    assert "no record in B" in capsys.readouterr().err
    write(tmp_path / "d" / "records.jsonl",
          [*b[:3], rec(workload="lightning-convnet", status="unsupported", reason="not here")])  # fmt: skip
    assert cli.main(["compare", str(tmp_path / "a"), str(tmp_path / "d")]) == 0  # unsupported in B: no loss


def test_characters_that_reorder_or_hide_text_are_shown_escaped_everywhere(tmp_path, capsys):
    from tests.test_report import rec, write

    env = {"host": "box\u202egnp.exe", "allocator": {"name": "glibc-tuned"}, "packages": {}}
    rows = [rec(tput=1000.0 + i, repeat=i, env=env, device_name=" =HYPERLINK(1)") for i in range(3)]
    rows.append(rec(precision="bf16-true", status="failed", reason="\x1bc\x07 crashed\u200b", env=env))
    write(tmp_path / "run" / "records.jsonl", rows)
    md = report.write(tmp_path).read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    for text, slash in ((md, "\\\\"), (page, "\\")):  # Markdown escapes the backslash it shows
        assert "\u202e" not in text and "\x1b" not in text and "\u200b" not in text
        assert f"box{slash}u202egnp.exe" in text and f"{slash}x1bc{slash}x07 crashed{slash}u200b" in text
    assert "<bdi>" in page
    rows = list(csv.reader((tmp_path / "report" / "summary.csv").open()))
    assert rows[1][rows[0].index("hardware")] == "' =HYPERLINK(1)"  # a formula after a space, neutralised
    raw = (tmp_path / "report" / "summary.csv").read_text().splitlines()
    assert all(line.startswith('"') for line in raw)  # every field quoted
    records.warn("a record says \x1b[2J\u202e")
    assert capsys.readouterr().err == "warning: a record says \\x1b[2J\\u202e\n"


def test_a_hard_link_planted_in_a_run_folder_is_never_written_through(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep, no newline at the end")
    run = tmp_path / "results" / "r"
    run.mkdir(parents=True)
    (run / runlock.NAME).hardlink_to(victim)
    with pytest.raises(ValueError, match="one of 2 names of a file"), runlock.hold(run, "box"):
        pass
    (run / runlock.NAME).unlink()
    (run / "records.jsonl").hardlink_to(victim)
    with pytest.raises(ValueError, match="one of 2 names of a file"):
        records.repair(run / "records.jsonl")  # would cut the victim's last line
    with pytest.raises(ValueError, match="one of 2 names of a file"):
        records.append(run / "records.jsonl", valid())
    assert victim.read_text() == "keep, no newline at the end"


def test_a_hostile_micro_benchmark_file_is_left_out_with_a_warning_never_a_stop(tmp_path, capsys):
    import os

    from bench.report import benchmarks
    from tests.test_report import micro_run, rec, write

    write(tmp_path / "run" / "records.jsonl", [rec()])
    micro = tmp_path / "micro" / "box-cpu"
    good = [("train", "torch-convnet", "fp32", 0.01, 32, 1e6, "box", "Test CPU", "cpu")]
    micro_run(micro / "0001_good.json", "2026-12-01T00:00:00", good)
    os.mkfifo(micro / "0002_fifo.json")  # would hang a reader that opens it
    (micro / "0003_zero.json").symlink_to("/dev/zero")  # would never end
    bad = {
        "0004_ints.json": {"benchmarks": [1]},
        "0005_string_median.json": {"benchmarks": [{"name": "x", "stats": {"median": "fast"}}]},
        "0006_list_host.json": {
            "benchmarks": [
                {
                    "name": "x",
                    "stats": {"median": 0.1},
                    "extra_info": {
                        "kind": "train",
                        "workload": "torch-convnet",
                        "precision": "fp32",
                        "host": ["a"],
                        "device_name": "d",
                        "backend": "cpu",
                        "samples_per_call": 32,
                    },
                }
            ]
        },
        "0007_not_a_list.json": {"benchmarks": "all of them"},
    }
    for name, content in bad.items():
        (micro / name).write_text(json.dumps(content))
    (micro / "0008_deep.json").write_text('{"benchmarks": ' + "[" * 900 + "]" * 900 + "}")
    found = benchmarks.read(tmp_path)
    assert [b["workload"] for b in found] == ["torch-convnet"]  # the good one
    err = capsys.readouterr().err
    for name in ("0002_fifo.json: not a regular file", "0003_zero.json: Too many levels of symbolic links",
                 "0004_ints.json: benchmark 0: skipped", "0005_string_median.json: benchmark 0: skipped",
                 "0006_list_host.json: benchmark x: skipped", "0007_not_a_list.json: skipping",
                 "0008_deep.json: nested deeper than 32 levels"):  # fmt: skip
        assert name in err, (name, err)
    assert report.write(tmp_path).is_file()
    assert cli.main(["compare-micro", str(micro), "--runs", "1"]) == 0  # the newest against the one before: read
    assert cli.main(["compare-micro", str(tmp_path / "none"), "--runs", "1"]) == 2
    assert "no such folder of saved micro-benchmark runs" in capsys.readouterr().err


def test_nesting_deeper_than_any_record_and_a_deep_folder_tree_never_stop_a_reader(tmp_path, capsys):
    import os

    deep = valid()
    deep["env"]["extra"] = json.loads("[" * 700 + "]" * 700)
    path = tmp_path / "a" / "records.jsonl"
    path.parent.mkdir()
    path.write_text(json.dumps(valid()) + "\n" + json.dumps(deep) + "\n")
    recs, _, _ = records.load(tmp_path)
    assert len(recs) == 1 and "records.jsonl:2: skipping a line nested deeper than 32 levels" in capsys.readouterr().err
    fd = os.open(tmp_path, os.O_RDONLY)
    for _ in range(1100):  # by relative steps: the whole path is longer than a path may be
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY, dir_fd=fd), fd
        os.close(parent)
    out = os.open("records.jsonl", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    os.write(out, (json.dumps(valid()) + "\n").encode())
    os.close(out)
    os.close(fd)
    try:
        assert len(records.read_all(tmp_path)) == 1  # the one 1,100 folders deep is not searched
        assert "not searched, over 32 folders deep" in capsys.readouterr().err
        assert report.write(tmp_path).is_file()
    finally:
        _remove_deep(tmp_path / "d")  # pytest's own clean-up of old temporary folders recurses: it would stop


def _remove_deep(top: Path) -> None:
    """Remove a chain of folders of any depth without recursion: down by chdir, removing on the way back up."""
    import os

    start, names = os.getcwd(), []
    os.chdir(top)
    try:
        while True:
            for e in os.scandir("."):
                if not e.is_dir(follow_symlinks=False):
                    os.unlink(e.name)
            sub = next((e.name for e in os.scandir(".") if e.is_dir(follow_symlinks=False)), None)
            if sub is not None:
                os.chdir(sub)
                names.append(sub)
            elif names:
                os.chdir("..")
                os.rmdir(names.pop())
            else:
                break
    finally:
        os.chdir(start)
    top.rmdir()


def test_a_record_cannot_pass_for_another_cells_measurement(tmp_path, capsys):
    """A fingerprint is recomputed from the cell's own fields: a record claiming another cell's is left out, and
    one that omits a field of the identity (so that none can be recomputed) supersedes no record that holds them."""
    cell = expand("t", validate("t", {"backend": "cpu", "workloads": ["torch-convnet"]}))[0]
    real = valid(cell=runner.cell_section(cell, "r"), **{"env.host": "box"})
    forged = copy.deepcopy(real)
    forged["cell"]["epochs"] = 1  # another configuration, claiming the measured one's fingerprint
    forged["run"]["started_at"] = "2030-01-01T00:00:00+00:00"  # newer: it would have superseded the real one
    omitted = copy.deepcopy(forged)
    del omitted["cell"]["warmup_steps"]  # nothing to recompute from
    path = tmp_path / "r" / "records.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(r) + "\n" for r in (real, forged, omitted)))
    recs, left_out, superseded = records.load(tmp_path)
    assert len(left_out) == 1 and "is not this cell's" in left_out[0] and ":2:" in left_out[0]
    assert superseded == [] and len(recs) == 2  # the real record stands beside the unverifiable one
    assert planning.plan([cell], tmp_path, "r").done[cell.fingerprint]["cell"]["epochs"] == 10  # resume: the real one


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", str(10**23)], "epochs = 100000000000000000000000 should be an integer in [1, 10,000]"),
        (["--repeats", "auto:999999999999"], "with MAX in [1, 1,000]"),
        (["--repeats", "100000"], "repeats = 100000 should be a number in [1, 1,000]"),
        (["--profile-steps", str(10**9)], "profile_steps = 1000000000 should be an integer in [0, 1,000,000]"),
        (["--price-per-hour", "1e300"], "price_per_hour = 1e+300 should be a number in (0, 1,000,000]"),
        (
            [
                "--devices",
                ",".join(map(str, range(1, 200))),
                "--repeats",
                "1000",
                "--precision",
                "fp32,bf16-mixed,bf16-true",
            ],
            "cells, more than a suite may expand to (10,000)",
        ),
    ],
)
def test_every_setting_has_a_most_and_a_suite_a_most_cells(args, message, capsys):
    assert cli.main([*RUN, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bench: error: ") and message in err and err.count("\n") == 1, err


def test_an_eta_from_a_record_of_a_thousand_millennia_is_one_line():
    e = estimate.Eta(seconds=1e15, sources={estimate.REPEAT: 1})
    assert estimate.eta_text(e).startswith("ETA 277777777777 h 47 min (more than 30 days)")


def test_a_gzip_bomb_or_a_corrupt_gzip_in_the_data_folder_is_one_error(tmp_path):
    import tracemalloc

    from bench.run import data

    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=9) as f:
        for _ in range(9):
            f.write(bytes(8 << 20))  # 72 MiB of zeros in 73 kB: past the cap, as a bigger bomb would be
    assert bomb.stat().st_size < 1 << 20
    tracemalloc.start()
    with pytest.raises(data.DataError, match="inflates to more than 64 MiB, which no MNIST file does"):
        data.read_idx(bomb)
    assert tracemalloc.get_traced_memory()[1] < 100 << 20  # stopped at the cap, not at the end
    tracemalloc.stop()
    bomb.write_bytes(b"\x1f\x8b\x08\x00garbage")  # a gzip header, then nothing gzip reads
    with pytest.raises(data.DataError, match="not a readable gzip file"):
        data.validate(tmp_path)  # the checksum's read too, not only read_idx's


def test_a_report_grows_with_its_rows_not_with_what_one_record_holds(tmp_path):
    r = valid()
    r["outcome"]["artifacts"] = [f"cells/c/{i}.png" for i in range(45_000)]  # a line of most of the 1 MiB a line holds
    r["reason"] = None
    failed = valid(**{"cell.precision": "bf16-mixed", "cell.fingerprint": "1123456789abcdef"})
    failed.update(status="failed", reason="y" * schema.MAX_TEXT)
    rows = [r, failed]
    path = _write_folder(tmp_path, rows)
    assert path.stat().st_size > 800_000
    md = report.write(tmp_path).read_text()
    page = (tmp_path / "report" / "report.html").read_text()
    assert len(md) < 100_000 and len(page) < 300_000  # the plots are most of the page
    assert "9,989 more files the cell saved, not linked" in md  # 10,000 kept on read (records.MAX_ITEMS), 12 linked
    assert re.search(r"y… \(9,\d{3} more characters\)", md)  # the failed row's reason, cut at 1,000


def test_what_a_reader_builds_from_a_record_stays_in_proportion_to_it(tmp_path, capsys):
    r = valid()
    r["env"]["extra"] = [[]] * 25_000  # 100 kB of text, 25,000 objects once parsed
    path = _write_folder(tmp_path, [r])
    (kept,) = records.read(path)
    assert len(kept["env"]["extra"]) == records.MAX_ITEMS
    assert "records.jsonl:1: 15,000 items beyond 10,000 a list or object dropped" in capsys.readouterr().err
