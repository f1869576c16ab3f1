"""Calibrate the quiet-host thresholds (bench/trackers/contention): real cells beside a neighbour of known duty cycle.

A neighbour is a Python busy loop that spins ``duty`` of every 100 ms and sleeps the rest, pinned to one core or left
to the scheduler. In each round every (duty, pinned) runs once, in a shuffled order, as one ``bench run`` of the
workloads (fp32, eager, loader input), so that the host's drift falls on all of them alike; duty 0 (no neighbour) is
the baseline, and a run with no neighbour but 4 DataLoader workers shows what a cell waiting on itself reads. Per
workload and neighbour the table gives the throughput loss against the same round's baseline (the median over
rounds), each measure of the contention section (the median) and the verdicts that today's thresholds give.
``--write-docs`` puts the table into docs/methodology.md between its markers. Nothing else may run meanwhile: it
would be a second neighbour.

    make calibrate-quiet            # or: python scripts/calibrate_quiet.py --rounds 3 --write-docs
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import records  # noqa: E402
from bench.trackers import contention  # noqa: E402

DOCS = ROOT / "docs" / "methodology.md"
BEGIN, END = "<!-- calibrate-quiet: begin -->", "<!-- calibrate-quiet: end -->"
PERIOD_S = 0.1
WORKERS = 4  # the fastest suite's fastai DataLoader workers: a cell that waits on itself
NEIGHBOUR = """
import os, sys, time
duty, core, period = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
if core >= 0:
    os.sched_setaffinity(0, {core})
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < duty * period:
        pass
    time.sleep(period * (1 - duty))
