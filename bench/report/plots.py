"""The report's plots: accuracy against wall-clock time; each workload at a glance (samples/s and TTA per row)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")  # no display: plots go to files
import matplotlib.pyplot as plt
import pandas as pd

from bench.records import stats
from bench.report import aggregate, render


def accuracy(df: pd.DataFrame, s: pd.DataFrame, workload: str, targets: list[float]) -> plt.Figure:
    """Each row's accuracy curves (``df``'s records, by ``s``'s rows: one colour and label a configuration), its
    newest repeats (aggregate.DETAIL: a plot grows with its rows, not with a year of nightly runs)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = df[(df["workload"] == workload) & (df["status"] == "ok")]
    labels = {tuple(r[aggregate.ROW]): _text(render.label(r)) for _, r in s.iterrows()}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (key, g) in enumerate(ok.groupby(aggregate.ROW, sort=False, dropna=False)):
        for j, curve in enumerate(aggregate.complete(aggregate.newest(g))["curve"]):
            epochs = curve if isinstance(curve, list) else []  # a record from before curves, or with none
            pts = [(c["elapsed_seconds"], c["test_accuracy"]) for c in epochs if _point(c)]
            if pts:
                x, y = zip(*pts)
                name = labels.get(key, "") if j == 0 else None
                ax.plot(x, y, marker=".", color=colors[n % len(colors)], alpha=0.8, label=name)
    for target in targets:  # each configuration's own
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.set(xlabel="wall-clock seconds since the first training step", ylabel="test accuracy", title=workload)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def glance(g: pd.DataFrame) -> plt.Figure | None:
    """One workload at a glance: each measured row's samples/s and beside it its time to accuracy (MLPerf's score).
    A row with quiet repeats shows their geometric mean with its 95% interval; one measured on no quiet host its
    median and range, in grey, labelled so. A log scale where the rows spread over more than 10×. None where no row
    has a throughput."""
    g = g[(g["status"] == "ok") & g["throughput_median"].notna()]
    if not len(g):
        return None
    found, colors, labels = [], [], []
    for _, r in g.iterrows():
        quiet = stats.interval(r["throughputs"].values()) if r["throughputs"] else None
        found.append(quiet or (r["throughput_median"], r["throughput_min"], r["throughput_max"]))
        colors.append("#4c72b0" if quiet else "#aaaaaa")
        labels.append(_text(render.label(r) + ("" if quiet else " (not quiet)")))
    fig, (speed, tta) = plt.subplots(
        1, 2, figsize=(10, 1.4 + 0.32 * len(g)), sharey=True, gridspec_kw={"width_ratios": [3, 2]}
    )
    mean, err = _whiskers(found)
    speed.barh(labels, mean, xerr=err, capsize=3, color=colors)
    if max(mean) > 10 * min(mean):
        speed.set_xscale("log")
    speed.invert_yaxis()
    speed.set(xlabel="samples/s, 95% interval (grey: not quiet)")
    seconds = [None if pd.isna(x) else float(x) for x in g["tta_s"]]
    tta.barh(labels, [x or 0 for x in seconds], color="#55a868")
    for y, x in enumerate(seconds):
        if x is None:
            tta.text(0, y, " not reached", va="center", fontsize=8, color="#a33")
    if not any(seconds):
        tta.set_xlim(0, 1)
        tta.set_xticks([])
    tta.set(xlabel="TTA s (MLPerf score)")
    fig.suptitle(str(g["workload"].iloc[0]), fontsize=10)
    fig.tight_layout()
    return fig


def history(t: pd.DataFrame, title: str) -> plt.Figure:
    """One configuration's runs in order (bench.report.history): samples/s with its 95% interval, regressions in
    red."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    have = t[t["_mean"].notna()]
    x = list(range(len(have)))
    mean, err = _whiskers(zip(have["_mean"], have["_low"], have["_high"]))
    ax.errorbar(x, mean, yerr=err, marker="o", capsize=3, color="#4c72b0")
    bad = [i for i, v in enumerate(have["vs the run before"]) if "REGRESSION" in v]
    ax.scatter([x[i] for i in bad], [mean[i] for i in bad], color="#c44e52", zorder=3, s=60, label="regression")
    ticks = [f"{d} {c[:7]}" for d, c in zip(have["started"].str[:10], have["commit"])]
    ax.set_xticks(x, ticks, fontsize=7, rotation=60, ha="right")
    ax.set(ylabel="samples/s", title=_text(title))
    if bad:
        ax.legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.9, bottom=0.34)  # fixed: tight_layout would double its cost
    return fig


def _whiskers(found) -> tuple[list[float], list[list[float]]]:
    """(means, [below, above]) for matplotlib's error bars from (mean, low, high) triples; a bound that is missing
    (None, NaN: one repeat has no interval) draws no whisker."""
    mean, below, above = [], [], []
    for m, lo, hi in found:
        m = float(m)
        mean.append(m)
        below.append(m - (m if lo is None or pd.isna(lo) else float(lo)))
        above.append((m if hi is None or pd.isna(hi) else float(hi)) - m)
    return mean, [below, above]


def _point(epoch: dict) -> bool:
    return bool(epoch.get("elapsed_seconds")) and epoch.get("test_accuracy") is not None


def _text(label: str) -> str:
    """A label as plain text: matplotlib reads $...$ as math (a host named with a $ would not render), and a
    label longer than a line only squeezes the plot."""
    label = label if len(label) <= 60 else label[:57] + "..."
    return label.replace("$", r"\$")


def png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()
