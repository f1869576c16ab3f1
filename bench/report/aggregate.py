"""Records → one table row per configuration: workload × hardware × node and device count × precision × mode × input
× every setting that changes what is measured (``CONFIG``, from the settings table), with medians and intervals over
its repeats, what sets it apart from its neighbours, speedups, scaling efficiency and each tracker's own columns."""

from __future__ import annotations

import math
import numbers
import os
import re
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from bench import records, trackers
from bench.plan import cost
from bench.plan.cell import RECIPE
from bench.plan.precision import PRECISIONS
from bench.plan.settings import CONFIG_KEY, STEP_KEY
from bench.records import schema, stats
from bench.run import isa
from bench.trackers import contention

# A row's repeats are unstable from these: the median repeat's p90 step ÷ median step, and the coefficient of
# variation of its steady segments' samples/s (docs/methodology.md, Stable repeats).
UNSTABLE_P90 = 1.5
UNSTABLE_CV = 0.15
# Where and how a row ran: what a comparison may set side by side (two hosts, fp32 against bf16-mixed).
AXES = ["workload", "host", "hardware", "backend", "stack", "nodes", "device_count", "precision", "mode", "input"]
# The settings that change what is measured (bench.plan.settings, ``key``): records that differ in one are different
# configurations, never repeats of one, and are compared with nothing but their own kind. The allocator is the one
# the cell ran with (env), not the setting ("auto" resolves per host).
CONFIG = list(CONFIG_KEY)
STEP = list(STEP_KEY)  # what a step costs: a framework and its plain-PyTorch reference share these to be compared
ROW = [*AXES, *CONFIG]  # one configuration: the repeats of one row differ in their seed and nothing else
# The software a row ran on: the packages that put the recipe on the device (the env section's versions). Rows of
# different stacks are kept apart, and compared only as such.
STACK = {"torch": "torch", "torch-xla": "torch_xla", "torch-tpu": "torch_tpu"}


@dataclass
class Summary:
    """One report row's figures over its repeats (``summarise``), besides its key (``ROW``): every column of the
    summary declared once, with its type. Figures come from the quiet repeats where the row has some (all of them
    with ``include_unquiet``); comparisons only from those."""

    status: str  # ok where any repeat ended ok, else the first other status
    repeats_ok: int
    repeats: int
    repeats_busy: int  # ok repeats measured on a busy host (bench.trackers.contention)
    repeats_undetermined: int
    throughputs: dict  # samples/s by block (run id, repeat): what every comparison uses (bench.records.stats.compare)
    throughput_median: float | None
    throughput_min: float | None
    throughput_max: float | None
    step_ms_median: float | None
    step_ms_p90: float | None
    accuracy_median: float | None
    tta_s: float | None  # MLPerf's score over the runs (bench.records.stats.tta), with how many reached and why none
    tta_reached: int
    tta_runs: int
    tta_method: str
    tta_why: str
    warmup_s_median: float | None
    setup_s_median: float | None
    loader_median: float | None  # loader-only samples/s
    full_network: dict  # samples/s by block while the whole network trains (full_network_throughput)
    full_network_median: float | None
    phases: dict  # median seconds of each phase the records name
    lr_found_median: float | None
    weights: str
    artifacts: list  # the first repeat's files, at most MAX_FILES
    files_cut: str
    precision_effective: str
    reason: str  # why repeats did not end ok
    emulated: str  # why a CPU's bf16 ran emulated
    unquiet: str  # the note of repeats not measured on a quiet host
    unstable: str
    left_out: str  # steps a compilation took out of steady samples/s
    cap: str  # repeats = auto's target not reached at its cap
    tracked: dict  # each tracker's own columns: label → text
    tracked_in: dict  # label → the report table it goes to
    profile_busy: float | None
    meter_share: float | None
    price: str  # the price's label, or why there is none
    usd_per_hour: float | None
    usd_to_target: float | None
    usd_per_M_samples: float | None
    # across rows, set once every row is summarised (summarise)
    configuration: str = ""  # what sets the row apart from its workload's others
    speedup_stats: stats.Ratio | None = None  # against the baseline of its configuration
    baseline: str | None = None
    is_baseline: bool = False
    speedup: float | None = None
    vs_fp32: stats.Ratio | None = None
    scaling_stats: stats.Ratio | None = None
    scaling: float | None = None


