"""Workloads, one small file each: ``run(ctx) -> dict`` (a cell's training) and ``steps(cell, backend, data_dir) ->
bench.run.micro.Steps`` (its step micro-benchmarks). Their static facts (defaults, framework, what each can run) are in
bench.plan.workloads, read without importing these files and their frameworks."""

from __future__ import annotations

from types import ModuleType

from bench.plan import workloads


def outcome(diverged: str | None, probe, train_samples: int, test_samples: int, batch_size: int, world_size: int,
            lr_used: float, weights: dict, **more: object) -> dict:  # fmt: skip
    """A workload's result for the record's ``outcome`` (and its status): ``diverged`` says why training diverged
    (None: it did not); the precision that ran, from ``probe`` (bench.plan.precision.Probe); what it trained and tested
    on; its batch per device and over the world; the learning rate and weights it used; ``more``, its own fields."""
    return {
        "status": "diverged" if diverged else "ok",
        "reason": diverged,
        "precision_effective": probe.effective(),
        "precision_evidence": vars(probe.observed) if probe.observed else None,
        "train_samples": train_samples,
        "test_samples": test_samples,
        "global_batch_size": batch_size * world_size,
        "per_device_batch_size": batch_size,
        "lr_used": lr_used,
        "weights": weights,
        **more,
    }


def load(name: str) -> ModuleType:
    """The workload's module, its framework imported: for the worker and the micro-benchmarks."""
    return workloads.get(name).load()
