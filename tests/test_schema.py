"""Records from elsewhere are untrusted: each is checked against its schema on read (bench.records.schema); a bad one is
named by file, line and field and left out of the report (or stops it under --strict); everything that reaches
report.html is escaped. The report is fuzzed with hypothesis: random and hostile records never crash it, never put
markup of their own into it, and never cost it a valid record."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench import cli, records, report
from bench.plan.suite import validate
from bench.records import schema
from bench.report import compare
from bench.run import estimate, planning
from tests.conftest import QUIET, expand

HOSTILE_TEXT = [
    "<b>evil</b>",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "$\\frac{",
    "|",
    "a|b\n## Injected heading\n| a | b |",
    '=HYPERLINK("http://x")',
    "\x00\x1b[31m\r",
    "\udc80",  # a lone surrogate: JSON can hold it, UTF-8 cannot (read as U+FFFD)
    "x" * schema.MAX_TEXT,
]


def valid(**over) -> dict:
    """A schema-3 record as the harness writes it, with every section the report reads."""
    r = records.new("ok", None, **{name: {} for name in schema.sections()})
    r["cell"] = {
        "run_id": "r", "cell_id": "torch-convnet/cpux1/fp32", "fingerprint": "0123456789abcdef",
        "workload": "torch-convnet", "framework": "torch", "backend": "cpu", "device_count": 1, "nodes": 1,
        "precision": "fp32", "repeat": 0, "seed": 0, "batch_size": 32, "lr": 0.5, "epochs": 2, "limit_train": 3200,
        "limit_test": 2000, "num_workers": 0, "pretrained": None, "tta_target": 0.9, "stop_at_target": False,
        "mode": "eager", "input": "loader",
    }  # fmt: skip
    price = {"usd_per_hour": 0.38847, "plan": "on-demand", "entry": "gcp/x/y", "provider": "gcp", "instance": "x",
             "region": "y", "retrieved": "2026-11-28"}  # fmt: skip
    r["run"] = {"started_at": "2026-11-28T00:00:00+00:00", "process_seconds": 30.0, "order": "interleaved",
                "position": 1, "price": price}  # fmt: skip
    r["outcome"] = {"precision_effective": "fp32", "artifacts": ["cells/c/plot.png"], "global_batch_size": 32}
    r["timing"] = {"throughput_samples_per_s": 1600.0, "step_time_ms_median": 19.0, "step_time_ms_p90": 21.0,
                   "loader_samples_per_s": 9000.0, "warmup_seconds": 1.0, "setup_seconds": 2.0,
                   "phase_seconds": {"train": 4.0}, "phase_throughput": {"train": 1600.0}}  # fmt: skip
    curve = [{"epoch": 0, "elapsed_seconds": 2.0, "test_accuracy": 0.93, "train_loss": 0.3}]
    r["accuracy"] = {"final_accuracy": 0.93, "tta_seconds": 2.0, "epochs_run": 1, "curve": curve}
    r["memory"] = {"peak_memory_bytes": 2**30, "peak_memory_kind": "process-rss"}
    r["profile"] = {"status": "ok", "reason": None, "device_busy_pct": 80.0, "loader_pct": 5.0, "steps": 10,
                    "host_ms_per_step": 3.0, "busy_kind": "ATen ops", "trace": "cells/c/t.pt.trace.json"}  # fmt: skip
    r["energy"] = {"status": "not measured", "reason": "no counters", "method": {}, "samples_per_joule": None}
    r["contention"] = copy.deepcopy(QUIET)  # a record of its own: a test may change it
    r["distributed"] = {"world_size": 1, "nodes": 1, "collective": None}
    r["env"] = {"host": "box", "device_name": "Test CPU", "cpu_model": "Test CPU", "cpu_count": 2,
                "cpu_isa": {"avx2": True}, "packages": {"torch": "2.9.0"}, "allocator": {"name": "glibc"}}  # fmt: skip
    for path, value in over.items():
        section, _, field = path.partition(".")
        if field:
            r[section][field] = value
        else:
            r[section] = value
    return r


def write(folder: Path, recs: list) -> Path:
    path = folder / "run" / "records.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    return path


def test_the_four_reported_cases_each_name_file_line_and_field_and_the_html_escapes_the_host(tmp_path, capsys):
    recs = [
        valid(**{"timing.throughput_samples_per_s": "fast"}),
        valid(**{"accuracy.final_accuracy": {"top1": 0.99}}),
        valid(schema_version=99),
        valid(**{"env.host": "<b>evil</b>"}),
        valid(),
    ]
    path = write(tmp_path, recs)
    assert cli.main(["report", "--results-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"{path}:1: timing.throughput_samples_per_s: Input should be a valid number (got 'fast')" in err
    assert f"{path}:2: accuracy.final_accuracy: Input should be a valid number (got {{'top1': 0.99}})" in err
    assert f"{path}:3: schema_version: 99; this version of bench reads 1, 2, 3" in err
    assert "Traceback" not in err
    md = (tmp_path / "report" / "REPORT.md").read_text()
    assert "2 records from 1 runs on 2 hosts" in md and f"    {path}:1: timing.throughput_samples_per_s" in md
    page = (tmp_path / "report" / "report.html").read_text()
    assert "&lt;b&gt;evil&lt;/b&gt;" in page and "<b>evil" not in page
    assert cli.main(["report", "--results-dir", str(tmp_path), "--strict"]) == 2
    assert "3 of 5 records cannot be used" in capsys.readouterr().err


def test_paths_outside_the_run_folder_and_unsafe_names_are_refused():
    assert schema.problems(valid()) == []
    bad = schema.problems(valid(**{"outcome.artifacts": ["../../etc/passwd"]}))
    assert bad == ["outcome.artifacts.0: '../../etc/passwd' is not a relative path inside the run's folder"]
    assert "profile.trace" in schema.problems(valid(**{"profile.trace": "javascript:alert(1)"}))[0]
    assert "cell.workload: String should match pattern" in schema.problems(valid(**{"cell.workload": "../x"}))[0]
    assert schema.problems(valid(**{"profile.device_busy_pct": None})) == [
        "profile: an ok profile needs device_busy_pct"
    ]
    assert schema.problems(valid(**{"timing.throughput_samples_per_s": float("nan")})) == [
        "timing.throughput_samples_per_s: Input should be a finite number (got nan)"
    ]
    assert schema.problems(valid(**{"accuracy.final_accuracy": 1.5}))[0].startswith("accuracy.final_accuracy: Input")
    assert schema.problems(valid(**{"cell.device_count": True}))[0].startswith("cell.device_count: Input should be")


def test_the_cell_section_is_typed_from_the_settings_table():
    from bench.plan.settings import CELL_FIELDS

    assert set(CELL_FIELDS) <= set(schema.Cell.model_fields)
    r = valid(**{"cell.epochs": 0, "cell.allocator": "mine", "cell.lr": "fast", "cell.limit_test": 10_001})
    assert [p.split(":")[0] for p in schema.problems(r)] == [
        "cell.epochs",
        "cell.limit_test",
        "cell.lr",
        "cell.allocator",
    ]
    whole = valid(**{"cell.lr": "find", "cell.allocator": "tcmalloc", "cell.warmup_steps": 0})
    own = schema.own_fingerprint(whole["cell"])  # every field of the identity there: the fingerprint is checked
    wrong = f"cell.fingerprint: '0123456789abcdef' is not this cell's (its fields give {own})"
    assert schema.problems(whole) == [wrong]
    whole["cell"]["fingerprint"] = own
    assert not schema.problems(whole)


def test_a_sections_own_invariants_need_their_values():
    """What a report reads first must be there: a tracker's status, an ok share, compile counts with their seconds."""
    r = valid()
    r["profile"], r["contention"] = {"x": 0}, {"status": "ok"}
    r["compile"] = {"compilations": 3, "compile_seconds": None}
    assert schema.problems(r) == [
        "contention: an ok contention section needs its verdict",
        "compile: compilations need their compile_seconds",
        "profile: a section with fields needs its status",
    ]


