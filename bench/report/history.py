"""History: over many runs of one configuration on one host (nightly, or per commit), each run's samples/s (the
geometric mean of its quiet repeats, with its 95% interval) and time to accuracy by date and commit, each run
compared with the one before by ``bench compare``'s gate (bench.records.stats.gate): a significant slowdown beyond the
threshold is marked a regression."""

from __future__ import annotations

import pandas as pd

from bench.records import stats
from bench.report import aggregate, render
from bench.report.verdicts import interval_text

MIN_RUNS = 3  # runs of one configuration before it has a history worth a table
SHOWN = 30  # the newest runs of each shown (a year of nightly runs is the records' and summary.csv's to hold)
THRESHOLD = 0.1  # bench compare's default --fail-slower


def runs(df: pd.DataFrame, include_unquiet: bool = False) -> dict[tuple, pd.DataFrame]:
    """Per configuration (aggregate.ROW) with at least ``MIN_RUNS`` runs, one row per run in the order they started:
    date, commit, samples/s with its interval, TTA (MLPerf's rule over the run's repeats) and the gate's verdict
    against the run before."""
    out = {}
    used = [*aggregate.ROW, "run_id", "started_at", "_newer", "status", "unquiet", "block", "throughput_samples_per_s",
            "tta_seconds", "env"]  # fmt: skip
    ok = df.loc[df["status"].isin(["ok", "diverged", "timeout"]), list(dict.fromkeys(used))]
    for key, g in ok.groupby(aggregate.ROW, sort=False, dropna=False):
        if g["run_id"].nunique() < MIN_RUNS:
            continue
        rows, previous = [], None
        first = g.groupby("run_id", sort=False)["_newer"].min().sort_values()  # the runs in the order they started
        shown = first.index[-(SHOWN + 1) :]  # and the one before the first shown, to compare it with
        of = dict(tuple(g[g["run_id"].isin(shown)].groupby("run_id", sort=False)))
        for run_id in shown:
            r = of[run_id]
            use = r[(r["status"] == "ok") & (include_unquiet | ~r["unquiet"])]
            sample = dict(zip(use["block"], pd.to_numeric(use["throughput_samples_per_s"])))
            found = stats.interval(sample.values())
            flag = ""
            if previous and sample:
                ratio = stats.compare(sample, previous)
                verdict, regressed = stats.gate(ratio, THRESHOLD)
                flag = f"{ratio.text(flag=False)} {'REGRESSION: ' if regressed else ''}{verdict}"
            commits = sorted({str((e or {}).get("git_commit") or "")[:12] for e in r["env"]} - {""})
            rows.append(
                {
                    "run": run_id,
                    "started": min(map(str, r["started_at"].dropna()), default="")[:16].replace("T", " "),
                    "commit": ", ".join(commits),
                    "quiet repeats": f"{len(sample)} of {len(r)}",
                    "samples/s [95% CI]": interval_text(found),
                    "TTA s": stats.tta(
                        [t if s == "ok" else None for s, t in zip(r["status"], pd.to_numeric(r["tta_seconds"]))]
                    ).text(),
                    "vs the run before": flag,
                    "_mean": found[0] if found else None,
                    "_low": found[1] if found else None,
                    "_high": found[2] if found else None,
                }
            )
            previous = sample or previous
        out[key] = pd.DataFrame(rows[-SHOWN:])
    return out


def title(key: tuple) -> str:
    """A history's heading: its workload and row label (render.label)."""
    r = pd.Series(dict(zip(aggregate.ROW, key)))
    r["configuration"] = ""
    return f"{r['workload']}: {render.label(r)}"


def regressions(history: dict[tuple, pd.DataFrame]) -> int:
    return sum(t["vs the run before"].str.contains("REGRESSION").sum() for t in history.values())
