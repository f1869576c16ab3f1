"""Records of any number of runs and machines → REPORT.md, report.html (plots embedded) and summary.csv.

Rows are configurations, hardware × device count × precision × mode × input × the settings that change what is
measured, per workload (aggregate); what bounds them (verdicts), as tables (render) and plots (plots). Cells that did
not run or did not finish are shown with their reason; a row names what sets its configuration apart from its
workload's others. Records of schema 2 are read too.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench import files, micro, records, stats
from bench.report import aggregate, benchmarks, plots, render, verdicts

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
    "samples at the steady samples/s. Prices are list prices of the date shown (bench/prices.toml, or one given with "
    "--price-per-hour), per node: the whole VM, slice or instance, even where a cell used fewer of its "
    "accelerators; no discounts, storage or network. A table entry prices the hardware it names, which need not be "
    "the machine that ran (see priced at)."
)


LEFT_OUT_NOTE = (
    "These records do not hold what their schema says (bench/schema.py), so nothing above uses them: file:line, "
    "then each field and what is wrong with it. Mend or remove them, or run bench report --strict to stop at them."
)


SUPERSEDED_NOTE = (
    "A run measures each cell and repeat once: of two records of one (a cell run again with bench run --retry, or "
    "recorded twice), the newer stands and these older ones are left out of every table."
)


# What a report's folder holds (bench.files.output replaces a folder of these that bench wrote before it marked them).
FILES = ("REPORT.md", "report.html", "summary.csv", "*-accuracy.png", "*-throughput.png")

RATIOS = {"speedup_stats": "speedup", "vs_fp32": "vs_fp32", "scaling_stats": "scaling"}


def comparisons(tests: int) -> str:
    """How the report's comparisons are made, and how many were adjusted together (bench.stats)."""
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
    flat = s.drop(columns=["tracked", "throughputs", "full_network", *RATIOS, "speedup", "scaling", "profile_busy"])
    for column, name in RATIOS.items():
        for field in ("", "_low", "_high", "_flag", "_method", "_p"):
            key = field[1:] or "estimate"
            flat[name + field] = [getattr(r, key) if r is not None else None for r in s[column]]
    return flat.join(pd.DataFrame(list(s["tracked"]), index=s.index))


def write(results_dir: Path, baseline: str = "cpu/fp32", strict: bool = False, include_unquiet: bool = False) -> Path:
    """The report of every record under ``results_dir``; records that fail their schema (bench.schema) are left out
    and listed, or, ``strict``, stop it; of two records of one measurement the newer stands (records.latest).
    Repeats not measured on a quiet host are flagged and left out of comparisons unless ``include_unquiet``."""
    recs, left_out, superseded = records.load(results_dir, strict)
    df = aggregate.frame(recs)
    s = aggregate.summarise(df, baseline, include_unquiet)
    with files.output(Path(results_dir) / "report", FILES) as staging:
        _write(staging, df, s, left_out, superseded, baseline, results_dir)
    return Path(results_dir) / "report" / "REPORT.md"


def _no_baseline(g: pd.DataFrame, baseline: str) -> str:
    """Why a workload's rows have no speedup baseline: none ran, or those that ran were measured on no quiet host."""
    backend, _, precision = baseline.partition("/")
    ran = g[(g["backend"] == backend) & (g["precision"] == precision) & (g["repeats_ok"] > 0)]
    if len(ran):
        return f"none: {baseline} ran on no quiet host (busy or undetermined; --include-unquiet compares it)"
    return "none found"