"""


def neighbour(duty: float, where: str) -> subprocess.Popen | None:
    if not duty:
        return None
    core = max(os.sched_getaffinity(0)) if where == "pinned" else -1
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR, str(duty), str(core), str(PERIOD_S)])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def run(args: argparse.Namespace, run_id: str, duty: float, where: str) -> float | None:
    """One bench run beside the neighbour; the neighbour's measured share of one core (None: none)."""
    n = neighbour(duty, where)
    t0 = time.monotonic()
    try:
        cmd = [sys.executable, "-m", "bench", "run", "--device", "cpu", "--workload", args.workloads,
               "--precision", "fp32", "--mode", "eager", "--input", "loader", "--epochs", "1",
               "--limit-train", str(args.limit_train), "--profile-steps", "0", "--repeats", "1",
               "--results-dir", str(args.results_dir), "--run-id", run_id, "--no-report"]  # fmt: skip
        if where == "workers":  # no neighbour: the cell's own DataLoader workers outnumber its cores
            cmd += ["--num-workers", str(WORKERS)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        return 100 * cpu_seconds(n.pid) / (time.monotonic() - t0) if n else None
    finally:
        if n:
            n.kill()
            n.wait()


def median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def label(duty: float, where: str) -> str:
    if where == "workers":
        return f"none; the cell's {WORKERS} DataLoader workers"
    return "none" if not duty else f"{duty:.0%} duty, " + ("pinned" if where == "pinned" else "unpinned")


def table(args: argparse.Namespace, plan: list[tuple[float, str]]) -> str:
    by = {}  # (workload, duty, where, round): record
    for r in records.read_all(args.results_dir):
        _, rnd, duty, where = r["cell"]["run_id"].split("-")
        by[(r["cell"]["workload"], float(duty), where, int(rnd))] = r
    used = {}  # (duty, where): the neighbour's share of one core in each round
    for path in args.results_dir.glob("calibrate-*/neighbour.json"):
        _, _, duty, where = path.parent.name.split("-")
        used.setdefault((float(duty), where), []).append(json.loads(path.read_text())["cpu_pct"])
    shown = [m for m in contention.MEASURES if not m.key.startswith("gpu_")]
    head = ["workload", "neighbour", "its CPU (of a core)", "throughput loss", *(m.label for m in shown), "verdicts"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for workload in args.workloads.split(","):
        for duty, where in plan:
            losses, values, verdicts = [], {m.key: [] for m in shown}, []
            for rnd in range(args.rounds):
                r, base = by.get((workload, duty, where, rnd)), by.get((workload, 0.0, "free", rnd))
                if r is None or r["status"] != "ok":
                    continue
                if base is not None and base["status"] == "ok" and (duty, where) != (0.0, "free"):
                    rate, base_rate = (x["timing"]["throughput_samples_per_s"] for x in (r, base))
                    losses.append(100 * (1 - rate / base_rate))
                c = r["contention"]
                for m in shown:
                    values[m.key].append(((c.get("measures") or {}).get(m.key) or {}).get("value"))
                # judged again by today's thresholds: the table shows what they make of each neighbour
                verdicts.append(contention.judge(c.get("measures") or {}, c.get("span_s") or 0.0)[0])
            loss = median(losses)
            cells = [workload, label(duty, where), f"{median(used.get((duty, where), [])) or 0:.1f}%",
                     f"{loss:+.1f}%" if loss is not None else "baseline",
                     *(f"{v:.1f}%" if (v := median(values[m.key])) is not None else "" for m in shown),
                     ", ".join(f"{n} {v}" for v in contention.VERDICTS if (n := verdicts.count(v)))]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n\n" + fit(args, by, used)


def fit(args: argparse.Namespace, by: dict, used: dict) -> str:
    """Per workload, log(samples/s) against the neighbour's CPU over every run (the rounds' noise on one run pair is
    larger than a small neighbour's cost): the loss per 1% of a core with its 95% interval, and what others' CPU
    reads for a neighbour that costs 3%."""
    from scipy import stats

    out = []
    for workload in args.workloads.split(","):
        cpu, rate, others = [], [], []
        for (w, duty, where, _), r in by.items():
            if w != workload or where == "workers" or r["status"] != "ok":
                continue
            cpu.append(median(used.get((duty, where), [])) or 0.0)
            rate.append(math.log(r["timing"]["throughput_samples_per_s"]))
            others.append(r["contention"]["measures"]["others_cpu"]["value"])
        if len(cpu) < 3:
            continue
        loss, read = stats.linregress(cpu, rate), stats.linregress(cpu, others)
        half = stats.t.ppf(0.975, len(cpu) - 2) * loss.stderr
        k = -100 * loss.slope
        at3 = 3 / k if k > 0 else math.nan
        out.append(
            f"- {workload}: {k:.2f}% of its samples/s lost per 1% of a core the neighbour used "
            f"[{-100 * (loss.slope + half):.2f}–{-100 * (loss.slope - half):.2f}] ({len(cpu)} runs, log-linear fit); "
            f"a 3% loss at {at3:.1f}% of a core, where other processes' CPU reads "
            f"{read.intercept + read.slope * at3:.1f}% of the cell's cores"
        )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--workloads", default="torch-convnet,lightning-convnet")
    p.add_argument("--duties", default="0.02,0.05,0.1,0.2,0.5", help="the neighbour's duty cycles (0 always runs)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--limit-train", type=int, default=12800, help="training images per cell (its steady span)")
    p.add_argument("--results-dir", type=Path, default=ROOT / "results" / "calibrate-quiet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--write-docs", action="store_true", help=f"put the table into {DOCS.relative_to(ROOT)}")
    args = p.parse_args()
    plan = [(0.0, "free"), (0.0, "workers")]
    plan += [(float(d), where) for d in args.duties.split(",") for where in ("pinned", "free")]
    rng = random.Random(args.seed)
    for rnd in range(args.rounds):
        order = plan[:]
        rng.shuffle(order)
        for duty, where in order:
            run_id = f"calibrate-{rnd}-{duty}-{where}"
            if (args.results_dir / run_id / "records.jsonl").exists():
                continue  # resumed: this one ran
            print(f"round {rnd + 1}/{args.rounds}: {label(duty, where)}", flush=True)
            share = run(args, run_id, duty, where)
            if share is not None:  # kept beside the records: a resumed calibration still shows it
                (args.results_dir / run_id / "neighbour.json").write_text(json.dumps({"cpu_pct": share}))
    text = table(args, plan)
    print(text)
    if args.write_docs:
        doc = DOCS.read_text()
        start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
        DOCS.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
