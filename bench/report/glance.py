"""The answer first: per workload, the fastest honest configuration on each host and the ratios a reader asks for
(accelerator against the CPU baseline, each precision against fp32, the fastest mode against the seed's way, the
framework against its plain-PyTorch loop), each a sentence with its 95% interval and what the comparison says
(bench.records.stats). Honest: only quiet repeats (aggregate.summarise's ``throughputs``) count, so a row measured on a
busy host is never the answer."""

from __future__ import annotations

import pandas as pd

from bench.records import stats
from bench.report.verdicts import Shown, fmt, interval_text


def configuration(r: pd.Series) -> str:
    """A row as words: ``bf16-mixed, compile, input device [limit_train 1280]``."""
    text = f"{r['precision']}, {r['mode']}, input {r['input']}"
    devices = r["device_count"] * r["nodes"]
    text += f", {devices} devices" if devices > 1 else ""
    return text + (f" [{r['configuration']}]" if r["configuration"] else "")


def where(r: pd.Series) -> str:
    return f"{r['hardware']} @{r['host']}"


def compared(ratio: stats.Ratio, than: str) -> str:
    """``1.27× [1.10–1.45] faster than fp32 (significant, p = 0.003)``: the ratio of samples/s, its interval, and
    its flag (bench.records.stats.FLAGS) with the p-value where there is one."""
    text = ratio.text("×", ".2f", flag=False)
    word = "faster than" if ratio.estimate >= 1 else "the speed of"
    p = f", p = {ratio.p:.2g}" if ratio.p is not None else ""
    return f"{text} {word} {than} ({ratio.flag}{p})"


def reaches(r: pd.Series) -> str:
    """`` and reaches 0.98 in 12.3 s (3 of 3 reached)``, or that it did not, by MLPerf's rule
    (bench.records.stats.tta)."""
    target = r["tta_target"]
    if target in (None, "none") or not r["tta_runs"]:
        return ""
    if r["tta_s"] is not None and not pd.isna(r["tta_s"]):
        return f" and reaches {target} accuracy in {r['tta_s']:.1f} s ({r['tta_reached']} of {r['tta_runs']} reached)"
    return f"; it does not reach {target} accuracy ({r['tta_reached']} of {r['tta_runs']} runs did)"


def _speed(r: pd.Series) -> str:
    n = len(r["throughputs"])
    speed = interval_text(stats.interval(r["throughputs"].values()), " samples/s")
    return f"{speed} over {n} quiet repeat{'s' if n != 1 else ''}"


def sentences(g: pd.DataFrame, peak: pd.DataFrame, overhead: pd.DataFrame) -> list[str]:
    """The at-a-glance sentences of one workload's rows ``g`` (aggregate.summarise), its rows of "What the hardware
    can do" (``peak``, verdicts.fastest) and of the framework overhead (``overhead``, verdicts.overhead)."""
    workload = g["workload"].iloc[0]
    honest = g[(g["status"] == "ok") & g["throughputs"].map(bool)]
    ran = g[(g["status"] == "ok") & g["throughput_median"].notna()]
    if not len(ran):
        return [f"No configuration of {workload} ran to the end: the support matrix and the tables below say why."]
    out = []
    for (hardware, host), h in ran.groupby(["hardware", "host"], sort=False):
        quiet = honest[(honest["hardware"] == hardware) & (honest["host"] == host)]
        if len(quiet):
            best = _best(quiet)
            out.append(f"Fastest on {where(best)}: {configuration(best)}, at {_speed(best)}{reaches(best)}.")
            continue
        best = h.loc[h["throughput_median"].astype(float).idxmax()]
        n = best["repeats_ok"]
        repeats = f"{n} repeat{'s' if n != 1 else ''}"
        out.append(
            f"On {where(best)} no repeat was measured on a quiet host, so none is compared; the highest median is "
            f"{configuration(best)}, at {fmt(best['throughput_median'])} samples/s over {repeats}"
            f"{reaches(best)}."
        )
    accelerated = honest[(honest["backend"] != "cpu") & honest["speedup_stats"].map(_usable)]
    if len(accelerated):
        r = _best(accelerated)
        than = compared(r["speedup_stats"], f"the baseline, {r['baseline']}")
        out.append(f"{where(r)} ({configuration(r)}) trains {workload} {than}.")
    for _, r in honest[honest["vs_fp32"].map(_usable)].iterrows():
        out.append(f"On {where(r)}, {r['precision']} ({r['mode']}, input {r['input']}) trains {workload} "
                   f"{compared(r['vs_fp32'], 'fp32')}{reaches(r)}.")  # fmt: skip
    for _, p in peak.iterrows():
        ratio = p["speedup [95% CI]"]
        if isinstance(ratio, Shown) and _usable(ratio.ratio):
            out.append(
                f"On {p['hardware']}, {p['precision']}: {p['fastest']} trains {workload} "
                f"{compared(ratio.ratio, 'the seed way (eager, input loader)')}."
            )
    for _, o in overhead.iterrows():
        ratio = o["ratio [95% CI]"]
        if isinstance(ratio, Shown) and _usable(ratio.ratio):
            framework, reference = o["workload"].split(" vs ")
            setting = f" [{o['configuration']}]" if o["configuration"] else ""
            out.append(
                f"On {o['hardware']}, {o['precision']}{setting}: {framework} trains at "
                f"{compared(ratio.ratio, 'its plain-PyTorch loop ' + reference)}: {o['verdict']}."
            )
    return out


def _usable(ratio: stats.Ratio | None) -> bool:
    return ratio is not None and ratio.estimate is not None


def _best(rows: pd.DataFrame) -> pd.Series:
    """The row of the highest geometric mean of quiet repeats."""
    means = [stats.interval(t.values())[0] for t in rows["throughputs"]]
    return rows.iloc[max(range(len(means)), key=means.__getitem__)]
