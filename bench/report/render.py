"""The report's tables, formatted for reading: per-workload rows, the overview, the environments; links."""

from __future__ import annotations

import csv
import html
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from bench.report import aggregate
from bench.report.verdicts import fmt, tta_text
from bench.spec.cell import RECIPE
from bench.text import shown

UNQUIET = ("busy", "undetermined")  # the verdicts of repeats that are not quiet (bench.trackers.contention)


def table(s: pd.DataFrame) -> pd.DataFrame:
    """The human-facing columns, formatted."""
    t = pd.DataFrame(
        {
            "hardware": s["hardware"] + " @" + s["host"].astype(str),
            "stack": s["stack"],
            "devices": aggregate.devices(s),
            "precision": s["precision"],
            "mode": s["mode"],
            "input": s["input"],
            "configuration": s["configuration"],  # what sets the row apart from its workload's others
            "status": [
                st if st != "ok" else f"ok {r}/{n}" + "".join(f", {k} {v}" for k, v in zip((b, u), UNQUIET) if k)
                for st, r, n, b, u in zip(
                    s["status"], s["repeats_ok"], s["repeats"], s["repeats_busy"], s["repeats_undetermined"]
                )
            ],
            "samples/s median (min–max)": [
                f"{fmt(m)} ({fmt(lo)}–{fmt(hi)})" if m is not None and not pd.isna(m) else ""
                for m, lo, hi in zip(s["throughput_median"], s["throughput_min"], s["throughput_max"])
            ],
            "step ms p50/p90": [
                f"{fmt(a, '.2f')}/{fmt(b, '.2f')}" if not pd.isna(a) else ""
                for a, b in zip(s["step_ms_median"], s["step_ms_p90"])
            ],
            "speedup [95% CI]": [
                "baseline" if base else (r.text() if r is not None else "")
                for r, base in zip(s["speedup_stats"], s["is_baseline"])
            ],
            "vs fp32 [95% CI]": [r.text() if r is not None else "" for r in s["vs_fp32"]],
            "scaling eff. [95% CI]": [r.text("", ".0%") if r is not None else "" for r in s["scaling_stats"]],
            "final acc": [fmt(x, ".4f") for x in s["accuracy_median"]],
            "TTA s": [tta_text(r) for _, r in s.iterrows()],
            "loader samples/s": [fmt(x) for x in s["loader_median"]],
            # the harness's own work inside each timed step (bench.meter.Meter.own_cost)
            "meter % of step": ["" if x is None or pd.isna(x) else f"{x * 100:.2g}%" for x in s["meter_share"]],
            "phases s (median)": [
                ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) if isinstance(ph, dict) else "" for ph in s["phases"]
            ],
            **tracked(s),
            **costs(s),
            "allocator": s["allocator"],
            "notes": [
                "; ".join(n for n in notes if n)
                for notes in zip(
                    s["unquiet"], s["cap"], s["unstable"], s["left_out"], s["emulated"], s["reason"], s["files_cut"]
                )
            ],
        }
    )
    optional = ("vs fp32 [95% CI]", "scaling eff. [95% CI]", "configuration", "meter % of step")  # where a row has one
    return t.drop(columns=[c for c in optional if not any(t[c])])


def dollars(x: float | None) -> str:
    """Cents, three significant figures below a dollar (a small run costs fractions of a cent), whole dollars from
    $100."""
    if x is None or pd.isna(x):
        return ""
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:.{max(2, 2 - math.floor(math.log10(x)))}f}" if x > 0 else "$0"


def costs(s: pd.DataFrame, label: bool = True) -> dict[str, list[str]]:
    """$ to the target and $ per million samples at each row's price (bench.cost), where any row has a price;
    ``label``: with the price each row is billed at."""
    if s["usd_per_hour"].isna().all():
        return {}

    def to_target(x: float | None, usd: float | None, status: str) -> str:
        if usd is None or pd.isna(usd) or status != "ok":
            return ""
        return "not reached" if x is None or pd.isna(x) else dollars(x)

    out = {
        "$ to target": [to_target(*r) for r in zip(s["usd_to_target"], s["usd_per_hour"], s["status"])],
        "$/M samples": [dollars(x) for x in s["usd_per_M_samples"]],
    }
    return {**out, "priced at": list(s["price"])} if label else out


