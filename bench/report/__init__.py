"""Records of any number of runs and machines → REPORT.md, report.html (plots embedded) and summary.csv.

Rows are configurations, hardware × device count × precision × mode × input × the settings that change what is
measured, per workload (aggregate), from the table of the records (index); what bounds them (verdicts). The report
is one document (document), the answer first (glance), then the support matrix and each workload's tables (render)
and plots (plots), then the definitions; rendered as Markdown and as HTML. Records of schema 2 are read too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.records import files, stats
from bench.report import aggregate, benchmarks, glance, history, index, plots, render, verdicts
from bench.report.document import Document, Figure, Items, Lines, Section, Table, split
from bench.run import micro

PROFILE_NOTE = (
    "busy % = the share of a profiled window of the cell's own training loop (after training, torch.profiler) in "
    "which the device works: the union of CUDA kernel and copy intervals on a GPU; on a CPU, ATen ops outside the "
    "DataLoader (the rest is Python, the framework and the loader). host ms/step = the window's wall time per step "
    "not spent waiting for the device; loader % = the DataLoader's share; bound (profile) rests on these."
)

FASTEST_NOTE = (
    "The seed's way (eager code fed by its DataLoader) against the fastest execution mode (compile: torch.compile; "
    "graphs: CUDA graphs) and input (device: the data set resident on the device) that ran the same recipe on the "
    "same hardware and precision. TTA keeps compilation on its clock; compile s is beside it to subtract. The "
    "speedup's range pairs the slowest and fastest repeats."
)


COST_NOTE = (
    "$ to target = TTA in hours × the price of a node-hour × nodes; $/M samples = the same price for a million "
    "samples at the steady samples/s. Prices are list prices of the date shown (bench/plan/prices.toml, or one given "
    "with --price-per-hour), per node: the whole VM, slice or instance, even where a cell used fewer of its "
    "accelerators; no discounts, storage or network. A table entry prices the hardware it names, which need not be "
    "the machine that ran (see priced at)."
)


LEFT_OUT_NOTE = (
    "These records do not hold what their schema says (bench/records/schema.py), so nothing above uses them: "
    "file:line, then each field and what is wrong with it. Mend or remove them, or run bench report --strict to stop "
    "at them."
)


SUPERSEDED_NOTE = (
    "A run measures each cell and repeat once: of two records of one (a cell run again with bench run --retry, or "
    "recorded twice), the newer stands and these older ones are left out of every table."
)


# What a report's folder holds (bench.records.files.output replaces a folder of these that bench wrote before it
# marked them).
FILES = (
    "REPORT.md",
    "report.html",
    "summary.csv",
    "*-accuracy.png",
    "*-throughput.png",
    "*-glance.png",
    "history-*.png",
)

RATIOS = {"speedup_stats": "speedup", "vs_fp32": "vs_fp32", "scaling_stats": "scaling"}


def comparisons(tests: int) -> str:
    """How the report's comparisons are made, and how many were adjusted together (bench.records.stats)."""
    head = (
        "Each comparison is a ratio of geometric means with its 95% interval, paired by block where the repeats ran "
        "side by side (one repeat of every configuration per round), Welch's otherwise"
    )
    if not tests:
        return f"{head}; none has the 3 repeats a side that a flag needs."
    return (
        f"{head}; its flag is adjusted for the {tests} comparisons of this report (Benjamini–Hochberg, false "
        'discovery rate 5%): a ratio whose interval excludes 1 but does not survive the adjustment reads "not '
        'significant after BH".'
    )


def csv_frame(s: pd.DataFrame) -> pd.DataFrame:
    """summary.csv: one flat row per table row; each comparison as its estimate, interval and flag; the trackers'
    columns by their labels."""
    # the profile's busy % is among the trackers' columns already
    flat = s.drop(
        columns=["tracked", "tracked_in", "throughputs", "full_network", *RATIOS, "speedup", "scaling", "profile_busy"]
    )
    for column, name in RATIOS.items():
        for field in ("", "_low", "_high", "_flag", "_method", "_p"):
            key = field[1:] or "estimate"
            flat[name + field] = [getattr(r, key) if r is not None else None for r in s[column]]
    return flat.join(pd.DataFrame(list(s["tracked"]), index=s.index))