SUMMARY = tuple(f.name for f in fields(Summary))  # the summary's columns after ROW's, in order


def row_without(*names: str) -> list[str]:
    """``ROW``'s keys but ``names``: what two rows share when they differ only there (one place for a new axis)."""
    return [k for k in ROW if k not in names]


def frame(recs: list[dict]) -> pd.DataFrame:
    """Records of any readable schema as one flat row each (``rows``), sorted for the tables (``order``); a record
    that superseded diverged ones (bench.records.latest) counts them in ``diverged_before``."""
    df = rows(recs)
    df["diverged_before"] = [int(r.get("_diverged_before") or 0) for r in recs]
    return order(df)


def rows(recs: list[dict]) -> pd.DataFrame:
    """Records of any readable schema as one flat row each (bench.records.flat), in their order, with what each
    record tells by itself: its host, hardware, stack, whether the host was quiet, its full-network samples/s, and
    where it was read (``_run_dir``, ``_file``, ``_line``, ``_offset``: bench.records.located)."""
    out = []
    for r in recs:
        row = records.flat(schema.upgrade(r))
        row.update({k: r.get(k) for k in WHERE})
        out.append(row)
    df = pd.DataFrame(out)
    for col in (*schema.flat_fields(), *schema.sections(), *WHERE):  # every field a model names, filled or not
        if col not in df:
            df[col] = None
    df["host"] = [(e or {}).get("host") for e in df["env"]]
    df["hardware"] = pd.Series([(e or {}).get("device_name") for e in df["env"]], dtype=object).fillna(df["backend"])
    df["allocator"] = [((e or {}).get("allocator") or {}).get("name") for e in df["env"]]
    packages = [(e or {}).get("packages") or {} for e in df["env"]]
    df["stack"] = [stack(p) for p in packages]
    df["torch"] = [p.get("torch") for p in packages]
    # records from before the input axis ran the seed's DataLoader (object: a column of only gaps is float)
    df["input"] = df["input"].astype(object).fillna("loader")
    df["mode"] = df["mode"].astype(object).fillna("eager")  # and the seed's eager code
    df["nodes"] = df["nodes"].fillna(1).astype(int)  # and one node
    for c in CONFIG:  # as text, alike in every frame: two sides of a comparison hold None, 3840 or 3840.0
        df[c] = df[c].map(setting_text)
    df["block"] = list(
        zip(df["run_id"].map(norm), df["repeat"].map(setting_text))
    )  # bench.records.stats.compare pairs by it
    df["full_network_samples_per_s"] = [
        full_network_throughput(p, phase, t)
        for p, phase, t in zip(df["phase_throughput"], df["full_network_phase"], df["throughput_samples_per_s"])
    ]
    # whether the host was quiet while the repeat measured (bench.trackers.contention: quiet, busy, undetermined)
    verdicts = [contention.verdict_of(c) for c in df["contention"]]
    df["verdict"] = [v for v, _ in verdicts]
    df["verdict_why"] = [why for _, why in verdicts]
    df["unquiet"] = df["verdict"] != "quiet"
    df["_details"] = True  # every section is here (bench.report.index keeps fewer: ``complete``)
    return df


WHERE = ("_run_dir", "_file", "_line", "_offset")  # where a record was read (bench.records.located)
# What the report reads of every record: the columns bench.report.index keeps of a year of nightly runs. The rest
# (each tracker's section, the curve, the files saved) it reads of a row's newest DETAIL repeats only (complete).
SCALARS = tuple(
    dict.fromkeys(
        [*ROW, "status", "reason", "run_id", "cell_id", "repeat", "started_at", "throughput_samples_per_s",
         "step_time_ms_median", "step_time_ms_p90", "step_time_p90_over_median", "segment_throughput_cv",
         "meter_share_of_step", "final_accuracy", "tta_seconds", "tta_target", "warmup_seconds", "setup_seconds",
         "loader_samples_per_s", "full_network_samples_per_s", "lr_found", "precision_effective", "batch_size",
         "global_batch_size", "torch", "env", "block", "verdict", "verdict_why", "unquiet", "_details", *WHERE]
    )
)  # fmt: skip


