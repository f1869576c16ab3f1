"""Records: whole lines, torn last lines skipped and repaired, sections enforced, schema 2 read as schema 3."""

from __future__ import annotations

import json

import pytest

from bench import records
from bench.records import schema


def record(status="ok", **over) -> dict:
    filled = {name: {} for name in schema.sections()} if status == "ok" else {}
    r = records.new(status, None, **filled)
    r["cell"] = {"cell_id": "w/cpux1/fp32", "workload": "w", "backend": "cpu", "precision": "fp32", "device_count": 1,
                 "tta_target": 0.9, **over}  # fmt: skip
    return r


def test_append_and_read_back(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    records.append(path, record(repeat=0))
    records.append(path, record(repeat=1))
    assert [r["cell"]["repeat"] for r in records.read(path)] == [0, 1]
    assert path.read_text().count("\n") == 2


def test_a_record_missing_a_section_or_with_an_unknown_one_is_written_failed_naming_it(tmp_path):
    """schema.admit is the one check on write: what it lets through, records.append writes as it is."""
    path = tmp_path / "r.jsonl"
    missing = record()
    del missing["profile"]
    admitted = schema.admit(missing)
    assert admitted["status"] == "failed" and "profile: missing" in admitted["reason"]
    assert list(admitted) == [*schema.TOP, *schema.sections()] and admitted["profile"] is None
    carbon = schema.admit({**record(), "carbon": {}})
    assert carbon["status"] == "failed" and "carbon: no section of this name" in carbon["reason"]
    assert "carbon" not in carbon  # a key nobody declared is not written
    empty = schema.admit({**record(), "timing": None})
    assert empty["status"] == "failed" and "timing: an ok record fills every section" in empty["reason"]
    with pytest.raises(ValueError, match="unknown record sections"):
        records.new("ok", None, speed={})
    unsupported = record("unsupported")
    assert schema.admit(unsupported) is unsupported  # a cell that never ran fills only some sections
    for r in (admitted, carbon, empty, unsupported):
        records.append(path, r)
    assert [r["status"] for r in records.read(path)] == ["failed", "failed", "failed", "unsupported"]
    assert all(schema.admit(r) == r for r in records.read(path))  # what was written passes the check as it is


def test_torn_last_line_is_skipped_then_repaired(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    records.append(path, record(repeat=0))
    whole = json.dumps(record(repeat=1))
    with open(path, "a") as f:
        f.write(whole[: len(whole) // 2])  # what a killed writer can leave
    assert [r["cell"]["repeat"] for r in records.read(path)] == [0]
    assert "torn or corrupt" in capsys.readouterr().err
    records.repair(path)
    records.append(path, record(repeat=2))
    assert [r["cell"]["repeat"] for r in records.read(path)] == [0, 2]
    assert "dropping a torn last line" in capsys.readouterr().err


def test_read_all_merges_runs(tmp_path):
    records.append(tmp_path / "a" / "records.jsonl", record(run_id="a"))
    records.append(tmp_path / "b" / "records.jsonl", record(run_id="b"))
    records.append(tmp_path / "reference" / "gpu" / "c" / "records.jsonl", record(run_id="c"))
    assert sorted(r["cell"]["run_id"] for r in records.read_all(tmp_path)) == ["a", "b"]  # references stay out
    assert [r["cell"]["run_id"] for r in records.read_all(tmp_path / "reference" / "gpu")] == ["c"]


def test_schema_2_reads_as_schema_3_and_flattens_back():
    v2 = {"schema_version": 2, "status": "ok", "reason": None, "workload": "fastai-resnet18", "precision": "fp32",
          "device_name": "NVIDIA H100 80GB HBM3", "throughput_samples_per_s": 2085.0, "final_accuracy": 0.96,
          "phase_throughput": {"frozen": 2500.0, "unfrozen": 2000.0}, "peak_memory_bytes": 2**30,
          "env": {"host": "vm"}}  # fmt: skip
    r = schema.upgrade(v2)
    assert set(r) == {*schema.TOP, *schema.sections()} and r["profile"] is None
    assert r["cell"]["workload"] == "fastai-resnet18" and r["timing"]["throughput_samples_per_s"] == 2085.0
    assert r["env"] == {"host": "vm", "device_name": "NVIDIA H100 80GB HBM3"}
    assert r["outcome"]["full_network_phase"] == "unfrozen"
    flat = records.flat(r)
    assert flat["final_accuracy"] == 0.96 and flat["peak_memory_bytes"] == 2**30
    assert flat["workload"] == "fastai-resnet18" and flat["outcome"]["full_network_phase"] == "unfrozen"
    with pytest.raises(ValueError, match="schema_version 99"):
        schema.upgrade({"schema_version": 99})


def test_one_record_per_measurement_the_newer_stands(tmp_path):
    def made(status, started, host="a", run_id="r", fingerprint="f0", repeat=0) -> dict:
        r = record(status, run_id=run_id, fingerprint=fingerprint, repeat=repeat)
        return {**r, "run": {"started_at": started}, "env": {"host": host}}

    path = tmp_path / "r" / "records.jsonl"
    for r in (
        made("timeout", "2026-12-01T10:00:00+00:00"),  # retried below: superseded
        made("ok", "2026-12-01T10:05:00+00:00", fingerprint="f1", repeat=1),
        made("ok", "2026-12-01T10:00:00+00:00", host="b"),  # the same cell on another host: its own measurement
        made("ok", "2026-12-01T10:00:00+00:00", run_id="other"),  # and in another run
        made("ok", "2026-12-01T11:00:00+00:00"),
    ):
        records.append(path, r)
    kept, superseded = records.latest(records.located(path))
    assert [(r["status"], r["_line"]) for r in kept] == [("ok", 2), ("ok", 3), ("ok", 4), ("ok", 5)]
    assert superseded == [f"{path}:1: timeout (w/cpux1/fp32 repeat 0) superseded by {path}:5 (ok)"]


def test_a_record_that_fails_its_schema_is_written_failed_naming_why(tmp_path):
    """One schema on write and read: the runner never appends what no reader would take."""
    path = tmp_path / "r.jsonl"
    bad = record(repeat=0)
    bad["timing"] = {"throughput_samples_per_s": float("nan")}
    assert schema.written(bad)[0].startswith("timing.throughput_samples_per_s: ")
    admitted = schema.admit(bad)
    assert admitted["status"] == "failed" and admitted["timing"] is None and admitted["cell"] == bad["cell"]
    assert admitted["reason"].startswith("the record failed its schema (timing.throughput_samples_per_s: ")
    records.append(path, admitted)
    assert schema.admit(admitted) is admitted and records.read(path)[0]["status"] == "failed"


def test_only_regular_files_are_read_as_a_capped_stream_and_never_appended_through_a_link(tmp_path, capsys):
    import os

    fifo, zero, link = (tmp_path / name / "records.jsonl" for name in ("fifo", "zero", "link"))
    for path in (fifo, zero, link):
        path.parent.mkdir()
    os.mkfifo(fifo)  # would block a plain open() until a writer came
    zero.symlink_to("/dev/zero")  # would fill memory
    victim = tmp_path / "victim.jsonl"
    records.append(victim, record(repeat=0))
    link.symlink_to(victim)
    assert records.read(fifo) == [] and records.read(zero) == [] and records.read(link) == []
    err = capsys.readouterr().err
    assert "not a regular file" in err and err.count("a link is not followed") == 2, err
    with pytest.raises(OSError):
        records.append(link, record(repeat=1))  # O_NOFOLLOW: the link's target gets no record
    with pytest.raises(ValueError, match="is a link or not a file"):
        records.repair(link)
    assert victim.read_text().count("\n") == 1
    long = tmp_path / "long" / "records.jsonl"
    long.parent.mkdir()
    long.write_text('{"x": "' + "y" * records.MAX_LINE + '"}\n' + json.dumps(record(repeat=2)) + "\n")
    assert [r["cell"]["repeat"] for r in records.read(long)] == [2]  # the line over 1 MiB is skipped, by number
    assert f"{long}:1: skipping a line over 1 MiB" in capsys.readouterr().err