def write(results_dir: Path, baseline: str = "cpu/fp32", strict: bool = False, include_unquiet: bool = False) -> Path:
    """The report of every record under ``results_dir``; records that fail their schema (bench.records.schema) are left
    out and listed, or, ``strict``, stop it; of two records of one measurement the newer stands (records.latest).
    Repeats not measured on a quiet host are flagged and left out of comparisons unless ``include_unquiet``."""
    df, left_out, superseded = index.frame(results_dir, strict)
    s = aggregate.summarise(df, baseline, include_unquiet)
    with files.output(Path(results_dir) / "report", FILES) as staging:
        peak, ov = verdicts.fastest(s), verdicts.overhead(s)
        tests = stats.adjust([*(r for c in RATIOS for r in s[c]), *verdicts.ratios(peak), *verdicts.ratios(ov)])
        render.csv_safe(csv_frame(s)).to_csv(staging / "summary.csv", index=False, quoting=render.CSV_QUOTING)
        doc = build(staging, df, s, peak, ov, tests, baseline, results_dir, include_unquiet)
        if left_out:
            doc.blocks.append(Section("Records left out", [LEFT_OUT_NOTE, Lines(left_out)]))
        if superseded:
            doc.blocks.append(Section("Records superseded", [SUPERSEDED_NOTE, Lines(superseded)]))
        doc.write(staging, "REPORT.md", "report.html")
    return Path(results_dir) / "report" / "REPORT.md"


def _no_baseline(g: pd.DataFrame, baseline: str) -> str:
    """Why a workload's rows have no speedup baseline: none ran, or those that ran were measured on no quiet host."""
    backend, _, precision = baseline.partition("/")
    ran = g[(g["backend"] == backend) & (g["precision"] == precision) & (g["repeats_ok"] > 0)]
    if len(ran):
        return f"none: {baseline} ran on no quiet host (busy or undetermined; --include-unquiet compares it)"
    return "none found"


def _intro(df: pd.DataFrame) -> list[str]:
    dates = sorted(str(t)[:10] for t in df["started_at"].dropna())
    span = f", {dates[0]} to {dates[-1]}" if dates and dates[0] != dates[-1] else (f", {dates[0]}" if dates else "")
    out = [
        f"{len(df)} records from {df['run_id'].nunique()} runs on {df['host'].nunique()} hosts{span}. The answer "
        "first; how each figure is made is at the end (How to read this report) and in docs/methodology.md."
    ]
    if versions := aggregate.torch_versions(df):
        out.append(
            f"WARNING: these records ran {len(versions)} torch versions ({', '.join(versions)}): each stack has rows "
            "of its own, and a speedup across them measures the stack as well as the hardware."
        )
    return out


