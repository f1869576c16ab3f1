"""The statistics behind every comparison: a ratio of throughputs with its 95% confidence interval (paired by block
where the repeats were run side by side, Welch's otherwise), flags adjusted for the number of comparisons made
together (Benjamini–Hochberg), the stopping rule of ``repeats = auto``, and time-to-accuracy as MLPerf Training
counts it. Why these methods: docs/methodology.md#comparisons-intervals-and-flags."""

from __future__ import annotations

import math
import statistics
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass

from bench.plan.settings import AUTO_FIRST

LEVEL = 0.95
EQUAL = 0.03  # an interval inside ±3% of 1 reads "≈ equal": a difference too small to matter at this noise
MIN_REPEATS = 3  # fewer on either side: the interval is shown, but flagged "too few repeats"
ADJUSTMENT = "Benjamini–Hochberg"

FLAGS = ("significant", "not significant", "≈ equal", "too few repeats", "not significant after BH")

Sample = Mapping[Hashable, float]  # a value per block (run, repeat): values of one block were measured side by side


def _clean(values: Iterable) -> list[float]:
    out = []
    for v in values:
        if type(v) is not float:  # a float as it is (a row's samples hold thousands); anything else converted
            try:
                v = float(v)
            except (TypeError, ValueError):
                continue
        if math.isfinite(v) and v > 0:
            out.append(v)
    return out


def _t(dof: float) -> float:
    # scipy.special's Student t functions, not scipy.stats.t: the same values at a fiftieth of the cost per call (a
    # report makes one per comparison); imported here, as the report's other paths do without scipy's import time
    from scipy.special import stdtrit

    return float(stdtrit(dof, (1 + LEVEL) / 2))


@dataclass
class Ratio:
    """``new`` ÷ ``base``: the ratio of geometric means, its confidence interval and what they say. ``se`` and ``dof``
    are those of the difference of mean logs (None below two values a side); ``p`` the two-sided p-value against
    ``null`` (1, or the linear-scaling line); ``method`` "paired" (per-block log ratios) or "Welch"."""

    estimate: float | None
    low: float | None
    high: float | None
    n_new: int
    n_base: int
    flag: str
    method: str = "Welch"
    se: float | None = None
    dof: float | None = None
    p: float | None = None

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

    def __str__(self) -> str:
        return self.text()

    def scaled(self, factor: float) -> Ratio:
        """The same comparison against ``factor`` × base (scaling efficiency: ÷ the device count); the flag and p are
        decided afresh against 1, so they say whether the scaled ratio differs from 1."""
        f = [None if x is None else x * factor for x in (self.estimate, self.low, self.high)]
        return _judged(f[0], f[1], f[2], self.n_new, self.n_base, self.method, self.se, self.dof)


def _p(log_estimate: float, se: float | None, dof: float | None) -> float | None:
    """Two-sided p-value of a difference of mean logs against 0 (a t statistic); None without an interval."""
    from scipy.special import stdtr

    if se is None or dof is None:
        return None
    if se == 0:
        return 0.0 if log_estimate else 1.0
    return float(2 * stdtr(dof, -abs(log_estimate) / se))


def _judged(estimate, low, high, n_new: int, n_base: int, method: str, se, dof) -> Ratio:
    p = None if estimate is None else _p(math.log(estimate), se, dof)
    return Ratio(estimate, low, high, n_new, n_base, _flag(low, high, n_new, n_base), method, se, dof, p)


def _flag(low: float | None, high: float | None, n_new: int, n_base: int) -> str:
    if min(n_new, n_base) < MIN_REPEATS or low is None:
        return "too few repeats"
    if low >= 1 - EQUAL and high <= 1 + EQUAL:
        return "≈ equal"
    if low <= 1 <= high:
        return "not significant"
    return "significant"


def _interval(diff: float, se: float | None, dof: float | None) -> tuple[float | None, float | None]:
    if se is None:
        return None, None
    half = _t(dof) * se if se else 0.0
    return math.exp(diff - half), math.exp(diff + half)


def ratio(new: Iterable, base: Iterable) -> Ratio:
    """Throughputs (or any positive rates) of repeats, not run in blocks: ``new`` against ``base``.

    Timing noise is multiplicative, so the comparison is made on log values: the estimate is the ratio of geometric
    means, and its interval Welch's t-interval (unequal variances, Welch–Satterthwaite degrees of freedom) for the
    difference of mean logs, exponentiated. It holds at n = 3, and its width shows how few repeats there were. With
    a single repeat on either side there is no interval; with no spread on either side the interval is the point.
    """
    a, b = [math.log(x) for x in _clean(base)], [math.log(x) for x in _clean(new)]
    if not a or not b:
        return Ratio(None, None, None, len(b), len(a), "too few repeats")
    diff = statistics.fmean(b) - statistics.fmean(a)
    se = dof = None
    if len(a) >= 2 and len(b) >= 2:
        va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
        se = math.sqrt(va + vb)
        dof = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se else len(a) + len(b) - 2
    low, high = _interval(diff, se, dof)
    return _judged(math.exp(diff), low, high, len(b), len(a), "Welch", se, dof)


def paired(new: Sample, base: Sample) -> Ratio:
    """Repeats run in blocks (one repeat of every configuration per round, bench.run.auto): ``new`` against ``base``
    over the blocks both have. The estimate is the geometric mean of the per-block ratios and its interval the
    t-interval of the mean log ratio: whatever slowed a whole block (the host drifting, a neighbour) cancels in
    its ratio."""
    a, b = dict(_sample(base)), dict(_sample(new))
    shared = [k for k in b if k in a]
    d = [math.log(b[k]) - math.log(a[k]) for k in shared]
    if not d:
        return Ratio(None, None, None, 0, 0, "too few repeats", "paired")
    diff = statistics.fmean(d)
    se = dof = None
    if len(d) >= 2:
        se, dof = statistics.stdev(d) / math.sqrt(len(d)), len(d) - 1
    low, high = _interval(diff, se, dof)
    return _judged(math.exp(diff), low, high, len(d), len(d), "paired", se, dof)


