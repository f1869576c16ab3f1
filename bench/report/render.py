"""The report's tables, formatted for reading: each workload's measured rows in tables of a few columns each (speed;
accuracy and time to accuracy; cost and energy; profile; diagnostics), the support matrix, the environments; the
notes of each row. Values are formatted here; the page's escaping is bench.report.document's."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import pandas as pd

from bench.plan.cell import RECIPE
from bench.plan.precision import PRECISIONS
from bench.report import aggregate
from bench.report.document import Link, Table
from bench.report.verdicts import fmt, tta_text
from bench.text import shown

UNQUIET = ("busy", "undetermined")  # the verdicts of repeats that are not quiet (bench.trackers.contention)
NOT_MEASURED = ("unsupported",)  # statuses of cells that never trained: the support matrix holds them


def measured(s: pd.DataFrame) -> pd.DataFrame:
    """The rows that trained (ok, failed, timed out or diverged): every table but the support matrix."""
    return s[~s["status"].isin(NOT_MEASURED)]


def identity(s: pd.DataFrame) -> dict[str, list]:
    """The columns that name a row in each of its tables: where (hardware @host, and the devices where more than
    one), the stack where the rows ran more than one, precision, mode, input, and what sets its configuration apart
    where any row has something."""
    where = [
        f"{h} @{host}" + (f" ×{aggregate.devices_label(n, d)}" if n * d > 1 else "")
        for h, host, n, d in zip(s["hardware"], s["host"].astype(str), s["nodes"], s["device_count"])
    ]
    out: dict[str, list] = {"hardware": where}
    if s["stack"].nunique() > 1:  # rows apart only by their stack would read as one
        out["stack"] = list(s["stack"])
    out.update(precision=list(s["precision"]), mode=list(s["mode"]), input=list(s["input"]))
    if any(s["configuration"]):
        out["configuration"] = list(s["configuration"])
    return out


def status(s: pd.DataFrame) -> list[str]:
    """``ok 5/5, 1 busy, 1 undetermined``, or the status of a row that never ended ok."""
    return [
        st if st != "ok" else f"ok {r}/{n}" + "".join(f", {k} {v}" for k, v in zip((b, u), UNQUIET) if k)
        for st, r, n, b, u in zip(
            s["status"], s["repeats_ok"], s["repeats"], s["repeats_busy"], s["repeats_undetermined"]
        )
    ]


def _tracked(s: pd.DataFrame, table: str) -> dict[str, list[str]]:
    """The trackers' columns that go to ``table`` (bench.trackers.report_columns), each where any row has it."""
    labels = dict.fromkeys(k for cols, where in zip(s["tracked"], s["tracked_in"]) for k in cols if where[k] == table)
    return {label: [cols.get(label, "") for cols in s["tracked"]] for label in labels}


def values(s: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Every table of a workload's rows: its title → its value columns (``identity`` names the rows)."""
    return {
        "Speed": {
            "status": status(s),
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
        },
        "Accuracy and time to accuracy": {
            "final acc": [fmt(x, ".4f") for x in s["accuracy_median"]],
            "TTA s": [tta_text(r) for _, r in s.iterrows()],
            "phases s (median)": [
                ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) if isinstance(ph, dict) else "" for ph in s["phases"]
            ],
            "weights": list(s["weights"]),
        },
        "Cost and energy": {**costs(s), **_tracked(s, "cost")},
        "Profile: where the device's time goes": _tracked(s, "profile"),
        "Diagnostics": {
            **({"stack": list(s["stack"])} if s["stack"].nunique() == 1 else {}),
            "allocator": list(s["allocator"]),
            "loader samples/s": [fmt(x) for x in s["loader_median"]],
            # the harness's own work inside each timed step (bench.run.meter.Meter.own_cost)
            "meter % of step": ["" if x is None or pd.isna(x) else f"{x * 100:.2g}%" for x in s["meter_share"]],
            **_tracked(s, "diagnostics"),
        },
    }


def tables(s: pd.DataFrame) -> list[Table]:
    """A workload's measured rows as its tables (``values``), each without the columns no row fills, and none
    where no column is left."""
    s = measured(s)
    ids = pd.DataFrame(identity(s))
    out = []
    for title, columns in values(s).items():
        t = pd.DataFrame(columns, index=s.index)
        t = t[[c for c in t.columns if any(str(v) for v in t[c] if v is not None and not pd.isna(v))]]
        if len(t.columns):
            out.append(Table(pd.concat([ids.set_index(s.index), t], axis=1), title))
    return out