def tracked(s: pd.DataFrame) -> dict[str, list[str]]:
    """The trackers' own columns (bench.trackers), each shown where any row of the table has it."""
    labels = dict.fromkeys(label for cols in s["tracked"] for label in cols)
    return {label: [cols.get(label, "") for cols in s["tracked"]] for label in labels}


def label(r: pd.Series) -> str:
    """A report row by name: hardware, devices and precision; the mode and input where they are not the seed's; and
    what sets its configuration apart (aggregate's ``configuration``), so that no two rows of a workload share one."""
    text = f"{r['hardware']} x{r['device_count']} {r['precision']}"
    text += "".join(f" {k} {r[k]}" for k in ("mode", "input") if r[k] != RECIPE[k])
    return text + (f" [{r['configuration']}]" if r["configuration"] else "")


def artifacts(g: pd.DataFrame, out: Path) -> list[tuple[str, list[str]]]:
    """(row label, paths relative to the report folder) for the rows whose cells saved files (plots, traces)."""
    return [(label(r), [os.path.relpath(a, out) for a in r["artifacts"]]) for _, r in g.iterrows() if r["artifacts"]]


OVERVIEW_TRACKED = ("host load", "compile s", "busy %", "host ms/step", "bound (profile)")


def overview(s: pd.DataFrame, out: Path, link) -> pd.DataFrame:
    """Every workload's rows in one table, so that frameworks on the same hardware sit side by side.
    ``link(path, text)`` formats a link for the output format."""
    tracked_columns = tracked(s)
    t = pd.DataFrame(
        {
            "workload": s["workload"],
            "hardware": s["hardware"] + " @" + s["host"].astype(str),
            "stack": s["stack"],
            "devices": aggregate.devices(s),
            "precision": s["precision"],
            "mode": s["mode"],
            "input": s["input"],
            "configuration": s["configuration"],
            "status": s["status"],
            "samples/s": [fmt(x) for x in s["throughput_median"]],
            "final acc": [fmt(x, ".4f") for x in s["accuracy_median"]],
            "TTA s": [tta_text(r) for _, r in s.iterrows()],
            **{k: v for k, v in tracked_columns.items() if k in OVERVIEW_TRACKED},
            **costs(s, label=False),
            "weights": s["weights"],
            "files": [" ".join(link(os.path.relpath(a, out), name(a)) for a in arts) for arts in s["artifacts"]],
        }
    )
    return t if any(t["configuration"]) else t.drop(columns="configuration")


_MARKDOWN = re.compile(r"([\\`|\[\]])")  # what would end a cell, start code or a link, or escape the next
_BREAKS = re.compile(r"[\n\r\t]+")  # a text's own line breaks and tabs: a space in a cell


MAX_SHOWN = 1_000  # characters of one value in a table: the rest is counted, not shown (summary.csv holds it all)


def plain(value: object) -> str:
    """A value as text for a table cell: floats as tabulate shows them (``g``), line breaks a space, every other
    control, format or separator character escaped visibly (bench.text.shown: a bidi override or an escape
    sequence shows as ``\\u202e``, ``\\x1b``, never acts), and at most ``MAX_SHOWN`` characters of it."""
    if value is None:
        return ""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    if len(text) > MAX_SHOWN:
        text = f"{text[:MAX_SHOWN]}… ({len(text) - MAX_SHOWN:,} more characters)"
    return shown(_BREAKS.sub(" ", text))


def html_text(value: object) -> str:
    """A value as HTML text that shows as written (``plain``), markup escaped."""
    return html.escape(plain(value))


def md_text(value: object) -> str:
    """A value as Markdown that stays in its table cell and shows as written (``plain``): markup escaped as HTML,
    ``|``, backticks, brackets and backslashes escaped."""
    return _MARKDOWN.sub(r"\\\1", html.escape(plain(value), quote=False))