def test_the_committed_schema_2_reference_passes_its_schema():
    from tests.conftest import ROOT

    recs = records.read_all(ROOT / "results" / "reference" / "nvidia-h100" / "seed-recipe")
    recs += records.read_all(ROOT / "results" / "reference" / "nvidia-h100" / "short-check")
    assert recs and schema.split(recs) == (recs, [])


def test_the_committed_reference_keeps_its_fingerprints():
    """The identity rule (bench.plan.cell) keeps every seed-recipe record of the H100 reference matching its cell of
    the gpu-reference suite."""
    from bench.plan import suite
    from tests.conftest import ROOT

    recs = records.read_all(ROOT / "results" / "reference" / "nvidia-h100" / "seed-recipe")
    name, raw = suite.load("gpu-reference")
    fingerprints = {c.fingerprint for c in expand(name, suite.validate(name, {**raw, "backend": "cuda"}))}
    assert recs and all(r["fingerprint"] in fingerprints for r in recs)


# ---- the fuzzing ----------------------------------------------------------------------------------------------------

text = st.one_of(st.text(max_size=20), st.sampled_from(HOSTILE_TEXT))
hostile_value = st.one_of(
    text,
    st.just("x" * (schema.MAX_TEXT + 1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),  # parsed, but beyond every conversion
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
FIELDS = [
    (section, field)
    for section in ("cell", "run", "outcome", "timing", "accuracy", "memory", "profile", "energy", "env")
    for field in valid()[section]
]


# versions as long as the schema lets them be, all digits too (the report sorts them as numbers)
versions = st.one_of(st.none(), st.from_regex(r"[0-9][0-9.a-z+]{0,99}", fullmatch=True), st.just("9" * 100))


def entry(usd: float, t: str) -> dict:
    """A price of the price table's, each of its fields any text."""
    return {"usd_per_hour": usd, "plan": t, "entry": t, "provider": t, "instance": t, "region": t, "retrieved": t}


@st.composite
def valid_records(draw) -> dict:
    """Records the schema must accept: measured values in their ranges, any text where text is free."""
    nodes = draw(st.integers(1, 2))
    r = valid(
        **{
            "cell.workload": draw(
                st.sampled_from(["torch-convnet", "lightning-convnet", "fastai-resnet18", "torch-resnet18"])
            ),
            "cell.precision": draw(st.sampled_from(["fp32", "bf16-mixed", "fp16-mixed", "new-precision"])),
            "cell.repeat": draw(st.integers(0, 3)),
            "cell.nodes": nodes,
            "cell.mode": draw(st.sampled_from(["eager", "compile", None])),
            # a rate down to the smallest a float holds, beside the others of its row and workload (a division)
            "timing.throughput_samples_per_s": draw(st.one_of(st.none(), st.floats(5e-324, 1e7))),
            "timing.loader_samples_per_s": draw(st.one_of(st.none(), st.floats(5e-324, 1e7))),
            "accuracy.final_accuracy": draw(st.floats(0, 1)),
            "accuracy.tta_seconds": draw(st.one_of(st.none(), st.floats(0, 1e6))),
            "env.host": draw(text),
            "env.device_name": draw(st.one_of(st.none(), text)),
            "run.price": draw(
                st.one_of(
                    st.none(),
                    st.builds(lambda u: {"usd_per_hour": u, "plan": "given"}, st.floats(0.01, 1e3)),
                    st.builds(entry, st.floats(0.01, 1e3), text),
                )
            ),
            "env.packages": {"torch": draw(versions)},
        }
    )
    status = draw(st.sampled_from(["ok", "unsupported", "failed", "off", "a status of a newer tracker"]))
    r["profile"] = r["profile"] if status == "ok" else {"status": status, "reason": draw(text) or "why"}
    r["energy"] = draw(st.sampled_from([
        r["energy"],
        {"status": "ok", "method": {"cpu": "rapl"}, "samples_per_joule": 12.5,
         "steady": {"seconds": 1.0, "samples": 10, "total_joules": 2.0}, "tta": None},
        {"status": "ok", "method": {"gpu": "nvml"}},  # ok, and nothing else measured
    ]))  # fmt: skip
    if draw(st.booleans()):
        busy = draw(st.booleans())
        r["contention"] = {"status": "ok", "busy": busy, "why": draw(text) if busy else None,
                           "other_cpu_pct": draw(st.floats(0, 100))}  # fmt: skip
    if draw(st.booleans()):
        r["run"]["auto"] = {"target": draw(st.floats(1e-6, 1)), "cap": draw(st.integers(1, 12))}
    r["status"] = draw(st.sampled_from(schema.STATUSES))
    r["reason"] = None if r["status"] == "ok" else draw(text)
    r["accuracy"]["curve"][0]["train_loss"] = draw(st.floats(allow_nan=True))  # NaN: a diverged run's loss
    if draw(st.booleans()):  # a section a tracker added later, missing from an older record
        r.pop(draw(st.sampled_from(["profile", "energy", "compile", "distributed"])))
    return r


def flat(r: dict) -> dict:
    """The record as schema 2 wrote it (flat fields), which the report still reads (schema.upgrade)."""
    out = {"schema_version": 2, "status": r["status"], "reason": r["reason"]}
    for section, fields in schema._V2.items():
        out.update({f: r[section][f] for f in fields if isinstance(r.get(section), dict) and f in r[section]})
    return {**out, "env": r["env"], "device_name": r["env"].get("device_name")}


any_valid = st.one_of(valid_records(), valid_records().map(flat))  # the schema versions mixed


@st.composite
def hostile_records(draw) -> object:
    """Anything: wrong types, NaN and infinities, huge strings and markup, unknown keys, missing sections, other
    schema versions, and lines that are not objects at all."""
    r = draw(any_valid)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["field", "top", "section", "unknown", "version", "drop", "not-an-object"]))
        if kind == "top":  # any key of the record, a flat field of schema 2's included
            r[draw(st.sampled_from(sorted(r)))] = draw(hostile_value)
        elif kind == "field":
            section, field = draw(st.sampled_from(FIELDS))
            if isinstance(r.get(section), dict):
                r[section][field] = draw(hostile_value)
        elif kind == "section":
            r[draw(st.sampled_from(list(schema.SECTIONS)))] = draw(hostile_value)
        elif kind == "unknown":
            r[draw(st.text(min_size=1, max_size=8))] = draw(hostile_value)
        elif kind == "version":
            r["schema_version"] = draw(st.sampled_from([1, 2, 3, 99, "3", None, 3.0, True]))
        elif kind == "drop":
            r.pop(draw(st.sampled_from(["cell", "status", "timing", "accuracy", "env"])), None)
        else:
            return draw(hostile_value)
    return r


