"""Verdicts: what bounds each configuration, from the profile (bench.trackers.profile), from the framework against its
plain-PyTorch reference, and from the step micro-benchmarks (bench.report.benchmarks). Thresholds are in
docs/methodology.md."""

from __future__ import annotations

import pandas as pd

from bench.plan import workloads
from bench.plan.precision import PRECISIONS
from bench.records import stats
from bench.report import aggregate
from bench.report.benchmarks import PEAK_TFLOPS
from bench.trackers.profile import INPUT_BOUND

WITHIN = 0.85  # a framework within 15% of its plain-PyTorch reference counts as close to it
BOUND = 0.8  # end-to-end below this share of the compute-only step: the input pipeline or the framework sets the pace


def fmt(x: float | None, spec: str = ",.0f") -> str:
    return "" if x is None or pd.isna(x) else format(x, spec)


def interval_text(found: tuple[float, float | None, float | None] | None, unit: str = "") -> str:
    """``3,482 samples/s [3,117–3,889]``: a geometric mean, its ``unit`` and its 95% interval
    (bench.records.stats.interval), the mean alone where there is no interval, "" where there is no value."""
    if not found:
        return ""
    mean, low, high = found
    return fmt(mean) + unit + (f" [{fmt(low)}–{fmt(high)}]" if low is not None else "")


def tta_text(r: pd.Series) -> str:
    """``60.0 (2 of 3 reached)`` or ``no TTA (2 not reached; 1 of 3 reached)``: MLPerf's score of the row's runs
    (bench.records.stats.tta)."""
    if r["status"] != "ok" or not r["tta_runs"]:
        return ""
    seconds = None if pd.isna(r["tta_s"]) else r["tta_s"]
    return stats.TTA(seconds, r["tta_reached"], r["tta_runs"], r["tta_method"], r["tta_why"]).text()


def overhead(s: pd.DataFrame) -> pd.DataFrame:
    """Each framework workload against its plain-PyTorch reference on the same hardware, devices, precision, mode and
    input, where the two share every setting that changes what a step costs (aggregate.STEP); its interval pairs the
    repeats run in the same blocks (bench.records.stats.compare).

    With the loader in the training process (num_workers = 0) a step costs loader time plus compute time, so
    ``loader share`` = training samples/s ÷ loader-only samples/s is the fraction of each step spent loading,
    and the framework's speed without it is 1 / (1/training − 1/loader).
    """
    keys = [*aggregate.row_without("workload", *aggregate.CONFIG), *aggregate.STEP]
    rows = []
    for workload, reference in workloads.REFERENCE.items():
        refs = s[(s["workload"] == reference) & (s["status"] == "ok")]
        for _, r in s[(s["workload"] == workload) & (s["status"] == "ok")].iterrows():
            for _, ref in refs[(refs[keys] == r[keys]).all(axis=1)].iterrows():
                # a side measured only on a host not quiet is not compared (aggregate.summarise)
                if not r["full_network"] or not ref["full_network"]:
                    continue
                rows.append(_overhead_row(r, ref, stats.compare(r["full_network"], ref["full_network"])))
    return pd.DataFrame(rows)


def _overhead_row(r: pd.Series, ref: pd.Series, interval: stats.Ratio) -> dict:
    t, loader, base = r["full_network_median"], r["loader_median"], ref["full_network_median"]
    ratio = t / base
    share = t / loader if loader and not pd.isna(loader) else None
    without = 1 / (1 / t - 1 / loader) / base if share is not None and share < 1 else None
    if ratio >= WITHIN:
        verdict = f"within {1 - WITHIN:.0%} of plain PyTorch"
    elif share is not None and share >= INPUT_BOUND:
        verdict = f"input-bound: the loader takes {share:.0%} of each step"
    elif without is not None and without >= WITHIN and r["num_workers"] == "0":
        verdict = f"input pipeline: loading takes {share:.0%} of each step; without it the ratio is {without:.2f}"
    else:
        verdict = "framework overhead"
    return {
        "workload": f"{r['workload']} vs {ref['workload']}",
        "hardware": f"{r['hardware']} @{r['host']}",
        "devices": aggregate.devices_label(r["nodes"], r["device_count"]),
        "precision": r["precision"],
        "mode": r["mode"],
        "input": r["input"],
        "configuration": r["configuration"],  # what sets the framework's row apart from its workload's others
        "framework samples/s": fmt(t),
        "plain torch samples/s": fmt(base),
        "ratio": f"{ratio:.3f}",
        "ratio [95% CI]": Shown(interval, "", ".3f"),
        "loader-only samples/s": fmt(loader),
        "loader share": fmt(share, ".0%"),
        "verdict": verdict,
    }


