"""The statistics behind every comparison: a ratio of throughputs with its 95% confidence interval and a flag, and
time-to-accuracy summarised as MLPerf Training counts it. Why these methods: docs/methodology.md#comparisons."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

LEVEL = 0.95
EQUAL = 0.03  # an interval inside ±3% of 1 reads "≈ equal": a difference too small to matter at this noise
MIN_REPEATS = 3  # fewer on either side: the interval is shown, but flagged "too few repeats"
MLPERF_TRIM = 5  # from this many runs that reached the target, drop the fastest and slowest before averaging

FLAGS = ("significant", "not significant", "≈ equal", "too few repeats")


def _clean(values: Iterable) -> list[float]:
    out = []
    for v in values:
        try:
            x = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(x) and x > 0:
            out.append(x)
    return out


@dataclass(frozen=True)
class Ratio:
    """``new`` ÷ ``base``: the ratio of geometric means, its confidence interval and what they say."""

    estimate: float | None
    low: float | None
    high: float | None
    n_new: int
    n_base: int
    flag: str

    @property
    def significant(self) -> bool:
        return self.flag == "significant"

    def text(self, unit: str = "x", spec: str = ".2f", flag: bool = True) -> str:
        """``1.23x [1.10–1.38] not significant``; the flag is left out when significant (the interval says it), or
        when ``flag`` is false (a table with a flag column of its own)."""
        if self.estimate is None:
            return ""
        out = f"{self.estimate:{spec}}{unit}"
        if self.low is not None:
            out += f" [{self.low:{spec}}–{self.high:{spec}}]"
        return out if self.significant or not flag else f"{out} {self.flag}"

    def scaled(self, factor: float) -> Ratio:
        """The same comparison against ``factor`` × base (scaling efficiency: ÷ the device count); the flag is
        decided afresh against 1, so it says whether the scaled ratio differs from 1."""
        f = [None if x is None else x * factor for x in (self.estimate, self.low, self.high)]
        return Ratio(*f, self.n_new, self.n_base, _flag(f[1], f[2], self.n_new, self.n_base))


def _flag(low: float | None, high: float | None, n_new: int, n_base: int) -> str:
    if min(n_new, n_base) < MIN_REPEATS or low is None:
        return "too few repeats"
    if low >= 1 - EQUAL and high <= 1 + EQUAL:
        return "≈ equal"
    if low <= 1 <= high:
        return "not significant"
    return "significant"


def ratio(new: Iterable, base: Iterable) -> Ratio:
    """Throughputs (or any positive rates) of repeats: ``new`` against ``base``.

    Timing noise is multiplicative, so the comparison is made on log values: the estimate is the ratio of geometric
    means, and its interval Welch's t-interval (unequal variances, Welch–Satterthwaite degrees of freedom) for the
    difference of mean logs, exponentiated. It holds at n = 3, and its width shows how few repeats there were. With
    a single repeat on either side there is no interval; with no spread on either side the interval is the point.
    """
    from scipy import stats  # imported here: the report's other paths do without scipy's import time

    a, b = [math.log(x) for x in _clean(base)], [math.log(x) for x in _clean(new)]
    if not a or not b:
        return Ratio(None, None, None, len(b), len(a), "too few repeats")
    diff = sum(b) / len(b) - sum(a) / len(a)
    low = high = None
    if len(a) >= 2 and len(b) >= 2:
        if max(a) == min(a) and max(b) == min(b):
            low = high = diff
        else:
            ci = stats.ttest_ind(b, a, equal_var=False).confidence_interval(LEVEL)
            low, high = float(ci.low), float(ci.high)
    e = [None if x is None else math.exp(x) for x in (diff, low, high)]
    return Ratio(e[0], e[1], e[2], len(b), len(a), _flag(e[1], e[2], len(b), len(a)))


def spread(values: Iterable) -> float | None:
    """How far the 95% interval of the geometric mean of ``values`` (throughputs of repeats) reaches either side of
    it, relative: exp(t × sd / √n) − 1 on log values, as ``ratio`` computes its intervals. None below two values."""
    from scipy import stats

    logs = [math.log(x) for x in _clean(values)]
    if len(logs) < 2:
        return None
    t = float(stats.t.ppf((1 + LEVEL) / 2, len(logs) - 1))
    return math.exp(t * statistics.stdev(logs) / math.sqrt(len(logs))) - 1


@dataclass(frozen=True)
class TTA:
    """Time-to-accuracy over repeats: how many reached the target, and the summary of those that did."""

    seconds: float | None
    reached: int
    runs: int
    method: str  # "mean without fastest and slowest", "median", or "" when none reached

    def text(self, spec: str = ".1f") -> str:
        if self.runs == 0:
            return ""
        head = "not reached" if self.seconds is None else format(self.seconds, spec)
        return f"{head} ({self.reached} of {self.runs} reached)"


def tta(seconds: Iterable) -> TTA:
    """MLPerf Training's rule: runs that never reached the target are counted as such (``None`` in ``seconds``) and
    left out of the summary; from ``MLPERF_TRIM`` runs that reached it, the fastest and slowest are dropped and the
    rest averaged; with fewer, the median."""
    values = list(seconds)
    reached = sorted(float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
    if not reached:
        return TTA(None, 0, len(values), "")
    if len(reached) >= MLPERF_TRIM:
        kept = reached[1:-1]
        return TTA(sum(kept) / len(kept), len(reached), len(values), "mean without fastest and slowest")
    mid = len(reached) // 2
    median = reached[mid] if len(reached) % 2 else (reached[mid - 1] + reached[mid]) / 2
    return TTA(median, len(reached), len(values), "median")
