"""The report's table of records (bench.report.index): what reading every record whole gives, kept between reports
and read again only where a file changed, with the rest of a record read back from its line."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from bench import records
from bench.report import aggregate, index
from tests.test_report import rec, write


def results(tmp_path):
    """Three runs: repeats, a diverged repeat retried (superseded), a record that fails its schema, a torn line."""
    write(tmp_path / "a" / "records.jsonl", [rec(tput=t, repeat=i, run_id="a") for i, t in enumerate([900.0, 1000.0])])
    write(
        tmp_path / "b" / "records.jsonl",
        [
            rec(tput=1100.0, repeat=0, run_id="b", fingerprint="b0"),
            rec(status="diverged", reason="NaN loss", repeat=1, run_id="b", fingerprint="b1", tta_seconds=None,
                run={"started_at": "2026-12-07T01:00:00+00:00"}),
            rec(tput=1050.0, repeat=1, run_id="b", fingerprint="b1",
                run={"started_at": "2026-12-07T02:00:00+00:00"}),
            rec(precision="bf16-mixed", tput=-5.0, run_id="b"),  # fails its schema
        ],
    )  # fmt: skip
    write(tmp_path / "c" / "records.jsonl", [rec(precision="bf16-mixed", tput=2000.0, run_id="c")])
    with open(tmp_path / "c" / "records.jsonl", "a") as f:
        f.write('{"schema_version": 3, "status": "o')  # a torn last line
    return tmp_path


def whole(path):
    """The same through bench.records.load: every record read whole."""
    recs, left_out, superseded = records.load(path)
    return aggregate.frame(recs), left_out, superseded


def same(df: pd.DataFrame) -> list[dict]:
    """``df``'s rows with a gap as None, whatever the column's type (a column of text holds one as NaN where the
    frame's records had text there, as bench.records.load's frame does)."""
    return [{k: None if v is None or (isinstance(v, float) and v != v) else v for k, v in r.items()} for r in
            df.astype(object).to_dict("records")]  # fmt: skip


def test_the_table_gives_what_reading_every_record_whole_gives(tmp_path, cache):
    path = results(tmp_path)
    df, left_out, superseded = index.frame(path)
    full, full_left_out, full_superseded = whole(path)
    assert (left_out, superseded) == (full_left_out, full_superseded) and len(left_out) == len(superseded) == 1
    shown = [c for c in (*aggregate.SCALARS, "diverged_before", "_newer") if c != "_details"]
    assert same(df[shown]) == same(full[shown])
    assert df["diverged_before"].sum() == 1
    assert not df["_details"].any() and "curve" not in df  # the rest of each record stays in its line
    pd.testing.assert_frame_equal(
        aggregate.summarise(df, "cpu/fp32"), aggregate.summarise(full, "cpu/fp32"), check_dtype=False
    )


def test_complete_reads_back_the_rest_of_the_records_asked_from_their_lines(tmp_path, cache):
    path = results(tmp_path)
    df, _, _ = index.frame(path)
    full, _, _ = whole(path)
    some = aggregate.complete(df.iloc[[0, 2]])
    assert some["_details"].all() and list(some["curve"]) == list(full["curve"].iloc[[0, 2]])
    assert list(some["env"]) == list(full["env"].iloc[[0, 2]])
    # a file cut short since the table was made: its records keep their scalars, and nothing stops
    (path / "a" / "records.jsonl").write_text("")
    cut = aggregate.complete(df[df["run_id"] == "a"])
    assert not cut["_details"].any() and cut["curve"].isna().all()


def test_the_next_report_reads_again_only_the_files_that_changed(tmp_path, cache, monkeypatch):
    path = results(tmp_path)
    read = []
    located = records.located
    monkeypatch.setattr(records, "located", lambda p: read.append(p.parent.name) or located(p))
    first, _, _ = index.frame(path)
    assert sorted(read) == ["a", "b", "c"]
    read.clear()
    again, _, _ = index.frame(path)
    assert read == []
    pd.testing.assert_frame_equal(first, again)
    write(path / "a" / "records.jsonl", [rec(tput=950.0, repeat=2, run_id="a")])  # appended to
    write(path / "d" / "records.jsonl", [rec(tput=990.0, run_id="d")])  # tonight's run
    shutil.rmtree(path / "c")  # a run removed
    grown, _, _ = index.frame(path)
    assert sorted(read) == ["a", "d"]
    assert sorted(set(grown["run_id"])) == ["a", "b", "d"] and len(grown) == len(first) + 2 - 1
    assert same(grown.drop(columns="_details")) == same(whole(path)[0][grown.columns].drop(columns="_details"))


def test_a_table_another_version_made_or_a_broken_one_is_made_again(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_CACHE_DIR", str(tmp_path / "cache"))
    path = results(tmp_path / "results")
    first, _, _ = index.frame(path)
    (kept,) = (tmp_path / "cache" / "report-index").iterdir()
    kept.write_bytes(b"not a pickle")
    pd.testing.assert_frame_equal(index.frame(path)[0], first)
    read = []
    located = records.located
    monkeypatch.setattr(records, "located", lambda p: read.append(p) or located(p))
    monkeypatch.setattr(index, "code", lambda: "another")
    pd.testing.assert_frame_equal(index.frame(path)[0], first)
    assert len(read) == 3


def test_what_reading_said_is_said_again_whenever_the_table_is_used(tmp_path, cache, capsys):
    path = results(tmp_path)
    for _ in range(2):
        index.frame(path)
        err = capsys.readouterr().err
        assert "torn or corrupt line" in err and "left out" in err


def test_strict_stops_at_a_record_left_out_as_it_did_before_the_table(tmp_path, cache):
    path = results(tmp_path)
    index.frame(path)  # kept
    with pytest.raises(ValueError, match="1 of 7 records cannot be used"):
        index.frame(path, strict=True)
    with pytest.raises(ValueError, match=r"no records\.jsonl under"):
        index.frame(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no records\.jsonl under"):
        index.frame(tmp_path / "empty")
    bad = tmp_path / "bad" / "records.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"schema_version": 3, "status": "ok"}) + "\n")
    with pytest.raises(ValueError, match="none of the records under"):
        index.frame(bad.parent)
