"""``bench``: data, weights, run, report, compare, compare-micro, slurm, k8s, list."""

from __future__ import annotations

import argparse
import contextlib
import errno
import math
import os
import sys
from pathlib import Path

from bench.plan import precision
from bench.plan import settings as spec_settings
from bench.plan.settings import PER_WORKLOAD, SETTINGS
from bench.run import process
from bench.text import shown

DEFAULT_RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR", "results"))


RETRYABLE = ("failed", "timeout", "diverged", "unsupported")


def _statuses(value: str) -> tuple[str, ...]:
    statuses = tuple(spec_settings.csv(value))
    bad = [s for s in statuses if s not in RETRYABLE]
    if bad or not statuses:
        raise argparse.ArgumentTypeError(f"{value!r}: comma-separated statuses among {', '.join(RETRYABLE)}")
    return statuses


def cmd_data(args: argparse.Namespace) -> int:
    from bench.run import data

    folder = data.locate(args.data_dir)
    print(f"MNIST raw files: {folder} (validated)")
    x, _ = data.tensors("train", folder)
    data.tensors("test", folder)
    print(f"normalised tensors cached: train {tuple(x.shape)}, under {data.cache_dir()}")
    if args.png:
        print(f"mnist_png folders: {data.png_folders(folder)}")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    from bench.run import weights

    path = weights.ensure_resnet18()
    print(f"pretrained resnet18 weights: {path} ({weights.describe(True)['source']})")
    return 0


def build_cells(args: argparse.Namespace):
    """The suite with the command line's overrides: (name, settings, cells in run order, copies left out)."""
    from bench import backends
    from bench.plan import suite

    detected = backends.detect() if args.suite == "auto" else None
    name, raw = suite.load(suite.for_backend(detected) if detected else args.suite)
    if detected:  # the packaged suite on the backend found here: the tpu suite runs on torch_xla or on TorchTPU
        raw["backend"] = detected
    if args.price_per_hour is not None:  # a price of one's own replaces the suite's entry, and an entry a price
        raw.pop("price", None)
    if args.price is not None:
        raw.pop("price_per_hour", None)
    options = {}  # the settings bench run's options override (bench.plan.settings), and the option each came from
    for key, setting in SETTINGS.items():
        value = getattr(args, key) if setting.flag else None
        if value is not None:
            raw[key] = value
            options[key] = setting.flag
            if key in PER_WORKLOAD:  # the command line wins over per-workload overrides too
                for over in raw.get("workload", {}).values():
                    over.pop(key, None)
    settings = suite.validate(name, raw, options)
    cells, copies = suite.collapse(suite.expand(name, settings, *backends.machine(settings["backend"])))
    return name, settings, suite.order(cells, settings), copies  # fingerprints ignore the order


def _copies_text(copies: list) -> str:
    names = list(dict.fromkeys(f"{c.cell_id} repeat {c.repeat}" for c in copies))
    return (
        f"{len(copies)} duplicate cells collapsed (listed more than once; one measurement each): "
        + ", ".join(names[:5])
        + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    )


