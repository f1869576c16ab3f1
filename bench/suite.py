"""Suites (TOML) and their expansion into cells: workloads × node and device counts × precisions × modes × inputs ×
repeats.

A suite file holds top-level settings and optional per-workload overrides under ``[workload.<name>]``.
Names are validated before anything runs; an unknown key or name fails with the list of valid ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import random
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import NamedTuple

from bench import allocator, backends, cost, precision, workloads
from bench.precision import UnknownName


# Every setting a suite may hold: its type, its default (None: the workload's default) and, for a number, the range
# it must lie in, checked for suite files and command-line overrides alike before any cell runs (``Range``).
class Range(NamedTuple):
    """``low <= value <= high`` (``open_low``: ``low < value``; ``high`` None: unbounded), and finite; ``why`` the
    bound is where it is, when that is not plain."""

    low: float
    high: float | None = None
    open_low: bool = False
    why: str = ""

    def __contains__(self, value: object) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        above = value > self.low if self.open_low else value >= self.low
        return above and (self.high is None or value <= self.high)

    def text(self, kind: str = "a number") -> str:
        """``an integer >= 1``, ``a number in (0, 1]``: what a value of ``kind`` in this range is."""

        def num(x: float) -> str:
            return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"

        if self.high is None:
            return f"{kind} {'>' if self.open_low else '>='} {num(self.low)}"
        return f"{kind} in {'(' if self.open_low else '['}{num(self.low)}, {num(self.high)}]"


AT_LEAST_0, AT_LEAST_1 = Range(0), Range(1)
SEED = Range(0, 2**31 - 1, why="numpy's seeds stop at 2**32 - 1, and a cell's seed is the suite's plus its repeat")
SETTINGS: dict[str, tuple[type | tuple, object, Range | None]] = {
    "description": (str, "", None),
    "backend": (str, "auto", None),
    "workloads": (list, None, None),
    "precisions": (list, ["fp32"], None),
    "devices": (list, [1], None),  # devices (processes on a CPU) per node
    "nodes": (list, [1], None),  # nodes a cell spans: more than 1 needs `bench run` on each node (bench.cluster)
    "inputs": (list, ["loader"], None),  # where batches come from: the seed's DataLoader, or data on the device
    "modes": (list, ["eager"], None),  # how the training step executes: eager (the seed), compile, graphs (adapters)
    # a number, or "auto" / "auto:MAX": AUTO_FIRST repeats, then more of the cells whose interval is wider than
    # target_ci, up to MAX (default AUTO_MAX) (bench.runner.Auto)
    "repeats": ((int, str), 1, AT_LEAST_1),
    "target_ci": ((int, float), 0.05, Range(0, 1, open_low=True)),  # half-width of the 95% interval, relative
    "order": (str, "interleaved", None),  # the cells' order within each repeat: as listed, or shuffled (suite.order)
    "order_seed": (int, 0, SEED),
    "seed": (int, 0, SEED),
    "epochs": (int, None, AT_LEAST_1),
    "batch_size": (int, None, AT_LEAST_1),
    "limit_train": (int, None, None),  # 1 to the split's size (LIMITS); unset: the whole split
    "limit_test": (int, None, None),
    "num_workers": (int, None, AT_LEAST_0),
    "pin_memory": (bool, False, None),  # DataLoader settings users tune; persistent_workers acts with num_workers > 0
    "persistent_workers": (bool, True, None),
    "lr": ((int, float, str), None, Range(0, open_low=True)),  # a number, or "find": the workload's finder picks it
    "pretrained": (bool, None, None),  # workloads that fine-tune pretrained weights; false trains from random init
    # steps of the workload's learning-rate finder (fastai's lr_find num_it)
    "lr_find_steps": (
        int,
        None,
        Range(10, why="the finder suggests from the steps between its first tenth and its last five"),
    ),
    "tta_target": ((int, float), 0.99, Range(0, 1, open_low=True)),
    "stop_at_target": (bool, False, None),
    "warmup_steps": (int, 50, AT_LEAST_0),
    "profile_steps": (int, 30, AT_LEAST_0),  # steps profiled after training (bench.trackers.profile); 0: off
    "timeout_s": (int, 3600, AT_LEAST_1),
    "allocator": (str, "auto", None),
    # run precisions the CPU only emulates (bf16 without oneDNN kernels: 6-35x slower than fp32), labelled emulated
    "allow_emulated": (bool, False, None),
    # what a node-hour costs, for the report's $ columns (bench.cost): an entry of bench/prices.toml, or one per
    # backend ({cpu = "...", cuda = "..."}), at its on-demand or spot list price; or a price of your own
    "price": ((str, dict), None, None),
    "price_plan": (str, "on-demand", None),
    "price_per_hour": ((int, float), None, Range(0, open_low=True)),
}
# The splits' sizes bound the limits: more than a split holds would train on less than the record says.
LIMITS = {"limit_train": "train", "limit_test": "test"}
AUTO_FIRST, AUTO_MAX = 3, 10  # repeats = "auto": interleaved repeats before the interval decides, and the cap
PER_WORKLOAD = (
    "modes",
    "inputs",
    "epochs",
    "batch_size",
    "limit_train",
    "limit_test",
    "num_workers",
    "pin_memory",
    "persistent_workers",
    "lr",
    "pretrained",
    "lr_find_steps",
    "tta_target",
    "stop_at_target",
    "warmup_steps",
    "profile_steps",
    "timeout_s",
)


INPUTS = ("loader", "device")
ORDERS = ("interleaved", "random")
MODES = ("eager", "compile", "graphs")
# The seed's way of running: a cell with these values keeps the name and fingerprint it had before the setting existed.
SEED_WAY = {"mode": "eager", "input": "loader", "pin_memory": False, "persistent_workers": True}
# fastai's lr_find default, the seed's: fastai cells at it keep the fingerprint they had before the setting existed.
LR_FIND_STEPS = 100


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the key."""


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
    input: str  # "loader" (the seed's DataLoader) or "device" (bench.inputs.DeviceBatches)
    mode: str  # "eager" (the seed), "compile" or "graphs" (bench.adapters)
    allocator: str
    timeout_s: int
    suite: str
    allow_emulated: bool = False  # run a precision the CPU only emulates (bench.backends.cpu), labelled so
    nodes: int = 1  # nodes the cell spans, each with ``devices`` devices (bench.launch)
    lr_find_steps: int | None = None  # None: the workload has no learning-rate finder

    @property
    def world_size(self) -> int:
        return self.nodes * self.devices

    @property
    def layout(self) -> str:
        """Where the cell runs: ``cpux2``, or ``2xcudax8`` for two nodes of eight GPUs."""
        return (f"{self.nodes}x" if self.nodes > 1 else "") + f"{self.backend}x{self.devices}"

    @property
    def cell_id(self) -> str:
        return f"{self.workload}/{self.layout}/{self.precision}" + self._variant("/")

    @property
    def dirname(self) -> str:
        return f"{self.workload}.{self.layout}.{self.precision}{self._variant('.')}.r{self.repeat}"

    def _variant(self, sep: str) -> str:
        """The mode and input where they differ from the seed's (the seed's own cells keep the names they had)."""
        return "".join(f"{sep}{key}-{getattr(self, key)}" for key in ("mode", "input") if not self.seed_way(key))

    def seed_way(self, key: str) -> bool:
        """Whether this cell runs ``key`` (mode, input, ...) as the seed does."""
        return getattr(self, key) == SEED_WAY[key]

    @property
    def fingerprint(self) -> str:
        """Identifies what is measured: same fingerprint, same measurement (suite name, timeout and the profile
        window after training aside)."""
        config = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("suite", "timeout_s", "profile_steps")}
        for key in SEED_WAY:  # fingerprints of runs from before these settings still match
            if self.seed_way(key):
                del config[key]
        if not self.allow_emulated:  # likewise; when set, a cell recorded unsupported without it runs on resume
            del config["allow_emulated"]
        if self.nodes == 1:  # likewise: one node is what every cell was before nodes existed
            del config["nodes"]
        if self.lr_find_steps in (None, LR_FIND_STEPS):  # likewise
            del config["lr_find_steps"]
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