def notes(s: pd.DataFrame) -> list[str]:
    """Each row's notes (not quiet, the auto cap, unstable, steps left out, emulated, why it failed, files not
    linked), as ``label: notes``."""
    out = []
    for _, r in s.iterrows():
        parts = (r[k] for k in ("unquiet", "cap", "unstable", "left_out", "emulated", "reason", "files_cut"))
        text = "; ".join(p for p in parts if p)
        if text and r["status"] not in NOT_MEASURED:
            out.append(f"{label(r)}: {text}")
    return out


def support(s: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """What ran where: one row per workload, hardware and execution way (mode, input); one column per precision
    asked anywhere; a cell "measured" (or the status of a cell that trained and did not end ok), "unsupported [n]"
    with its reason as footnote n, or "not asked". Returns the table and the footnotes."""
    precisions = [p for p in PRECISIONS if p in set(s["precision"])]
    reasons: dict[str, int] = {}
    rows = []
    keys = ["workload", "hardware", "host", "nodes", "device_count", "mode", "input"]
    for key, g in s.groupby(keys, sort=False):
        k = dict(zip(keys, key))
        devices = k["nodes"] * k["device_count"]
        row = {
            "workload": k["workload"],
            "hardware": f"{k['hardware']} @{k['host']}" + (f" ×{devices}" if devices > 1 else ""),
            "mode, input": f"{k['mode']}, {k['input']}",
        }
        for p in precisions:
            cells = g[g["precision"] == p]
            found = []
            for _, r in cells.iterrows():
                if r["status"] in NOT_MEASURED:
                    n = reasons.setdefault(r["reason"] or r["status"], len(reasons) + 1)
                    found.append(f"{r['status']} [{n}]")
                else:
                    found.append("measured" if r["status"] == "ok" else r["status"])
            row[p] = ", ".join(dict.fromkeys(found)) or "not asked"
        rows.append(row)
    return pd.DataFrame(rows), [f"[{n}] {reason}" for reason, n in reasons.items()]


def dollars(x: float | None) -> str:
    """Cents, three significant figures below a dollar (a small run costs fractions of a cent), whole dollars from
    $100."""
    if x is None or pd.isna(x):
        return ""
    if x >= 100:
        return f"${x:,.0f}"
    return f"${x:.{max(2, 2 - math.floor(math.log10(x)))}f}" if x > 0 else "$0"


def costs(s: pd.DataFrame) -> dict[str, list[str]]:
    """$ to the target and $ per million samples at each row's price (bench.plan.cost), with the price each row is
    billed at, where any row has a price."""
    if s["usd_per_hour"].isna().all():
        return {}

    def to_target(x: float | None, usd: float | None, status: str) -> str:
        if usd is None or pd.isna(usd) or status != "ok":
            return ""
        return "not reached" if x is None or pd.isna(x) else dollars(x)

    return {
        "$ to target": [to_target(*r) for r in zip(s["usd_to_target"], s["usd_per_hour"], s["status"])],
        "$/M samples": [dollars(x) for x in s["usd_per_M_samples"]],
        "priced at": list(s["price"]),
    }


def label(r: pd.Series) -> str:
    """A report row by name: hardware @host, devices and precision; the mode and input where they are not the
    seed's; and what sets its configuration apart (aggregate's ``configuration``), so that no two rows of a workload
    share one."""
    text = f"{r['hardware']} @{r['host']} x{r['device_count']} {r['precision']}"
    text += "".join(f" {k} {r[k]}" for k in ("mode", "input") if r[k] != RECIPE[k])
    return text + (f" [{r['configuration']}]" if r["configuration"] else "")


def artifacts(g: pd.DataFrame, out: Path) -> list[list]:
    """``label: link link …`` for the rows whose cells saved files (plots, traces), linked relative to ``out``."""
    return [
        [f"{label(r)}:", *(Link(os.path.relpath(a, out), name(a)) for a in r["artifacts"])]
        for _, r in g.iterrows()
        if r["artifacts"]
    ]


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


def name(path: str) -> str:
    """A file's short name for a link: its stem, "trace" for a profile trace."""
    return "trace" if ".pt.trace." in path else Path(path).stem


HARDWARE = ("cpu", "cores", "CPU ISA", "accelerator")  # the environments' columns, in two tables
SOFTWARE = ("torch", "lightning", "python", "allocator", "image", "commit", "not the lock")


def environments(df: pd.DataFrame) -> pd.DataFrame:
    """One row per host; a value that differed between its records is listed with all its variants."""
    rows: dict[str, dict[str, set]] = {}
    for e in {id(e): e for e in df["env"]}.values():  # the records of a run share one (bench.report.index)
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
