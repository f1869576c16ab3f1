"""Every setting a suite may hold, declared once: its type, default, range, scope and command-line option.

Suite validation (bench.plan.suite), ``bench run``'s options and their error messages (bench.cli), and what each cell
holds (bench.plan.suite.expand) derive from ``SETTINGS``. A new setting is one entry here plus its use; one that each
cell holds (``field``) is also a ``Cell`` field of the same name (bench.plan.cell, whose fingerprint rule says
whether it is part of the cell's identity; tests/test_suite.py holds the two alike).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from bench.plan.allocator import ALLOCATORS


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
            return f"{int(x):,}" if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"

        if self.high is None:
            return f"{kind} {'>' if self.open_low else '>='} {num(self.low)}"
        return f"{kind} in {'(' if self.open_low else '['}{num(self.low)}, {num(self.high)}]"


# ---- How bench run's options are read (a range is checked with the suite's, so that messages are alike) ----------
def csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def ints(value: str) -> list[int]:
    return [int(v) for v in csv(value)]


def devices(value: str) -> list:
    return [v if v == "all" else int(v) for v in csv(value)]


def lr(value: str) -> float | str:
    return value if value == "find" else float(value)


def repeats(value: str) -> int | str:
    """``3``, ``auto`` or ``auto:MAX``."""
    return value if value.startswith("auto") else int(value)


def fraction(value: str) -> float:
    """``3%`` or ``0.03`` → 0.03; a bare number of 1 or more would be ambiguous (1%? 100%?), so it is refused."""
    if value.endswith("%"):
        return float(value[:-1]) / 100
    number = float(value)
    if number >= 1:
        raise argparse.ArgumentTypeError(f"{value!r}: write a percentage ({value}%) or a fraction below 1")
    return number


@dataclass(frozen=True)
class Setting:
    kind: type | tuple[type, ...]
    default: object = None  # None: the workload's default (bench.plan.workloads) or unset
    range: Range | None = None  # for a number: checked for suite files and options alike before any cell runs
    per_workload: bool = False  # may also be set under [workload.<name>]
    flag: str | None = None  # bench run's option that overrides it
    parse: Callable[[str], object] | None = None  # how the option's text is read; None: a switch (store_true)
    switch: object = None  # a switch's value when given (its absence means "the suite's value")
    help: str | None = None
    choices: tuple[str, ...] | None = None  # the valid values (of each entry, for a list)
    words: tuple[str, ...] = ()  # the words a number setting takes as well (lr: "find")
    field: bool = False  # a Cell field of the same name: each cell carries the value (bench.plan.suite.expand)
    # What the setting changes in a measurement, so that records differing in it are different configurations, never
    # repeats of one (the report's rows, bench compare's match): "step" what a training step costs (a framework and
    # its plain-PyTorch reference must share these to be compared), "recipe" what trains (accuracy, TTA); None: no
    # measurement (the timeout, the profile after training). Only a cell field can be one.
    key: str | None = None


# Every number has a most, far beyond any run and well inside what the harness computes with: a suite can never ask
# for a run that outlives its machine or a plan that takes minutes to make.
EPOCHS = Range(1, 10_000, why="a hundred times the longest recipe's")
BATCH = Range(1, 1 << 20)
WORKERS = Range(0, 1024)
STEPS = Range(0, 1_000_000, why="steps; an epoch of the whole training split is 1,875 at the recipes' batch")
REPEATS = Range(1, 1000)
TIMEOUT = Range(1, 30 * 86_400, why="seconds: 30 days")
LR = Range(0, 1e30, open_low=True, why="large enough to make any recipe diverge on purpose (the tests do)")
PRICE = Range(0, 1_000_000, open_low=True, why="US dollars per node-hour")
COUNTS = Range(1, 4096, why="devices or nodes of one cell")
MAX_CELLS = 10_000  # cells one suite expands to (the cpu suite: 180); more is refused with its count
SEED = Range(0, 2**31 - 1, why="numpy's seeds stop at 2**32 - 1, and a cell's seed is the suite's plus its repeat")
LR_FIND = Range(10, 100_000, why="the finder suggests from the steps between its first tenth and its last five")
# The splits' sizes bound the limits: more than a split holds would train on less than the record says.
SPLIT_SIZES = {"train": 60_000, "test": 10_000}
LIMITS = {split: Range(1, size, why=f"the {split} split's images to use (unset: all of them)")
          for split, size in SPLIT_SIZES.items()}  # fmt: skip
# repeats = "auto": the first interleaved repeats, the fewest quiet ones before the rule may stop (fewer do not keep
# the intervals covering the truth 93% of the time when the interval decides when to stop: tests/test_stats.py), and
# the cap
AUTO_FIRST, AUTO_MAX = 5, 10
INPUTS = (
    "loader",
    "device",
)  # where batches come from: the seed's DataLoader, or data on the device (bench.run.inputs)
ORDERS = ("interleaved", "random")
MODES = ("eager", "compile", "graphs")  # how the training step executes (bench.run.adapters)

S = Setting
SETTINGS: dict[str, Setting] = {
    "description": S(str, ""),
    "backend": S(str, "auto", flag="--device", parse=str,
                 help="backend: cpu, cuda, xla, torchtpu (default: the suite's, auto-detected)"),
    "workloads": S(list, flag="--workload", parse=csv, help="comma-separated workloads (overrides the suite)"),
    "precisions": S(list, ["fp32"], per_workload=True, flag="--precision", parse=csv,
                    help="comma-separated precisions"),
    "devices": S(list, [1], flag="--devices", parse=devices,
                 help="comma-separated device counts per node (processes on a CPU), or all"),
    # nodes a cell spans: more than 1 needs `bench run` on each node (bench.cluster)
    "nodes": S(list, [1], flag="--nodes", parse=ints,
               help="comma-separated node counts of the cells (default 1; see --nnodes)"),
    "inputs": S(list, ["loader"], per_workload=True, flag="--input", parse=csv, choices=INPUTS,
                help="comma-separated inputs: loader (the seed's DataLoader), device"),
    "modes": S(list, ["eager"], per_workload=True, flag="--mode", parse=csv, choices=MODES,
               help="comma-separated execution modes: eager (the seed), compile, graphs"),
    # a number, or "auto" / "auto:MAX": AUTO_FIRST repeats, then rounds of one more of every configuration until each
    # one's interval is within target_ci, up to MAX (default AUTO_MAX) (bench.run.auto)
    "repeats": S((int, str), 1, REPEATS, flag="--repeats", parse=repeats,
                 help="repeats of every cell, or auto[:MAX]: 5, then rounds of one more repeat of every cell until "
                 "each 95%% interval is within --target-ci, up to MAX (default 10)"),
    "target_ci": S((int, float), 0.05, Range(0, 1, open_low=True), flag="--target-ci", parse=fraction,
                   help="--repeats auto: the interval's half-width to reach (default 5%%)"),
    "order": S(str, "interleaved", flag="--order", parse=str, choices=ORDERS,
               help="cells within each repeat: interleaved (as the suite lists them, default) or random (shuffled, "
               "seeded)"),
    "order_seed": S(int, 0, SEED, flag="--order-seed", parse=int,
                    help="the seed of --order random (default 0: the same order every run)"),
    "seed": S(int, 0, SEED),
    "epochs": S(int, None, EPOCHS, per_workload=True, flag="--epochs", parse=int,
                help="epochs of every cell (default: the suite's, else each workload's)", field=True, key="recipe"),
    "batch_size": S(int, None, BATCH, per_workload=True, field=True, key="step"),
    # unset: the whole split
    "limit_train": S(int, None, LIMITS["train"], per_workload=True, flag="--limit-train", parse=int,
                     help="train on the first N training images", field=True, key="step"),
    "limit_test": S(int, None, LIMITS["test"], per_workload=True, field=True, key="recipe"),
    "num_workers": S(int, None, WORKERS, per_workload=True, flag="--num-workers", parse=int,
                     help="DataLoader worker processes", field=True, key="step"),
    # DataLoader settings users tune; persistent_workers acts with num_workers > 0
    "pin_memory": S(bool, False, per_workload=True, field=True, key="step"),
    "persistent_workers": S(bool, True, per_workload=True, field=True, key="step"),
    # a number, or "find": the workload's finder picks it
    "lr": S((int, float, str), None, LR, per_workload=True, flag="--lr", parse=lr, words=("find",),
            help='learning rate, or "find" (the workload\'s learning-rate finder picks it)', field=True,
            key="recipe"),
    # workloads that fine-tune pretrained weights; false trains from random init
    "pretrained": S(bool, None, per_workload=True, flag="--no-pretrained", switch=False,
                    help="train from random initialisation (no pretrained weights)", field=True, key="recipe"),
    # steps of the workload's learning-rate finder (fastai's lr_find num_it)
    "lr_find_steps": S(int, None, LR_FIND, per_workload=True, field=True, key="recipe"),
    "tta_target": S((int, float), 0.99, Range(0, 1, open_low=True), per_workload=True, field=True, key="recipe"),
    "stop_at_target": S(bool, False, per_workload=True, field=True, key="recipe"),
    "warmup_steps": S(int, 50, STEPS, per_workload=True, field=True, key="step"),
    "profile_steps": S(int, 30, STEPS, per_workload=True, flag="--profile-steps", parse=int, field=True,
                       help="steps profiled after training (default 30; 0: no profile)"),  # bench.trackers.profile
    "timeout_s": S(int, 3600, TIMEOUT, per_workload=True, field=True),
    "allocator": S(str, "auto", flag="--allocator", parse=str, help=", ".join(ALLOCATORS), choices=ALLOCATORS,
                   field=True, key="step"),
    # run precisions the CPU only emulates (bf16 without oneDNN kernels: 6-35x slower than fp32), labelled emulated
    "allow_emulated": S(bool, False, flag="--allow-emulated", switch=True,
                        help="run precisions this CPU only emulates (bf16 without bf16 kernels: slow), labelled "
                        "emulated", field=True),
    # what a node-hour costs, for the report's $ columns (bench.plan.cost): an entry of bench/plan/prices.toml, or one
    # per backend ({cpu = "...", cuda = "..."}), at its on-demand or spot list price; or a price of your own
    "price": S((str, dict), flag="--price", parse=str,
               help="bill each node-hour at this entry of the price table (bench list: prices)"),
    "price_plan": S(str, "on-demand", flag="--price-plan", parse=str,
                    help="the entry's on-demand (default) or spot list price"),
    "price_per_hour": S((int, float), None, PRICE, flag="--price-per-hour", parse=float,
                        help="bill each node-hour at this many US dollars instead"),
}  # fmt: skip
PER_WORKLOAD = tuple(key for key, s in SETTINGS.items() if s.per_workload)
CELL_FIELDS = tuple(key for key, s in SETTINGS.items() if s.field)
# The configuration key beyond the axes (workload, hardware, precision, mode, input, ...): what a row holds once.
CONFIG_KEY = tuple(key for key, s in SETTINGS.items() if s.key)
STEP_KEY = tuple(key for key, s in SETTINGS.items() if s.key == "step")
KEY_KINDS = {
    "step": "what a training step costs (throughput)",
    "recipe": "what trains and how it is scored (accuracy, TTA)",
}


def key_table() -> str:
    """The settings of the configuration key as a Markdown table (docs/methodology.md holds it; a test keeps the two
    alike)."""
    rows = [f"| `{k}` | {KEY_KINDS[SETTINGS[k].key]} |" for k in CONFIG_KEY]
    return "\n".join(["| setting | changes |", "|---|---|", *rows])