def _sample(values: Sample) -> list[tuple[Hashable, float]]:
    return [(k, float(v)) for k, v in values.items() if _clean([v])]


def compare(new: Sample, base: Sample) -> Ratio:
    """The comparison of two samples of repeats: paired where at least two blocks hold both (the repeats ran side
    by side, ``paired``), else Welch's over all of them (records merged from separate runs, ``ratio``)."""
    shared = {k for k, _ in _sample(new)} & {k for k, _ in _sample(base)}
    if len(shared) >= 2:
        return paired(new, base)
    return ratio(new.values(), base.values())


def adjust(ratios: Iterable[Ratio | None], rate: float = 1 - LEVEL) -> int:
    """Benjamini–Hochberg over the comparisons made together (a report, a ``bench compare``): a difference whose own
    interval excludes 1 stays "significant" only where its adjusted p-value is below ``rate`` (the false discovery
    rate), else it reads "not significant after BH". Changes the ratios in place; returns how many were judged."""
    from scipy.stats import false_discovery_control

    tests: dict[tuple, list[Ratio]] = {}  # one comparison shown twice (a speedup that is also vs fp32) is one test
    for r in ratios:
        if r is not None and r.p is not None and r.flag != "too few repeats":
            tests.setdefault((r.method, r.estimate, r.se, r.dof, r.n_new, r.n_base), []).append(r)
    if not tests:
        return 0
    for same, q in zip(tests.values(), false_discovery_control([same[0].p for same in tests.values()], method="bh")):
        for r in same:
            if r.flag == "significant" and q >= rate:
                r.flag = "not significant after BH"
    return len(tests)


def spread(values: Iterable) -> float | None:
    """How far the 95% interval of the geometric mean of ``values`` (throughputs of repeats) reaches either side of
    it, relative: exp(t × sd / √n) − 1 on log values, as ``ratio`` computes its intervals. None below two values."""
    logs = [math.log(x) for x in _clean(values)]
    if len(logs) < 2:
        return None
    return math.exp(_t(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))) - 1


def gate(r: Ratio, threshold: float) -> tuple[str, bool]:
    """A comparison's flag, and whether it fails the gate (``bench compare``, the report's history): significantly
    slower by more than ``threshold`` (significance and a noise threshold together, as criterion and asv gate)."""
    if not r.significant:
        return r.flag, False
    if r.estimate < 1 - threshold:
        return f"SLOWER by more than {threshold:.0%}", True
    return ("faster" if r.estimate > 1 else "slower"), False


def interval(values: Iterable) -> tuple[float, float | None, float | None] | None:
    """The geometric mean of ``values`` (throughputs of repeats) with its 95% interval (``spread``: None below two
    values); None with no value."""
    clean = _clean(values)
    if not clean:
        return None
    mean, half = math.exp(statistics.fmean(math.log(x) for x in clean)), spread(clean)
    return (mean, None, None) if half is None else (mean, mean / (1 + half), mean * (1 + half))


def settled(samples: Iterable[Iterable], target: float) -> bool:
    """``repeats = auto``'s stopping rule, over the quiet repeats of every configuration run in the same blocks:
    stop once each has at least ``AUTO_FIRST`` and its 95% interval (``spread``) reaches no further than ``target``
    either side. Deciding on the configurations' own intervals, not on the ratios reported, and no earlier than
    ``AUTO_FIRST``, keeps the ratios' intervals covering the truth (tests/test_stats.py)."""
    for values in samples:
        values = _clean(values)
        if len(values) < AUTO_FIRST or (s := spread(values)) is None or s > target:
            return False
    return True


@dataclass(frozen=True)
class TTA:
    """Time-to-accuracy over repeats as MLPerf Training scores it, with how many reached the target; ``why`` there
    is no score where there is none."""

    seconds: float | None
    reached: int
    runs: int
    method: str  # "mean without fastest and slowest", "mean", or "" without a score
    why: str = ""

    def text(self, spec: str = ".1f") -> str:
        if self.runs == 0:
            return ""
        count = f"{self.reached} of {self.runs} reached"
        if self.seconds is not None:
            return f"{self.seconds:{spec}} ({count})"
        return f"no TTA ({self.why}; {count})" if self.why else f"not reached ({count})"


def tta(seconds: Iterable) -> TTA:
    """MLPerf Training's rule, word for word: of N runs, drop the fastest and the slowest and average the rest; one
    run that did not reach the target (``None``: never reached, diverged, timed out) may be the slowest dropped;
    more than one and there is no result. With fewer than 3 runs nothing can be dropped: the mean, where every run
    reached the target."""
    values = list(seconds)
    reached = sorted(float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v)))
    missed, n = len(values) - len(reached), len(values)
    if n == 0:
        return TTA(None, 0, 0, "")
    if missed > 1:
        return TTA(None, len(reached), n, "", f"{missed} not reached")
    if n >= 3:
        kept = reached[1:] if missed else reached[1:-1]  # the run that missed is the slowest, dropped
        return TTA(statistics.fmean(kept), len(reached), n, "mean without fastest and slowest")
    if missed:
        return TTA(None, len(reached), n, "", "1 not reached, and under 3 runs none can be dropped" if n > 1 else "")
    return TTA(statistics.fmean(reached), len(reached), n, "mean")
