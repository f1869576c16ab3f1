"""A cell: one benchmark configuration × one repeat, everything its worker needs; and its identity.

A cell's **fingerprint** identifies what it measures: a hash of its fields but those that change no measurement
(``NOT_IDENTITY``). A field added after cells were first recorded is left out at the values every cell had before it
existed (``BEFORE``), so that every earlier record keeps matching its cell (tests/test_schema.py checks the
committed ones); set to anything else, it is part of the hash. That rule, stated once here, is the whole of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

# How the book's recipe (the seed) runs: a cell with these values keeps the name it had before the setting existed.
RECIPE = {"mode": "eager", "input": "loader", "pin_memory": False, "persistent_workers": True}
# fastai's lr_find default, the seed's
LR_FIND_STEPS = 100
NOT_IDENTITY = ("suite", "timeout_s", "profile_steps")  # the suite's name, the timeout, the profile after training
BEFORE = {
    **{key: (value,) for key, value in RECIPE.items()},
    "allow_emulated": (False,),  # when set, a cell recorded unsupported without it runs on resume
    "nodes": (1,),  # one node is what every cell was before nodes existed
    "lr_find_steps": (None, LR_FIND_STEPS),  # None: the workload has no finder
}


@dataclass(frozen=True)
class Cell:
    """One benchmark configuration × one repeat: everything the worker needs, and nothing else."""

    workload: str
    backend: str
    precision: str
    devices: int
    repeat: int
    seed: int
    epochs: int
    batch_size: int
    limit_train: int | None
    limit_test: int | None
    num_workers: int
    pin_memory: bool
    persistent_workers: bool
    lr: float | str  # "find": chosen by the workload's learning-rate finder
    pretrained: bool | None  # None: the workload has no pretrained weights
    tta_target: float
    stop_at_target: bool
    warmup_steps: int
    profile_steps: int
    input: str  # "loader" (the seed's DataLoader) or "device" (bench.run.inputs.DeviceBatches)
    mode: str  # "eager" (the seed), "compile" or "graphs" (bench.run.adapters)
    allocator: str
    timeout_s: int
    suite: str
    allow_emulated: bool = False  # run a precision the CPU only emulates (bench.backends.cpu), labelled so
    nodes: int = 1  # nodes the cell spans, each with ``devices`` devices (bench.run.launchers)
    lr_find_steps: int | None = None  # None: the workload has no learning-rate finder

    @property
    def world_size(self) -> int:
        return self.nodes * self.devices

    @property
    def multinode(self) -> bool:
        """Whether the cell spans several nodes (each runs `bench run`; node 0 records it, bench.cluster)."""
        return self.nodes > 1

    @property
    def layout(self) -> str:
        """Where the cell runs: ``cpux2``, or ``2xcudax8`` for two nodes of eight GPUs."""
        return (f"{self.nodes}x" if self.multinode else "") + f"{self.backend}x{self.devices}"

    @property
    def cell_id(self) -> str:
        return f"{self.workload}/{self.layout}/{self.precision}" + self._variant("/")

    @property
    def dirname(self) -> str:
        return f"{self.workload}.{self.layout}.{self.precision}{self._variant('.')}.r{self.repeat}"

    def _variant(self, sep: str) -> str:
        """The mode and input where they differ from the seed's (the seed's own cells keep the names they had)."""
        return "".join(f"{sep}{key}-{getattr(self, key)}" for key in ("mode", "input") if not self.as_recipe(key))

    def as_recipe(self, key: str) -> bool:
        """Whether this cell runs ``key`` (mode, input, ...) as the seed does."""
        return getattr(self, key) == RECIPE[key]

    @property
    def fingerprint(self) -> str:
        """Identifies what is measured: same fingerprint, same measurement (suite name, timeout and the profile
        window after training aside)."""
        # every field is flat: asdict's deep copy (most of the cost of a record's check on read) would copy nothing
        fields = ((f.name, getattr(self, f.name)) for f in dataclasses.fields(self))
        config = {k: v for k, v in fields if k not in NOT_IDENTITY and not (k in BEFORE and v in BEFORE[k])}
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def configuration(self) -> str:
        """The fingerprint of the configuration without the repeat: what the repeats of a cell share (they differ in
        the seed only)."""
        return dataclasses.replace(self, repeat=0, seed=0).fingerprint

    def again(self, repeat: int) -> Cell:
        """The same configuration as repeat ``repeat``, with that repeat's seed."""
        return dataclasses.replace(self, repeat=repeat, seed=self.seed - self.repeat + repeat)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Cell:
        return cls(**json.loads(text))
