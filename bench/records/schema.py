"""A record's shape, stated once: its sections, in order, and one strict pydantic model per section. The runner
checks every record against it before it appends one (bench.run.sweep), and everything that reads records checks each
one before it uses it: records come from other machines, older and newer versions of the harness, and hand edits.

Each model holds every field the report reads: its type and its range (no NaN or infinity where a measurement is
meant, accuracies in [0, 1], shares in [0, 100], counts of at least 0 or 1, paths inside the run's folder). A field
the model does not name is let through (a newer tracker's), as is a section that no model names; a missing section
is empty, as in the records of versions before it existed. Schema 2 (flat) records are checked after ``upgrade``
lifts them into sections.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import operator
from pathlib import PurePosixPath
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from bench.plan.settings import CELL_FIELDS, SETTINGS
from bench.text import warn

# 4: every flat field unique (timing.warmup_steps_run); 3: typed sections, one per tracker; 2: flat fields. Older
# schemas are still read: see upgrade
SCHEMA_VERSION = 4
READABLE = (1, 2, 3, 4)  # 1 had a subset of 2's flat fields
STATUSES = ("ok", "unsupported", "failed", "timeout", "diverged")
FAILED = ("failed", "timeout", "diverged")
TOP = ("schema_version", "status", "reason")
# Sections whose fields are unique across the record (a test holds it): ``flat`` lifts them to the top for tables.
FLAT_SECTIONS = ("cell", "run", "outcome", "timing", "accuracy", "memory", "compile")

# Bounds of what a measurement can be. Counts and bytes fit a signed 64-bit integer (what numpy, pandas and every
# report tool hold); a measured number is finite and below 1e15 (seconds: 30 million years; samples per second: a
# million times the fastest cluster's): beyond, it is not a measurement.
MAX_INT = 2**63 - 1
MAX_NUMBER = 1e15
# Free text (a host, a device, a reason, a package's version) is at most this long anywhere in a record: the report
# sets every value in a table, and a megabyte host would make every row a megabyte wide.
MAX_TEXT = 10_000
NonNeg = Annotated[float, Field(ge=0, le=MAX_NUMBER, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, le=MAX_NUMBER, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Percent = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0, le=MAX_INT)]
AtLeastOne = Annotated[int, Field(ge=1, le=MAX_INT)]
Setting = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a setting as it ran (a learning rate): no measurement
Rate = Annotated[float, Field(gt=0, le=MAX_NUMBER, allow_inf_nan=False)]  # samples/s: none measured is null, never 0
Version = Annotated[str, Field(max_length=100)]  # a package's version ("2.14.1+cu130"): text a report sorts and shows


def _inside(path: str) -> str:
    """A path a record names (an artifact, a trace) must stay inside its run's folder: the report links to it."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path or ":" in path:
        raise ValueError(f"{path[:60]!r} is not a relative path inside the run's folder")
    return path


RelativePath = Annotated[str, Field(max_length=1000), AfterValidator(_inside)]


