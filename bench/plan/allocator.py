"""The CPU memory allocator is part of the environment: chosen deliberately for every cell, and recorded.

glibc's dynamic mmap threshold decides whether each step's activations come from reused heap or from fresh,
page-faulting mmaps; that alone moved the same CPU loop between ~2,200 and ~4,200 samples/s on a 2-core
machine. The allocator is set in the cell subprocess's environment before it starts (LD_PRELOAD and glibc's
tunables only act at process start).
"""

from __future__ import annotations

import os

ALLOCATORS = ("auto", "tcmalloc", "jemalloc", "glibc-tuned", "glibc")
# Fixed thresholds switch off glibc's dynamic adjustment. 32 MiB is the largest mmap threshold glibc accepts
# on 64-bit; the trim threshold keeps freed heap for reuse instead of returning it to the OS every step.
GLIBC_TUNED = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
# tcmalloc's minimal build has no heap-profiler hooks: the allocator alone.
_LIBS = {"tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"), "jemalloc": ("libjemalloc.so.2",)}
_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib", "/usr/local/lib", "/lib")


def find_library(kind: str) -> str | None:
    for name in _LIBS[kind]:
        for folder in _LIB_DIRS:
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return None


def child_env(setting: str) -> tuple[dict[str, str], str]:
    """Environment variables that put ``setting`` in force in a new process, and the resolved name."""
    if setting not in ALLOCATORS:
        raise ValueError(f"unknown allocator {setting!r}; valid: {', '.join(ALLOCATORS)}")
    order = ("tcmalloc", "jemalloc", "glibc-tuned") if setting == "auto" else (setting,)
    for kind in order:
        if kind in _LIBS:
            lib = find_library(kind)
            if lib:
                return {"LD_PRELOAD": lib}, kind
            if setting != "auto":
                pkg = "libgoogle-perftools4" if kind == "tcmalloc" else "libjemalloc2"
                raise ValueError(f"allocator {kind} requested but not installed (apt-get install {pkg})")
        elif kind == "glibc-tuned":
            return dict(GLIBC_TUNED), kind
        else:
            return {}, "glibc"
    raise AssertionError("unreachable")


def describe(name: str | None = None) -> dict:
    """What the current process actually runs with, for the record's env; ``name`` is the allocator the runner
    put in force (None: a process the harness did not start)."""
    preload = os.environ.get("LD_PRELOAD", "")
    mapped = None
    if preload:
        try:
            with open("/proc/self/maps") as f:
                mapped = os.path.basename(preload) in f.read()
        except OSError:
            pass
    return {
        "name": name or "glibc (not set by the harness)",
        "ld_preload": preload or None,
        "preload_mapped": mapped,
        **{k: os.environ[k] for k in sorted(os.environ) if k.startswith("MALLOC_")},
    }
