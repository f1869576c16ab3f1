"""``bench export``: records in the formats results travel in. ``mllog``: per measured cell and repeat, an MLPerf-style
event log (``:::MLLOG`` lines) written by mlperf-logging's own ``mllog``: run start, each evaluation's accuracy with
its epoch, the target, and run stop with its status, timed as the record's clock ran (the TTA clock starts at the
first training step, MLPerf's run start). ``bmf``: the Bencher Metric Format, per report row (aggregate.summarise)
its samples/s with the 95% interval of its quiet repeats as lower and upper values, and its time to accuracy."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path

import pandas as pd

from bench.records import files, stats
from bench.report import aggregate, index, render

FORMATS = ("bmf", "mllog")
BMF = "bmf.json"
NAMESPACE = "bench"  # the mllog namespace of every event


def _number(value: object, default: float | None = None) -> float | None:
    """A record's number, or ``default`` where it has none (None, NaN: a field an older schema lacks)."""
    return default if value is None or pd.isna(value) else float(value)


def _ms(started_at: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(started_at)).timestamp() * 1000
    except ValueError:
        return None


def mllog_lines(r: pd.Series) -> list[str]:
    """One record (a flat row of aggregate.frame) as MLPerf log lines, through mllog's own logger. Run start is the
    first training step: the cell's start plus its setup; each evaluation at its elapsed seconds on that clock; run
    stop where the target was first reached (status success, as an MLPerf run stops there), else at the last
    evaluation (aborted)."""
    from mlperf_logging.mllog import constants as c
    from mlperf_logging.mllog.mllog import MLLogger

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage().strip())

    logger = logging.Logger(f"bench.export.{id(lines)}")  # unregistered: nothing of mllog's global state is touched
    logger.addHandler(Collect())
    log = MLLogger(logger=logger, default_namespace=NAMESPACE)
    start = _ms(r["started_at"])
    if start is None:
        return []
    start = round(start + _number(r["setup_seconds"], 0.0) * 1000)  # MLPerf logs whole milliseconds
    target = None if r["tta_target"] in (None, "none") else float(r["tta_target"])
    curve = [e for e in (r["curve"] if isinstance(r["curve"], list) else []) if e.get("elapsed_seconds") is not None]
    meta = {"host": r["host"], "cell": r["cell_id"], "repeat": r["repeat"], "precision": r["precision"]}
    log.event(c.SUBMISSION_BENCHMARK, r["workload"], metadata=meta, time_ms=start)
    batch = _number(r["global_batch_size"]) or _number(r["batch_size"])
    log.event(c.GLOBAL_BATCH_SIZE, None if batch is None else int(batch), time_ms=start)
    log.event("eval_target", target, time_ms=start)  # bench's key: MLPerf fixes each benchmark's target in its rules
    log.start(c.RUN_START, time_ms=start)
    stop, status = start, c.ABORTED
    for e in curve:
        at = start + round(float(e["elapsed_seconds"]) * 1000)
        epoch = e.get("epoch")
        log.event(c.EVAL_ACCURACY, e.get("test_accuracy"), metadata={c.EPOCH_NUM: epoch}, time_ms=at)
        stop = at
        if target is not None and (e.get("test_accuracy") or 0) >= target:
            status = c.SUCCESS
            break
    log.end(c.RUN_STOP, metadata={c.STATUS: status, "bench_status": r["status"]}, time_ms=stop)
    return lines


def _name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:120]


def bmf(s: pd.DataFrame) -> dict:
    """The Bencher Metric Format of the report's rows: ``{workload/row: {measure: {value, lower_value, upper_value}}}``;
    throughput from the quiet repeats (their geometric mean and 95% interval), time to accuracy by MLPerf's rule
    (bench.records.stats.tta). A row with neither is left out."""
    out: dict[str, dict] = {}
    for _, r in s.iterrows():
        measures: dict[str, dict] = {}
        if r["throughputs"] and (found := stats.interval(r["throughputs"].values())):
            mean, low, high = found
            measures["throughput"] = {"value": mean} | ({"lower_value": low, "upper_value": high} if low else {})
        if r["tta_s"] is not None and not pd.isna(r["tta_s"]):
            measures["time-to-accuracy"] = {"value": float(r["tta_s"])}
        if measures:
            out[f"{r['workload']}/{render.label(r)}"] = measures
    return out


def write(results_dir: Path, fmt: str, out: Path, include_unquiet: bool = False) -> Path:
    """Every record under ``results_dir`` as ``fmt`` into the folder ``out`` (bench's own:
    bench.records.files.output)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    df, _, _ = index.frame(results_dir)
    with files.output(out) as staging:
        if fmt == "bmf":
            s = aggregate.summarise(df, "cpu/fp32", include_unquiet)
            (staging / BMF).write_text(json.dumps(bmf(s) if len(s) else {}, indent=1))
            return out / BMF
        ran = df[df["status"].isin(["ok", "diverged", "timeout"])]
        # every field of each record (its curve), read a thousand at a time: a year of nightly runs is 100,000
        each = (r for n in range(0, len(ran), 1000) for _, r in aggregate.complete(ran.iloc[n : n + 1000]).iterrows())
        for i, r in enumerate(each):
            if lines := mllog_lines(r):
                name = _name(f"{i:05d}.{r['run_id']}.{r['cell_id']}.r{r['repeat']}")
                (staging / f"{name}.mllog.txt").write_text("\n".join(lines) + "\n")
    return out
