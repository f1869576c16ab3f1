"""How `bench report` and `bench run --dry-run` scale with history: a year of nightly runs in one results folder.

Builds results folders of real records copied into many runs (``--runs`` runs of ``--cells`` records each, on
``--hosts`` hosts, one night apart; each copy's run id, host, date and fingerprint its own), then times, each in a
fresh process, `bench report` over the folder and `bench run --suite smoke --dry-run` into a new run of it (against
the same in an empty folder; twice: the first reads the history, the second what the first kept of it), with the
peak memory of each (``wait4``'s maxrss). Nothing else may run meanwhile.

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

from bench import records, schema  # noqa: E402


def build(source: list[dict], out: Path, runs: int, cells: int, hosts: int) -> int:
    """``runs`` run folders under ``out``, each of ``cells`` copies of ``source``'s records; the records written."""
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    n = 0
    for i in range(runs):
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


def timed(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak MiB, exit status) of one bench command in a fresh process."""
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "bench", *args], env=env, cwd=ROOT,
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
    p.add_argument("--keep", action="store_true", help="keep the folders built")
    args = p.parse_args()
    source = [schema.upgrade(r) for r in records.read_all(args.source) if r.get("status") == "ok"]
    if not source:
        raise SystemExit(f"no ok records under {args.source}")
    env = {**os.environ, "BENCH_HOST": "host0"}  # the dry run's host has its history there
    empty = args.work / "empty"
    shutil.rmtree(args.work, ignore_errors=True)
    empty.mkdir(parents=True)
    dry = ["run", "--suite", "smoke", "--dry-run", "--run-id", "new", "--results-dir"]
    seconds, mib, _ = timed([*dry, str(empty)], env)
    seconds, mib, _ = timed([*dry, str(empty)], env)  # the second: the first paid for cold file caches
    print("| records | bench report s | report peak MiB | dry-run s, first | dry-run s, again | dry-run peak MiB |")
    print("|---|---|---|---|---|---|")
    print(f"| 0 (empty folder) | | | {seconds:.1f} | | {mib:.0f} |", flush=True)
    for size in map(int, args.sizes.split(",")):
        folder = args.work / f"r{size}"
        n = build(source, folder, max(1, size // args.cells), args.cells, args.hosts)
        report_s, report_mib, rc = timed(["report", "--results-dir", str(folder)], env)
        first_s, _, _ = timed([*dry, str(folder)], env)  # reads the history and keeps what the estimate needs
        dry_s, dry_mib, _ = timed([*dry, str(folder)], env)
        fail = "" if rc == 0 else f" (exit {rc})"
        print(f"| {n:,} | {report_s:.1f}{fail} | {report_mib:.0f} | {first_s:.1f} | {dry_s:.1f} | {dry_mib:.0f} |",
              flush=True)  # fmt: skip
        if not args.keep:
            shutil.rmtree(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
