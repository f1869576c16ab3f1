"""The cluster: a run that spans nodes, and the schedulers' job files that start one (``slurm``, ``k8s``). This
module is where each node stands.

The nodes of a run: ``bench run`` on each node, the same suite everywhere, one rendezvous endpoint.

Where this node stands comes from the flags (``--nnodes``, ``--node-rank``, ``--rdzv-endpoint HOST:PORT``), else from
the environment a scheduler sets: Kubeflow Trainer's ``PET_NNODES``/``PET_NODE_RANK``/``PET_MASTER_ADDR``/
``PET_MASTER_PORT`` (torchrun's own variables), or a SLURM job step's ``SLURM_STEP_NUM_TASKS``/``SLURM_PROCID`` with
``MASTER_ADDR``/``MASTER_PORT`` (which ``bench slurm``'s job script exports), one task per node.

Node 0 decides what the run does. At the endpoint's port it holds a store (``torch.distributed.TCPStore``) where
it publishes the cells that span several nodes, in its order, with what it has recorded already left out; the
other nodes run exactly those, so a resumed run stays in step. After each such cell every node reports its
outcome there, and node 0's record names a failure on another node. Each cell's torchrun rendezvous takes the
next port (bench.run.launchers). Only node 0 writes records; the others keep their cells' logs under
``<run>/node<K>/``.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from dataclasses import dataclass

DEFAULT_PORT = 29500
JOIN_TIMEOUT_S = 900  # how long nodes wait for each other at the start (a scheduler starts them within minutes)
REPORT_TIMEOUT_S = 120  # how long node 0 waits for the other nodes' outcome of a cell that ended on node 0


class ClusterError(ValueError):
    """A node layout that cannot work; the message names the fix."""


@dataclass(frozen=True)
class Cluster:
    nnodes: int = 1
    node_rank: int = 0
    host: str | None = None
    port: int = DEFAULT_PORT
    source: str = "one node"

    @property
    def rendezvous(self) -> str:
        """HOST:PORT of each cell's torchrun rendezvous (the port after the store's)."""
        return f"{self.host}:{self.port + 1}"

    def unsupported(self, cell) -> str | None:
        """Why a cell cannot run on this run's nodes, or None."""
        if not cell.multinode:
            return None
        if self.nnodes == 1:
            return (
                f"a cell of {cell.nodes} nodes needs `bench run` on each node with --nnodes, --node-rank and "
                "--rdzv-endpoint (or under SLURM or Kubeflow Trainer: docs/gpu.md#several-gpus-and-nodes)"
            )
        if cell.nodes > self.nnodes:
            return f"a cell of {cell.nodes} nodes, but this run spans {self.nnodes} (--nnodes)"
        return None


ONE_NODE = Cluster()


# bench run's options as a scheduler's job passes them through (bench.cluster.slurm, bench.cluster.k8s): argparse's two
# spellings, ``--name value`` and ``--name=value``.
def option(args: list[str], name: str) -> str | None:
    """The value ``args`` give option ``name`` (the last one), if any."""
    value = None
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def without(args: list[str], name: str) -> list[str]:
    """``args`` without option ``name`` and its value."""
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == name:
            skip = True
        elif not a.startswith(name + "="):
            out.append(a)
    return out


def spanning(run_args: list[str], nodes: int) -> list[str]:
    """``bench run``'s options for a scheduler's job of ``nodes`` nodes: unless they say ``--nodes``, every cell
    spans them all."""
    if option(run_args, "--nodes") is not None:
        return run_args
    return [*run_args, "--nodes", str(nodes)]