def suite_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("bench.suites").iterdir() if p.name.endswith(".toml")
    )


def load(name_or_path: str) -> tuple[str, dict]:
    """Read a packaged suite by name, or a suite file by path. Returns (suite name, raw settings)."""
    path = Path(name_or_path)
    if name_or_path in suite_names():
        text = resources.files("bench.suites").joinpath(f"{name_or_path}.toml").read_text()
        name = name_or_path
    elif path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise SuiteError(f"suite file {path} not found")
        text, name = path.read_text(), path.stem
    else:
        raise UnknownName(f"unknown suite {name_or_path!r}; valid: {', '.join(suite_names())}, or a .toml path")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"suite {name_or_path}: not valid TOML: {e}") from e
    return name, raw


def _check(where: str, key: str, value: object) -> None:
    """The type of ``key``'s value, and its range: one message naming the setting, the value and what it should be.
    ``where`` says where the value came from (a suite file and section, or a command-line option)."""
    typ, _, valid = SETTINGS[key]
    # bool is an int in Python; a setting that wants a number must not accept true/false.
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise SuiteError(f"{where}: {key} = {value!r} should be a {names}")
    if key == "lr" and isinstance(value, str) and value != "find":
        raise SuiteError(f'{where}: lr = {value!r} should be {valid.text()} or "find"')
    if key == "repeats" and isinstance(value, str):
        repeats_plan(value, where)
        return
    if key in LIMITS and value is not None:
        from bench.data import SPLITS  # the splits' sizes (numpy comes with it: only where a limit is set)

        valid = Range(1, SPLITS[LIMITS[key]][2], why=f"the {LIMITS[key]} split's images to use (unset: all of them)")
    if valid is not None and isinstance(value, int | float) and value not in valid:
        kind = "an integer" if typ is int else "a number"
        why = f": {valid.why}" if valid.why else ""
        raise SuiteError(f"{where}: {key} = {value!r} should be {valid.text(kind)}{why}")


