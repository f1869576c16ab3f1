"""A suite as a SLURM job: a batch script (sbatch) whose one job step (srun) runs ``bench run`` once per task.

Each task is one node of the run (bench.cluster reads SLURM_PROCID and SLURM_STEP_NUM_TASKS); the script exports
MASTER_ADDR (the job's first host) and MASTER_PORT (from the job id, so that two jobs on a host do not collide).
Usually one task per node, with the node's GPUs as each cell's devices; several tasks per node stand in for nodes
where a cluster has one (the tests' single-host SLURM). The script is plain text that ``--print`` shows before
anything is submitted, to be edited and given to ``sbatch`` by hand where a site needs more.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

from bench import cluster, text
from bench.records import files

HEADER = "Written by `bench slurm`"  # the script's second line: bench replaces a file only where it has it
TEMPLATE = """#!/bin/bash
# {header}: {tasks} bench run processes (tasks), one node of the run each; node 0 writes the records.
#SBATCH --job-name={job_name}
#SBATCH --nodes={nodes}
#SBATCH --ntasks-per-node={tasks_per_node}
#SBATCH --output={log}
{extra}set -euo pipefail
cd {workdir}
{setup}# Where the run's nodes meet (bench.cluster): the first host, a port from the job id (it and the next).
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))
export MASTER_ADDR MASTER_PORT
# One job step of every task; a task that fails does not cancel the others (each records or reports its cells).
srun --kill-on-bad-exit=0 {command}
"""


SBATCH_OPTION = re.compile(r"--[A-Za-z][A-Za-z0-9-]*(=[^\s\x00-\x1f\x7f]+)?")  # one #SBATCH option

# The image's way (as `make bench-cpu` runs it): host network, so that the nodes meet; the results folder mounted;
# the files written as the submitting user; the variables bench.cluster reads passed through from each task; the
# host's RAPL counters where it has them (bench.trackers.energy), as the Makefile mounts them.
DOCKER_RUN = (
    '{docker} run --rm --network host --user "$(id -u):$(id -g)" --shm-size 16g -v {results}:/results '
    "-e MASTER_ADDR -e MASTER_PORT -e SLURM_PROCID -e SLURM_STEP_NUM_TASKS -e BENCH_IMAGE_DIGEST $RAPL {flags}{image} "
)
RAPL = (  # read where the job script runs (the first node): a job's nodes are alike
    "RAPL=$([ -d /sys/devices/virtual/powercap/intel-rapl ] && "
    "echo -v /sys/devices/virtual/powercap:/zeus_sys/class/powercap:ro || true)  # the energy counters, if any\n"
)


def render(run_args: list[str], nodes: int = 1, tasks_per_node: int = 1, sbatch: list[str] | None = None,
           bench: str | None = None, workdir: Path | None = None, log: str = "bench-%j.out",
           image: str | None = None, results: Path | None = None, docker: str = "docker",
           docker_flags: list[str] | None = None) -> str:  # fmt: skip
    """The job script. ``run_args`` are ``bench run``'s; unless they say ``--nodes``, the cells span every task.
    With ``image``, each task runs ``bench run`` in that image (its entry point), writing into ``results``."""
    tasks = nodes * tasks_per_node
    if nodes < 1 or tasks_per_node < 1:
        raise ValueError("bench slurm: --nodes and --ntasks-per-node must be at least 1")
    text.plain([*run_args, *(docker_flags or []), image or "", docker, str(workdir or "")], "bench slurm")
    for opt in sbatch or []:
        if not SBATCH_OPTION.fullmatch(opt):
            raise ValueError(f"bench slurm: --sbatch {opt[:80]!r} should be one option, --name or --name=value, "
                             "without spaces or control characters (give each option its own --sbatch)")  # fmt: skip
    text.plain([*(sbatch or []), log], "bench slurm")  # what the pattern lets through: U+2028, a bidi override
    if not re.fullmatch(r"[^\s\x00-\x1f\x7f]+", log):  # an #SBATCH line is not shell: nothing can quote it
        raise ValueError(f"bench slurm: the job log {log[:80]!r} (in --results-dir) cannot hold spaces or control "
                         "characters: give --results-dir a folder without them")  # fmt: skip
    run_args = cluster.spanning(run_args, tasks)
    extra, setup = "".join(f"#SBATCH {opt}\n" for opt in sbatch or []), ""
    if image:
        text.image(image, "bench slurm --image")
        if results is None:
            raise ValueError("bench slurm --image needs the results folder to mount")
        digest = shlex.join([docker, "image", "inspect", "-f", "{{.Id}}", image])
        setup = f"BENCH_IMAGE_DIGEST=$({digest})  # the records name the image they ran in\nexport BENCH_IMAGE_DIGEST\n"
        setup += RAPL
        flags = "".join(f"{shlex.quote(f)} " for f in docker_flags or [])
        prefix = DOCKER_RUN.format(docker=shlex.quote(docker), results=shlex.quote(str(results)), flags=flags,
                                   image=shlex.quote(image))  # fmt: skip
        command = prefix + shlex.join(["run", *_results_in_container(run_args)])
    else:
        bench = bench or str(Path(sys.executable).with_name("bench"))  # this environment's, on every node
        command = shlex.join([bench, "run", *run_args])
    return TEMPLATE.format(
        header=HEADER,
        tasks=tasks,
        job_name="bench",
        nodes=nodes,
        tasks_per_node=tasks_per_node,
        log=log,
        extra=extra,
        setup=setup,
        workdir=shlex.quote(str(workdir or Path.cwd())),
        command=command,
    )


def _results_in_container(run_args: list[str]) -> list[str]:
    """``run_args`` writing into the mounted /results instead of the host folder they name."""
    return [*cluster.without(run_args, "--results-dir"), "--results-dir", "/results"]


def submit(script: str, folder: Path, wait: bool) -> int:
    """Write the script into ``folder`` and give it to sbatch (``--wait``: until the job ends, with its exit status)."""
    folder.mkdir(parents=True, exist_ok=True)  # the user's --results-dir: a link to another disk is theirs to make
    path = folder / "bench.sbatch"
    files.own_file(path, script, HEADER)
    try:
        out = subprocess.run(["sbatch", *(["--wait"] if wait else []), str(path)], text=True)
    except FileNotFoundError:
        raise ValueError("bench slurm: sbatch not found: run it on a SLURM login node, or --print the script") from None
    return out.returncode