def markdown(t: pd.DataFrame, raw: tuple[str, ...] = ()) -> str:
    """``t`` as a Markdown pipe table: every value through ``md_text`` but the ``raw`` columns' (links that
    ``md_link`` built). Rows are not padded to the widest value: the table grows with its values, not their product."""
    lines = ["| " + " | ".join(map(str, t.columns)) + " |", "|" + "---|" * len(t.columns)]  # the report's own names
    for row in t.itertuples(index=False):
        cells = (str(v) if c in raw else md_text(v) for c, v in zip(t.columns, row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# What a spreadsheet reads as the start of a formula (OWASP's CSV-injection list, and the full-width signs some read
# as theirs), and what it skips before one (spaces, quotes).
FORMULA = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
SKIPPED = " \"'\u3000"


def csv_safe(t: pd.DataFrame) -> pd.DataFrame:
    """``t`` with every text value that a spreadsheet would run as a formula (starting with =, +, -, @, tab, CR or
    a full-width sign, after any spaces or quotes) prefixed with ', as OWASP's CSV-injection guidance says; other
    control and format characters escaped visibly; numbers stay numbers. Write it with every field quoted
    (``CSV_QUOTING``)."""

    def safe(v: object) -> object:
        if not isinstance(v, str):
            return v
        v = shown(v, keep="\t\r\n")
        return f"'{v}" if v.lstrip(SKIPPED).startswith(FORMULA) else v

    return t.apply(lambda column: column.map(safe))


CSV_QUOTING = csv.QUOTE_ALL


def html_table(t: pd.DataFrame, raw: tuple[str, ...] = ()) -> str:
    """``t`` as HTML with every value escaped, but for the ``raw`` columns, which hold links built (and escaped) by
    ``html_link`` from paths inside the results folder."""
    safe = t.copy()
    for column in safe.columns:
        if column not in raw:  # each value isolated (<bdi>): its own text direction never reorders the row's
            safe[column] = ["" if v is None or (isinstance(v, float) and pd.isna(v)) else
                            f"<bdi>{html_text(v)}</bdi>" for v in safe[column]]  # fmt: skip
    return safe.to_html(index=False, border=0, escape=False)


def left_out(lines: list[str], note: str = "", heading: str = "Records left out") -> tuple[list[str], str]:
    """Records left out (failing their schema, bench.schema; or superseded), under their own heading: markdown
    lines (an indented block, which nothing in a line can end) and HTML (escaped, in a <pre>)."""
    md = [f"## {heading}", "", *([note, ""] if note else []), *(f"    {plain(line)}" for line in lines), ""]
    text = "\n".join(html_text(line) for line in lines)
    return md, f"<h2>{heading}</h2>{f'<p>{html_text(note)}</p>' if note else ''}<pre>{text}</pre>"


def name(path: str) -> str:
    """A file's short name for a link: its stem, "trace" for a profile trace."""
    return "trace" if ".pt.trace." in path else Path(path).stem


def md_link(path: str, text: str) -> str:
    return f"[{md_text(text)}]({quote(path)})"


def html_link(path: str, text: str) -> str:
    return f'<a href="{html.escape(path)}">{html_text(text)}</a>'


def environments(df: pd.DataFrame) -> pd.DataFrame:
    """One row per host; a value that differed between its records is listed with all its variants."""
    rows: dict[str, dict[str, set]] = {}
    for e in df["env"]:
        e = e or {}
        pk = e.get("packages") or {}
        values = {
            "cpu": e.get("cpu_model"),
            "cores": e.get("cpu_count"),
            "CPU ISA": " ".join(f for f, have in (e.get("cpu_isa") or {}).items() if have) or None,
            "accelerator": (e.get("backend") or {}).get("gpu_name"),
            "torch": pk.get("torch"),
            "lightning": pk.get("pytorch-lightning"),
            "python": e.get("python"),
            "allocator": (e.get("allocator") or {}).get("name"),
            "image": e.get("container_image"),
            "commit": (e.get("git_commit") or "")[:12] or None,
            # a machine that could not install the lock (a lent GPU machine's own torch) is named as such
            "not the lock": ", ".join(f"{k} {v}" for k, v in (e.get("lock_differences") or {}).items()) or None,
        }
        row = rows.setdefault(e.get("host"), {k: set() for k in values})
        for k, v in values.items():
            if v is not None:
                row[k].add(str(v))
    return pd.DataFrame([{"host": h, **{k: ", ".join(sorted(v)) for k, v in r.items()}} for h, r in rows.items()])