def cmd_run(args: argparse.Namespace) -> int:
    from bench import backends, cluster, records
    from bench.plan import cost
    from bench.run import env, estimate, hostlock, planning, runlock, sweep
    from bench.run.auto import Auto
    from bench.trackers import contention

    # before torch is imported: the parent of every cell loads no device backend (TorchTPU's would initialise its
    # device, on a TPU the chips its workers need); each worker gets the user's setting back (bench.run.process)
    process.hold_device_backends()
    check = None if args.dry_run else contention.HostCheck()  # measures the host while the run gets ready
    name, settings, cells, copies = build_cells(args)
    nodes = cluster.resolve(args.nnodes, args.node_rank, args.rdzv_endpoint)
    for backend in dict.fromkeys(cell.backend for cell in cells):
        if why := backends.get(backend).run_reason(nodes.nnodes):
            raise ValueError(why)
    if settings["repeats_max"] and nodes.nnodes > 1:
        raise ValueError("repeats = auto runs on one node: the nodes of a run follow one plan made before it starts")
    host = env.host()
    run_id = records.check_run_id(args.run_id) if args.run_id else records.default_run_id(name, host)
    auto = Auto(settings["repeats_max"], settings["target_ci"]) if settings["repeats_max"] else None
    retry = planning.Retry(args.retry or ())
    if copies:
        print(_copies_text(copies))
    if args.dry_run:
        p = planning.plan(cells, Path(args.results_dir), run_id, nodes, retry)
        for cell in cells:
            why = p.reasons.get(cell.fingerprint) or planning.unsupported_reason(cell, nodes)
            print(
                f"{cell.cell_id} repeat {cell.repeat} epochs {cell.epochs} fingerprint {cell.fingerprint}"
                + (f"  [unsupported here: {why}]" if why else "")
            )
        print(estimate.plan_text(p.eta(), p.skipped, p.unsupported))
        if auto:
            print(auto.text())
        print(f"{len(cells)} cells in suite {name} ({settings['order']} order); nothing run (--dry-run)")
        return 0
    from bench.run import data

    data_dir = str(data.locate(args.data_dir))  # fail once, before any cell, when MNIST cannot be had
    if any(cell.pretrained for cell in cells):
        from bench.run import weights

        weights.ensure_resnet18()  # likewise for pretrained weights: cached, downloaded, or one clear error
    price = cost.resolve(settings["price"], settings["price_plan"], settings["price_per_hour"], cells[0].backend)
    run_dir = Path(args.results_dir) / run_id
    lock = runlock.hold(run_dir, host, args.wait) if nodes.node_rank == 0 else contextlib.nullcontext()
    gpus = hostlock.gpu_keys({cell.backend for cell in cells})
    # one bench run per run folder, from its first look at the folder to its last record; one per host (or GPU)
    with lock as waited, hostlock.hold_host(run_id, gpus, args.wait, args.share_host) as (waited_host, _):
        if waited or waited_host:  # the host while the other run ran is not the host now
            check = contention.HostCheck()
        check.finish()  # warns, naming the busiest other processes, when the host is busy
        status = sweep.sweep(
            cells, Path(args.results_dir), run_id, data_dir, settings["order"], settings["order_seed"], nodes, price,
            retry=retry, auto=auto,
        )  # fmt: skip
    # interrupted: stop now, `bench report` can follow; the other nodes of a run leave the report to node 0
    if status != 130 and not args.no_report and nodes.node_rank == 0:
        try:
            cmd_report(args)
        except (ValueError, OSError) as e:  # the records are safe: the run's status is theirs, not the report's
            print(
                f"bench: warning: the closing report failed ({_reason(e)}); `bench report` writes it", file=sys.stderr
            )
    return status