def order(df: pd.DataFrame) -> pd.DataFrame:
    """``rows`` sorted for the tables: by workload, host, hardware, precision (``PRECISIONS``' order), mode, input,
    repeat; each with ``_newer``, the rank of its start among them (``newest``)."""
    rank = {p: i for i, p in enumerate(PRECISIONS)}
    df["_p"] = df["precision"].map(rank)
    df = df.sort_values(
        ["workload", "host", "backend", "nodes", "device_count", "_p", "mode", "input", "repeat"]
    ).reset_index(drop=True)
    started = ["" if v is None or v != v else str(v) for v in df["started_at"]]  # none: the oldest
    df["_newer"] = 0
    df.loc[np.argsort(started, kind="stable"), "_newer"] = np.arange(len(df))  # ties: the later row is newer
    return df


DETAIL = 10  # a row's newest repeats whose every section its tables read: a report grows with rows, not history


def newest(g: pd.DataFrame, n: int = DETAIL) -> pd.DataFrame:
    """``g``'s ``n`` newest records (by ``started_at``), in ``g``'s order."""
    return g.loc[g["_newer"].nlargest(n).index].sort_index()


def complete(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every field of its records: the rows that bench.report.index kept only the ``SCALARS`` of are read
    again from their line (bench.records.at). A record no longer there as it was (its file changed since) keeps only
    its scalars."""
    details: dict[str, dict[int, object]] = {}
    read = []
    for file, g in df[~df["_details"]].groupby("_file", sort=False):
        for i, rec in zip(g.index, records.at(Path(file), list(g["_offset"]))):
            if rec is not None:
                for k, v in records.flat(schema.upgrade(rec)).items():
                    if k not in df.columns:
                        details.setdefault(k, {})[i] = v
                read.append(i)
    df = df.assign(_details=df.index.isin(read) | df["_details"])
    for c in dict.fromkeys([*details, *schema.flat_fields(), *schema.sections()]):  # as ``rows`` makes every one
        if c not in df.columns:
            df[c] = [details.get(c, {}).get(i) for i in df.index]
    return df


def stack(packages: dict) -> str:
    """The ``STACK`` packages a record ran on (its env's ``packages``), e.g. "torch 2.14.1" or "torch 2.9.0 +
    torch_xla 2.9.0"."""
    return " + ".join(f"{label} {packages[name]}" for name, label in STACK.items() if packages.get(name)) or "unknown"


def torch_versions(df: pd.DataFrame) -> list[str]:
    """The torch versions of ``df``'s records, where they differ: a comparison across them measures the stack too."""
    found = sorted(set(df["torch"].dropna().map(str)), key=lambda v: [int(n[:18]) for n in re.findall(r"\d+", v)])
    return found if len(found) > 1 else []


def as_recipe(s: pd.DataFrame) -> pd.Series:
    """The rows that ran the seed's way: eager code fed by its DataLoader (the baseline of every comparison)."""
    return (s["mode"] == RECIPE["mode"]) & (s["input"] == RECIPE["input"])


def norm(value: object) -> str:
    return "none" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def setting_text(value: object) -> str:
    """A setting's value as the configuration key holds it: ``none``, ``true``, ``3840``, ``0.0209``, ``find``; a
    whole number the same whether a frame held it as an int or a float."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "none"
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value)).lower()
    if isinstance(value, numbers.Real):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    return str(value)


def median(values) -> float | None:
    v = pd.to_numeric(pd.Series(list(values), dtype=object)).dropna()
    return float(v.median()) if len(v) else None


def full_network_throughput(phases: object, phase: object, steady: object) -> object:
    """Steady samples/s while the whole network trains: a workload whose phases train only part of it (fastai's
    frozen epoch) declares the ``phase`` that trains all of it, as its plain-PyTorch reference does throughout;
    ``steady`` (the record's samples/s) where the record's ``phases`` do not name it."""
    return (phases if isinstance(phases, dict) else {}).get(phase, steady)


def _weights(w: object) -> str | None:
    if not isinstance(w, dict):
        return None
    if not w.get("pretrained"):
        return "random init"
    return f"{w.get('source')} ({'checksum ok' if w.get('checksum_ok') else 'checksum MISMATCH'})"


def _phases(ok: pd.DataFrame) -> dict[str, float]:
    """Median seconds of every phase the records name, in the order they name them."""
    names = dict.fromkeys(k for x in ok["phase_seconds"] if isinstance(x, dict) for k in x)
    found = {n: median((x or {}).get(n) for x in ok["phase_seconds"] if isinstance(x, dict)) for n in names}
    return {n: m for n, m in found.items() if m is not None}


MAX_FILES = 12  # files linked per row: a report grows with its rows, not with what one record lists


def _files(ok: pd.DataFrame) -> tuple[list[str], str]:
    """The first repeat's declared artifacts and profile trace, as paths (relative to where the report runs), at
    most ``MAX_FILES``; and the note of those left unlinked, if any."""
    for _, r in ok.iterrows():
        arts = list(r["artifacts"]) if isinstance(r["artifacts"], list) else []
        trace = (r["profile"] or {}).get("trace") if isinstance(r["profile"], dict) else None
        paths = [*([trace] if trace else []), *arts]
        if paths:
            cut = f"{len(paths) - MAX_FILES:,} more files the cell saved, not linked" if len(paths) > MAX_FILES else ""
            return [os.path.join(r["_run_dir"], p) for p in paths[:MAX_FILES]], cut
    return [], ""


def _emulated(g: pd.DataFrame) -> str:
    """Why a CPU's bf16 rows ran emulated, from the ISA flags and oneDNN's kernels their records' env names."""
    if not str(g["precision"].iloc[0]).startswith("bf16"):
        return ""
    envs = [e for e, b in zip(g["env"], g["backend"]) if isinstance(e, dict) and b == "cpu"]
    why = {isa.bf16_emulation(e.get("cpu_isa") or {}, (e.get("backend") or {}).get("bf16_kernels")) for e in envs}
    return "; ".join(sorted(w for w in why if w))


def _price(g: pd.DataFrame) -> tuple[dict | None, str]:
    """The price the row's records ran under (bench.plan.cost), or None and why there is none."""
    found = {norm(sorted(p.items()) if isinstance(p, dict) else None): p for p in g["price"]}
    if len(found) > 1:
        return None, "its repeats ran under different prices"
    price = next(iter(found.values()))
    return (price, "") if isinstance(price, dict) else (None, "no price named")


def _cost(row: dict, price: dict | None) -> dict:
    """The row's cost columns at its price: $ to the target and $ per million samples (bench.plan.cost)."""
    if price is None:
        return {"usd_per_hour": None, "usd_to_target": None, "usd_per_M_samples": None}
    usd, nodes = price["usd_per_hour"], int(row["nodes"])
    tta, tput = (None if row[k] is None or pd.isna(row[k]) else float(row[k]) for k in ("tta_s", "throughput_median"))
    return {
        "usd_per_hour": usd,
        "usd_to_target": cost.to_target(tta, usd, nodes),
        "usd_per_M_samples": cost.per_million(tput, usd, nodes),
    }


def _tracker_columns(use: pd.DataFrame) -> tuple[dict[str, str], dict[str, str]]:
    """Each tracker's own columns for this row, from its sections over ``use`` (its ok repeats, or any when none is
    ok); and the report table each column goes to (bench.trackers.report_columns)."""
    out: dict[str, str] = {}
    tables: dict[str, str] = {}
    for section, report, table in trackers.report_columns():
        sections = [s for s in use[section] if isinstance(s, dict)]
        if sections:
            columns = report(sections)
            out.update(columns)
            tables.update(dict.fromkeys(columns, table))
    return out, tables


def _unquiet_note(ok: pd.DataFrame, include_unquiet: bool) -> str:
    """What the row says of its repeats not measured on a quiet host (bench.trackers.contention), or "": how many
    were busy and undetermined, and why for one of each (busy first)."""
    unquiet = ok[ok["unquiet"]]
    if not len(unquiet):
        return ""
    parts = []
    for verdict in ("busy", "undetermined"):
        these = unquiet[unquiet["verdict"] == verdict]
        if len(these):
            parts.append(f"{len(these)} {verdict} ({these['verdict_why'].iloc[0]})")
    head = f"{len(unquiet)} of {len(ok)} repeats not on a quiet host: " + "; ".join(parts)
    if include_unquiet:
        return f"{head}: compared all the same (--include-unquiet)"
    if len(unquiet) == len(ok):
        return f"{head}: not compared (--include-unquiet compares it)"
    return f"{head}: left out"


def _unstable(ok: pd.DataFrame) -> str:
    """The row's note when its repeats' steps or segments were unstable (thresholds: docs/methodology.md)."""
    p90, cv = median(ok["step_time_p90_over_median"]), median(ok["segment_throughput_cv"])
    why = []
    if p90 is not None and p90 >= UNSTABLE_P90:
        why.append(f"step p90/median {p90:.2f}")
    if cv is not None and cv >= UNSTABLE_CV:
        why.append(f"segments' samples/s vary by {cv:.0%}")
    return "unstable: " + ", ".join(why) if why else ""


def _left_out(ok: pd.DataFrame) -> str:
    """Steps a compilation took out of steady throughput (bench.run.meter), in the median repeat; in records made before
    the meter left such segments out, a warning of the compilations inside steady-state training."""
    steps, inside = [], []
    for t in ok["timing"]:
        if not isinstance(t, dict):
            continue
        left = [e for e in t.get("left_out") or [] if (e.get("reason") or "").startswith("compilation")]
        if left:
            steps.append(sum(e.get("steps") or 0 for e in left))
        elif t.get("compilations_after_warmup"):
            inside.append(t["compilations_after_warmup"])
    if steps:
        return f"a graph compiled after warmup: {median(steps):.0f} steps left out of steady samples/s"
    if inside:
        return f"WARNING: {max(inside)} compilations inside steady-state training: its samples/s include them"
    return ""


def _sample(g: pd.DataFrame, values: list) -> dict:
    """``values`` of ``g``'s records by block (run id, repeat: bench.records.stats.compare pairs on them), gaps left out
    (and a rate of 0, which measures nothing: a record of schema 2 may hold one)."""
    return {b: float(v) for b, v in zip(g["block"], values) if v is not None and not pd.isna(v) and v > 0}


def _tta(g: pd.DataFrame, dropped: pd.Index) -> stats.TTA:
    """The row's time-to-accuracy by MLPerf's rule (bench.records.stats.tta). A run is a training that ended ok,
    diverged or ran out of time (a crash is no run); a diverged run retried since counts still (records.latest), as a
    run that did not reach the target. ``dropped``: ok repeats not measured on a quiet host, where the row's figures
    leave them out."""
    runs = g[g["status"].isin(["ok", "diverged", "timeout"])].drop(dropped)
    seconds = [None if s != "ok" else t for s, t in zip(runs["status"], pd.to_numeric(runs["tta_seconds"]))]
    return stats.tta(seconds + [None] * int(g["diverged_before"].sum()))


def _cap_note(g: pd.DataFrame, detail: pd.DataFrame, rates: list[float]) -> str:
    """Where ``repeats = auto`` ran the row (``g``) to its cap with its interval still wider than its target, that
    (the ``run.auto`` of its newest records, ``detail``); else ""."""
    auto = next((a for a in detail["auto"] if isinstance(a, dict)), None)
    if auto is None or len(g) < auto["cap"] or stats.settled([rates], auto["target"]):
        return ""
    spread = stats.spread(rates)
    reached = f"±{spread:.1%}" if spread is not None else "no interval"
    return (
        f"repeats = auto: target ±{auto['target']:.1%} not reached at the cap ({auto['cap']} repeats): {reached} over "
        f"{len(rates)} quiet repeats"
    )


def summarise(df: pd.DataFrame, baseline: str, include_unquiet: bool = False) -> pd.DataFrame:
    """One row per configuration (``ROW``), with medians and intervals over its repeats. Repeats not measured on a
    quiet host (busy or undetermined) are flagged; the row's figures come from its quiet repeats where it has some,
    and its comparisons only from those (``include_unquiet``: from all). Every comparison joins rows of one
    configuration (``CONFIG``). What a row reads from its records' sections and lists (each tracker's columns, the
    files saved, phases, weights, price, compile steps left out) comes from its ``DETAIL`` newest repeats."""
    out = []
    for key, g in df.groupby(ROW, sort=False, dropna=False):
        ok_all = g[g["status"] == "ok"]
        quiet = ok_all[~ok_all["unquiet"]]
        ok = ok_all if include_unquiet or not len(quiet) else quiet
        compared = ok_all if include_unquiet else quiet
        others = g[g["status"] != "ok"]
        tput = pd.to_numeric(ok["throughput_samples_per_s"])
        tta = _tta(g, ok_all.index.difference(ok.index))
        # every section of the newest repeats: of the ok ones, and (price, repeats = auto) of any; read once
        newest_ok, newest_any, newest_ok_all = newest(ok).index, newest(g).index, newest(ok_all).index
        read = complete(g.loc[newest_ok.union(newest_any).union(newest_ok_all)])
        detail, detail_any = read.loc[newest_ok], read.loc[newest_any]
        files, files_cut = _files(detail)
        tracked, tracked_in = _tracker_columns(read.loc[newest_ok_all] if len(ok_all) else detail_any)
        # what every comparison uses: the quiet repeats (all of them with include_unquiet), by block
        throughputs = _sample(compared, list(pd.to_numeric(compared["throughput_samples_per_s"])))
        full_network = _sample(compared, list(compared["full_network_samples_per_s"]))
        tput_median = tput.median() if len(tput.dropna()) else None
        price, why = _price(detail_any)
        key_row = dict(zip(ROW, key))
        summary = Summary(
            status="ok" if len(ok) else others["status"].iloc[0],
            repeats_ok=len(ok_all),
            repeats=len(g),
            repeats_busy=int((ok_all["verdict"] == "busy").sum()),
            repeats_undetermined=int((ok_all["verdict"] == "undetermined").sum()),
            throughputs=throughputs,
            throughput_median=tput_median,
            throughput_min=tput.min(),
            throughput_max=tput.max(),
            step_ms_median=pd.to_numeric(ok["step_time_ms_median"]).median(),
            step_ms_p90=pd.to_numeric(ok["step_time_ms_p90"]).median(),
            accuracy_median=pd.to_numeric(ok["final_accuracy"]).median(),
            tta_s=tta.seconds,
            tta_reached=tta.reached,
            tta_runs=tta.runs,
            tta_method=tta.method,
            tta_why=tta.why,
            warmup_s_median=pd.to_numeric(ok["warmup_seconds"]).median(),
            setup_s_median=pd.to_numeric(ok["setup_seconds"]).median(),
            loader_median=median(ok["loader_samples_per_s"]),
            full_network=full_network,
            full_network_median=median(full_network.values()),
            phases=_phases(detail),
            lr_found_median=median(ok["lr_found"]),
            weights=",".join(sorted({w for w in map(_weights, detail["weights"]) if w})),
            artifacts=files,
            files_cut=files_cut,
            precision_effective=",".join(sorted(set(ok["precision_effective"].dropna()))),
            reason="; ".join(sorted({f"{s}: {r}" for s, r in zip(others["status"], others["reason"])})),
            emulated=_emulated(g),
            unquiet=_unquiet_note(ok_all, include_unquiet),
            unstable=_unstable(ok),
            left_out=_left_out(detail),
            cap=_cap_note(g, detail_any, list(throughputs.values())),
            tracked=tracked,
            tracked_in=tracked_in,
            profile_busy=median(p.get("device_busy_pct") for p in detail["profile"] if isinstance(p, dict)),
            meter_share=median(ok["meter_share_of_step"]),
            price=cost.label(price) if price else why,
            **_cost(key_row | {"tta_s": tta.seconds, "throughput_median": tput_median}, price),
        )
        out.append(key_row | {f: getattr(summary, f) for f in SUMMARY})
    s = pd.DataFrame(out, columns=[*ROW, *SUMMARY])
    if s.empty:
        return s
    s["configuration"] = _differences(s)
    s["speedup_stats"], s["baseline"], s["is_baseline"] = _speedups(s, baseline)
    s["speedup"] = [r.estimate if r is not None else None for r in s["speedup_stats"]]
    s.loc[s["is_baseline"], "speedup"] = 1.0
    s["vs_fp32"] = _against(s, row_without("precision"), s["precision"] == "fp32")
    s["scaling_stats"] = _scaling(s)
    s["scaling"] = [r.estimate if r is not None else None for r in s["scaling_stats"]]
    return s


def _differences(s: pd.DataFrame) -> list[str]:
    """What sets each row's configuration apart from its workload's other rows: each setting whose value is not the
    one most of them hold (``limit_train 1280, allocator glibc``), or ""."""
    out = pd.Series("", index=s.index, dtype=object)
    for _, g in s.groupby("workload", sort=False):
        usual = {c: Counter(g[c]).most_common(1)[0][0] for c in CONFIG}
        for i, r in g.iterrows():
            out[i] = ", ".join(f"{c} {r[c]}" for c in CONFIG if r[c] != usual[c])
    return list(out)


def _speedups(s: pd.DataFrame, baseline: str) -> tuple[list, list, list]:
    """Each row against the baseline of its configuration (the same workload and ``CONFIG``): the baseline's
    backend and precision (``cpu/fp32``) on one device, the seed's way; with several such rows, the first."""
    b_backend, _, b_precision = baseline.partition("/")
    base = s[
        (s["backend"] == b_backend)
        & (s["precision"] == b_precision)
        & (s["device_count"] == 1)
        & (s["nodes"] == 1)
        & as_recipe(s)
        & s["throughputs"].map(bool)
    ]
    first: dict[tuple, int] = {}
    for i, r in base.iterrows():
        first.setdefault(tuple(r[["workload", *CONFIG]]), i)
    ratios, labels, is_base = [], [], []
    for i, r in s.iterrows():
        b = first.get(tuple(r[["workload", *CONFIG]]))
        ref = s.loc[b] if b is not None else None
        usable = ref is not None and i != b and r["throughputs"]
        ratios.append(stats.compare(r["throughputs"], ref["throughputs"]) if usable else None)
        labels.append(f"{ref['hardware']} {b_precision} on {ref['host']} ({ref['stack']})" if ref is not None else None)
        is_base.append(i == b)
    return ratios, labels, is_base


def _against(s: pd.DataFrame, keys: list[str], is_reference: pd.Series) -> list[stats.Ratio | None]:
    """Each ok row's throughput against the reference row (``is_reference``) that shares its ``keys`` (its
    configuration among them): the precision speedup (against fp32 on the same hardware, mode and input)."""
    usable = (s["status"] == "ok") & s["throughputs"].map(bool)
    refs = {tuple(r[keys]): r["throughputs"] for _, r in s[usable & is_reference].iterrows()}
    return [
        stats.compare(r["throughputs"], refs[tuple(r[keys])])
        if usable[i] and not is_reference[i] and tuple(r[keys]) in refs
        else None
        for i, r in s.iterrows()
    ]


def _scaling(s: pd.DataFrame) -> list[stats.Ratio | None]:
    """Scaling efficiency of each row of N processes (nodes × devices per node): its throughput ÷ (N × the same
    configuration's on one device of the same host), with its interval (the flag says whether it differs from
    linear scaling)."""
    keys = row_without("nodes", "device_count")
    single = s[(s["device_count"] == 1) & (s["nodes"] == 1)]
    one = {tuple(r[keys]): r["throughputs"] for _, r in single.iterrows() if r["throughputs"]}
    out = []
    for _, r in s.iterrows():
        base, world = one.get(tuple(r[keys])), r["device_count"] * r["nodes"]
        ok = world > 1 and base and r["throughputs"]
        out.append(stats.compare(r["throughputs"], base).scaled(1 / world) if ok else None)
    return out


def devices(s: pd.DataFrame) -> list:
    """The devices column: the device count, or nodes × devices per node."""
    return [devices_label(n, d) for n, d in zip(s["nodes"], s["device_count"])]


def devices_label(nodes: int, count: int) -> int | str:
    return count if nodes == 1 else f"{nodes}×{count}"
