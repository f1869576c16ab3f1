"""How `bench report` and `bench run --dry-run` scale with history: a year of nightly runs in one results folder.

Builds results folders of real records copied into many runs (``--runs`` runs of ``--cells`` records each, on
``--hosts`` hosts, one night apart; each copy's run id, host, date and fingerprint its own), then times, each in a
fresh process and with a cache folder of its own, `bench report` over the folder three times: with no table of it
kept (bench.report.index), with the table kept, and after tonight's run is added (the nightly case); and
`bench run --suite smoke --dry-run` into a new run of it (against the same in an empty folder; twice: the first
reads the history, the second what the first kept of it), with the peak memory of each (``wait4``'s maxrss).
``--bench`` times another checkout of bench (an older commit, for a before and after). Nothing else may run
meanwhile.

    python scripts/scale_history.py --source results/calibrate-quiet --sizes 1000,10000,100000
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import records  # noqa: E402
from bench.records import schema  # noqa: E402


def build(source: list[dict], out: Path, runs: int, cells: int, hosts: int, first: int = 0) -> int:
    """``runs`` run folders under ``out`` (nights ``first`` on), each of ``cells`` copies of ``source``'s records; the
    records written."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    n = 0
    for i in range(first, first + runs):
        run_id, host = f"nightly-{i:05d}", f"host{i % hosts}"
        folder = out / run_id
        folder.mkdir(parents=True)
        lines = []
        for j in range(cells):
            r = copy.deepcopy(source[j % len(source)])
            r = {k: v for k, v in r.items() if not k.startswith("_")}  # where the source was read: not a field
            r["cell"].update(run_id=run_id, repeat=j)  # each its own measurement (a fingerprint holds the repeat)
            r["cell"]["fingerprint"] = schema.own_fingerprint(r["cell"]) or r["cell"].get("fingerprint")
            r["env"]["host"] = host
            r["run"]["started_at"] = (start + datetime.timedelta(days=i // hosts, seconds=j)).isoformat()
            lines.append(json.dumps(r))
        (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
        n += len(lines)
    return n


def timed(args: list[str], env: dict[str, str], bench: Path = ROOT) -> tuple[float, float, int]:
    """(seconds, peak MiB, exit status) of one bench command of the checkout ``bench`` in a fresh process."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "bench", *args], env=env, cwd=bench,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    _, status, usage = os.wait4(p.pid, 0)
    return time.monotonic() - t0, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, required=True, help="a results folder of real ok records to copy")
    p.add_argument("--sizes", default="1000,10000", help="records in each folder built")
    p.add_argument("--cells", type=int, default=20, help="records per run")
    p.add_argument("--hosts", type=int, default=5)
    p.add_argument("--work", type=Path, default=Path("/tmp/bench-scale"))
    p.add_argument("--bench", type=Path, default=ROOT, help="the checkout of bench to time")
    p.add_argument("--keep", action="store_true", help="keep the folders built")
    args = p.parse_args()
    source = [schema.upgrade(r) for r in records.read_all(args.source) if r.get("status") == "ok"]
    if not source:
        raise SystemExit(f"no ok records under {args.source}")
    shutil.rmtree(args.work, ignore_errors=True)
    empty = args.work / "empty"
    empty.mkdir(parents=True)

    def env(name: str) -> dict[str, str]:  # the dry run's host has its history there; a cache folder of its own
        return {**os.environ, "BENCH_HOST": "host0", "BENCH_CACHE_DIR": str(args.work / f"cache-{name}")}

    def run(*command: str, name: str) -> tuple[float, float, int]:
        return timed(list(command), env(name), args.bench.resolve())

    dry = ["run", "--suite", "smoke", "--dry-run", "--run-id", "new", "--results-dir"]
    run(*dry, str(empty), name="empty")
    empty_s, empty_mib, _ = run(*dry, str(empty), name="empty")  # the second: the first paid for cold file caches
    print(f"bench: {args.bench.resolve()}; each size's report rows: workloads × configurations × {args.hosts} hosts")
    print(
        "| records | report s, nothing kept | peak MiB | report s, table kept | peak MiB | report s, tonight's "
        "run added | peak MiB | dry-run s, first | dry-run s, again | dry-run peak MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| 0 (empty folder) | | | | | | | | {empty_s:.1f} | {empty_mib:.0f} |", flush=True)
    for size in map(int, args.sizes.split(",")):
        folder = args.work / f"r{size}"
        runs = max(1, size // args.cells)
        n = build(source, folder, runs, args.cells, args.hosts)
        report = ["report", "--results-dir", str(folder)]
        cold = run(*report, name=str(size))
        kept = run(*report, name=str(size))
        build(source, folder, 1, args.cells, args.hosts, first=runs)  # tonight's run
        nightly = run(*report, name=str(size))
        first_s, _, _ = run(*dry, str(folder), name=f"dry-{size}")  # reads the history, keeps what the estimate needs
        dry_s, dry_mib, _ = run(*dry, str(folder), name=f"dry-{size}")
        cells = [f"{s:.1f}{'' if rc == 0 else f' (exit {rc})'} | {mib:.0f}" for s, mib, rc in (cold, kept, nightly)]
        print(f"| {n:,} | {' | '.join(cells)} | {first_s:.1f} | {dry_s:.1f} | {dry_mib:.0f} |", flush=True)
        if not args.keep:
            shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
