"""``repeats = "auto"``: how many repeats a sweep runs, decided by the interval of what it measured."""

from __future__ import annotations

import dataclasses

from bench.plan.cell import Cell
from bench.plan.settings import AUTO_FIRST
from bench.records import stats
from bench.trackers import contention


@dataclasses.dataclass(frozen=True)
class Auto:
    """``repeats = "auto"``: after the first interleaved repeats, round after round, one more repeat of every
    configuration (a block: whatever slows the host slows every configuration of the round alike, and the report
    pairs them by block), until every configuration's 95% interval on throughput over its quiet repeats reaches no
    further than ``target`` either side, at least ``AUTO_FIRST`` of them, or ``cap`` repeats (as pyperf
    calibrates its runs and criterion its samples; the stopping rule and its coverage: bench.records.stats.settled)."""

    cap: int
    target: float

    def text(self) -> str:
        return (
            f"repeats = auto: then rounds of one more repeat of every configuration until each has {AUTO_FIRST} quiet "
            f"repeats and a 95% interval on samples/s within ±{self.target:.1%}, up to {self.cap} repeats"
        )

    def record(self) -> dict:
        """The record's ``run.auto``."""
        return {"target": self.target, "cap": self.cap}

    def _rounds(self, cells: list[Cell], done: dict[str, dict]) -> dict[str, list[tuple[Cell, dict]]]:
        """The configurations that take part in more rounds: every one of ``cells`` whose repeats are all ok (a
        failure is not noise, and an unsupported cell never runs), with its repeats and their records."""
        groups: dict[str, list[Cell]] = {}
        for cell in cells:
            groups.setdefault(cell.configuration, []).append(cell)
        out = {}
        for key, members in groups.items():
            recs = [done.get(c.fingerprint) for c in members]
            if all(r is not None and r.get("status") == "ok" for r in recs):
                out[key] = list(zip(members, recs))
        return out

    def more(self, cells: list[Cell], done: dict[str, dict]) -> list[tuple[Cell, str]]:
        """The next round: (the next repeat, why it runs) of every taking part, or none once the rule is met or the
        cap reached."""
        rounds = self._rounds(cells, done)
        if not rounds or self.settled(rounds) or max(len(m) for m in rounds.values()) >= self.cap:
            return []
        n = max(len(m) for m in rounds.values())
        why = f"auto: round {n + 1}, one more repeat of every configuration ({self.missing(rounds)})"
        out = []
        for members in rounds.values():
            last = max((c for c, _ in members), key=lambda c: c.repeat)
            out.append((last.again(last.repeat + 1), why))
        return out

    def settled(self, rounds: dict[str, list[tuple[Cell, dict]]]) -> bool:
        return stats.settled([_quiet_rates(members) for members in rounds.values()], self.target)

    def missing(self, rounds: dict[str, list[tuple[Cell, dict]]]) -> str:
        """What keeps the rule from being met: the configuration furthest from it."""
        worst, text = -1.0, ""
        for members in rounds.values():
            rates, cell = _quiet_rates(members), members[0][0]
            spread = stats.spread(rates)
            if len(rates) < AUTO_FIRST and worst < 0:
                worst, text = 0.0, f"{cell.cell_id}: {len(rates)} quiet repeats, fewer than {AUTO_FIRST}"
            if spread is not None and spread > self.target and spread > worst:
                worst, text = spread, f"{cell.cell_id}: ±{spread:.1%} over {len(rates)} quiet repeats"
        return text or "the rule is met"

    def end(self, cells: list[Cell], done: dict[str, dict]) -> str | None:
        """What to say when the rounds end: None when the rule was met, else that the cap came first."""
        rounds = self._rounds(cells, done)
        if not rounds or self.settled(rounds):
            return None
        return f"auto: target not reached at the cap ({self.cap} repeats): {self.missing(rounds)}"


def _quiet_rates(members: list[tuple[Cell, dict]]) -> list[float]:
    """The throughputs of the repeats measured on a quiet host (those the report compares)."""
    return [
        (r.get("timing") or {}).get("throughput_samples_per_s")
        for _, r in members
        if contention.verdict_of(r.get("contention"))[0] == "quiet"
    ]