class Section(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow")


BOUNDED = "_bounded"  # bench.records.located: the line's bytes showed nothing out of bounds (records.Shape)


def _out_of_bounds(path: str, value: object, depth: int = 0) -> list[str]:
    """What below ``path`` (a section, checked once whole, the fields no model names included) no record holds: text
    beyond MAX_TEXT (a key's too), an integer beyond 64 bits, nesting deeper than any record's. A float is whatever
    its field allows: a diverged loss may be huge, infinite or NaN."""
    if depth > 20:
        return [f"{path}: nested deeper than any record"]
    if isinstance(value, dict):
        return [m for k, v in value.items() for x in (k, v) for m in _out_of_bounds(f"{path}.{k[:40]}", x, depth + 1)]
    if isinstance(value, list):
        return [m for i, v in enumerate(value) for m in _out_of_bounds(f"{path}[{i}]", v, depth + 1)]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return [f"{path}: text of {len(value):,} characters; at most {MAX_TEXT:,}"]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
        return [f"{path}: an integer beyond 64 bits"]
    return []


class WithStatus(Section):
    """A tracker's section that says whether it measured: one with any field names its status (the report reads
    it first)."""

    status: str | None = None

    @model_validator(mode="after")
    def _names_its_status(self) -> WithStatus:
        if self.status is None and (self.model_fields_set or self.model_extra):
            raise ValueError("a section with fields needs its status")
        # what did not measure says why (the report shows it): a section that has a reason field
        if self.status not in (None, "ok") and "reason" in type(self).model_fields and not self.reason:
            raise ValueError(f"a section with status {self.status[:40]!r} needs its reason")
        return self


# Names that become file names and ids (the report's plot files are named after the workload).
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")]


class _Where(Section):
    """The cell section's fields that are not settings: where the cell belongs and what it ran on."""

    cell_id: str
    workload: Name
    backend: Name
    precision: Name
    device_count: AtLeastOne
    nodes: AtLeastOne | None = None
    run_id: str | None = None
    fingerprint: str | None = None
    framework: str | None = None
    repeat: Count | None = None
    seed: int | None = None
    mode: Name | None = None
    input: Name | None = None


def _setting(key: str) -> object:
    """The type of setting ``key`` in a record, as the settings table declares it: its kinds, range and valid
    names."""
    s = SETTINGS[key]
    kinds = s.kind if isinstance(s.kind, tuple) else (s.kind,)
    bounds = {} if s.range is None else {"gt" if s.range.open_low else "ge": s.range.low}
    if s.range is not None and s.range.high is not None:
        bounds["le"] = s.range.high
    alternatives: list[object] = []
    if float in kinds:
        alternatives.append(Annotated[float, Field(allow_inf_nan=False, **bounds)])
    elif int in kinds:
        alternatives.append(Annotated[int, Field(**bounds)])
    if bool in kinds:
        alternatives.append(bool)
    if str in kinds:
        words = s.choices or s.words
        alternatives.append(Literal[words] if words else str)
    return functools.reduce(operator.or_, alternatives)


# The cell section: where the cell belongs, and every setting each cell holds, typed from the settings table (the
# fields of records from before a setting existed are null; a cell's tta_target is always there).
Cell = create_model(
    "Cell",
    __base__=_Where,
    **{key: (_setting(key) | None, None) for key in CELL_FIELDS if key != "tta_target"},
    tta_target=(_setting("tta_target"), ...),
)


class Price(Section):
    usd_per_hour: Positive
    plan: str
    entry: str | None = None
    provider: str | None = None
    instance: str | None = None
    region: str | None = None
    retrieved: str | None = None

    @model_validator(mode="after")
    def _an_entry_names_its_list_price(self) -> Price:
        missing = [k for k in ("provider", "instance", "region", "retrieved") if getattr(self, k) is None]
        if self.entry is not None and missing:
            raise ValueError(f"a price table entry needs {', '.join(missing)}")
        return self


class AutoRepeats(Section):
    """``repeats = auto``'s settings for the sweep that ran the record: the interval's half-width to reach and the
    cap (the report says where a row stopped at the cap with its interval still wider)."""

    target: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
    cap: AtLeastOne


class Run(Section):
    started_at: str | None = None
    process_seconds: NonNeg | None = None
    position: Count | None = None
    order: str | None = None
    price: Price | None = None
    repeat_reason: str | None = None
    retry: str | None = None
    auto: AutoRepeats | None = None


class Weights(Section):
    pretrained: bool | None = None
    source: str | None = None
    checksum_ok: bool | None = None


class Outcome(Section):
    precision_effective: str | None = None
    lr_found: Setting | None = None
    lr_used: Setting | None = None
    weights: Weights | None = None
    artifacts: list[RelativePath] | None = None
    full_network_phase: str | None = None
    global_batch_size: AtLeastOne | None = None
    train_samples: Count | None = None
    test_samples: Count | None = None


class LeftOut(Section):
    phase: str | None = None
    reason: str | None = None
    steps: Count
    compilations: Count | None = None


class Timing(Section):
    throughput_samples_per_s: Rate | None = None
    phase_throughput: dict[str, Rate | None] | None = None
    loader_samples_per_s: Rate | None = None
    step_time_ms_median: NonNeg | None = None
    step_time_ms_p90: NonNeg | None = None
    steady_steps: Count | None = None
    warmup_steps_run: Count | None = None  # the setting's warmup_steps, or fewer where training was shorter
    setup_seconds: NonNeg | None = None
    warmup_seconds: NonNeg | None = None
    train_seconds: NonNeg | None = None
    eval_seconds: NonNeg | None = None
    total_seconds: NonNeg | None = None
    phase_seconds: dict[str, NonNeg | None] | None = None
    step_time_p90_over_median: NonNeg | None = None
    segment_throughput_cv: NonNeg | None = None
    steady_segments: Count | None = None
    left_out_steps: Count | None = None
    left_out: list[LeftOut] | None = None
    compilations_after_warmup: Count | None = None  # each one's segment left out (schema 3 and before: in compile)
    meter_us_per_step: NonNeg | None = None
    meter_share_of_step: NonNeg | None = None


class Epoch(Section):
    epoch: Count | None = None
    elapsed_seconds: NonNeg | None = None
    test_accuracy: Fraction | None = None
    train_loss: float | None = None  # NaN when training diverged: what the record is there to show


class Accuracy(Section):
    final_accuracy: Fraction | None = None
    tta_seconds: NonNeg | None = None
    epochs_run: Count | None = None
    curve: list[Epoch] | None = None


class Memory(Section):
    peak_memory_bytes: Count | None = None
    peak_memory_kind: str | None = None


class Compile(Section):
    compilations: Count | None = None
    compile_seconds: NonNeg | None = None
    recompilations: Count | None = None
    graph_breaks: Count | None = None

    @model_validator(mode="after")
    def _counts_have_their_seconds(self) -> Compile:
        if self.compilations is not None and self.compile_seconds is None:
            raise ValueError("compilations need their compile_seconds")
        if self.recompilations is not None and self.graph_breaks is None:
            raise ValueError("recompilations (torch.compile's) come with graph_breaks")
        return self


class Profile(WithStatus):
    reason: str | None = None
    device_busy_pct: Percent | None = None
    loader_pct: Percent | None = None
    host_ms_per_step: NonNeg | None = None
    busy_kind: str | None = None
    steps: Count | None = None
    trace: RelativePath | None = None

    @model_validator(mode="after")
    def _ok_has_figures(self) -> Profile:
        needed = ("device_busy_pct", "loader_pct", "host_ms_per_step", "busy_kind")
        missing = [k for k in needed if getattr(self, k) is None]
        if self.status == "ok" and missing:
            raise ValueError(f"an ok profile needs {', '.join(missing)}")
        return self


class EnergyWindow(Section):
    seconds: NonNeg | None = None
    samples: Count | None = None
    total_joules: NonNeg | None = None


class Energy(WithStatus):
    reason: str | None = None
    method: dict[str, str] | None = None
    samples_per_joule: NonNeg | None = None
    steady: EnergyWindow | None = None
    tta: EnergyWindow | None = None

    @model_validator(mode="after")
    def _ok_names_its_counters(self) -> Energy:
        if self.status == "ok" and not self.method:
            raise ValueError("an ok energy section needs its method (the counters read)")
        return self


class Other(Section):
    pid: Count | None = None
    name: str | None = None
    cpu_pct: NonNeg | None = None


class Reading(Section):
    value: NonNeg | None = None
    resolution: NonNeg | None = None
    reason: str | None = None


class Contention(WithStatus):
    reason: str | None = None
    verdict: Literal["quiet", "busy", "undetermined"] | None = None
    why: str | None = None
    span_s: NonNeg | None = None
    segments: Count | None = None
    cores: AtLeastOne | None = None
    measures: dict[str, Reading] | None = None
    cell_cpu_pct: Percent | None = None
    cpu_mhz_min: NonNeg | None = None
    cpu_mhz_median: NonNeg | None = None
    top_others: list[Other] | None = None
    shared_host: str | None = None
    # a record of before the three verdicts: its one measure and whether it flagged the cell
    busy: bool | None = None
    other_cpu_pct: Percent | None = None
    other_cpu_pct_max: Percent | None = None
    resolution_pct: Percent | None = None
    steal_pct: Percent | None = None

    @model_validator(mode="after")
    def _ok_has_its_verdict(self) -> Contention:
        if self.status == "ok" and self.verdict is None and self.other_cpu_pct is None:
            raise ValueError("an ok contention section needs its verdict")
        if self.verdict in ("busy", "undetermined") and not self.why:
            raise ValueError(f"a contention verdict of {self.verdict} needs its why")
        return self


class Distributed(Section):
    world_size: AtLeastOne | None = None
    nodes: AtLeastOne | None = None
    collective: str | None = None


class Allocator(Section):
    name: str | None = None


class Accelerator(Section):
    gpu_name: str | None = None


class Env(Section):
    host: str | None = None
    device_name: str | None = None
    cpu_model: str | None = None
    cpu_count: Count | None = None
    cpu_isa: dict[str, bool | None] | None = None
    cpufreq: dict[str, str | bool | None] | None = None
    backend: Accelerator | None = None
    packages: dict[str, Version | None] | None = None
    python: str | None = None
    allocator: Allocator | None = None
    container_image: str | None = None
    git_commit: str | None = None
    lock_differences: dict[str, Version | None] | None = None


# The record's sections, in order, each with its model: what the runner knows (cell, run), the workload's own fields
# (outcome), the meter's (timing, accuracy), then one per tracker (bench/trackers; a tracker without a model here
# fails tests/test_trackers.py). The worker's sections are checked as the runner writes the record, and every
# record as anything reads it.
SECTIONS: dict[str, type[Section]] = {
    "cell": Cell,
    "run": Run,
    "outcome": Outcome,
    "timing": Timing,
    "accuracy": Accuracy,
    "memory": Memory,
    "contention": Contention,
    "energy": Energy,
    "compile": Compile,
    "profile": Profile,
    "distributed": Distributed,
    "env": Env,
}


def flat_fields() -> tuple[str, ...]:
    """The top level's fields and those of ``FLAT_SECTIONS`` as their models name them: the columns of a table of
    records (bench.records.flat)."""
    return tuple(dict.fromkeys([*TOP, *(f for name in FLAT_SECTIONS for f in SECTIONS[name].model_fields)]))


def sections() -> tuple[str, ...]:
    """Every section of a record, in order: the runner's, the workload's, the meter's, then one per tracker."""
    return tuple(SECTIONS)


# Schema 2 (flat) fields and the schema-3 section each belongs to; anything else went to the top level.
_V2 = {
    "cell": ("run_id", "cell_id", "fingerprint", "workload", "framework", "backend", "device_count", "precision",
             "repeat", "seed", "batch_size", "lr", "num_workers", "pretrained", "epochs", "limit_train",
             "limit_test", "tta_target", "stop_at_target"),
    "run": ("started_at", "process_seconds"),
    "outcome": ("precision_effective", "precision_evidence", "lr_found", "lr_used", "weights",
                 "global_batch_size", "train_samples", "test_samples", "artifacts"),
    "timing": ("throughput_samples_per_s", "phase_throughput", "loader_samples_per_s", "step_time_ms_median",
               "step_time_ms_p90", "steady_steps", "warmup_steps_run", "setup_seconds", "warmup_seconds",
               "train_seconds", "eval_seconds", "total_seconds", "phase_seconds"),
    "accuracy": ("final_accuracy", "tta_seconds", "epochs_run", "curve"),
    "memory": ("peak_memory_bytes", "peak_memory_kind"),
    "compile": ("compilations", "compile_seconds"),
}  # fmt: skip
# Schema 2's flat names that schema 4 names otherwise (a field in two sections is one no flat table can hold)
_V2_NAMES = {"warmup_steps_run": "warmup_steps"}


def upgrade(record: dict) -> dict:
    """A record of any readable schema as schema 4 (in memory; files are never rewritten)."""
    version = record.get("schema_version")
    if version == SCHEMA_VERSION:
        return record
    if isinstance(record.get("cell"), dict):  # sectioned: schema 3
        return _v3(record)
    if version not in READABLE:
        raise ValueError(f"schema_version {version!r}; this version reads {', '.join(map(str, READABLE))}")
    out = {"schema_version": version, "status": record.get("status"), "reason": record.get("reason")}
    for section, fields in _V2.items():
        out[section] = {f: record.get(_V2_NAMES.get(f, f)) for f in fields}
    out["timing"]["compilations_after_warmup"] = record.get("compilations_after_warmup")
    # schema 2 recorded one warmup_steps, the steps that ran: the setting's, unless training was shorter
    out["cell"]["warmup_steps"] = record.get("warmup_steps")
    if "unfrozen" in (record.get("phase_throughput") or {}):  # how schema 2's report told fastai's phases apart
        out["outcome"]["full_network_phase"] = "unfrozen"
    out["env"] = {**(record.get("env") or {}), "device_name": record.get("device_name")}
    for name in sections():
        out.setdefault(name, None)  # sections schema 2 did not have (profile) stay empty
    return out


def _v3(record: dict) -> dict:
    """A schema-3 record as schema 4: the warmup steps that ran in ``timing.warmup_steps_run`` (``warmup_steps`` is
    the cell's setting), compilations after warmup in ``timing`` only (the meter's; records made before it left
    their segments out counted them in ``compile``), and the accuracy's copy of the cell's target dropped."""
    timing, comp, accuracy = (record.get(k) for k in ("timing", "compile", "accuracy"))
    moved = (
        (isinstance(timing, dict) and "warmup_steps" in timing)
        or (isinstance(comp, dict) and "compilations_after_warmup" in comp)
        or (isinstance(accuracy, dict) and "tta_target" in accuracy)
    )
    if not moved:
        return record
    out = dict(record)
    if isinstance(timing, dict):
        out["timing"] = timing = {("warmup_steps_run" if k == "warmup_steps" else k): v for k, v in timing.items()}
    if isinstance(comp, dict) and "compilations_after_warmup" in comp:
        out["compile"] = {k: v for k, v in comp.items() if k != "compilations_after_warmup"}
        if isinstance(timing, dict) and timing.get("compilations_after_warmup") is None:
            timing["compilations_after_warmup"] = comp["compilations_after_warmup"]
    if isinstance(accuracy, dict):
        out["accuracy"] = {k: v for k, v in accuracy.items() if k != "tta_target"}
    return out


TOP_LEVEL_DICTS_V2 = ("env", "phase_throughput")  # the flat fields records.upgrade reads as objects


def problems(record: object, bounded: bool = False) -> list[str]:
    """What is wrong with one record, as ``field: what`` (empty when it can be used). ``bounded``: its line's bytes
    showed nothing out of bounds (bench.records.Shape), so its values need no walk for it."""
    if not isinstance(record, dict):
        return [f"a record is a JSON object, not a {type(record).__name__}"]
    version = record.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version not in READABLE:
        return [
            f"schema_version: {_show(version)}; this version of bench reads {', '.join(map(str, READABLE))} "
            "(a newer bench wrote it? update bench to read it)"
        ]
    if record.get("status") not in STATUSES:
        return [f"status: {_show(record.get('status'))}; valid: {', '.join(STATUSES)}"]
    if not isinstance(record.get("reason"), str | None):
        return [f"reason: {_show(record.get('reason'))} should be text or null"]
    if len(record.get("reason") or "") > MAX_TEXT:
        return [f"reason: text of {len(record['reason']):,} characters; at most {MAX_TEXT:,}"]
    if version != SCHEMA_VERSION and not isinstance(record.get("cell"), dict):
        bad = [k for k in TOP_LEVEL_DICTS_V2 if not isinstance(record.get(k), dict | None)]
        if bad:
            return [f"{k}: {_show(record[k])} should be an object" for k in bad]
    upgraded = upgrade(record)
    out = []
    for name, model in SECTIONS.items():
        value = upgraded.get(name)
        if value is None and name != "cell":
            continue
        if not bounded and (bounds := _out_of_bounds(name, value)):
            out += bounds
            continue
        try:
            model.model_validate(value)
        except ValidationError as e:
            out += _messages(name, e)
    cell = upgraded.get("cell")
    if not out and isinstance(cell, dict) and cell.get("fingerprint") is not None:
        own = own_fingerprint(cell)
        if own is not None and own != cell["fingerprint"]:
            out.append(f"cell.fingerprint: {_show(cell['fingerprint'])} is not this cell's (its fields give {own})")
    return out


def _identity(cell: dict) -> dict | None:
    """The ``Cell`` fields a record's ``cell`` section gives, those out of the identity filled in; None where it lacks
    a field of the identity (a record from before that field was recorded: schema 2, the committed references)."""
    from bench.plan.cell import BEFORE, NOT_IDENTITY, Cell

    fields = {"suite": None, "timeout_s": None, "profile_steps": None}
    for f in dataclasses.fields(Cell):
        key = "device_count" if f.name == "devices" else f.name
        if key in cell:
            fields[f.name] = cell[key]
        elif f.name in BEFORE:  # what every cell had before the field existed: out of the hash
            fields[f.name] = BEFORE[f.name][0]
        elif f.name not in NOT_IDENTITY:
            return None
    return fields


def own_fingerprint(cell: dict) -> str | None:
    """The fingerprint a record's ``cell`` section has by its own fields (bench.plan.cell's identity rule), so that
    no record can pass for another cell's; None where the section lacks a field of the identity."""
    from bench.plan.cell import Cell

    fields = _identity(cell)
    try:
        return Cell(**fields).fingerprint if fields is not None else None
    except (TypeError, ValueError):  # a value JSON cannot hold again
        return None


def checked(cell: dict) -> bool:
    """Whether a usable record's fingerprint is one its own fields gave (``problems`` held it to them), without
    hashing it again: its cell section holds every field of the identity."""
    return _identity(cell) is not None


def written(record: dict) -> list[str]:
    """What is wrong with a record bench is about to write, as ``field: what``: besides ``problems``, it has every
    section (null where the cell filled none) and no key nobody declared, and an ok record fills every section (a
    record read back may lack one: older versions had fewer)."""
    expected = (*TOP, *sections())
    found = [f"{k}: missing (null where the cell filled none)" for k in expected if k not in record]
    found += [f"{k}: no section of this name; known: {', '.join(expected)}" for k in record if k not in expected]
    if record.get("status") == "ok":
        found += [f"{k}: an ok record fills every section" for k in sections() if not isinstance(record.get(k), dict)]
    return found + problems({k: record.get(k) for k in expected})


def admit(record: dict) -> dict:
    """The record as the runner appends it, the one check on write (``written``): itself when it passes, else the
    same record ``failed``, its reason naming what failed, and the sections that failed emptied (the cell's folder
    keeps what the worker wrote)."""
    if isinstance(record.get("reason"), str) and len(record["reason"]) > MAX_TEXT:  # a log's tail, a traceback
        record = {**record, "reason": _cut(record["reason"])}
    found = written(record)
    if not found:
        return record
    bad = {f.split(":", 1)[0].split(".", 1)[0] for f in found} & set(SECTIONS) - {"cell"}
    was = f"{record.get('status')}" + (f": {record['reason']}" if record.get("reason") else "")
    kept = {k: record.get(k) for k in (*TOP, *sections())}  # every section, and nothing else
    return {**kept, **dict.fromkeys(bad), "status": "failed",
            "reason": _cut(f"the record failed its schema ({'; '.join(found)}); it was {was}")}  # fmt: skip


def _cut(text: str) -> str:
    """``text`` within MAX_TEXT: its start, which says what happened."""
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _messages(section: str, error: ValidationError) -> list[str]:
    """pydantic's errors as ``section.field: message (got value)``, one per field (a union's alternatives merged)."""
    by_field: dict[str, list[str]] = {}
    for e in error.errors(include_url=False):
        loc = [str(p) for p in e["loc"] if not _is_union_member(p)]
        field = ".".join([section, *loc])
        message = e["msg"].removeprefix("Value error, ")
        if "input" in e and e["type"] not in ("missing", "value_error"):  # a value error names the value itself
            message += f" (got {_show(e['input'])})"
        by_field.setdefault(field, [])
        if message not in by_field[field]:
            by_field[field].append(message)
    return [f"{field}: {' or '.join(messages)}" for field, messages in by_field.items()]


UNION_MEMBERS = ("constrained-float", "constrained-int", "constrained-str", "str", "int", "float", "bool", "none")


def _is_union_member(part: object) -> bool:
    """pydantic names the alternative of a union that failed (``constrained-float``, ``literal['find']``)."""
    return isinstance(part, str) and (part in UNION_MEMBERS or part.startswith(("literal[", "function-")))


def _show(value: object) -> str:
    """A value in a message: its repr, cut short (a record may hold a megabyte of text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split(recs: list[dict]) -> tuple[list[dict], list[str]]:
    """The records that can be used, and one line per record that cannot: ``file:line: field: what; field: ...``
    (``_file`` and ``_line`` are where ``records.read_all`` found it)."""
    good, bad = [], []
    for r in recs:
        found = problems({k: v for k, v in r.items() if not k.startswith("_")}, bool(r.get(BOUNDED)))
        if found:
            bad.append(f"{r.get('_file', '?')}:{r.get('_line', '?')}: " + "; ".join(found))
        else:
            good.append(r)
    return good, bad


def usable(recs: list[dict], strict: bool = False) -> tuple[list[dict], list[str]]:
    """``split``, with each record left out warned about; ``strict``: stop instead, naming every such record."""
    good, bad = split(recs)
    judge(bad, len(recs), strict)
    return good, bad


def judge(bad: list[str], total: int, strict: bool = False) -> None:
    """Of ``total`` records, those that cannot be used (``split``'s lines) warned about, or, ``strict``, ValueError
    naming every one."""
    if bad and strict:
        raise ValueError(
            f"{len(bad)} of {total} records cannot be used (without --strict they are left out and listed):\n"
            + "\n".join(bad)
        )
    for line in bad:
        warn(f"left out: {line}")
