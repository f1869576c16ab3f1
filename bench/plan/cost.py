"""Cost: the versioned list-price table (bench/plan/prices.toml), the price a run is billed at, and what a report row
cost at it: dollars to the accuracy target and per million training samples.

A price is per node and per hour: the whole VM, TPU slice or instance, every accelerator in it, as the provider bills
it. A suite names a table entry (``price``, or one entry per backend), with ``price_plan`` on-demand or spot, or
gives ``price_per_hour``; ``bench run --price`` / ``--price-plan`` / ``--price-per-hour`` override it. Each record
keeps the price it ran under (``run.price``), so a report over many machines bills each at its own. These are list
prices of the date each entry states, not anyone's bill: no discounts, commitments, storage or network.
"""

from __future__ import annotations

import datetime
import functools
import tomllib
from importlib import resources

PLANS = {"on-demand": "on_demand_usd_per_hour", "spot": "spot_usd_per_hour"}
FIELDS = {  # every field an entry must have, with its type; spot may be absent where the provider lists none
    "provider": str,
    "instance": str,
    "accelerator": str,
    "accelerator_count": int,
    "region": str,
    "on_demand_usd_per_hour": (int, float),
    "source": str,
    "retrieved": datetime.date,
}
OPTIONAL = {"spot_usd_per_hour": (int, float), "note": str}


class PriceError(ValueError):
    """A price that cannot be used; the message names the entry or setting and the fix."""


@functools.cache  # read once per process: the suite's check and the run both resolve through it
def table() -> dict[str, dict]:
    """The packaged price table's entries by name, each checked for every field and its type (read only: cached)."""
    raw = tomllib.loads(resources.files("bench.plan").joinpath("prices.toml").read_text())
    entries = raw.get("entry", {})
    for name, e in entries.items():
        for key, typ in FIELDS.items():
            if not isinstance(e.get(key), typ) or isinstance(e.get(key), bool):
                raise PriceError(f"bench/plan/prices.toml [entry.{name!r}]: {key} missing or not a {typ}")
        unknown = set(e) - set(FIELDS) - set(OPTIONAL)
        if unknown:
            raise PriceError(f"bench/plan/prices.toml [entry.{name!r}]: unknown keys {sorted(unknown)}")
    return {name: {**e, "table_version": raw["version"]} for name, e in entries.items()}


def resolve(name: str | dict | None, plan: str, per_hour: float | None, backend: str) -> dict | None:
    """The price a run's records carry, from the suite's settings (``name``: an entry, or entries by backend), or
    None when none is named. Unknown entries, plans and backends fail with the valid choices."""
    if plan not in PLANS:
        raise PriceError(f"price_plan {plan!r}; valid: {', '.join(PLANS)}")
    if per_hour is not None:
        if name is not None:
            raise PriceError("price and price_per_hour are both set; name a table entry or give a price, not both")
        if isinstance(per_hour, bool) or not per_hour > 0:
            raise PriceError(f"price_per_hour = {per_hour!r} should be a positive number of US dollars per node-hour")
        return {"usd_per_hour": float(per_hour), "plan": "given", "entry": None, "source": "price_per_hour"}
    if isinstance(name, dict):
        if backend not in name:
            raise PriceError(f"price names entries for {', '.join(name)}, not for this run's backend {backend}")
        name = name[backend]
    if name is None:
        return None
    entries = table()
    if name not in entries:
        raise PriceError(f"unknown price entry {name!r}; valid: {', '.join(entries)} (bench list), or price_per_hour")
    e = entries[name]
    usd = e.get(PLANS[plan])
    if usd is None:
        raise PriceError(
            f"{name} has no {plan} price in bench/plan/prices.toml; use price_plan on-demand or price_per_hour"
        )
    return {
        "usd_per_hour": float(usd),
        "plan": plan,
        "entry": name,
        **{k: e[k] for k in ("provider", "instance", "accelerator", "accelerator_count", "region", "source")},
        "retrieved": e["retrieved"].isoformat(),
        "table_version": e["table_version"],
    }


def label(price: dict) -> str:
    """``gcp n2-standard-8 us-central1, on-demand $0.39/h, list price of 2026-11-28`` or ``$3.20/h as given``."""
    usd = f"${price['usd_per_hour']:,.2f}/h"
    if not price.get("entry"):
        return f"{usd} as given"
    where = " ".join(str(price.get(k) or "?") for k in ("provider", "instance", "region"))
    return f"{where}, {price.get('plan')} {usd}, list price of {price.get('retrieved') or '?'}"


def to_target(tta_seconds: float | None, usd_per_hour: float, nodes: int) -> float | None:
    """Dollars to the accuracy target: TTA hours × price per node-hour × nodes (DAWNBench's cost to accuracy)."""
    return None if tta_seconds is None else tta_seconds / 3600 * usd_per_hour * nodes


def per_million(samples_per_s: float | None, usd_per_hour: float, nodes: int) -> float | None:
    """Dollars per million training samples at the steady throughput (samples/s of all the cell's nodes)."""
    return None if not samples_per_s else 1e6 / (samples_per_s * 3600) * usd_per_hour * nodes
