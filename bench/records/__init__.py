"""The records: what a run wrote and how it is read. A record's shape and its versions (``schema``), how bench
writes files without harming one it did not write (``files``), and the statistics of repeats (``stats``); this
module reads and appends the records themselves.

Records: one JSON object per line per cell × repeat in ``<results>/<run-id>/records.jsonl``.

Each line goes to the file in a single ``write`` on an O_APPEND descriptor and is fsynced, so a killed
process leaves at most one torn last line; readers skip it with a warning, and the next writer cuts it off.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from bench.records import files, schema
from bench.text import warn  # records.warn: every reader's

# A run id names one folder under the results folder: one path component, and none the results tree uses for
# something else (the committed references the report leaves out, the report's own folder, the micro-benchmarks',
# bench compare's default output).
RUN_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
RESERVED = ("reference", "report", "micro", "compare")


def check_run_id(run_id: str) -> str:
    """``run_id`` when it names a run folder under the results folder; else ValueError naming the rule."""
    if not RUN_ID.fullmatch(run_id) or set(run_id) == {"."} or run_id in RESERVED:
        raise ValueError(
            f"--run-id {run_id[:120]!r}: a run id is one folder name of letters, digits, '.', '_' and '-' (at most "
            f"100), neither '.' nor '..' nor {', '.join(RESERVED)}"
        )
    return run_id


def default_run_id(suite: str, host: str) -> str:
    """``<suite>-<host>``, with whatever a run id cannot hold replaced by '-' (a hostname, BENCH_HOST)."""
    return re.sub(r"[^A-Za-z0-9._-]", "-", f"{suite}-{host}")[:100]


def new(status: str, reason: str | None = None, **filled: dict | None) -> dict:
    """A record with every section; those not given are null (a cell that never ran fills only some)."""
    unknown = set(filled) - set(schema.sections())
    if unknown:
        raise ValueError(f"unknown record sections {sorted(unknown)}; known: {', '.join(schema.sections())}")
    return {"schema_version": schema.SCHEMA_VERSION, "status": status, "reason": reason,
            **{name: filled.get(name) for name in schema.sections()}}  # fmt: skip


def flat(record: dict) -> dict:
    """One dict of the record's fields for tables: the top level, the fields of ``schema.FLAT_SECTIONS``, and every
    section under its own name as well."""
    out = {k: record.get(k) for k in schema.TOP}
    for name in schema.FLAT_SECTIONS:
        for k, v in (record.get(name) or {}).items():
            out.setdefault(k, v)
    for name in schema.sections():
        out[name] = record.get(name)
    return out


def repair(path: Path) -> None:
    """Cut a torn last line (left by a killed writer) so that the next append starts on a fresh line."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise ValueError(f"{path} is a link or not a file: a run's records are a file of its own; move it away")
    if not path.exists() or path.stat().st_size == 0:
        return
    fd = files.open_own(path, os.O_RDWR)  # never truncate a file that has another name elsewhere
    with open(fd, "r+b") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        keep = data.rfind(b"\n") + 1
        warn(f"{path}: dropping a torn last line ({len(data) - keep} bytes) left by an interrupted run")
        f.truncate(keep)