# the page's own tags (bench.report.document): a record's text makes none
TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "section", "p", "div", "table",
        "thead", "tbody", "tr", "th", "td", "img", "figure", "figcaption", "a", "ul", "ol", "li", "pre", "bdi", "input",
        "script"}  # fmt: skip


class Markup(HTMLParser):
    """The tags of a page and where its links and images point."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.add(tag)
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


@pytest.mark.filterwarnings("ignore:Glyph")  # random text has characters the plots' font lacks
@settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", 25)),  # about 0.7 s each; FUZZ_EXAMPLES=400 to search harder
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(good=st.lists(any_valid, min_size=1, max_size=3), bad=st.lists(hostile_records(), max_size=3))
def test_the_report_survives_hostile_records_escapes_them_and_keeps_every_valid_one(tmp_path_factory, good, bad):
    for r in good:
        assert schema.problems(r) == [], r
    folder = tmp_path_factory.mktemp("fuzz")
    mixed = [copy.deepcopy(r) for pair in zip(good, bad) for r in pair] + good[len(bad) :] + bad[len(good) :]
    write(folder, mixed)
    usable = [r for r in mixed if isinstance(r, dict) and not schema.problems(r)]
    objects = [r for r in mixed if isinstance(r, dict)]  # other lines are skipped on read, with a warning

    md = report.write(folder).read_text()
    # every record the schema accepts is in the report, once per measurement: a run's cell and repeat
    ups = [schema.upgrade(r) for r in usable]
    keys = [((u.get("env") or {}).get("host"), u["cell"].get("run_id"), u["cell"].get("fingerprint")) for u in ups]
    measured = {k for k in keys if k[2]} | {i for i, k in enumerate(keys) if not k[2]}  # no fingerprint: each alone
    assert f"{len(measured)} records from" in md
    # the section ends at the next heading: a line that starts with "## " (a record's text may hold one inside a line)
    left_out = md.split("\n## Records left out")[1].split("\n## ")[0] if "\n## Records left out" in md else ""
    left_out = left_out.splitlines()
    assert len([line for line in left_out if line.startswith("    ")]) == len(objects) - len(usable)
    superseded = md.split("## Records superseded")[1].splitlines() if "## Records superseded" in md else []
    assert len([line for line in superseded if line.startswith("    ")]) == len(usable) - len(measured)

    # the other readers of records go through the same check, and none stops either
    with contextlib.suppress(compare.CompareError):  # nothing to match: one clear error, not a crash
        compare.compare(folder, folder)
    planning.plan(expand("t", validate("t", {"backend": "cpu", "workloads": ["torch-convnet"]})), folder, "run")
    estimate.history(folder, "box")

    page = Markup()
    page.feed((folder / "report" / "report.html").read_text())
    assert page.tags <= TAGS, page.tags - TAGS
    out = folder / "report"
    for link in page.links:  # data: images, or files inside the results folder
        target = os.path.normpath(out / link)
        assert link.startswith("data:image/png;base64,") or target.startswith(str(folder)), link


def test_compare_leaves_out_and_lists_what_fails_its_schema(tmp_path):
    from bench.report import compare

    a = write(tmp_path / "a", [valid(), valid(**{"cell.repeat": 1})])
    b = write(
        tmp_path / "b",
        [valid(**{"env.host": "other"}), valid(**{"env.host": "other", "timing.throughput_samples_per_s": -1.0})],
    )
    result = compare.compare(a.parent.parent, b.parent.parent)
    assert result.left_out == [f"{b}:2: timing.throughput_samples_per_s: Input should be greater than 0 (got -1.0)"]
    assert "## Records left out" in result.markdown() and "Records left out" in result.html()
    with pytest.raises(ValueError, match="1 of 2 records cannot be used"):
        compare.compare(a.parent.parent, b.parent.parent, strict=True)


def test_a_record_the_runner_fails_for_its_bounds_is_still_one_it_can_append():
    """Each section checked once, nested values and keys included; the reason naming them stays within the cap."""
    r = valid(**{"env.host": "x" * (schema.MAX_TEXT + 1), "memory.peak_memory_bytes": 10**400})
    r["timing"] = {str(i) + "t" * 20_000: 1.0 for i in range(200)}  # keys beyond the cap, a long reason
    r["accuracy"]["curve"][0]["n"] = [[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]
    found = schema.problems(r)
    assert [f.split(":")[0].split(".")[0] for f in found] == ["timing"] * 200 + ["accuracy", "memory", "env"]
    admitted = schema.admit(r)
    assert schema.written(admitted) == []
    assert admitted["status"] == "failed" and len(admitted["reason"]) == schema.MAX_TEXT


def test_the_fields_a_flat_table_lifts_are_unique_across_its_sections():
    """records.flat lifts the fields of ``FLAT_SECTIONS`` to one level: a name in two sections would hide one of
    them (schema 3's warmup_steps, the setting in cell and the count that ran in timing)."""
    names = [*schema.TOP, *(f for s in schema.FLAT_SECTIONS for f in schema.SECTIONS[s].model_fields)]
    assert sorted({n for n in names if names.count(n) > 1}) == []
    old = {"schema_version": 3, "cell": {"warmup_steps": 50}, "timing": {"warmup_steps": 12}}
    flat = records.flat(schema.upgrade(old))
    assert (flat["warmup_steps"], flat["warmup_steps_run"]) == (50, 12)  # the setting, and what ran