def _int(name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ClusterError(f"{name}={value!r} should be an integer") from None


def resolve(nnodes: int | None = None, node_rank: int | None = None, endpoint: str | None = None,
            env: dict | None = None) -> Cluster:  # fmt: skip
    """This node's place: the flags where given, else a scheduler's environment, else one node."""
    env = os.environ if env is None else env
    source = "flags"
    if nnodes is None and "PET_NNODES" in env:
        source = "Kubeflow Trainer (PET_*)"
        nnodes, node_rank = _int("PET_NNODES", env["PET_NNODES"]), _int("PET_NODE_RANK", env.get("PET_NODE_RANK", "0"))
        if endpoint is None and "PET_MASTER_ADDR" in env:
            endpoint = f"{env['PET_MASTER_ADDR']}:{env.get('PET_MASTER_PORT', DEFAULT_PORT)}"
    elif nnodes is None and "SLURM_STEP_NUM_TASKS" in env and "SLURM_PROCID" in env:
        source = "SLURM"
        nnodes, node_rank = (
            _int("SLURM_STEP_NUM_TASKS", env["SLURM_STEP_NUM_TASKS"]),
            _int("SLURM_PROCID", env["SLURM_PROCID"]),
        )
        if endpoint is None and nnodes > 1:
            if "MASTER_ADDR" not in env:
                raise ClusterError(
                    "a SLURM step of several tasks needs MASTER_ADDR (and MASTER_PORT) exported: node 0's host, "
                    "as `bench slurm`'s job script does, or --rdzv-endpoint HOST:PORT"
                )
            endpoint = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT', DEFAULT_PORT)}"
    nnodes = 1 if nnodes is None else nnodes
    node_rank = 0 if node_rank is None else node_rank
    if nnodes < 1 or not 0 <= node_rank < nnodes:
        raise ClusterError(f"node rank {node_rank} of {nnodes} nodes: --node-rank must be 0 to {nnodes - 1}")
    if nnodes == 1:
        return ONE_NODE
    if not endpoint:
        raise ClusterError(
            f"a run of {nnodes} nodes needs --rdzv-endpoint HOST:PORT (node 0's address and a free port; the next "
            "port is taken too), or the environment of SLURM or Kubeflow Trainer"
        )
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host:
        raise ClusterError(f"--rdzv-endpoint {endpoint!r} should be HOST:PORT, e.g. node0.example:29500")
    return Cluster(nnodes, node_rank, host, _int("the endpoint's port", port), source)


class Sync:
    """The run's store on node 0: the cells to run, and each node's outcome of each."""

    def __init__(self, cluster: Cluster) -> None:
        from torch.distributed import TCPStore

        self.cluster = cluster
        timeout = datetime.timedelta(seconds=JOIN_TIMEOUT_S)
        try:
            self.store = TCPStore(cluster.host, cluster.port, cluster.nnodes, cluster.node_rank == 0, timeout=timeout,
                                  wait_for_workers=False)  # fmt: skip
        except (RuntimeError, OSError) as e:
            raise ClusterError(
                f"node {cluster.node_rank}: no store at {cluster.host}:{cluster.port} ({e}); node 0 must run there, "
                "with that port and the next one free"
            ) from e

    def publish(self, fingerprints: list[str]) -> None:
        self.store.set("plan", json.dumps(fingerprints))

    def plan(self) -> list[str]:
        """The cells node 0 runs across nodes, in its order (waits for node 0 to publish them)."""
        return json.loads(self.store.get("plan"))

    def report(self, fingerprint: str, status: str, reason: str | None) -> None:
        key = f"done/{fingerprint}/{self.cluster.node_rank}"
        self.store.set(key, json.dumps({"status": status, "reason": reason}))

    def reports(self, fingerprint: str, nodes: int) -> dict[int, dict]:
        """The other nodes' outcomes of a cell, as far as they come within REPORT_TIMEOUT_S."""
        keys = [f"done/{fingerprint}/{k}" for k in range(1, nodes)]
        with contextlib.suppress(RuntimeError):  # a node that never reported: its part is told as missing
            self.store.wait(keys, datetime.timedelta(seconds=REPORT_TIMEOUT_S))
        out = {}
        for k, key in enumerate(keys, 1):
            if self.store.check([key]):
                out[k] = json.loads(self.store.get(key))
        return out
