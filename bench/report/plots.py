"""The report's plots: accuracy against wall-clock time, throughput per configuration."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: plots go to files
import matplotlib.pyplot as plt
import pandas as pd

from bench.report import aggregate, render


def accuracy(df: pd.DataFrame, s: pd.DataFrame, workload: str, targets: list[float]) -> plt.Figure:
    """Each row's accuracy curves (``df``'s records, by ``s``'s rows: one colour and label a configuration)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = df[(df["workload"] == workload) & (df["status"] == "ok")]
    labels = {tuple(r[aggregate.ROW]): _text(render.label(r)) for _, r in s.iterrows()}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (key, g) in enumerate(ok.groupby(aggregate.ROW, sort=False, dropna=False)):
        for j, curve in enumerate(g["curve"]):
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


def throughput(s: pd.DataFrame, workload: str) -> plt.Figure:
    g = s[(s["workload"] == workload) & s["throughput_median"].notna()]
    fig, ax = plt.subplots(figsize=(7, 1.3 + 0.4 * max(len(g), 1)))
    labels = [_text(render.label(r)) for _, r in g.iterrows()]  # one bar a row: bars of one label would be drawn as one
    med = g["throughput_median"].astype(float)
    err = [med - g["throughput_min"].astype(float), g["throughput_max"].astype(float) - med]
    ax.barh(labels, med, xerr=err, capsize=3)
    ax.invert_yaxis()
    ax.set(xlabel="training samples/s (median, min–max over repeats)", title=workload)
    fig.tight_layout()
    return fig


def _point(epoch: dict) -> bool:
    return bool(epoch.get("elapsed_seconds")) and epoch.get("test_accuracy") is not None


def _text(label: str) -> str:
    """A label as plain text: matplotlib reads $...$ as math (a host named with a $ would not render), and a
    label longer than a line only squeezes the plot."""
    label = label if len(label) <= 60 else label[:57] + "..."
    return label.replace("$", r"\$")


def png(fig: plt.Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()
