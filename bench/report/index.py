"""The table of every record under a results folder, as the report reads it, at a cost that grows with new records
and the rows shown, not with history.

Reading a records.jsonl and checking its records costs about half a millisecond a record (JSON, bench.records.schema); a
year of nightly runs holds some 100,000, and held whole they take gigabytes. So the report reads a table of one row
per usable record holding what it reads of every record (aggregate.SCALARS) and where the record's line starts; the
rest of a record (a tracker's section, the accuracy curve, the files it saved) is read again from its line
(aggregate.complete) only for the repeats a table shows in detail.

The table is kept in the cache folder (bench.run.data.cache_dir), one per results folder, with each records file's size
and modification time, the lines it left out and the warnings its reading gave, and the code that made it (every
source file of bench, and pandas' version). The next report reads again only the files that changed or are new (a
run appended to, tonight's run) and drops the rows of those gone. The cache folder is trusted as the user's own, as
Python trusts ``__pycache__``: the table is a pickle.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench import records
from bench.records import files, schema
from bench.report import aggregate
from bench.run import data

BATCH = 5_000  # records made into rows at a time: a call of aggregate.rows costs ~10 ms besides them, a record ~25 kB


@dataclass
class File:
    """What reading one records file gave, besides its rows."""

    key: tuple  # (size, modification time): the file it was read from
    total: int  # records read, usable or not
    left_out: list[str]  # schema.split's lines of the records that cannot be used
    warnings: str  # what reading it said on stderr, said again whenever the table is used


@dataclass
class Table:
    """The table of one results folder, as the cache folder keeps it."""

    code: str  # ``code()`` of what made it
    files: dict[str, File] = field(default_factory=dict)  # by path, as records.paths names it
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)  # aggregate.SCALARS and records.identity's


@functools.cache
def code() -> str:
    """A digest of bench's source and pandas' version: a table made by other code is made again."""
    digest = hashlib.sha256(pd.__version__.encode())
    for path in sorted(Path(__file__).resolve().parent.parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def table(path: Path) -> Table:
    """The table of the records files under ``path`` (bench.records.paths): the kept one, with the files that changed
    read again, those gone dropped and the new ones added; kept again where anything changed."""
    paths = [str(p) for p in records.paths(path)]
    cache = data.cache_dir() / "report-index" / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:24])
    kept = Table(code())
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError, ValueError):
        found = pickle.loads(cache.read_bytes())
        if isinstance(found, Table) and found.code == kept.code:
            kept = found
    keys = {p: _key(p) for p in paths}
    same = [p for p in paths if p in kept.files and kept.files[p].key == keys[p]]
    stale = [p for p in paths if p not in same]
    if not stale and len(same) == len(kept.files):
        return kept
    out = Table(kept.code, {p: kept.files[p] for p in same})
    pieces = [kept.rows[kept.rows["_file"].isin(same)]] if same else []
    batch: list[dict] = []
    envs: dict[str, dict] = {}
    for p in stale:
        said = io.StringIO()
        with contextlib.redirect_stderr(said):  # bench.text.warn's lines, to say again whenever the table is used
            recs = records.located(Path(p))
            good, bad = schema.split(recs)
        out.files[p] = File(keys[p], len(recs), bad, said.getvalue())
        batch += good
        if batch and (len(batch) >= BATCH or p == stale[-1]):
            pieces.append(_rows(batch, envs))
            batch = []
    rows = pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame()
    for c in rows.columns:  # a column whose pieces differ in type as one frame of every record would hold it
        if len({str(piece[c].dtype) for piece in pieces}) > 1:
            rows[c] = pd.Series(rows[c].tolist(), dtype=None)
    if len(rows):  # in the order records.paths names the files, as bench.records.load reads them
        place = {p: i for i, p in enumerate(paths)}
        rows = rows.sort_values(["_file", "_line"], key=lambda c: c.map(place) if c.name == "_file" else c)
        out.rows = rows.reset_index(drop=True)
    out.files = {p: out.files[p] for p in paths}
    with contextlib.suppress(OSError):  # no cache (a read-only home): read again next time
        files.folder(cache.parent)
        files.replace(cache, pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL))
    return out


def _key(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (None, None)
    return st.st_size, st.st_mtime_ns


def _rows(good: list[dict], envs: dict[str, dict]) -> pd.DataFrame:
    """The table's rows of usable records: what the report reads of every record, and its identity. Each column a
    copy (a view would hold the frame of the whole records); a text that repeats one object, and an env one object
    per distinct env (``envs``), which a pickle then holds once."""
    full = aggregate.rows(good)
    full["_details"] = False
    full["_identity"] = [records.identity(schema.upgrade(r)) for r in good]
    out = {}
    for c in [*aggregate.SCALARS, "_identity"]:
        values = full[c].to_numpy(copy=True)
        if values.dtype == object:
            same = (envs.setdefault(repr(v), v) if isinstance(v, dict) else _interned(v) for v in values)
            values = np.fromiter(same, dtype=object, count=len(values))
        out[c] = values
    return pd.DataFrame(out)


def _interned(value: object) -> object:
    return sys.intern(value) if type(value) is str else value


def frame(path: Path, strict: bool = False) -> tuple[pd.DataFrame, list[str], list[str]]:
    """What bench.records.load and aggregate.frame give, from the table of the records under ``path``: one row per
    measurement (the newer record of two: records.latest's rule), the lines of the records left out as failing their
    schema (``strict``: ValueError naming them) and of those superseded."""
    t = table(path)
    for f in t.files.values():
        sys.stderr.write(f.warnings)
    total = sum(f.total for f in t.files.values())
    if not total:
        raise ValueError(f"no records.jsonl under {path}; run `bench run` first")
    left_out = [line for f in t.files.values() for line in f.left_out]
    schema.judge(left_out, total, strict)
    if not len(t.rows):
        raise ValueError(f"none of the records under {path} can be used:\n" + "\n".join(left_out))
    df = t.rows.copy()
    by = records.superseding(list(df["_identity"]), [str(s or "") for s in df["started_at"]])
    diverged = [0] * len(df)
    superseded = []
    where = df[["_file", "_line", "status", "cell_id", "repeat"]].iloc[sorted({*by, *by.values()})]
    for i, j in by.items():
        diverged[j] += where.at[i, "status"] == "diverged"  # as records.latest counts it
        superseded.append(records.superseded_line(where.loc[i].to_dict(), where.loc[j].to_dict()))
    df["diverged_before"] = diverged
    df = df.drop(index=list(by), columns=["_identity"])
    return aggregate.order(df), left_out, superseded
