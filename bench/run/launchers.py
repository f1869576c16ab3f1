"""What starts a cell's processes, from its worker: one launcher object per name bench.plan.launcher gives a cell
(``in-process``, ``torchrun``, ``xla-spawn``), chosen once (``of``), each behind one call, ``run(job, cell_file,
rank)``, that ends with every rank's ``rank(index, cell_file)`` (bench.run.worker.train_rank) done. Whether a cell
trains data-parallel, what its workload refuses of that, and the record's ``distributed`` section are asked of it too.

torchrun is the one contract for a cell of several processes on cpu and cuda: one process per device on each of the
cell's nodes. The worker of such a cell (``python -m bench.run.worker cell.json``) runs torchrun in-process
(``torch.distributed.run``, what the ``torchrun`` command runs), which starts the ranks as ``python -m
bench.run.worker cell.json`` again with torchrun's environment (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT,
bench.run.ddp). One node: a standalone rendezvous on a free local port. Several: torchrun's static rendezvous at the
endpoint the runner gives each cell (bench.cluster), so that node ranks are the ones the scheduler assigned and
global rank 0, which writes the record, is on node 0. No restarts: a rank that fails or is killed ends the cell,
torchrun stops the others, and the cell's ``result.json`` names the rank (the runner turns it into a ``failed``
record and goes on). torch_xla starts its ranks itself (the backend's ``spawn``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path

from bench import backends as implementations
from bench.plan import backends
from bench.plan import launcher as names
from bench.plan.launcher import inside_torchrun, world
from bench.records import files
from bench.run import process

MONITOR_S = "0.5"  # how often torchrun looks at its ranks: a failed rank ends the cell within this
# What torchrun (or a scheduler's runtime that starts `bench run` with torchrun) puts in a process's environment
TORCHRUN_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                 "ROLE_NAME", "ROLE_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")  # fmt: skip


def worker_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a cell's worker: without torchrun's variables, since a `bench run` that a runtime started under
    torchrun must not hand its own rank on, or a single-process cell would take itself for a rank of a bigger world,
    and torchrun takes a default for every option from PET_<OPTION> (Kubeflow Trainer sets them for `bench run`);
    with the device-backend autoload the parent held back (bench.run.process.hold_device_backends)."""
    kept = {k: v for k, v in env.items() if k not in TORCHRUN_VARS and not k.startswith(("TORCHELASTIC_", "PET_"))}
    return process.device_backends(kept)


def arguments(job, cell_file: Path) -> list[str]:
    """torchrun's command line for the cell's ranks (what ``torchrun`` would be given on this node)."""
    cell = job.cell
    args = ["--nnodes", str(cell.nodes), "--nproc-per-node", str(cell.devices), "--max-restarts", "0"]
    args += ["--monitor-interval", MONITOR_S]
    if not cell.multinode:
        args.append("--standalone")
    else:
        host, _, port = job.rendezvous.rpartition(":")
        args += ["--rdzv-backend", "static", "--node-rank", str(job.node_rank)]
        args += ["--master-addr", host, "--master-port", port]
    return [*args, "--module", "bench.run.worker", str(cell_file)]


