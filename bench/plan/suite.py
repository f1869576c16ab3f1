"""Suites (TOML) and their expansion into cells: workloads × node and device counts × precisions × modes × inputs ×
repeats.

A suite file holds top-level settings and optional per-workload overrides under ``[workload.<name>]``.
Names are validated before anything runs; an unknown key or name fails with the list of valid ones.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from bench.errors import UnknownName
from bench.plan import backends as spec_backends
from bench.plan import cost, precision, workloads
from bench.plan.cell import Cell
from bench.plan.settings import (
    AUTO_FIRST,
    AUTO_MAX,
    CELL_FIELDS,
    COUNTS,
    MAX_CELLS,
    PER_WORKLOAD,
    REPEATS,
    SETTINGS,
)

MAX_SUITE_BYTES = 1 << 20


class SuiteError(ValueError):
    """A suite file that cannot be used; the message names the file and the key."""


def suite_names() -> list[str]:
    return sorted(
        p.name.removesuffix(".toml") for p in resources.files("bench.plan.suites").iterdir() if p.name.endswith(".toml")
    )


def load(name_or_path: str) -> tuple[str, dict]:
    """Read a packaged suite by name, or a suite file by path. Returns (suite name, raw settings)."""
    path = Path(name_or_path)
    if name_or_path in suite_names():
        text = resources.files("bench.plan.suites").joinpath(f"{name_or_path}.toml").read_text()
        name = name_or_path
    elif path.suffix == ".toml" or path.exists():
        if not path.is_file():  # a FIFO or a device is no suite file either: reading one would not end
            raise SuiteError(f"suite file {path} not found (or not a regular file)")
        if path.stat().st_size > MAX_SUITE_BYTES:
            raise SuiteError(f"suite file {path} is over {MAX_SUITE_BYTES >> 10} KiB: a suite is a few lines")
        try:
            text, name = path.read_text(encoding="utf-8"), path.stem
        except UnicodeDecodeError as e:
            raise SuiteError(
                f"suite file {path} is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
            ) from e
    else:
        raise UnknownName(f"unknown suite {name_or_path!r}; valid: {', '.join(suite_names())}, or a .toml path")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SuiteError(f"suite {name_or_path}: not valid TOML: {e}") from e
    return name, raw


def _check(where: str, key: str, value: object) -> None:
    """The type of ``key``'s value, its range or valid names: one message naming the setting, the value and what it
    should be. ``where`` says where the value came from (a suite file and section, or a command-line option)."""
    setting = SETTINGS[key]
    typ, valid = setting.kind, setting.range
    # bool is an int in Python; a setting that wants a number must not accept true/false.
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is not bool):
        names = typ.__name__ if isinstance(typ, type) else "/".join(t.__name__ for t in typ)
        raise SuiteError(f"{where}: {key} = {value!r} should be a {names}")
    for entry in value if isinstance(value, list) else [value]:
        if setting.choices and entry not in setting.choices:
            what = f"{key} entry" if isinstance(value, list) else key
            raise SuiteError(f"{where}: {what} {entry!r}; valid: {', '.join(setting.choices)}")
        whole = type(entry) is int and entry in COUNTS  # not a bool
        if key in ("devices", "nodes") and not whole and not (key == "devices" and entry == "all"):
            also = ' or "all"' if key == "devices" else ""
            raise SuiteError(f"{where}: {key} entry {entry!r} should be {COUNTS.text('an integer')}{also}")
    if setting.words and isinstance(value, str) and value not in setting.words:
        words = " or ".join(f'"{w}"' for w in setting.words)
        raise SuiteError(f"{where}: {key} = {value!r} should be {valid.text()} or {words}")
    if key == "repeats" and isinstance(value, str):
        repeats_plan(value, where)
        return
    if valid is not None and isinstance(value, int | float) and value not in valid:
        kind = "an integer" if typ is int else "a number"
        why = f": {valid.why}" if valid.why else ""
        raise SuiteError(f"{where}: {key} = {value!r} should be {valid.text(kind)}{why}")


def _check_section(name: str, section: str, values: dict, options: dict[str, str]) -> None:
    """Every key and value of one section of a suite: the top level (``section`` empty), or [workload.<section>].
    ``options`` names the command-line option each key came from, if any, so that a message names the option."""
    allowed = PER_WORKLOAD if section else SETTINGS
    for key, value in values.items():
        if key not in allowed:
            if section:
                raise SuiteError(f"suite {name}: [workload.{section}] key {key!r}; valid: {', '.join(allowed)}")
            raise SuiteError(f"suite {name}: unknown key {key!r}; valid: {', '.join(allowed)}, [workload.<name>]")
        _check(options.get(key) or f"suite {name}" + (f" [workload.{section}]" if section else ""), key, value)


def repeats_plan(value: int | str, where: str = "repeats") -> tuple[int, int | None]:
    """(the repeats every cell runs, the cap of automatic repeats or None) from ``repeats``: a number, "auto" or
    "auto:MAX"."""
    if not isinstance(value, str):
        return value, None
    m = re.fullmatch(r"auto(?::(\d{1,9}))?", value)
    cap = int(m.group(1)) if m and m.group(1) else AUTO_MAX
    if not m or cap not in REPEATS:
        raise SuiteError(
            f'{where}: repeats = {value[:40]!r} should be a number >= 1, "auto" (at first {AUTO_FIRST} repeats, then '
            f"rounds of one more of every cell until each interval is within target_ci, up to {AUTO_MAX}) or "
            f'"auto:MAX" with MAX {REPEATS.text("")[1:]}'
        )
    return min(AUTO_FIRST, cap), cap


def _check_price(where: str, s: dict) -> None:
    """The price settings resolve, for every backend they name (the run resolves them for its own: bench.plan.cost)."""
    named = s["price"] if isinstance(s["price"], dict) else {"": s["price"]}
    for backend, entry in named.items():
        if backend and backend not in spec_backends.BACKENDS:
            raise SuiteError(f"{where}: price names backend {backend!r}; valid: {', '.join(spec_backends.BACKENDS)}")
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
    raw = dict(raw)
    overrides = raw.pop("workload", {})
    _check_section(name, "", raw, options or {})
    if not isinstance(overrides, dict):
        raise SuiteError(f"suite {name}: workload = {overrides!r} should be tables: [workload.<name>]")
    for w, over in overrides.items():
        workloads.get(w)
        if not isinstance(over, dict):
            raise SuiteError(f"suite {name}: workload.{w} = {over!r} should be a table: [workload.{w}]")
        _check_section(name, w, over, {})
    s = {k: raw.get(k, setting.default) for k, setting in SETTINGS.items()}
    if not s["workloads"]:
        raise SuiteError(f"suite {name}: `workloads` is required; valid: {', '.join(workloads.WORKLOADS)}")
    for w in s["workloads"]:
        workloads.get(w)
    for p in [*s["precisions"], *(p for over in overrides.values() for p in over.get("precisions", ()))]:
        precision.check(p)
    if s["backend"] != "auto":
        spec_backends.get(s["backend"])  # an unknown name: the valid ones, without importing any
    s["repeats"], s["repeats_max"] = repeats_plan(s["repeats"])
    _check_price(f"suite {name}", s)
    s["workload"] = overrides
    return s


def expand(name: str, s: dict, backend_name: str, device_count: Callable[[], int]) -> list[Cell]:
    """Cells in interleaved order: repeats are the outer loop, so repeats of one cell are interleaved with the
    others. ``order`` gives the run order. What the machine has is asked by the caller: the backend that runs (the
    suite's, or the one detected for ``auto``), and ``device_count``, called only for devices = "all" (asking a
    backend imports its framework)."""
    # dict.fromkeys: "all" may equal another entry, run it once
    counts = dict.fromkeys(max(1, device_count()) if d == "all" else d for d in s["devices"])
    each = {}  # per workload: the settings its cells hold as they are, and its axes
    for w in dict.fromkeys(s["workloads"]):
        spec = workloads.get(w)
        merged = {**s, **s["workload"].get(w, {})}
        # the suite's (or its [workload.<name>] section's) value, else the workload's default
        carried = {k: merged[k] if merged.get(k) is not None else spec.defaults.get(k) for k in CELL_FIELDS}
        if carried["lr"] == "find" and not spec.lr_finder:
            finders = [n for n, other in workloads.WORKLOADS.items() if other.lr_finder]
            raise SuiteError(
                f'suite {name}: lr = "find" needs a workload with a learning-rate finder ({", ".join(finders)}); '
                f"set it under [workload.<name>] for those, not for {w}"
            )
        carried["lr"] = carried["lr"] if carried["lr"] == "find" else float(carried["lr"])
        carried["tta_target"] = float(carried["tta_target"])
        if not spec.pretrained:  # only a workload with pretrained weights takes the setting
            carried["pretrained"] = None
        if not spec.lr_finder:  # likewise the finder's steps
            carried["lr_find_steps"] = None
        each[w] = carried, (dict.fromkeys(s["nodes"]), counts, merged["precisions"], merged["modes"], merged["inputs"])
    count = s["repeats"] * sum(math.prod(map(len, axes)) for _, axes in each.values())
    if count > MAX_CELLS:
        raise SuiteError(f"suite {name}: {count:,} cells, more than a suite may expand to ({MAX_CELLS:,}): fewer "
                         "workloads, precisions, modes, inputs, devices or repeats")  # fmt: skip
    cells = []
    for repeat in range(s["repeats"]):
        for w in s["workloads"]:
            carried, axes = each[w]
            for nodes, devices, p, mode, placement in itertools.product(*axes):
                where = {"workload": w, "backend": backend_name, "precision": p, "devices": devices, "nodes": nodes}
                how = {"repeat": repeat, "seed": s["seed"] + repeat, "input": placement, "mode": mode, "suite": name}
                cells.append(Cell(**where, **how, **carried))
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


def for_backend(backend: str) -> str:
    """The packaged suite that fits a machine whose best backend is ``backend`` (``--suite auto``)."""
    return {"cuda": "gpu", "xla": "tpu", "torchtpu": "tpu"}.get(backend, "cpu")