def _write(out: Path, df: pd.DataFrame, s: pd.DataFrame, left_out: list[str], superseded: list[str], baseline: str,
           results_dir: Path) -> None:  # fmt: skip
    """The report's files, into ``out``."""
    peak, ov = verdicts.fastest(s), verdicts.overhead(s)
    tests = stats.adjust([*(r for c in RATIOS for r in s[c]), *verdicts.ratios(peak), *verdicts.ratios(ov)])
    render.csv_safe(csv_frame(s)).to_csv(out / "summary.csv", index=False, quoting=render.CSV_QUOTING)
    md = [
        "# Benchmark report",
        "",
        f"{len(df)} records from {df['run_id'].nunique()} runs on "
        f"{df['host'].nunique()} hosts. A row is one configuration: records that differ in a setting that changes "
        "what is measured are rows of their own, each naming what sets it apart. Throughput counts steady-state "
        "training steps only (warmup and evaluation excluded); TTA is one clock from the first training step to the "
        "first evaluation at or above the target, scored by MLPerf's rule over the runs. Speedup is against "
        f"{baseline} of the same workload and configuration. {comparisons(tests)} "
        "See docs/methodology.md.",
        "",
        "## Overview",
        "",
        PROFILE_NOTE,
        "",
        render.markdown(render.overview(s, out, render.md_link), raw=("files",)),
        "",
    ]
    body = [
        f"<h1>Benchmark report</h1><p>{render.html_text(md[2])}</p>",
        f"<h2>Overview</h2><p>{render.html_text(PROFILE_NOTE)}</p>",
        render.html_table(render.overview(s, out, render.html_link), raw=("files",)),
    ]
    versions = aggregate.torch_versions(df)
    if versions:
        warning = (
            f"WARNING: these records ran {len(versions)} torch versions ({', '.join(versions)}): each stack has rows "
            "of its own, and a speedup across them measures the stack as well as the hardware."
        )
        md[3:3] = ["", warning]
        body.insert(1, f"<p>{render.html_text(warning)}</p>")
    if s["usd_per_hour"].notna().any():
        md[-2:-2] = [COST_NOTE, ""]
        body.insert(1, f"<p>{render.html_text(COST_NOTE)}</p>")
    if len(peak):
        md += ["## What the hardware can do", "", FASTEST_NOTE, "", render.markdown(peak), ""]
        body += [
            f"<h2>What the hardware can do</h2><p>{render.html_text(FASTEST_NOTE)}</p>",
            render.html_table(peak),
        ]
    for workload, g in s.groupby("workload", sort=False):
        table = render.table(g)
        targets = sorted({float(t) for t in g["tta_target"] if t != "none"})
        acc = plots.png(plots.accuracy(df, g, workload, targets), out / f"{workload}-accuracy.png")
        tput = plots.png(plots.throughput(s, workload), out / f"{workload}-throughput.png")
        base = "; ".join(dict.fromkeys(g["baseline"].dropna())) or _no_baseline(g, baseline)
        md += [
            f"## {workload}",
            "",
            f"Speedup baseline: {render.md_text(base)}.",
            "",
            render.markdown(table),
            "",
            f"![accuracy]({workload}-accuracy.png)",
            "",
            f"![throughput]({workload}-throughput.png)",
            "",
        ]
        body += [
            f"<h2>{render.html_text(workload)}</h2><p>Speedup baseline: {render.html_text(base)}.</p>",
            render.html_table(table),
            f'<img src="data:image/png;base64,{acc}">',
            f'<img src="data:image/png;base64,{tput}">',
        ]
        if arts := render.artifacts(g, out):
            md += ["Files saved by each cell (first repeat): plots, the profile's trace (Perfetto, TensorBoard):", ""]
            md += [
                f"- {render.md_text(label)}: " + " · ".join(render.md_link(a, render.name(a)) for a in paths)
                for label, paths in arts
            ]
            md += [""]
            items = "".join(
                f"<li>{render.html_text(label)}: "
                + " · ".join(render.html_link(a, render.name(a)) for a in paths)
                + "</li>"
                for label, paths in arts
            )
            body.append(f"<p>Files saved by each cell (first repeat):</p><ul>{items}</ul>")
    if len(ov):
        md += [
            "## Framework overhead against the plain-PyTorch loop",
            "",
            "ratio = framework samples/s ÷ its plain-PyTorch reference's on the same hardware and precision (for a "
            "workload whose phases train part of the network, the phase it declares trains all of it, as the "
            "reference does throughout: fastai's unfrozen epochs). loader share = "
            "framework samples/s ÷ loader-only samples/s (one pass of the training loader with no model): the "
            "fraction of each step spent loading when the loader runs in the training process (num_workers = 0).",
            "",
            render.markdown(ov),
            "",
        ]
        body += ["<h2>Framework overhead against the plain-PyTorch loop</h2>", render.html_table(ov)]
    dec = verdicts.decomposition(s, benchmarks.read(results_dir))
    if len(dec):
        md += [
            "## Where the time goes: step micro-benchmarks",
            "",
            "From `make bench-micro` (pytest-benchmark, median per step after warmup, newest run) on the same host, "
            "device, stack and precision. compute-only = the workload's training step on a fixed batch already on the "
            "device, inside its own loop (Lightning's Trainer, fastai's Learner), synchronised after every step; "
            f"pipelined = the same with {micro.PIPELINED} steps per synchronisation, as training runs them (on an "
            "accelerator the host queues steps while the device works: the cell's upper bound there). "
            "loader-only = the next batch of the real training DataLoader. End-to-end is the record's steady-state "
            "training (fastai: its unfrozen epochs). "
            f"Below {verdicts.BOUND:.0%} of compute-only a cell is input-bound when loading explains at least half "
            "of the difference, else framework-bound (the loop around the steps; loop-bound for a plain-PyTorch loop). "
            "step ÷ plain PyTorch step = the framework's per-step cost: its compute-only against its plain-PyTorch "
            "reference's. TFLOP/s counts the matmuls and convolutions of one training step "
            "(torch.utils.flop_counter); utilisation is against the device's dense peak where known.",
            "",
            render.markdown(dec),
            "",
        ]
        body += [
            "<h2>Where the time goes: step micro-benchmarks</h2>",
            f"<p>{render.html_text(md[-3])}</p>",
            render.html_table(dec),
        ]
    envs = render.environments(df)
    md += ["## Environments", "", render.markdown(envs), ""]
    body += ["<h2>Environments</h2>", render.html_table(envs)]
    if left_out:
        left_md, left_html = render.left_out(left_out, LEFT_OUT_NOTE)
        md += left_md
        body.append(left_html)
    if superseded:
        sup_md, sup_html = render.left_out(superseded, SUPERSEDED_NOTE, "Records superseded")
        md += sup_md
        body.append(sup_html)
    (out / "REPORT.md").write_text("\n".join(md))
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd}img{max-width:100%;display:block;margin:1em 0}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Benchmark report"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