def run_torchrun(job, cell_file: Path) -> int:
    """Start the cell's ranks on this node and wait for them; on a failure, write the cell's result naming the
    failed ranks (the first observed failure first). Returns the exit status."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if backends.get(job.cell.backend).shares_cores and "OMP_NUM_THREADS" not in os.environ:
        # torchrun would give each rank 1 thread; the CPU's cores shared out is what a user would set
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        os.environ["OMP_NUM_THREADS"] = str(max(1, cores // job.cell.devices))
    try:
        torchrun.run(torchrun.parse_args(arguments(job, cell_file)))
    except ChildFailedError as e:
        _write_failure(job, cell_file.parent, e.failures)
        return 1
    if job.node_rank != 0:
        node_done(cell_file.parent)
    return 0


def node_done(cell_dir: Path) -> None:
    """On a node other than node 0 no rank 0 writes the cell's result: this node's part went well. A result a rank
    of this node wrote is never replaced (on a TPU pod slice the writer is whichever process PJRT numbers 0)."""
    write_first(cell_dir / "result.json", {"status": "ok", "reason": None})


def _write_failure(job, cell_dir: Path, failures: dict) -> None:
    """The cell's result.json: rank 0's own sections when it wrote them, status failed, and a reason that names
    every failed rank, those killed by a signal first (a rank whose peer vanished fails after it, in a collective,
    or is stopped by torchrun)."""
    path = cell_dir / "result.json"
    result = json.loads(path.read_text()) if path.exists() else {}

    # SIGTERM last of the signals: it is torchrun stopping the ranks that were left, within the same second (its
    # timestamps' grain) as the kill that failed the cell.
    def order(item: tuple) -> tuple:
        rank, failure = item
        return failure.exitcode >= 0, failure.exitcode == -signal.SIGTERM, failure.timestamp, rank

    ordered = sorted(failures.items(), key=order)
    where = socket.gethostname() if not job.cell.multinode else f"node {job.node_rank} ({socket.gethostname()})"
    parts = []
    for rank, failure in ordered:
        if failure.exitcode < 0:
            what = f"killed by signal {failure.signal_name()}"
        else:
            what = _rank_reason(cell_dir, rank) or f"exited {failure.exitcode}"
        parts.append(f"rank {rank} (local rank {failure.local_rank} on {where}, pid {failure.pid}) {what}")
    world = job.cell.world_size
    result.update(status="failed", reason=f"{len(parts)} of {world} ranks failed: " + "; ".join(parts))
    write_result(path, result)


def write_result(path: Path, result: dict) -> None:
    """A cell's or a rank's ``result.json``, replaced whole: the runner never reads half of one."""
    files.replace(path, json.dumps(result, default=str, indent=1))


def write_first(path: Path, result: dict) -> bool:
    """A cell's or a rank's ``result.json`` unless one is there already: of two ranks that race, the first one's
    stays. Returns whether this one was written."""
    return files.create(path, json.dumps(result, default=str, indent=1))


def _rank_reason(cell_dir: Path, rank: int) -> str | None:
    """What a failed rank said of itself (bench.run.worker writes every rank's result)."""
    path = cell_dir / "result.json" if rank == 0 else rank_dir(cell_dir, rank) / "result.json"
    with contextlib.suppress(OSError, ValueError):
        return json.loads(path.read_text()).get("reason")
    return None


def rank_dir(cell_dir: Path, rank: int) -> Path:
    """Where a rank other than 0 keeps its files (its logs, profile and result): never beside rank 0's."""
    return cell_dir / "ranks" / str(rank)


def die_with_agent() -> None:
    """torchrun starts each rank in a session of its own, out of reach of the runner's kill of the cell's process
    group: a rank must die with its torchrun agent, even when the agent is killed outright."""
    process.die_with_parent()
    if os.getppid() == 1:  # the agent died before prctl took effect
        sys.exit(1)


RankMain = Callable[..., None]  # bench.run.worker.train_rank(index, cell_file, writer=None)


class Launcher:
    """What starts a cell's processes. ``data_parallel``: its processes train one model together."""

    name: str | None = None  # the record's ``distributed.launcher``
    data_parallel = True

    def run(self, job, cell_file: Path, rank: RankMain) -> int:
        """Start the cell's processes on this node, wait for them, and return the worker's exit status."""
        raise NotImplementedError

    def refuses(self, spec) -> str | None:
        """Why a workload (``spec``, bench.plan.workloads) cannot run under this launcher, or None."""
        if self.data_parallel and spec.single_device:
            return f"{spec.name} runs on one device only: {spec.single_device}"
        return None

    def section(self, job) -> dict:
        """The record's ``distributed`` section, as this rank sees the world."""
        return {"launcher": None, "world_size": 1, "nodes": 1, "processes_per_node": 1, "collective": None}


class InProcess(Launcher):
    """One process, the cell's worker, trains (one device on one node)."""

    data_parallel = False

    def run(self, job, cell_file: Path, rank: RankMain) -> int:
        rank(0, cell_file)
        return 0


class Torchrun(Launcher):
    """The worker runs torchrun (``run_torchrun``), which starts this module again as each rank."""

    name = names.TORCHRUN

    def run(self, job, cell_file: Path, rank: RankMain) -> int:
        if not inside_torchrun():
            return run_torchrun(job, cell_file)
        die_with_agent()
        rank(0, cell_file)
        return 0

    def section(self, job) -> dict:
        w = world()
        return {
            "launcher": self.name,
            "world_size": w.size,
            "nodes": w.nodes,
            "processes_per_node": w.local_size,
            "collective": backends.get(job.cell.backend).collective,
            "rendezvous": job.rendezvous or "standalone",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        }


class BackendSpawn(Launcher):
    """The backend starts one process per device itself (torch_xla's spawn, started before its runtime is touched);
    on a TPU pod slice every host does so, and PJRT joins them into one world whose first process writes the
    result."""

    name = names.XLA_SPAWN

    def run(self, job, cell_file: Path, rank: RankMain) -> int:
        implementations.get(job.cell.backend).spawn(rank, (cell_file,))
        if job.node_rank != 0:
            node_done(cell_file.parent)
        return 0

    def refuses(self, spec) -> str | None:
        if why := super().refuses(spec):
            return why
        if not spec.xla_data_parallel:
            return f"{spec.name} runs data-parallel under torchrun (cpu, cuda); on XLA it runs on one device"
        return None

    def section(self, job) -> dict:
        import torch_xla.runtime as xr

        return {
            "launcher": self.name,
            "world_size": xr.world_size(),
            "nodes": xr.process_count() // max(xr.local_process_count(), 1),
            "processes_per_node": xr.local_process_count(),
            "collective": backends.get(job.cell.backend).collective,
        }


LAUNCHERS = {names.IN_PROCESS: InProcess(), names.TORCHRUN: Torchrun(), names.XLA_SPAWN: BackendSpawn()}


def of(cell) -> Launcher:
    """The cell's launcher, by the name bench.plan.launcher gives it."""
    return LAUNCHERS[names.launcher(cell)]
