"""``bench compare A B``: two sets of records (result folders, runs, machines, images, commits) as one table of
matched cells, B against A, each with its speedup, 95% interval and flag (bench.records.stats); and ``bench
compare-micro``: the same over saved step micro-benchmark runs. Both exit 1 when a cell is significantly slower by
more than a threshold, so that they can gate CI."""

from __future__ import annotations

import dataclasses
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.records import files, schema, stats
from bench.report import aggregate, benchmarks, document, index
from bench.report.verdicts import fmt

# What may differ between the two sides and still match: when each side has one value and they differ (two hosts,
# fp32 against bf16-mixed, eager against compile), that axis is what is compared. The workload and every setting that
# changes what is measured (aggregate.CONFIG) must always match.
AXES = tuple(a for a in aggregate.AXES if a != "workload")
FILTERABLE = ("workload", *AXES, *aggregate.CONFIG, "run_id", "commit", "image")


LOST_NOTE = (
    "These cells ran ok in A and failed, timed out or diverged in B, or have no record in B: a regression that "
    "crashes is a regression, so the comparison fails (bench compare --allow-missing lets it pass)."
)


class CompareError(ValueError):
    """Inputs that cannot be compared; the message says what to change."""


@dataclass
class Result:
    table: pd.DataFrame
    header: list[str]  # what was compared, in sentences
    regressions: list[str]  # the cells significantly slower than the threshold
    left_out: list[str] = dataclasses.field(
        default_factory=list
    )  # records that failed their schema (bench.records.schema)
    lost: list[str] = dataclasses.field(default_factory=list)  # cells ok in A that failed or are missing in B

    def document(self) -> document.Document:
        """The comparison as a page (bench.report.document): the verdict first, then what was compared, the matched
        cells and what could not be."""
        if self.regressions:
            verdict = f"{len(self.regressions)} cells are significantly slower in B: " + "; ".join(self.regressions)
        else:
            verdict = "No matched cell is significantly slower in B than the threshold."
        keys = [c for c in self.table.columns if c in FILTERABLE]
        blocks: list = [verdict, *self.header]
        blocks += document.split(self.table, keys) if len(self.table) else ["(no matched cells)"]
        if self.lost:
            blocks.append(document.Section("Cells lost in B", [LOST_NOTE, document.Lines(self.lost)]))
        if self.left_out:
            blocks.append(document.Section("Records left out", [document.Lines(self.left_out)]))
        return document.Document("Comparison", blocks)

    def markdown(self) -> str:
        return document.markdown(self.document())

    def html(self) -> str:
        return document.html_page(self.document())