class Shown:
    """A comparison in a table cell, formatted when the table is written: its flag may still change when the
    report's comparisons are adjusted together (bench.records.stats.adjust)."""

    def __init__(self, ratio: stats.Ratio, unit: str = "x", spec: str = ".2f") -> None:
        self.ratio, self.unit, self.spec = ratio, unit, spec

    def __str__(self) -> str:
        return self.ratio.text(self.unit, self.spec)

    def __bool__(self) -> bool:
        return self.ratio.estimate is not None


def ratios(t: pd.DataFrame) -> list[stats.Ratio]:
    """The comparisons a table holds (its ``Shown`` cells)."""
    return [v.ratio for column in t.columns for v in t[column] if isinstance(v, Shown)]


def decomposition(s: pd.DataFrame, benchmarks: list[dict]) -> pd.DataFrame:
    """Where each configuration's time goes, from the step micro-benchmarks (bench.run.micro) of the same host, device,
    stack and precision, next to its end-to-end throughput when a record has it.

    compute-only is the workload's own training step on a fixed batch already on the device (for Lightning and
    fastai, their loop around it): the upper bound of that cell on that hardware and precision. End-to-end below
    ``BOUND`` of it is input-bound when loading (loader-only) accounts for at least half of the difference, else
    framework-bound: the time goes to the loop around the steps (loop-bound for a plain-PyTorch reference). The
    framework's per-step cost is shown apart, as its step against the plain-PyTorch reference's.
    """
    latest: dict[tuple, dict] = {}
    for b in sorted(benchmarks, key=lambda b: b.get("datetime") or ""):  # the newest run of each benchmark wins
        where = (b["host"], b["device_name"], b["backend"], b["stack"])  # the records' host, hardware, backend, stack
        latest[(b["kind"], *where, b["workload"], b.get("precision"))] = b

    def rate(kind: str, where: tuple, workload: str, prec: str | None) -> float | None:
        b = latest.get((kind, *where, workload, prec))
        return b["samples_per_call"] / b["median_s"] if b else None

    # the micro-benchmarks feed fixed batches: they explain the seed's DataLoader-fed cells
    ok = (
        s[(s["status"] == "ok") & (s["device_count"] == 1) & (s["nodes"] == 1) & aggregate.as_recipe(s)]
        if len(s)
        else s
    )
    keys = ("host", "hardware", "backend", "stack", "workload", "precision")
    e2e = {tuple(r[k] for k in keys): r for _, r in ok.iterrows()}
    order = {p: i for i, p in enumerate(PRECISIONS)}
    trained = sorted((k for k in latest if k[0] == "train"), key=lambda k: (k[5], *k[1:5], order.get(k[6], 99)))
    rows = []
    for _, *where, workload, prec in trained:
        where = tuple(where)
        step = latest[("train", *where, workload, prec)]
        compute, loader = rate("train", where, workload, prec), rate("loader", where, workload, None)
        record = e2e.get((*where, workload, prec))
        end = record["full_network_median"] if record is not None else None
        end = None if end is None or pd.isna(end) else float(end)
        plain = rate("train", where, workloads.REFERENCE[workload], prec) if workload in workloads.REFERENCE else None
        flops = step.get("flops_per_step")
        tflops = flops / step["median_s"] / 1e12 if flops else None
        peak = PEAK_TFLOPS.get(where[1], {}).get(prec)
        rows.append(
            {
                "workload": workload,
                "hardware": f"{where[1]} @{where[0]}",
                "stack": where[3],
                "precision": prec,
                "end-to-end samples/s": fmt(end),
                "compute-only samples/s": fmt(compute),
                # several steps per synchronisation: the host queues while the device runs (micro.PIPELINED)
                "pipelined samples/s": fmt(rate("train-pipelined", where, workload, prec)),
                "forward-only samples/s": fmt(rate("eval", where, workload, prec)),
                "loader-only samples/s": fmt(loader),
                "end-to-end ÷ compute": fmt(end / compute, ".2f") if end else "",
                "bound": _bound(end, compute, loader, workload in workloads.REFERENCE),
                "step ÷ plain PyTorch step": fmt(compute / plain, ".2f") if plain else "",
                "GFLOP/step": fmt(flops / 1e9 if flops else None, ",.2f"),
                "TFLOP/s": fmt(tflops, ".3f"),
                "utilisation": fmt(tflops / peak, ".1%") if tflops and peak else "no peak known",
            }
        )
    return pd.DataFrame(rows)