def build(out: Path, df: pd.DataFrame, s: pd.DataFrame, peak: pd.DataFrame, ov: pd.DataFrame, tests: int,
          baseline: str, results_dir: Path, include_unquiet: bool = False) -> Document:  # fmt: skip
    """The report as one document (bench.report.document): the answer first, then the details."""
    at_a_glance, workloads = [], []
    for workload, g in s.groupby("workload", sort=False):
        mine = peak[peak["workload"] == workload] if len(peak) else peak
        theirs = ov[ov["workload"].str.startswith(f"{workload} vs ")] if len(ov) else ov
        chart = plots.glance(g)
        at_a_glance.append(
            Section(
                workload,
                [
                    Items(glance.sentences(g, mine, theirs)),
                    *(
                        [Figure(f"{workload}-glance.png", plots.png(chart), f"{workload}: samples/s and TTA")]
                        if chart is not None
                        else []
                    ),
                ],
            )
        )
        base = "; ".join(dict.fromkeys(g["baseline"].dropna())) or _no_baseline(g, baseline)
        targets = sorted({float(t) for t in g["tta_target"] if t != "none"})
        blocks: list = [f"Speedup baseline: {base}.", *render.tables(g)]
        if notes := render.notes(g):
            blocks += ["Notes:", Items(notes)]
        accuracy = plots.png(plots.accuracy(df, g, workload, targets))
        blocks.append(Figure(f"{workload}-accuracy.png", accuracy, f"{workload}: test accuracy against time"))
        if arts := render.artifacts(g, out):
            blocks += ["Files saved by each cell (first repeat): plots, the profile's trace (Perfetto, TensorBoard):"]
            blocks.append(Items(arts))
        workloads.append(Section(workload, blocks))
    matrix, footnotes = render.support(s)
    doc = Document("Benchmark report", _intro(df))
    doc.blocks.append(Section("At a glance", at_a_glance))
    doc.blocks.append(
        Section(
            "Support matrix",
            [
                "What ran where: measured, unsupported (the reason below) or not asked, per workload, hardware, "
                "execution mode and input, and precision. The tables below hold the measured rows only.",
                Table(matrix),
                *([Items(footnotes)] if footnotes else []),
            ],
        )
    )
    doc.blocks += workloads
    if len(peak):
        doc.blocks.append(
            Section(
                "What the hardware can do",
                [FASTEST_NOTE, *split(peak, ["workload", "hardware", "devices", "precision"])],
            )
        )
    if len(ov):
        doc.blocks.append(
            Section(
                "Framework overhead against the plain-PyTorch loop",
                [
                    OVERHEAD_NOTE,
                    *split(ov, ["workload", "hardware", "devices", "precision", "mode", "input", "configuration"]),
                ],
            )
        )
    dec = verdicts.decomposition(s, benchmarks.read(results_dir))
    if len(dec):
        doc.blocks.append(
            Section(
                "Where the time goes: step micro-benchmarks",
                [MICRO_NOTE, *split(dec, ["workload", "hardware", "precision"])],
            )
        )
    if runs := history.runs(df, include_unquiet):
        blocks = [HISTORY_NOTE.format(n=history.MIN_RUNS, shown=history.SHOWN, threshold=history.THRESHOLD)]
        for i, (key, t) in enumerate(runs.items()):
            name = history.title(key)
            shown = t.drop(columns=["_mean", "_low", "_high"])
            blocks += [Table(shown, name), Figure(f"history-{i}.png", plots.png(plots.history(t, name)), name)]
        found = history.regressions(runs)
        blocks.insert(1, f"{found} regressions between consecutive runs." if found else "No regression between runs.")
        doc.blocks.append(Section("History", blocks))
    envs = render.environments(df)
    doc.blocks.append(
        Section(
            "Environments",
            [Table(envs[["host", *render.HARDWARE]], "Hardware"), Table(envs[["host", *render.SOFTWARE]], "Software")],
        )
    )
    doc.blocks.append(
        Section(
            "How to read this report",
            [
                "A row is one configuration: records that differ in a setting that changes what is measured are rows "
                "of their own, each naming what sets it apart. Throughput counts steady-state training steps only "
                "(warmup and evaluation excluded); TTA is one clock from the first training step to the first "
                "evaluation at or above the target, scored by MLPerf's rule over the runs. Speedup is against "
                f"{baseline} of the same workload and configuration. {comparisons(tests)} See docs/methodology.md.",
                *([DETAIL_NOTE.format(n=aggregate.DETAIL)] if (s["repeats"] > aggregate.DETAIL).any() else []),
                PROFILE_NOTE,
                *([COST_NOTE] if s["usd_per_hour"].notna().any() else []),
            ],
        )
    )
    return doc


DETAIL_NOTE = (
    "A row's speed, accuracy, time to accuracy and comparisons come from all its repeats; what it reads of each "
    "record's other sections (each tracker's columns, such as host load and peak memory, the phases, the files "
    "saved, the accuracy curves drawn) from its newest {n} repeats, so that a report grows with its rows, not with "
    "its history."
)

HISTORY_NOTE = (
    "Each configuration run {n} times or more on one host, its newest {shown} runs: the geometric mean of its quiet "
    "repeats with its 95% interval, its time to accuracy (MLPerf's rule over the run's repeats), and the run "
    "against the one before it by bench compare's gate: REGRESSION where it is significantly slower by more than "
    "{threshold:.0%}."
)

OVERHEAD_NOTE = (
    "ratio = framework samples/s ÷ its plain-PyTorch reference's on the same hardware and precision (for a workload "
    "whose phases train part of the network, the phase it declares trains all of it, as the reference does "
    "throughout: fastai's unfrozen epochs). loader share = framework samples/s ÷ loader-only samples/s (one pass of "
    "the training loader with no model): the fraction of each step spent loading when the loader runs in the "
    "training process (num_workers = 0)."
)

MICRO_NOTE = (
    "From `make bench-micro` (pytest-benchmark, median per step after warmup, newest run) on the same host, device, "
    "stack and precision. compute-only = the workload's training step on a fixed batch already on the device, inside "
    "its own loop (Lightning's Trainer, fastai's Learner), synchronised after every step; "
    f"pipelined = the same with {micro.PIPELINED} steps per synchronisation, as training runs them (on an "
    "accelerator the host queues steps while the device works: the cell's upper bound there). loader-only = the "
    "next batch of the real training DataLoader. End-to-end is the record's steady-state training (fastai: its "
    f"unfrozen epochs). Below {verdicts.BOUND:.0%} of compute-only a cell is input-bound when loading explains at "
    "least half of the difference, else framework-bound (the loop around the steps; loop-bound for a plain-PyTorch "
    "loop). step ÷ plain PyTorch step = the framework's per-step cost: its compute-only against its plain-PyTorch "
    "reference's. TFLOP/s counts the matmuls and convolutions of one training step (torch.utils.flop_counter); "
    "utilisation is against the device's dense peak where known."
)