def parse_filters(items: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` options into a dict; an unknown key or a missing ``=`` names the valid ones."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in FILTERABLE:
            raise CompareError(f"filter {item!r} should be KEY=VALUE with KEY one of: {', '.join(FILTERABLE)}")
        out[key] = value
    return out


def _side(path: Path, filters: dict[str, str], name: str, strict: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """One side's records as a frame, and the records left out as failing their schema."""
    try:
        df, left_out, _ = index.frame(path, strict)  # a retried cell counts once, as its newer record
    except ValueError as e:
        raise CompareError(f"{name}: {e}") from e
    df["commit"] = [((e or {}).get("git_commit") or "")[:12] or None for e in df["env"]]
    df["image"] = [(e or {}).get("container_image") for e in df["env"]]
    for key, value in filters.items():
        text = df[key].map(aggregate.norm)
        df = df[text.str.startswith(value) if key == "commit" else text == value]  # a commit by its prefix
    if df.empty:
        raise CompareError(f"{name}: no records under {path} match {filters}")
    return df, left_out


def compare(a: Path, b: Path, a_filters: dict | None = None, b_filters: dict | None = None, threshold: float = 0.1,
            strict: bool = False, include_unquiet: bool = False) -> Result:  # fmt: skip
    """B against A: the matched ok cells, each with B's throughput ÷ A's and its interval. Repeats not measured on a
    quiet host (bench.trackers.contention) are left out unless ``include_unquiet``."""
    (da, left_a), (db, left_b) = _side(a, a_filters or {}, "A", strict), _side(b, b_filters or {}, "B", strict)
    unquiet = 0 if include_unquiet else sum(int((d["unquiet"] & (d["status"] == "ok")).sum()) for d in (da, db))
    varying = []
    for c in AXES:
        va, vb = set(map(aggregate.norm, da[c])), set(map(aggregate.norm, db[c]))
        if len(va) == 1 and len(vb) == 1 and va != vb:
            varying.append((c, va.pop(), vb.pop()))
    key = [c for c in ("workload", *AXES, *aggregate.CONFIG) if c not in {v[0] for v in varying}]

    def cells(df: pd.DataFrame) -> dict[tuple, pd.DataFrame]:
        ok = df[(df["status"] == "ok") & (include_unquiet | ~df["unquiet"])]
        return {k: g for k, g in ok.groupby([ok[c].map(aggregate.norm) for c in key], sort=False)}

    ca, cb = cells(da), cells(db)
    matched = [k for k in ca if k in cb]
    lost = _lost([k for k in ca if k not in cb], db, key)
    if not matched and (not ca or not cb) and unquiet:
        raise CompareError(
            f"no cell of B matches one of A: {unquiet} ok repeats were not measured on a quiet host (busy or "
            "undetermined: the report's notes say why) and are left out; --include-unquiet compares them"
        )
    if not matched:
        raise CompareError(
            f"no cell of B matches one of A ({len(ca)} ok cells in A, {len(cb)} in B): they must share the workload "
            f"and every setting that changes what is measured{_differing(da, db)}; select each side with --a/--b "
            "KEY=VALUE"
        )
    shown = [c for c in key if len({k[key.index(c)] for k in matched}) > 1 or c == "workload"]
    ratios = {}
    for k in matched:
        ta, tb = (dict(zip(g["block"], pd.to_numeric(g["throughput_samples_per_s"]))) for g in (ca[k], cb[k]))
        ratios[k] = stats.compare(tb, ta)
    tests = stats.adjust(ratios.values())
    rows, regressions, methods = [], [], set()
    for k in matched:
        ga, gb, r = ca[k], cb[k], ratios[k]
        ta, tb = (pd.to_numeric(g["throughput_samples_per_s"]).dropna().tolist() for g in (ga, gb))
        methods.add(r.method)
        verdict, regressed = stats.gate(r, threshold)
        if regressed:
            regressions.append(f"{' '.join(k[key.index(c)] for c in shown)}: {r.text()}")
        tta_a, tta_b = (_tta(g) for g in (ga, gb))
        rows.append(
            {
                **{c: k[key.index(c)] for c in shown},
                "A samples/s (n)": f"{fmt(aggregate.median(ta))} ({len(ta)})",
                "B samples/s (n)": f"{fmt(aggregate.median(tb))} ({len(tb)})",
                "B ÷ A [95% CI]": r.text(flag=False),
                "flag": verdict,
                "A acc": fmt(aggregate.median(ga["final_accuracy"]), ".4f"),
                "B acc": fmt(aggregate.median(gb["final_accuracy"]), ".4f"),
                "A TTA s": tta_a,
                "B TTA s": tta_b,
            }
        )

    def where(filters: dict | None) -> str:
        return " where " + ", ".join(f"{k}={v}" for k, v in filters.items()) if filters else ""

    header = [
        f"A: {a}{where(a_filters)}; B: {b}{where(b_filters)}.",
        "Compared: " + ("; ".join(f"{c} {x} (A) against {y} (B)" for c, x, y in varying) or "the same cells") + ".",
        f"{len(matched)} matched cells; {len(ca) - len(matched)} only in A, {len(cb) - len(matched)} only in B.",
        "B ÷ A = the ratio of geometric mean throughputs over repeats with its 95% interval on log throughput: "
        f"{_METHODS[frozenset(methods)]} (docs/methodology.md#comparisons-intervals-and-flags). Significance is "
        f"adjusted for the {tests} cells compared (Benjamini–Hochberg, false discovery rate 5%). A cell fails the "
        f"comparison when it is significantly slower by more than {threshold:.0%}.",
    ]
    stacks = [", ".join(sorted(set(d["stack"]))) for d in (da, db)]
    header.append(f"Stack: A {stacks[0]}; B {stacks[1]}.")
    versions = aggregate.torch_versions(pd.concat([da, db]))
    if versions:
        header.append(f"WARNING: A and B ran different torch versions ({', '.join(versions)}): part of every ratio is "
                      "the stack's.")  # fmt: skip
    if unquiet:
        header.append(
            f"{unquiet} repeats not measured on a quiet host (busy or undetermined) are left out "
            "(--include-unquiet compares them)."
        )
    if lost:
        header.append(f"{len(lost)} cells ok in A failed or are missing in B (listed below).")
    left_out = list(dict.fromkeys([*left_a, *left_b]))  # A and B may be the same folder
    return Result(pd.DataFrame(rows), header, regressions, left_out, lost)


def _lost(only_a: list[tuple], db: pd.DataFrame, key: list[str]) -> list[str]:
    """Of the cells ok in A and not in B's ok ones, those that failed, timed out or diverged in B, or that B has no
    record of (unsupported in B, or measured there only on a host not quiet: not a loss)."""
    statuses: dict[tuple, set[str]] = {}
    for k, status in zip(zip(*(db[c].map(aggregate.norm) for c in key)), db["status"]):
        statuses.setdefault(k, set()).add(status)
    out = []
    for k in only_a:
        found = statuses.get(k, set())
        bad = sorted(found & set(schema.FAILED))
        if bad or not found:
            out.append(f"{' '.join(v for v in k if v != 'none')}: {', '.join(bad) if bad else 'no record'} in B")
    return out


_METHODS = {
    frozenset({"paired"}): "paired by block (the repeats of A and B ran side by side in one run)",
    frozenset({"Welch"}): "Welch's (A and B ran apart)",
    frozenset({"paired", "Welch"}): "paired by block where A and B ran side by side, else Welch's",
    frozenset(): "",
}


def _tta(g: pd.DataFrame) -> str:
    """One side's time-to-accuracy by MLPerf's rule over its ok runs (bench.records.stats.tta)."""
    return stats.tta(pd.to_numeric(g["tta_seconds"]).tolist()).text()


def _differing(da: pd.DataFrame, db: pd.DataFrame) -> str:
    """``: they differ in limit_train (A 1280; B 3840)``: the settings of aggregate.CONFIG whose values on the ok
    records of A and B have nothing in common, or ""."""
    found = []
    for c in aggregate.CONFIG:
        va, vb = (set(d.loc[d["status"] == "ok", c]) for d in (da, db))
        if va and vb and not va & vb:
            found.append(f"{c} (A {', '.join(sorted(va))}; B {', '.join(sorted(vb))})")
    return f": they differ in {', '.join(found)}" if found else ""


_RUN = re.compile(r"^(\d{4})_.*\.json$")


def micro_runs(storage: Path) -> list[Path]:
    """pytest-benchmark's saved runs under ``storage``, oldest first (their numbers count up per machine folder)."""
    if not Path(storage).is_dir():
        raise CompareError(f"{storage}: no such folder of saved micro-benchmark runs; run make bench-micro first")
    runs = files.find(Path(storage), lambda name: bool(_RUN.match(name)))
    return sorted(runs, key=lambda p: (p.parent, p.name))


def _medians(paths: list[Path]) -> dict[str, list[float]]:
    """Each benchmark's median seconds per run, read as the report reads them (benchmarks.run_file: a file or a
    benchmark that cannot be read is left out with a warning)."""
    out: dict[str, list[float]] = {}
    for path in paths:
        for b in benchmarks.run_file(path)[1]:
            out.setdefault(b["name"], []).append(b["median_s"])
    return out


def compare_micro(storage: Path, runs: int, baseline: list[str] | None = None, threshold: float = 0.1):
    """The newest ``runs`` saved micro-benchmark runs against the ``runs`` before them (or the runs numbered in
    ``baseline``): per benchmark, the speed ratio (inverse of the medians) with its interval. None when there is no
    earlier run yet."""
    if runs < 1:
        raise CompareError(f"--runs {runs}: compare at least 1 run a side")
    saved = micro_runs(storage)
    new = saved[-runs:]
    if baseline:
        base = [p for p in saved if p.name[:4] in {n.zfill(4) for n in baseline}]
        if not base:
            raise CompareError(f"no saved run numbered {', '.join(baseline)} under {storage}")
    else:
        base = saved[:-runs][-runs:]
    if not base:
        return None
    ma, mb = _medians(base), _medians(new)
    rows, regressions = [], []
    ratios = {name: stats.ratio([1 / m for m in mb[name]], [1 / m for m in ma[name]]) for name in mb if name in ma}
    tests = stats.adjust(ratios.values())
    for name, r in ratios.items():
        verdict, regressed = stats.gate(r, threshold)
        if regressed:
            regressions.append(f"{name}: {r.text()}")
        rows.append(
            {
                "benchmark": name,
                "baseline median ms (runs)": f"{fmt(aggregate.median(ma[name]) * 1e3, ',.3f')} ({len(ma[name])})",
                "new median ms (runs)": f"{fmt(aggregate.median(mb[name]) * 1e3, ',.3f')} ({len(mb[name])})",
                "speed new ÷ baseline [95% CI]": r.text(flag=False),
                "flag": verdict,
            }
        )
    header = [
        f"Baseline: runs {', '.join(p.name[:4] for p in base)}; new: runs {', '.join(p.name[:4] for p in new)} "
        f"under {storage}.",
        "Speed = 1 / the median step time of each run; the ratio of geometric means over runs with Welch's 95% "
        f"interval (docs/methodology.md#comparisons-intervals-and-flags), significance adjusted for the {tests} "
        "benchmarks compared (Benjamini–Hochberg, false discovery rate 5%). A benchmark fails when significantly "
        f"slower by more than {threshold:.0%}.",
    ]
    return Result(pd.DataFrame(rows), header, regressions)


def finish(result: Result, out: Path | None, allow_missing: bool = False) -> int:
    """Print the table, write compare.md and compare.html into ``out``, and return the exit status: 1 where a cell
    is significantly slower than the threshold, or (unless ``allow_missing``) lost in B."""
    print(result.markdown())
    if out is not None:
        with files.output(out, ("compare.md", "compare.html")) as staging:
            (staging / "compare.md").write_text(result.markdown())
            (staging / "compare.html").write_text(result.html())
        print(f"written: {out / 'compare.md'}, {out / 'compare.html'}")
    failed = 0
    if result.regressions:
        print(
            f"Performance has regressed: {len(result.regressions)} significantly slower beyond the threshold:\n  "
            + "\n  ".join(result.regressions),
            file=sys.stderr,
        )
        failed = 1
    if result.lost:
        said = "allowed (--allow-missing)" if allow_missing else "the comparison fails (--allow-missing lets it pass)"
        print(f"{len(result.lost)} cells ok in A are lost in B, {said}:\n  " + "\n  ".join(result.lost),
              file=sys.stderr)  # fmt: skip
        failed = failed or not allow_missing
    return int(failed)