def _bound(end: float | None, compute: float, loader: float | None, framework: bool) -> str:
    """compute-bound at ``BOUND`` of compute-only or above; below, input-bound when loading a sample takes at least
    half of the time end-to-end spends beyond the compute-only step, else framework-bound (loop-bound for a
    plain-PyTorch loop, which has no framework)."""
    if not end:
        return ""
    if end / compute >= BOUND:
        return "compute-bound"
    gap = 1 / end - 1 / compute
    share = min(1.0, (1 / loader) / gap) if loader else 0.0
    label = "input-bound" if share >= 0.5 else "framework-bound" if framework else "loop-bound"
    return f"{label} (loading explains {share:.0%} of the gap)"


def fastest(s: pd.DataFrame) -> pd.DataFrame:
    """What the hardware does with each workload's recipe: the seed's way (eager code, its DataLoader) against the
    fastest mode and input that ran the same configuration (aggregate.ROW but the mode and input) on the same
    hardware and precision, with the compile
    seconds it costs and the device's busy share before and after.
    The speedup has its 95% interval (bench.records.stats)."""
    if not len(s):
        return pd.DataFrame()
    ok = s[(s["status"] == "ok") & s["throughputs"].map(bool)]
    rows = []
    for _, g in ok.groupby(aggregate.row_without("mode", "input"), sort=False):
        seeds = g[aggregate.as_recipe(g)]
        if len(g) == len(seeds):
            continue  # nothing but the seed's way ran
        best = g.loc[g["throughput_median"].astype(float).idxmax()]
        seed = seeds.iloc[0] if len(seeds) else None

        def busy(r) -> str:
            return fmt(r["profile_busy"], ".0f") + "%" if r is not None and not pd.isna(r["profile_busy"]) else ""

        speedup = Shown(stats.compare(best["throughputs"], seed["throughputs"])) if seed is not None else ""
        rows.append(
            {
                "workload": best["workload"],
                "hardware": f"{best['hardware']} @{best['host']}",
                "devices": aggregate.devices_label(best["nodes"], best["device_count"]),
                "precision": best["precision"],
                "seed samples/s": fmt(seed["throughput_median"]) if seed is not None else "",
                "seed TTA s": tta_text(seed) if seed is not None else "",
                "fastest": f"{best['mode']}, input {best['input']}",
                "samples/s": fmt(best["throughput_median"]),
                "speedup [95% CI]": speedup,
                "TTA s": tta_text(best),
                "compile s": (best["tracked"] or {}).get("compile s", ""),
                "busy % seed → fastest": f"{busy(seed)} → {busy(best)}" if seed is not None else busy(best),
            }
        )
    return pd.DataFrame(rows)
