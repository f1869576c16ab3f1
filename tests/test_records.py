"""Records: whole lines, torn last lines skipped and repaired, required fields enforced."""

from __future__ import annotations

import json

import pytest

from bench import records


def record(**over) -> dict:
    r = dict.fromkeys(records.FIELDS)
    r.update(schema_version=records.SCHEMA_VERSION, status="ok", cell_id="w/cpux1/fp32", **over)
    return r


def test_append_and_read_back(tmp_path):
    path = tmp_path / "run" / "records.jsonl"
    records.append(path, record(repeat=0))
    records.append(path, record(repeat=1))
    assert [r["repeat"] for r in records.read(path)] == [0, 1]
    assert path.read_text().count("\n") == 2


def test_missing_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="lacks fields"):
        records.append(tmp_path / "r.jsonl", {"status": "ok"})


def test_torn_last_line_is_skipped_then_repaired(tmp_path, capsys):
    path = tmp_path / "records.jsonl"
    records.append(path, record(repeat=0))
    whole = json.dumps(record(repeat=1))
    with open(path, "a") as f:
        f.write(whole[: len(whole) // 2])  # what a killed writer can leave
    assert [r["repeat"] for r in records.read(path)] == [0]
    assert "torn or corrupt" in capsys.readouterr().err
    records.repair(path)
    records.append(path, record(repeat=2))
    assert [r["repeat"] for r in records.read(path)] == [0, 2]
    assert "dropping a torn last line" in capsys.readouterr().err


def test_read_all_merges_runs(tmp_path):
    records.append(tmp_path / "a" / "records.jsonl", record(run_id="a"))
    records.append(tmp_path / "b" / "records.jsonl", record(run_id="b"))
    records.append(tmp_path / "reference" / "gpu" / "c" / "records.jsonl", record(run_id="c"))
    assert sorted(r["run_id"] for r in records.read_all(tmp_path)) == ["a", "b"]  # committed references stay out
    assert [r["run_id"] for r in records.read_all(tmp_path / "reference" / "gpu")] == ["c"]