def cmd_report(args: argparse.Namespace) -> int:
    from bench import report

    out = report.write(
        Path(args.results_dir), args.baseline, getattr(args, "strict", False), getattr(args, "include_unquiet", False)
    )
    print(f"report: {out}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.report import export

    results = Path(args.results_dir)
    out = Path(args.out) if args.out else results / f"export-{args.export_format}"
    print(f"export: {export.write(results, args.export_format, out, args.include_unquiet)}")
    return 0


def _threshold(value: str) -> float:
    """``10%`` or ``0.1`` → 0.1: a slowdown in (0%, 100%), written as a percentage or as a fraction below 1 (a bare
    10 could mean 10% or 1000%, and nan, inf or a negative number would switch the gate off)."""
    try:
        number = spec_settings.fraction(value)
    except (ValueError, argparse.ArgumentTypeError):  # not a number, or one of 1 or more without its %
        number = math.nan
    if not 0 < number < 1:  # false for nan too
        raise argparse.ArgumentTypeError(f"{value!r}: a slowdown between 0% and 100%, e.g. 10% (or 0.1)")
    return number


def cmd_compare(args: argparse.Namespace) -> int:
    from bench.report import compare

    a, b = Path(args.a), Path(args.b)
    result = compare.compare(
        a,
        b,
        compare.parse_filters(args.a_where),
        compare.parse_filters(args.b_where),
        args.fail_slower,
        args.strict,
        args.include_unquiet,
    )
    out = Path(args.out) if args.out else (b if b.is_dir() else b.parent) / "compare"
    return compare.finish(result, out, args.allow_missing)


def cmd_compare_micro(args: argparse.Namespace) -> int:
    from bench.report import compare

    result = compare.compare_micro(
        Path(args.storage), args.runs, spec_settings.csv(args.baseline or ""), args.fail_slower
    )
    if result is None:
        print(f"no earlier runs under {args.storage}: the newest {args.runs} are the baseline of the next comparison")
        return 0
    return compare.finish(result, Path(args.out) if args.out else None)


def _run_args(args: argparse.Namespace) -> list[str]:
    """The ``bench run`` options after a scheduler command's ``--``."""
    return args.run_args[1:] if args.run_args[:1] == ["--"] else args.run_args


def cmd_slurm(args: argparse.Namespace) -> int:
    from bench import records
    from bench.cluster import slurm

    run_args = _run_args(args)
    run = parser().parse_args(["run", *run_args])  # bad run options fail here, not in the job
    build_cells(run)
    if run.run_id:
        records.check_run_id(run.run_id)
    results = Path(run.results_dir).resolve()
    script = slurm.render(
        run_args, args.nodes, args.ntasks_per_node, args.sbatch, log=str(results / "slurm-%j.out"),
        image=args.image, results=results, docker=args.docker, docker_flags=args.docker_flag,
    )  # fmt: skip
    if args.print:
        print(script, end="")
        return 0
    return slurm.submit(script, results, args.wait)


def cmd_k8s(args: argparse.Namespace) -> int:
    from bench import records
    from bench.cluster import k8s
    from bench.records import files

    run_args = _run_args(args)
    build_cells(parser().parse_args(["run", *run_args]))  # bad run options fail here, not in the pods
    job = k8s.trainjob(args.name, args.image, run_args, args.nodes, args.gpus_per_node, args.results_claim)
    records.check_run_id(args.name)  # the run id in every pod
    text = k8s.render(job)
    if args.out:
        files.own_file(Path(args.out), text, k8s.HEADER)
        print(f"TrainJob written to {args.out}: kubectl apply -f {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from bench import backends
    from bench.plan import backends as spec_backends
    from bench.plan import cost, suite, workloads

    print("suites:     " + ", ".join(suite.suite_names()) + " (or auto, or a path to a .toml file)")
    print("workloads:  " + ", ".join(workloads.WORKLOADS))
    print("precisions: " + ", ".join(precision.PRECISIONS))
    print("modes:      " + ", ".join(spec_settings.MODES) + " (docs/methodology.md#execution-modes)")
    print("inputs:     " + ", ".join(spec_settings.INPUTS))
    print("backends:   " + ", ".join(spec_backends.BACKENDS) + f" (detected here: {backends.detect()})")
    print(
        "prices:     list prices per node-hour (bench/plan/prices.toml; suite setting price, or --price/"
        "--price-per-hour)"
    )
    for entry, e in cost.table().items():
        spot = e.get("spot_usd_per_hour")
        what = f"{e['accelerator_count']}x {e['accelerator']}" if e["accelerator_count"] else e["accelerator"]
        print(
            f"  {entry}: {what}, on-demand ${e['on_demand_usd_per_hour']:,.2f}/h"
            + (f", spot ${spot:,.2f}/h" if spot is not None else "")
            + f" (retrieved {e['retrieved']})"
        )
    return 0


INCLUDE_UNQUIET = (
    "compare the repeats not measured on a quiet host too, busy or undetermined (default: flagged and left out of "
    "speedups)"
)
STRICT = "stop at a record that fails its schema (default: leave it out, warn, and list it in the report)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="find or download MNIST, validate it, build the cached derived forms")
    d.add_argument("--data-dir", help="folder with the four MNIST .gz files (default: $BENCH_DATA_DIR)")
    d.add_argument("--png", action="store_true", help="also build the mnist_png folders (fastai workload)")
    d.set_defaults(func=cmd_data)

    w = sub.add_parser("weights", help="find or download the pretrained resnet18 weights (torch hub cache)")
    w.set_defaults(func=cmd_weights)

    r = sub.add_parser("run", help="run a suite: one subprocess per cell, records appended, resumable")
    r.add_argument("--suite", default="auto", help="packaged suite name, a .toml path, or auto (default)")
    for key, setting in SETTINGS.items():  # the settings' own options (bench.plan.settings)
        if setting.flag and setting.parse is None:  # a switch: absent means "the suite's value", not false
            r.add_argument(setting.flag, dest=key, action="store_const", const=setting.switch, help=setting.help)
        elif setting.flag:
            r.add_argument(setting.flag, dest=key, type=setting.parse, help=setting.help)
    r.add_argument(
        "--nnodes", type=int, help="the nodes this run spans: `bench run` on each (default: SLURM's, Kubeflow's or 1)"
    )
    r.add_argument("--node-rank", type=int, help="this node's rank, 0 to nnodes-1 (node 0 writes the records)")
    r.add_argument("--rdzv-endpoint", help="HOST:PORT on node 0 where the nodes meet (that port and the next one)")
    r.add_argument("--data-dir", default=os.environ.get("BENCH_DATA_DIR"))
    r.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    r.add_argument("--run-id", help="folder under the results dir (default: <suite>-<host>; same id resumes)")
    r.add_argument("--dry-run", action="store_true", help="list the cells and what is unsupported here")
    r.add_argument(
        "--wait", action="store_true", help="wait for another bench run holding this run folder or host to end"
    )
    r.add_argument(
        "--retry",
        type=_statuses,
        metavar="STATUSES",
        help=f"run recorded cells of these statuses again (any of {','.join(RETRYABLE)}); the new record supersedes",
    )
    r.add_argument(
        "--share-host",
        action="store_true",
        help="run although another bench run holds this host (no cell of either run is then quiet)",
    )
    r.add_argument("--include-unquiet", "--include-busy", action="store_true", help=INCLUDE_UNQUIET)
    r.add_argument("--no-report", action="store_true", help="do not write the report at the end")
    r.add_argument("--baseline", default="cpu/fp32", help="the report's speedup baseline as backend/precision")
    r.set_defaults(func=cmd_run)

    rep = sub.add_parser("report", help="merge every records.jsonl under the results dir into a report")
    rep.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    rep.add_argument("--baseline", default="cpu/fp32", help="speedup baseline as backend/precision")
    rep.add_argument("--strict", action="store_true", help=STRICT)
    rep.add_argument("--include-unquiet", "--include-busy", action="store_true", help=INCLUDE_UNQUIET)
    rep.set_defaults(func=cmd_report)

    ex = sub.add_parser("export", help="records as MLPerf-style event logs (mllog) or the Bencher Metric Format (bmf)")
    ex.add_argument("--format", required=True, choices=("bmf", "mllog"), dest="export_format")
    ex.add_argument("--results-dir", default=str(DEFAULT_RESULTS))
    ex.add_argument("--out", help="a folder of bench's own (default: RESULTS_DIR/export-FORMAT)")
    ex.add_argument("--include-unquiet", "--include-busy", action="store_true", help=INCLUDE_UNQUIET)
    ex.set_defaults(func=cmd_export)

    c = sub.add_parser(
        "compare",
        help="B against A: matched cells with speedup, 95%% interval and flag; exits 1 on a significant slowdown",
    )
    c.add_argument("a", help="results folder, run folder or records.jsonl (the baseline side)")
    c.add_argument("b", help="results folder, run folder or records.jsonl (may be the same as A, with --a/--b)")
    c.add_argument("--a", dest="a_where", action="append", metavar="KEY=VALUE", help="select A's records (repeatable)")
    c.add_argument("--b", dest="b_where", action="append", metavar="KEY=VALUE", help="select B's records (repeatable)")
    c.add_argument(
        "--fail-slower", type=_threshold, default=0.1, help="exit 1 when significantly slower by more (default 10%%)"
    )
    c.add_argument("--out", help="folder for compare.md and compare.html (default: <B>/compare)")
    c.add_argument("--strict", action="store_true", help=STRICT)
    c.add_argument("--include-unquiet", "--include-busy", action="store_true", help=INCLUDE_UNQUIET)
    c.add_argument("--allow-missing", action="store_true",
                   help="pass although a cell ok in A failed, timed out, diverged or has no record in B")  # fmt: skip
    c.set_defaults(func=cmd_compare)

    cm = sub.add_parser("compare-micro", help="the newest saved micro-benchmark runs against the ones before them")
    cm.add_argument("storage", help="pytest-benchmark storage folder (results/micro/<host>-<backend>)")
    cm.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    cm.add_argument("--baseline", help="comma-separated run numbers to compare against (default: the runs before)")
    cm.add_argument("--fail-slower", type=_threshold, default=0.1, help="as for compare (default 10%%)")
    cm.add_argument("--out", help="folder for compare.md and compare.html (default: none)")
    cm.set_defaults(func=cmd_compare_micro)

    sl = sub.add_parser(
        "slurm",
        help="run a suite as a SLURM job (sbatch, then srun: bench run on every task)",
        description="bench slurm [options] -- <bench run options>: one task per node runs `bench run`; node 0 "
        "writes the records. Unless the run options say --nodes, every cell spans all the job's tasks.",
    )
    sl.add_argument("--nodes", type=int, default=1, help="SLURM nodes (default 1)")
    sl.add_argument(
        "--ntasks-per-node", type=int, default=1, help="tasks, each a node of the run, per node (default 1)"
    )
    sl.add_argument(
        "--sbatch", action="append", metavar="OPTION", help="an #SBATCH line, e.g. --sbatch=--gpus-per-node=8"
    )
    sl.add_argument("--image", help="run bench in this image on every task (docker run, host network)")
    sl.add_argument("--docker", default="docker", help="the Docker client for --image (default docker)")
    sl.add_argument(
        "--docker-flag", action="append", help="a docker run flag for --image, e.g. --docker-flag=--gpus=all"
    )
    sl.add_argument("--print", action="store_true", help="print the job script, submit nothing")
    sl.add_argument(
        "--wait", action="store_true", help="wait for the job to end (sbatch --wait) and exit with its status"
    )
    sl.add_argument(
        "run_args", nargs=argparse.REMAINDER, help="-- then bench run's options (--suite, --results-dir, ...)"
    )
    sl.set_defaults(func=cmd_slurm)

    k = sub.add_parser(
        "k8s",
        help="a Kubeflow Trainer TrainJob that runs a suite on N GPU nodes of a Kubernetes cluster",
        description="bench k8s [options] -- <bench run options>: prints the TrainJob (docs/gpu.md#kubernetes).",
    )
    k.add_argument("--name", default="bench", help="the TrainJob's name, also the run id (default bench)")
    k.add_argument("--image", default="bench:cuda", help="the CUDA image, as the cluster pulls it (default bench:cuda)")
    k.add_argument("--nodes", type=int, default=1, help="nodes (pods), default 1")
    k.add_argument("--gpus-per-node", type=int, default=1, help="GPUs each pod gets (nvidia.com/gpu), default 1")
    k.add_argument("--results-claim", default="bench-results", help="PersistentVolumeClaim mounted at /results")
    k.add_argument("--out", help="write the manifest to this file instead of stdout")
    k.add_argument("run_args", nargs=argparse.REMAINDER, help="-- then bench run's options (--suite, --devices, ...)")
    k.set_defaults(func=cmd_k8s)

    sub.add_parser("list", help="list suites, workloads, precisions, backends").set_defaults(func=cmd_list)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as e:  # bad input of every kind (bench.errors), a folder it cannot write: one line
        print(f"bench: error: {shown(_reason(e), keep=chr(10))}", file=sys.stderr)
        return 2


def _reason(e: Exception) -> str:
    """An error as one line: an OSError names its file and what the system said."""
    if not (isinstance(e, OSError) and e.strerror):
        return str(e)
    text = f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    if e.errno in (errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        text += " (check the folder: a file there, or no write access?)"
    elif e.errno == errno.ELOOP:
        text += " (a symbolic link there: bench writes through none; remove it)"
    return text


def entry() -> None:
    """The ``bench`` command (and ``python -m bench``): ``main``, then out without tearing the interpreter down."""
    process.run(main)