def append(path: Path, record: dict) -> None:
    """``record`` appended to ``path`` as one line, in one write, fsynced. The record is one ``schema.admit`` let
    through: the one check on write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = (json.dumps(record, default=str) + "\n").encode()
    fd = files.open_own(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)  # never through a link, symbolic or hard
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(f"short write to {path} ({written} of {len(data)} bytes)")
        os.fsync(fd)
    finally:
        os.close(fd)


def read(path: Path) -> list[dict]:
    """The records of one file; torn or corrupt lines are skipped with a warning."""
    return [record for _, record, _, _ in numbered(path)]


MAX_LINE = 1 << 20  # a record is a few kB: a line of more than 1 MiB is not one
MAX_FILE = 1 << 30  # what one records.jsonl may hold (a million records of 1 kB)


def numbered(path: Path) -> list[tuple[int, dict, bool, int]]:
    """(line number, record, whether its bytes showed it bounded (``Shape``), the line's byte offset) of one file,
    read as a stream; torn or corrupt lines, lines that are not an object and lines over ``MAX_LINE`` are skipped
    with a warning that names them, and reading stops at ``MAX_FILE``. Only a regular file is read (not a link, a
    FIFO or a device). Text comes back valid: a lone surrogate (a JSON escape no UTF-8 text holds) becomes U+FFFD."""
    f = _regular(path)
    if isinstance(f, str):
        warn(f"{path}: skipping: {f}")
        return []
    out, size = [], 0
    with f:
        for number, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), b""), 1):
            size += len(line)
            if size > MAX_FILE:
                warn(f"{path}:{number}: stopping: a records file over {MAX_FILE >> 30} GiB")
                break
            if len(line) > MAX_LINE:
                while line and not line.endswith(b"\n"):  # the rest of the line
                    line = f.readline(MAX_LINE)
                    size += len(line)
                warn(f"{path}:{number}: skipping a line over {MAX_LINE >> 20} MiB")
                continue
            if not line.strip():
                continue
            parsed = parse(line)
            if isinstance(parsed, str):
                warn(f"{path}:{number}: {parsed}")
                continue
            record, bounded, cut = parsed
            out.append((number, record, bounded, size - len(line)))
            if cut:
                warn(f"{path}:{number}: {cut:,} items beyond {MAX_ITEMS:,} a list or object dropped")
    return out


def _regular(path: Path) -> BinaryIO | str:
    """``path`` open for reading where it is a regular file (not a link, never followed, a FIFO or a device); else
    why not."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        return f"{e.strerror} (a link is not followed)"
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return "not a regular file"
    return open(fd, "rb")


def parse(line: bytes) -> tuple[dict, bool, int] | str:
    """One line of a records file as (the record, whether its bytes showed it bounded, the items ``valid_text`` cut
    from it), or why it is skipped."""
    try:
        record = json.loads(line)
        s = shape(line)  # of JSON only: a torn line's brackets do not pair
    except (ValueError, RecursionError):  # torn, not JSON, not UTF-8, an integer of over 4,300 digits
        return "skipping a torn or corrupt line"
    if s.depth > files.MAX_DEPTH:  # before anything walks it: valid_text, the schema
        return f"skipping a line nested deeper than {files.MAX_DEPTH} levels"
    if not isinstance(record, dict):
        return "skipping a line that is not a JSON object"
    cut = [0]
    if s.odd_text or s.commas >= MAX_ITEMS:  # a lone surrogate or a list too long may be there
        record = valid_text(record, cut)
    return record, s.bounded, cut[0]


def at(path: Path, offsets: list[int]) -> list[dict | None]:
    """The records whose lines start at ``offsets`` in ``path`` (``numbered`` gave them), read as ``numbered`` reads
    them; None for one that is no longer there as it was (the file changed since)."""
    out: list[dict | None] = []
    f = _regular(path)
    if isinstance(f, str):
        return [None] * len(offsets)
    with f:
        for offset in offsets:
            f.seek(offset)
            parsed = parse(f.readline(MAX_LINE + 1))
            out.append(parsed[0] if isinstance(parsed, tuple) else None)
    return out


MAX_ITEMS = 10_000  # of one list or object in a record: a curve of the most epochs a suite may ask for
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes and all (unrolled: fast)
# \ud800-\udfff written as an escape, or as UTF-8 bytes (json.loads reads bytes with surrogatepass): two patterns,
# each with a literal start that the regex engine finds at C speed (one alternation is 8x slower)
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE_UTF8 = re.compile(rb"\xed[\xa0-\xbf]")
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DIGITS = bytes(c if c in b"0123456789" else 32 for c in range(256))  # every other byte a space
LONG_DIGITS = 19  # a run of as many digits may be an integer beyond 64 bits


@dataclasses.dataclass
class Shape:
    """What a JSON line's bytes tell before anything walks what it parses to (C-speed scans, not a walk in Python):
    its nesting, whether ``valid_text`` has anything to repair, and whether ``schema.problems`` can find nothing out
    of its bounds there (every string shorter than ``schema.MAX_TEXT``, no integer of 19 digits, shallow)."""

    depth: int
    commas: int
    odd_text: bool
    bounded: bool


def shape(line: bytes) -> Shape:
    strings = _STRING.findall(line)
    # structure, numbers and literals: a bracket in a string is not one (the strings are taken out where one has one)
    rest = _STRING.sub(b"", line) if b"".join(strings).translate(None, _NOT_BRACKETS) else line
    depth = max(itertools.accumulate(1 if c in b"[{" else -1 for c in rest.translate(None, _NOT_BRACKETS)), default=0)
    # a run of 19 digits in a string too: then the walk decides (runs found by translate and split: 4x a regex's speed)
    long_digits = max(map(len, line.translate(_DIGITS).split()), default=0) >= LONG_DIGITS
    bounded = depth <= 20 and max(map(len, strings), default=0) <= schema.MAX_TEXT and not long_digits
    odd_text = bool(_SURROGATE_ESCAPE.search(line) or _SURROGATE_UTF8.search(line))
    return Shape(depth, line.count(b","), odd_text, bounded)


def valid_text(value: object, cut: list[int] | None = None) -> object:
    """``value`` with every string (and key) valid Unicode (lone surrogates become U+FFFD), and no list or object of
    more than ``MAX_ITEMS`` items: the rest is dropped and counted in ``cut``, so that what a reader builds from a
    record stays in proportion to what a record holds (a megabyte of empty lists is 30 MB of objects)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if _SURROGATE.search(value) else value
    if isinstance(value, dict | list) and len(value) > MAX_ITEMS and cut is not None:
        cut[0] += len(value) - MAX_ITEMS
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v, cut) for k, v in itertools.islice(value.items(), MAX_ITEMS)}
    if isinstance(value, list):
        return [valid_text(v, cut) for v in value[:MAX_ITEMS]]
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def located(path: Path) -> list[dict]:
    """The records of one file, each with where it came from: ``_run_dir`` (the folder its ``artifacts`` paths are
    relative to), ``_file`` and ``_line`` (for messages about it), ``_offset`` (where its line starts: ``at``)."""
    return [
        {**r, "_run_dir": str(path.parent), "_file": str(path), "_line": n, "_offset": offset, schema.BOUNDED: bounded}
        for n, r, bounded, offset in numbered(path)
    ]


def identity(record: dict) -> tuple | None:
    """What tells one measurement from another in an upgraded record (bench.records.schema.upgrade): its host, run id
    and fingerprint (which holds the repeat), and whether its fields gave that fingerprint (a record that omits a field
    of the identity supersedes no record that holds them all); None where it has no fingerprint to tell it by."""
    fp = (record.get("cell") or {}).get("fingerprint")
    if not fp:
        return None
    return (record.get("env") or {}).get("host"), record["cell"].get("run_id"), fp, schema.checked(record["cell"])


def superseding(keys: list[tuple | None], started: list[str]) -> dict[int, int]:
    """Of records with these identities (``identity``) and start times, each superseded one's place → the place of
    the newer record that stands for its measurement: the later start, then the later place."""
    newest: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        if key is not None and (key not in newest or started[i] >= started[newest[key]]):
            newest[key] = i
    return {i: newest[key] for i, key in enumerate(keys) if key is not None and newest[key] != i}


def superseded_line(old: dict, new: dict) -> str:
    """``file:line: status (cell repeat) superseded by file:line (status)``: ``old`` and ``new`` hold ``_file``,
    ``_line``, ``status``, ``cell_id`` and ``repeat``."""
    return (
        f"{old.get('_file', '?')}:{old.get('_line', '?')}: {old.get('status')} ({old.get('cell_id')} repeat "
        f"{old.get('repeat')}) superseded by {new.get('_file', '?')}:{new.get('_line', '?')} ({new.get('status')})"
    )


def latest(recs: list[dict]) -> tuple[list[dict], list[str]]:
    """One record per measurement: a run's cell and repeat (its host, run id and fingerprint, which holds the
    repeat) is measured once. Where a run holds two records of one (a retry, ``bench run --retry``, or a
    duplicate), the newer is kept (its ``run.started_at``, then its place in the list) and the other listed as
    ``file:line: status (cell repeat) superseded by file:line (status)``; the newer counts in ``_diverged_before``
    the diverged ones it replaced (``bench run --retry diverged`` draws again, and MLPerf counts every run).
    ``recs`` are readable (bench.records.schema)."""
    ups = [schema.upgrade(r) for r in recs]
    by = superseding([identity(u) for u in ups], [str((u.get("run") or {}).get("started_at") or "") for u in ups])
    superseded = []
    for i, j in by.items():
        if recs[i].get("status") == "diverged":  # a training outcome, not a harness one: its time-to-accuracy counts it
            recs[j]["_diverged_before"] = recs[j].get("_diverged_before", 0) + 1
        cell = ups[i]["cell"]
        superseded.append(
            superseded_line({**recs[i], "cell_id": cell.get("cell_id"), "repeat": cell.get("repeat")}, recs[j])
        )
    return [r for i, r in enumerate(recs) if i not in by], superseded


def load(path: Path, strict: bool = False) -> tuple[list[dict], list[str], list[str]]:
    """What a report or a comparison uses, from a results folder, a run folder or one records.jsonl: the records that
    pass their schema, one per measurement (``latest``); the lines of those left out as failing it (or, ``strict``,
    ValueError naming them, bench.records.schema.usable); and the lines of those superseded."""
    recs = [r for file in paths(path) for r in located(file)]
    if not recs:
        raise ValueError(f"no records.jsonl under {path}; run `bench run` first")
    recs, left_out = schema.usable(recs, strict)
    if not recs:
        raise ValueError(f"none of the records under {path} can be used:\n" + "\n".join(left_out))
    kept, superseded = latest(recs)
    return kept, left_out, superseded


def paths(path: Path) -> list[Path]:
    """The records files a report or a comparison reads: ``path`` itself, or every records.jsonl under the folder
    ``path`` but the committed ``reference/`` runs (``read_all``); ValueError where ``path`` is neither."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = files.find(path, lambda name: name == "records.jsonl")
        return [f for f in found if "reference" not in f.relative_to(path).parts]
    if path.exists():
        raise ValueError(f"{path} is neither a results folder nor a records.jsonl file")
    raise ValueError(f"no records.jsonl under {path} (no such folder); run `bench run` first")


def read_all(results_dir: Path) -> list[dict]:
    """Every record under ``results_dir``: many runs and machines merge into one list.

    Each record gets ``_run_dir``, ``_file`` and ``_line`` (``located``). The committed ``reference/`` runs below
    ``results_dir`` are left out: a machine's own report shows its own runs, and a reference is compared by copying
    it in or by pointing ``results_dir`` at it.
    """
    return [r for file in paths(results_dir) for r in located(file)] if Path(results_dir).is_dir() else []
