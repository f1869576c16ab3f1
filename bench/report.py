"""Records of any number of runs and machines → REPORT.md, report.html (plots embedded) and summary.csv.

Rows are hardware × device count × precision per workload. Cells that did not run or did not finish are
shown with their reason; rows whose configuration differs from the workload's usual one are flagged.
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: plots go to files
import matplotlib.pyplot as plt
import pandas as pd

from bench import micro, records
from bench.precision import PRECISIONS
from bench.workloads import REFERENCE

ROW = ["workload", "host", "hardware", "backend", "device_count", "precision"]
# must match for figures to compare
CONFIG = ["batch_size", "lr", "epochs", "limit_train", "limit_test", "num_workers", "pretrained"]
PHASES = ("setup", "loader", "lr_find", "warmup", "train", "frozen", "unfrozen", "eval", "artifacts")
WITHIN = 0.85  # a framework within 15% of its plain-PyTorch reference counts as close to it
INPUT_BOUND = 0.5  # loader share at which the input pipeline, not the model, sets the pace
BOUND = 0.8  # end-to-end below this share of the compute-only step: the input pipeline or the framework sets the pace


def frame(recs: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(recs)
    for col in (*records.FIELDS, "_run_dir"):
        if col not in df:
            df[col] = None
    df["host"] = [(e or {}).get("host") for e in df["env"]]
    df["hardware"] = df["device_name"].fillna(df["backend"])
    df["allocator"] = [((e or {}).get("allocator") or {}).get("name") for e in df["env"]]
    order = {p: i for i, p in enumerate(PRECISIONS)}
    df["_p"] = df["precision"].map(order)
    return df.sort_values(["workload", "host", "backend", "device_count", "_p", "repeat"]).reset_index(drop=True)


def _norm(value: object) -> str:
    return "none" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "" if x is None or pd.isna(x) else format(x, spec)


def _median(values) -> float | None:
    v = pd.to_numeric(pd.Series(list(values), dtype=object)).dropna()
    return float(v.median()) if len(v) else None


def _full_network_throughput(r: pd.Series) -> float | None:
    """Steady samples/s while the whole network trains: fastai's frozen epoch trains only the head, and its
    plain-PyTorch reference trains the whole network in every epoch."""
    phases = r["phase_throughput"] if isinstance(r["phase_throughput"], dict) else {}
    return phases.get("unfrozen", r["throughput_samples_per_s"])


def _weights(w: object) -> str | None:
    if not isinstance(w, dict):
        return None
    if not w.get("pretrained"):
        return "random init"
    return f"{w.get('source')} ({'checksum ok' if w.get('checksum_ok') else 'checksum MISMATCH'})"


def summarise(df: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """One row per workload × hardware × device count × precision, with medians and spreads over repeats."""
    rows = []
    for key, g in df.groupby(ROW, sort=False, dropna=False):
        ok = g[g["status"] == "ok"]
        recompiles = _median(ok["compilations_after_warmup"])  # XLA: compiling inside the timed steps skews them
        warnings = [f"warning: {recompiles:.0f} graph compilations inside steady-state training"] if recompiles else []
        others = g[g["status"] != "ok"]
        row = dict(zip(ROW, key))
        tput = pd.to_numeric(ok["throughput_samples_per_s"])
        tta = pd.to_numeric(ok["tta_seconds"])
        row.update(
            status="ok" if len(ok) else others["status"].iloc[0],
            repeats_ok=len(ok),
            repeats=len(g),
            throughput_median=tput.median() if len(tput.dropna()) else None,
            throughput_min=tput.min(),
            throughput_max=tput.max(),
            step_ms_median=pd.to_numeric(ok["step_time_ms_median"]).median(),
            step_ms_p90=pd.to_numeric(ok["step_time_ms_p90"]).median(),
            accuracy_median=pd.to_numeric(ok["final_accuracy"]).median(),
            tta_target=g["tta_target"].iloc[0],
            tta_median=tta.median() if tta.notna().any() else None,
            tta_reached=f"{int(tta.notna().sum())}/{len(ok)}",
            warmup_s_median=pd.to_numeric(ok["warmup_seconds"]).median(),
            setup_s_median=pd.to_numeric(ok["setup_seconds"]).median(),
            loader_median=_median(ok["loader_samples_per_s"]),
            full_network_median=_median(_full_network_throughput(r) for _, r in ok.iterrows()),
            phases={
                ph: m
                for ph in PHASES
                if (m := _median((x or {}).get(ph) for x in ok["phase_seconds"] if isinstance(x, dict))) is not None
            },
            lr_found_median=_median(ok["lr_found"]),
            weights=",".join(sorted({w for w in map(_weights, ok["weights"]) if w})),
            artifacts=next(
                (
                    [os.path.join(d, a) for a in arts]
                    for d, arts in zip(ok["_run_dir"], ok["artifacts"])
                    if isinstance(arts, list) and arts
                ),
                [],
            ),
            peak_memory_mib=pd.to_numeric(ok["peak_memory_bytes"]).median() / 2**20,
            peak_memory_kind=g["peak_memory_kind"].dropna().iloc[0] if g["peak_memory_kind"].notna().any() else None,
            precision_effective=",".join(sorted(set(ok["precision_effective"].dropna()))),
            allocator=",".join(sorted(set(g["allocator"].dropna()))),
            reason="; ".join(sorted({f"{s}: {r}" for s, r in zip(others["status"], others["reason"])}) + warnings),
            **{c: g[c].dropna().iloc[0] if g[c].notna().any() else None for c in CONFIG},
        )
        rows.append(row)
    s = pd.DataFrame(rows)
    if s.empty:
        return s
    s["comparable"] = ""
    b_backend, _, b_precision = baseline.partition("/")
    s["speedup"] = None
    s["scaling"] = _scaling(s)
    for _, g in s.groupby("workload", sort=False):
        configs = {i: {c: _norm(r[c]) for c in CONFIG} for i, r in g.iterrows()}
        ok = [tuple(configs[i].items()) for i in g.index if g.loc[i, "status"] == "ok"]
        usual = dict(Counter(ok).most_common(1)[0][0]) if ok else {}
        for i in g.index[g["status"] == "ok"]:
            diff = [f"{c} {v} (usual {usual[c]})" for c, v in configs[i].items() if v != usual[c]]
            s.loc[i, "comparable"] = "not comparable: " + ", ".join(diff) if diff else "yes"
        base = g[
            (g["backend"] == b_backend)
            & (g["precision"] == b_precision)
            & (g["device_count"] == 1)
            & (s.loc[g.index, "comparable"] == "yes")
            & g["throughput_median"].notna()
        ]
        if len(base):
            ref = base.iloc[0]
            s.loc[g.index, "speedup"] = g["throughput_median"] / ref["throughput_median"]
            s.loc[g.index, "baseline"] = f"{ref['hardware']} {b_precision} on {ref['host']}"
    return s


def _scaling(s: pd.DataFrame) -> list[float | None]:
    """Scaling efficiency of each N-device row: its throughput ÷ (N × the same configuration's on one device)."""
    keys = ["workload", "host", "hardware", "backend", "precision"]
    one = s[s["device_count"] == 1].set_index(keys)["throughput_median"]
    out = []
    for _, r in s.iterrows():
        k = tuple(r[keys])
        single = one.get(k) if k in one.index else None
        ok = r["device_count"] > 1 and single and not pd.isna(single) and not pd.isna(r["throughput_median"])
        out.append(r["throughput_median"] / (r["device_count"] * single) if ok else None)
    return out


def _table(s: pd.DataFrame) -> pd.DataFrame:
    """The human-facing columns, formatted."""
    t = pd.DataFrame(
        {
            "hardware": s["hardware"] + " @" + s["host"].astype(str),
            "devices": s["device_count"],
            "precision": s["precision"],
            "status": [
                st if st != "ok" else f"ok {r}/{n}" for st, r, n in zip(s["status"], s["repeats_ok"], s["repeats"])
            ],
            "samples/s median (min–max)": [
                f"{_fmt(m)} ({_fmt(lo)}–{_fmt(hi)})" if m is not None and not pd.isna(m) else ""
                for m, lo, hi in zip(s["throughput_median"], s["throughput_min"], s["throughput_max"])
            ],
            "step ms p50/p90": [
                f"{_fmt(a, '.2f')}/{_fmt(b, '.2f')}" if not pd.isna(a) else ""
                for a, b in zip(s["step_ms_median"], s["step_ms_p90"])
            ],
            "speedup": [_fmt(x, ".2f") + "x" if x is not None and not pd.isna(x) else "" for x in s["speedup"]],
            "scaling eff.": [_fmt(x, ".0%") for x in s["scaling"]],
            "final acc": [_fmt(x, ".4f") for x in s["accuracy_median"]],
            "TTA s (reached)": [
                f"{_fmt(t, '.1f') or 'not reached'} ({r})" if st == "ok" else ""
                for t, r, st in zip(s["tta_median"], s["tta_reached"], s["status"])
            ],
            "loader samples/s": [_fmt(x) for x in s["loader_median"]],
            "phases s (median)": [
                ", ".join(f"{k} {v:.1f}" for k, v in ph.items()) if isinstance(ph, dict) else "" for ph in s["phases"]
            ],
            "peak MiB": [
                f"{_fmt(m)} {k}" if pd.notna(m) else "" for m, k in zip(s["peak_memory_mib"], s["peak_memory_kind"])
            ],
            "allocator": s["allocator"],
            "comparable": s["comparable"],
            "notes": s["reason"],
        }
    )
    return t


def overhead(s: pd.DataFrame) -> pd.DataFrame:
    """Each framework workload against its plain-PyTorch reference on the same hardware, devices and precision.

    With the loader in the training process (num_workers = 0) a step costs loader time plus compute time, so
    ``loader share`` = training samples/s ÷ loader-only samples/s is the fraction of each step spent loading,
    and the framework's speed without it is 1 / (1/training − 1/loader).
    """
    keys = ["host", "hardware", "backend", "device_count", "precision"]
    rows = []
    for workload, reference in REFERENCE.items():
        ref = s[(s["workload"] == reference) & (s["status"] == "ok")].set_index(keys)["full_network_median"]
        for _, r in s[(s["workload"] == workload) & (s["status"] == "ok")].iterrows():
            k = tuple(r[keys])
            t, loader = r["full_network_median"], r["loader_median"]
            if k not in ref.index or pd.isna(t) or pd.isna(ref[k]):
                continue
            ratio = t / ref[k]
            share = t / loader if loader and not pd.isna(loader) else None
            without = 1 / (1 / t - 1 / loader) / ref[k] if share is not None and share < 1 else None
            if ratio >= WITHIN:
                verdict = f"within {1 - WITHIN:.0%} of plain PyTorch"
            elif share is not None and share >= INPUT_BOUND:
                verdict = f"input-bound: the loader takes {share:.0%} of each step"
            elif without is not None and without >= WITHIN and r["num_workers"] == 0:
                verdict = (
                    f"input pipeline: loading takes {share:.0%} of each step; without it the ratio is {without:.2f}"
                )
            else:
                verdict = "framework overhead"
            rows.append(
                {
                    "workload": f"{workload} vs {reference}",
                    "hardware": f"{r['hardware']} @{r['host']}",
                    "devices": r["device_count"],
                    "precision": r["precision"],
                    "framework samples/s": _fmt(t),
                    "plain torch samples/s": _fmt(ref[k]),
                    "ratio": f"{ratio:.3f}",
                    "loader-only samples/s": _fmt(loader),
                    "loader share": _fmt(share, ".0%"),
                    "verdict": verdict,
                }
            )
    return pd.DataFrame(rows)


def decomposition(s: pd.DataFrame, benchmarks: list[dict]) -> pd.DataFrame:
    """Where each configuration's time goes, from the step micro-benchmarks (bench.micro) of the same host, device
    and precision, next to its end-to-end throughput when a record has it.

    compute-only is the workload's own training step on a fixed batch already on the device (for Lightning and
    fastai, their loop around it): the upper bound of that cell on that hardware and precision. End-to-end below
    ``BOUND`` of it is input-bound when loading (loader-only) accounts for at least half of the difference, else
    framework-bound: the time goes to the loop around the steps (loop-bound for a plain-PyTorch reference). The
    framework's per-step cost is shown apart, as its step against the plain-PyTorch reference's.
    """
    latest: dict[tuple, dict] = {}
    for b in sorted(benchmarks, key=lambda b: b.get("datetime") or ""):  # the newest run of each benchmark wins
        latest[(b["kind"], b["host"], b["device_name"], b["backend"], b["workload"], b.get("precision"))] = b

    def rate(kind: str, where: tuple, workload: str, prec: str | None) -> float | None:
        b = latest.get((kind, *where, workload, prec))
        return b["samples_per_call"] / b["median_s"] if b else None

    ok = s[(s["status"] == "ok") & (s["device_count"] == 1)] if len(s) else s
    e2e = {tuple(r[k] for k in ("host", "hardware", "backend", "workload", "precision")): r for _, r in ok.iterrows()}
    order = {p: i for i, p in enumerate(PRECISIONS)}
    trained = sorted((k for k in latest if k[0] == "train"), key=lambda k: (k[4], k[1], k[2], order.get(k[5], 99)))
    rows = []
    for _, *where, workload, prec in trained:
        where = tuple(where)
        step = latest[("train", *where, workload, prec)]
        compute, loader = rate("train", where, workload, prec), rate("loader", where, workload, None)
        record = e2e.get((*where, workload, prec))
        end = record["full_network_median"] if record is not None else None
        end = None if end is None or pd.isna(end) else float(end)
        plain = rate("train", where, REFERENCE[workload], prec) if workload in REFERENCE else None
        flops = step.get("flops_per_step")
        tflops = flops / step["median_s"] / 1e12 if flops else None
        peak = micro.PEAK_TFLOPS.get(where[1], {}).get(prec)
        rows.append(
            {
                "workload": workload,
                "hardware": f"{where[1]} @{where[0]}",
                "precision": prec,
                "end-to-end samples/s": _fmt(end),
                "compute-only samples/s": _fmt(compute),
                "forward-only samples/s": _fmt(rate("eval", where, workload, prec)),
                "loader-only samples/s": _fmt(loader),
                "end-to-end ÷ compute": _fmt(end / compute, ".2f") if end else "",
                "bound": _bound(end, compute, loader, workload in REFERENCE),
                "step ÷ plain PyTorch step": _fmt(compute / plain, ".2f") if plain else "",
                "GFLOP/step": _fmt(flops / 1e9 if flops else None, ",.2f"),
                "TFLOP/s": _fmt(tflops, ".3f"),
                "utilisation": _fmt(tflops / peak, ".1%") if tflops and peak else "no peak known",
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


def _artifacts(g: pd.DataFrame, out: Path) -> list[tuple[str, list[str]]]:
    """(row label, artifact paths relative to the report folder) for the rows whose cells saved plots."""
    return [
        (f"{r['hardware']} x{r['device_count']} {r['precision']}", [os.path.relpath(a, out) for a in r["artifacts"]])
        for _, r in g.iterrows()
        if r["artifacts"]
    ]


def _overview(s: pd.DataFrame, out: Path, link) -> pd.DataFrame:
    """Every workload's rows in one table, so that frameworks on the same hardware sit side by side.
    ``link(path, text)`` formats a link for the output format."""
    top = [next((a for a in arts if Path(a).stem == "top_losses"), None) for arts in s["artifacts"]]
    return pd.DataFrame(
        {
            "workload": s["workload"],
            "hardware": s["hardware"] + " @" + s["host"].astype(str),
            "devices": s["device_count"],
            "precision": s["precision"],
            "status": s["status"],
            "samples/s": [_fmt(x) for x in s["throughput_median"]],
            "final acc": [_fmt(x, ".4f") for x in s["accuracy_median"]],
            "TTA s": [_fmt(x, ".1f") for x in s["tta_median"]],
            "weights": s["weights"],
            "top losses": [link(os.path.relpath(a, out), "top_losses") if a else "" for a in top],
        }
    )


def _md_link(path: str, text: str) -> str:
    return f"[{text}]({path})"


def _html_link(path: str, text: str) -> str:
    return f'<a href="{html.escape(path)}">{html.escape(text)}</a>'


def _accuracy_plot(df: pd.DataFrame, workload: str, target: float) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(7, 4))
    ok = df[(df["workload"] == workload) & (df["status"] == "ok")]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, (key, g) in enumerate(ok.groupby(["host", "hardware", "device_count", "precision"], sort=False)):
        for j, curve in enumerate(g["curve"]):
            pts = [(c["elapsed_seconds"], c["test_accuracy"]) for c in curve or [] if c.get("elapsed_seconds")]
            if pts:
                x, y = zip(*pts)
                label = f"{key[1]} x{key[2]} {key[3]}" if j == 0 else None
                ax.plot(x, y, marker=".", color=colors[n % len(colors)], alpha=0.8, label=label)
    ax.axhline(target, color="grey", linestyle="--", linewidth=1, label=f"target {target}")
    ax.set(xlabel="wall-clock seconds since the first training step", ylabel="test accuracy", title=workload)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _throughput_plot(s: pd.DataFrame, workload: str) -> plt.Figure:
    g = s[(s["workload"] == workload) & s["throughput_median"].notna()]
    fig, ax = plt.subplots(figsize=(7, 1.3 + 0.4 * max(len(g), 1)))
    labels = [f"{h} x{d} {p}" for h, d, p in zip(g["hardware"], g["device_count"], g["precision"])]
    med = g["throughput_median"].astype(float)
    err = [med - g["throughput_min"].astype(float), g["throughput_max"].astype(float) - med]
    ax.barh(labels, med, xerr=err, capsize=3)
    ax.invert_yaxis()
    ax.set(xlabel="training samples/s (median, min–max over repeats)", title=workload)
    fig.tight_layout()
    return fig


def _png(fig: plt.Figure, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path.write_bytes(buf.getvalue())
    return base64.b64encode(buf.getvalue()).decode()


def _environments(df: pd.DataFrame) -> pd.DataFrame:
    """One row per host; a value that differed between its records is listed with all its variants."""
    rows: dict[str, dict[str, set]] = {}
    for e in df["env"]:
        e = e or {}
        pk = e.get("packages") or {}
        values = {
            "cpu": e.get("cpu_model"),
            "cores": e.get("cpu_count"),
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


def write(results_dir: Path, baseline: str = "cpu/fp32") -> Path:
    recs = records.read_all(results_dir)
    if not recs:
        raise ValueError(f"no records.jsonl under {results_dir}; run `bench run` first")
    df = frame(recs)
    s = summarise(df, baseline)
    out = Path(results_dir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    s.drop(columns=[], errors="ignore").to_csv(out / "summary.csv", index=False)
    md = [
        "# Benchmark report",
        "",
        f"{len(df)} records from {df['run_id'].nunique()} runs on "
        f"{df['host'].nunique()} hosts. Throughput counts steady-state training steps only (warmup and "
        "evaluation excluded); TTA is one clock from the first training step to the first evaluation at or "
        f"above the target. Speedup is against {baseline} of the same workload. See docs/methodology.md.",
        "",
        "## Overview",
        "",
        _overview(s, out, _md_link).to_markdown(index=False),
        "",
    ]
    body = [
        f"<h1>Benchmark report</h1><p>{html.escape(md[2])}</p><h2>Overview</h2>",
        _overview(s, out, _html_link).to_html(index=False, border=0, escape=False),
    ]
    for workload, g in s.groupby("workload", sort=False):
        table = _table(g)
        acc = _png(_accuracy_plot(df, workload, float(g["tta_target"].iloc[0])), out / f"{workload}-accuracy.png")
        tput = _png(_throughput_plot(s, workload), out / f"{workload}-throughput.png")
        base = g["baseline"].dropna().iloc[0] if "baseline" in g and g["baseline"].notna().any() else "none found"
        md += [
            f"## {workload}",
            "",
            f"Speedup baseline: {base}.",
            "",
            table.to_markdown(index=False),
            "",
            f"![accuracy]({workload}-accuracy.png)",
            "",
            f"![throughput]({workload}-throughput.png)",
            "",
        ]
        body += [
            f"<h2>{html.escape(workload)}</h2><p>Speedup baseline: {html.escape(base)}.</p>",
            table.to_html(index=False, border=0),
            f'<img src="data:image/png;base64,{acc}">',
            f'<img src="data:image/png;base64,{tput}">',
        ]
        if arts := _artifacts(g, out):
            md += ["Plots saved by each cell (first repeat):", ""]
            md += [f"- {label}: " + " · ".join(_md_link(a, Path(a).stem) for a in paths) for label, paths in arts]
            md += [""]
            items = "".join(
                f"<li>{html.escape(label)}: " + " · ".join(_html_link(a, Path(a).stem) for a in paths) + "</li>"
                for label, paths in arts
            )
            body.append(f"<p>Plots saved by each cell (first repeat):</p><ul>{items}</ul>")
    ov = overhead(s)
    if len(ov):
        md += [
            "## Framework overhead against the plain-PyTorch loop",
            "",
            "ratio = framework samples/s ÷ its plain-PyTorch reference's on the same hardware and precision (for "
            "fastai, its unfrozen epochs: the reference trains the whole network throughout). loader share = "
            "framework samples/s ÷ loader-only samples/s (one pass of the training loader with no model): the "
            "fraction of each step spent loading when the loader runs in the training process (num_workers = 0).",
            "",
            ov.to_markdown(index=False),
            "",
        ]
        body += ["<h2>Framework overhead against the plain-PyTorch loop</h2>", ov.to_html(index=False, border=0)]
    dec = decomposition(s, micro.read(results_dir))
    if len(dec):
        md += [
            "## Where the time goes: step micro-benchmarks",
            "",
            "From `make bench-micro` (pytest-benchmark, median per step after warmup, newest run) on the same host, "
            "device and precision. compute-only = the workload's training step on a fixed batch already on the "
            "device, inside its own loop (Lightning's Trainer, fastai's Learner): the cell's upper bound here. "
            "loader-only = the next batch of the real training DataLoader. End-to-end is the record's steady-state "
            f"training (fastai: its unfrozen epochs). Below {BOUND:.0%} of compute-only a cell is input-bound when "
            "loading explains at least half of the difference, else framework-bound (the loop around the steps; "
            "loop-bound for a plain-PyTorch loop). "
            "step ÷ plain PyTorch step = the framework's per-step cost: its compute-only against its plain-PyTorch "
            "reference's. TFLOP/s counts the matmuls and convolutions of one training step "
            "(torch.utils.flop_counter); utilisation is against the device's dense peak where known.",
            "",
            dec.to_markdown(index=False),
            "",
        ]
        body += [
            "<h2>Where the time goes: step micro-benchmarks</h2>",
            f"<p>{html.escape(md[-3])}</p>",
            dec.to_html(index=False, border=0),
        ]
    envs = _environments(df)
    md += ["## Environments", "", envs.to_markdown(index=False), ""]
    body += ["<h2>Environments</h2>", envs.to_html(index=False, border=0)]
    (out / "REPORT.md").write_text("\n".join(md))
    style = (
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{padding:3px 8px;border-bottom:1px solid #ddd}img{max-width:100%;display:block;margin:1em 0}"
    )
    (out / "report.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Benchmark report"
        f"</title><style>{style}</style></head><body>{''.join(body)}</body></html>"
    )
    return out / "REPORT.md"