def repeats_plan(value: int | str, where: str = "repeats") -> tuple[int, int | None]:
    """(the repeats every cell runs, the cap of automatic repeats or None) from ``repeats``: a number, "auto" or
    "auto:MAX"."""
    if not isinstance(value, str):
        return value, None
    m = re.fullmatch(r"auto(?::(\d+))?", value)
    cap = int(m.group(1)) if m and m.group(1) else AUTO_MAX
    if not m or cap < 1:
        raise SuiteError(
            f'{where}: repeats = {value!r} should be a number >= 1, "auto" (at first {AUTO_FIRST} repeats, then more '
            f'where the interval is wider than target_ci, up to {AUTO_MAX}) or "auto:MAX" with MAX >= 1'
        )
    return min(AUTO_FIRST, cap), cap


def _check_axes(where: str, s: dict) -> None:
    for key, valid in (("inputs", INPUTS), ("modes", MODES)):
        for entry in s.get(key, []):
            if entry not in valid:
                raise SuiteError(f"{where}: {key} entry {entry!r}; valid: {', '.join(valid)}")


def _check_price(where: str, s: dict) -> None:
    """The price settings resolve, for every backend they name (the run resolves them for its own: bench.cost)."""
    named = s["price"] if isinstance(s["price"], dict) else {"": s["price"]}
    for backend, entry in named.items():
        if backend and backend not in backends.BACKENDS:
            raise SuiteError(f"{where}: price names backend {backend!r}; valid: {', '.join(backends.BACKENDS)}")
        if entry is not None and not isinstance(entry, str):
            raise SuiteError(f"{where}: price.{backend} = {entry!r} should be an entry name (a str)")
        try:
            cost.resolve(entry, s["price_plan"], s["price_per_hour"], backend)
        except cost.PriceError as e:
            raise SuiteError(f"{where}: {e}") from e


def validate(name: str, raw: dict, options: dict[str, str] | None = None) -> dict:
    """Check every key, type, range and name; return the settings with defaults filled in (and ``repeats`` as the
    number every cell runs first, ``repeats_max`` the cap of automatic ones or None). ``options`` names the
    command-line option each key came from, if any, so that a message names the option."""

    def where(key: str, section: str = "") -> str:
        if key in (options or {}):
            return options[key]
        return f"suite {name}" + (f" [workload.{section}]" if section else "")

    raw = dict(raw)
    overrides = raw.pop("workload", {})
    for key, value in raw.items():
        if key not in SETTINGS:
            raise SuiteError(f"suite {name}: unknown key {key!r}; valid: {', '.join(SETTINGS)}, [workload.<name>]")
        _check(where(key), key, value)
    s = {k: raw.get(k, default) for k, (_, default, _) in SETTINGS.items()}
    if not s["workloads"]:
        raise SuiteError(f"suite {name}: `workloads` is required; valid: {', '.join(workloads.WORKLOADS)}")
    for w in s["workloads"]:
        workloads.get(w)
    for p in s["precisions"]:
        precision.check(p)
    if s["backend"] != "auto":
        backends.get(s["backend"])
    if s["allocator"] not in allocator.ALLOCATORS:
        valid = ", ".join(allocator.ALLOCATORS)
        raise SuiteError(f"{where('allocator')}: allocator {s['allocator']!r}; valid: {valid}")
    if s["order"] not in ORDERS:
        raise SuiteError(f"{where('order')}: order {s['order']!r}; valid: {', '.join(ORDERS)}")
    _check_axes(f"suite {name}", s)
    for d in s["devices"]:
        if d != "all" and not (isinstance(d, int) and not isinstance(d, bool) and d >= 1):
            raise SuiteError(f'{where("devices")}: devices entry {d!r} should be an integer >= 1 or "all"')
    for n in s["nodes"]:
        if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
            raise SuiteError(f"{where('nodes')}: nodes entry {n!r} should be an integer >= 1")
    s["repeats"], s["repeats_max"] = repeats_plan(s["repeats"])
    _check_price(f"suite {name}", s)
    if not isinstance(overrides, dict):
        raise SuiteError(f"suite {name}: workload = {overrides!r} should be tables: [workload.<name>]")
    for w, over in overrides.items():
        workloads.get(w)
        if not isinstance(over, dict):
            raise SuiteError(f"suite {name}: workload.{w} = {over!r} should be a table: [workload.{w}]")
        for key, value in over.items():
            if key not in PER_WORKLOAD:
                raise SuiteError(f"suite {name}: [workload.{w}] key {key!r}; valid: {', '.join(PER_WORKLOAD)}")
            _check(where(key, w), key, value)
        _check_axes(f"suite {name} [workload.{w}]", over)
    s["workload"] = overrides
    return s


