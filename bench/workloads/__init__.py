"""Workloads, one small file each: ``run(ctx) -> dict`` (a cell's training) and ``steps(cell, backend, data_dir) ->
bench.micro.Steps`` (its step micro-benchmarks). Their static facts (defaults, framework, what each can run) are in
bench.spec.workloads, read without importing these files and their frameworks."""

from __future__ import annotations

from types import ModuleType

from bench.spec import workloads


def load(name: str) -> ModuleType:
    """The workload's module, its framework imported: for the worker and the micro-benchmarks."""
    return workloads.get(name).load()
