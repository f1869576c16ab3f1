"""The environment every record carries: host, CPU, accelerator, software versions, git commit, container."""

from __future__ import annotations

import contextlib
import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path

from bench.plan import allocator
from bench.run.isa import cpu_isa, cpu_model

PACKAGES = (
    "torch", "torchvision", "pytorch-lightning", "fastai", "torch-xla", "torch-tpu", "libtpu", "numpy", "pandas",
    "tensorboard",
)  # fmt: skip


def _git_commit() -> str | None:
    if os.environ.get("BENCH_GIT_COMMIT"):  # set by the images, which carry no .git
        return os.environ["BENCH_GIT_COMMIT"]
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if sha.returncode != 0:
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def version(package: str) -> str | None:
    """The installed version of ``package``, or None where it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _versions() -> dict[str, str | None]:
    return {name: version(name) for name in PACKAGES}


# The environments with a lock of their own, by the package that marks them: torch_xla 2.9.0 (its last release) needs
# exactly torch 2.9.0, older than the CPU and CUDA lock's (constraints.txt).
OWN_LOCKS = {"torch-xla": "constraints-xla.txt"}


def lock_file(versions: dict[str, str | None]) -> Path:
    """The lock this environment was made from (the Makefile's setup targets and the images install with it)."""
    name = next((lock for package, lock in OWN_LOCKS.items() if versions.get(package)), "constraints.txt")
    return Path(__file__).resolve().parent.parent / name


def lock_differences(versions: dict[str, str | None]) -> dict[str, str]:
    """The named packages whose installed version is not the lock's (``lock_file``), as "installed (lock X)": a
    machine that could not install the lock (a lent GPU machine with its own torch) says so in every record."""
    lock = lock_file(versions)
    if not lock.is_file():
        return {}
    pins = dict(
        line.split("==", 1) for line in lock.read_text().splitlines() if "==" in line and not line.startswith("#")
    )
    pins = {name.lower().replace("_", "-"): version.strip() for name, version in pins.items()}
    return {
        name: f"{installed} (lock {pins[name]})"
        for name, installed in versions.items()
        if installed and name in pins and installed.split("+")[0] != pins[name].split("+")[0]
    }


def host() -> str:
    """This machine's name in records (BENCH_HOST names it where the hostname does not, e.g. in a container)."""
    name = os.environ.get("BENCH_HOST") or socket.gethostname()
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # bytes no UTF-8 decodes: U+FFFD


def cpufreq() -> dict[str, str | bool | None]:
    """The governor and whether turbo (boost) may run, as pyperf records them; None where the kernel does not say
    (a VM has no cpufreq)."""

    def read(path: str) -> str | None:
        with contextlib.suppress(OSError):
            return Path(path).read_text().strip()
        return None

    governor = read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    no_turbo = read("/sys/devices/system/cpu/intel_pstate/no_turbo")  # intel_pstate: 1 = turbo off
    boost = read("/sys/devices/system/cpu/cpufreq/boost")  # acpi-cpufreq, amd-pstate: 1 = boost on
    turbo = (no_turbo == "0") if no_turbo is not None else (boost == "1") if boost is not None else None
    return {"governor": governor, "turbo": turbo}


def collect(backend, allocator_name: str | None = None) -> dict:
    """Everything about where and how a cell ran. ``backend`` adds its device details; ``allocator_name`` is the
    allocator the runner put in force for the process (bench.plan.allocator)."""
    return {
        "host": host(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_isa(),  # what explains a CPU's reduced-precision results (bench.run.isa.ISA_FLAGS)
        "cpufreq": cpufreq(),  # the clock's policy; its frequency over the span is the contention section's
        "python": platform.python_version(),
        "packages": (versions := _versions()),
        "lock_differences": lock_differences(versions),
        "git_commit": _git_commit(),
        "container_image": os.environ.get("BENCH_IMAGE"),
        "container_image_digest": os.environ.get("BENCH_IMAGE_DIGEST"),
        "in_container": os.path.exists("/.dockerenv"),
        "allocator": allocator.describe(allocator_name),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device_name": backend.device_name() if backend.available() else None,
        "backend": backend.env(),
    }