def expand(name: str, s: dict) -> list[Cell]:
    """Cells in interleaved order: repeats are the outer loop, so repeats of one cell are interleaved with the
    others. ``order`` gives the run order."""
    backend_name = backends.detect() if s["backend"] == "auto" else s["backend"]
    backend = backends.get(backend_name)
    cells = []
    for repeat in range(s["repeats"]):
        for w in s["workloads"]:
            module = workloads.get(w)
            over = {**s, **s["workload"].get(w, {})}

            def pick(key: str, over: dict = over, module=module):
                return over[key] if over.get(key) is not None else module.DEFAULTS.get(key)

            if pick("lr") == "find" and not getattr(module, "LR_FINDER", False):
                finders = [n for n in workloads.WORKLOADS if getattr(workloads.get(n), "LR_FINDER", False)]
                raise SuiteError(
                    f'suite {name}: lr = "find" needs a workload with a learning-rate finder ({", ".join(finders)}); '
                    f"set it under [workload.<name>] for those, not for {w}"
                )
            counts = [max(1, backend.device_count()) if d == "all" else d for d in s["devices"]]
            # dict.fromkeys: "all" may equal another entry, run it once
            axes = (dict.fromkeys(s["nodes"]), dict.fromkeys(counts), s["precisions"], over["modes"], over["inputs"])
            for nodes, devices, p, mode, placement in itertools.product(*axes):
                cells.append(
                    Cell(
                        workload=w,
                        backend=backend_name,
                        precision=p,
                        devices=devices,
                        nodes=nodes,
                        repeat=repeat,
                        seed=s["seed"] + repeat,
                        epochs=pick("epochs"),
                        batch_size=pick("batch_size"),
                        limit_train=over["limit_train"],
                        limit_test=over["limit_test"],
                        num_workers=pick("num_workers"),
                        pin_memory=over["pin_memory"],
                        persistent_workers=over["persistent_workers"],
                        lr=pick("lr") if pick("lr") == "find" else float(pick("lr")),
                        # only a workload with pretrained weights (a DEFAULTS entry) takes the setting
                        pretrained=pick("pretrained") if "pretrained" in module.DEFAULTS else None,
                        lr_find_steps=pick("lr_find_steps") if getattr(module, "LR_FINDER", False) else None,
                        tta_target=float(over["tta_target"]),
                        stop_at_target=over["stop_at_target"],
                        warmup_steps=over["warmup_steps"],
                        profile_steps=over["profile_steps"],
                        input=placement,
                        mode=mode,
                        allocator=s["allocator"],
                        allow_emulated=s["allow_emulated"],
                        timeout_s=over["timeout_s"],
                        suite=name,
                    )
                )
    return cells


def collapse(cells: list[Cell]) -> tuple[list[Cell], list[Cell]]:
    """The cells with one of each fingerprint (the first, in order), and the copies left out: a cell listed twice (a
    precision or a workload given twice) is one measurement, never two repeats."""
    seen: dict[str, Cell] = {}
    copies = []
    for cell in cells:
        if cell.fingerprint in seen:
            copies.append(cell)
        else:
            seen[cell.fingerprint] = cell
    return list(seen.values()), copies


def order(cells: list[Cell], s: dict) -> list[Cell]:
    """The run order of ``expand``'s cells under the settings ``order`` and ``order_seed``.

    "random" shuffles the cells within each repeat's block, never across blocks: every repeat stays spread over
    the whole run, while slow drift (thermal, neighbours) no longer favours the cells listed first. One seeded
    generator makes it the same order on every run of the same command, which resuming relies on. A cell's
    fingerprint does not depend on where it runs."""
    if s["order"] == "interleaved":
        return list(cells)
    rng = random.Random(s["order_seed"])
    out: list[Cell] = []
    for _, block in itertools.groupby(cells, key=lambda c: c.repeat):
        block = list(block)
        rng.shuffle(block)
        out += block
    return out


def resolve_auto() -> str:
    """The packaged suite that fits this machine's hardware."""
    return {"cuda": "gpu", "xla": "tpu"}.get(backends.detect(), "cpu")
