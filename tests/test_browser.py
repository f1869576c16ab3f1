"""report.html and compare.html in a real browser: headless Chromium (the system's, Debian's ``chromium``) driven by
Playwright. No console error; no sideways scrolling at 1,280 px; every chart loads; the support matrix is there;
sorting and filtering work. A machine without a browser skips, saying what to install."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench import cli, report
from tests.conftest import ROOT

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: make setup installs it")
pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium on this machine: apt-get install chromium (CI installs it)"
    ),
    pytest.mark.slow,  # a browser and two reports: make test, not the inner loop
]
WIDTH = 1280
RECORDS = ROOT / "tests" / "data" / "report-before"  # real records of this harness (tests/test_report.py)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def opened(browser, path: Path):
    """The page at ``path`` in a 1,280 px window, with every console error and uncaught exception it raised."""
    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    page.wait_for_load_state("load")
    return page, errors


def column(page, table, index: int) -> list[str]:
    return table.evaluate(f"t => [...t.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[{index}].textContent)")


def number(text: str) -> float:
    """The number a cell starts with: ``3,482 (3,117–3,889)``, ``0.85x [0.80–0.90]``, ``$0.25``."""
    return float(re.match(r"[\d.]+", text.replace(",", "").lstrip("$")).group())


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("browser")
    shutil.copytree(RECORDS, out / "r", ignore=shutil.ignore_patterns("REPORT.md"))
    report.write(out / "r")
    for side, n in (("a", 0), ("b", 1)):
        for kind in ("free", "workers"):
            shutil.copytree(RECORDS / f"alone-{n}-{kind}", out / side / kind)
    assert cli.main(["compare", str(out / "a"), str(out / "b"), "--out", str(out / "compare")]) in (0, 1)
    return out


def test_the_report_reads_sorts_and_filters_in_chromium(browser, folder):
    page, errors = opened(browser, folder / "r" / "report" / "report.html")
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH  # no sideways scrolling
    images = page.evaluate("[...document.images].map(i => i.complete && i.naturalWidth > 0)")
    assert len(images) >= 8 and all(images)  # a glance chart and an accuracy plot per workload
    matrix = page.locator("section:has(> h2:text-is('Support matrix')) table")
    assert matrix.count() == 1 and matrix.locator("tbody tr").count() >= 8
    assert "unsupported [1]" in matrix.inner_text()

    speed = page.locator("section:has(> h2:text-is('torch-convnet')) table").first  # its Speed table
    head = speed.locator("th", has_text="samples/s median")
    index = head.evaluate("th => th.cellIndex")
    head.click()
    up = [number(t) for t in column(page, speed, index)]
    assert len(up) >= 4 and up == sorted(up)
    head.click()
    assert [number(t) for t in column(page, speed, index)] == sorted(up, reverse=True)

    box = page.locator("section:has(> h2:text-is('torch-convnet')) input.filter").first
    box.fill("bf16")
    shown = column(page, speed, 0)
    precisions = column(page, speed, 1)
    assert 0 < len(shown) < len(up) and set(precisions) == {"bf16-mixed"}
    box.fill("")
    assert len(column(page, speed, 0)) == len(up)
    assert errors == []


def test_the_comparison_reads_and_sorts_in_chromium(browser, folder):
    page, errors = opened(browser, folder / "compare" / "compare.html")
    assert errors == []
    assert page.evaluate("document.documentElement.scrollWidth") <= WIDTH
    table = page.locator("table").first
    assert table.locator("tbody tr").count() == 4  # two workloads × two configurations
    head = table.locator("th", has_text="B ÷ A")
    index = head.evaluate("th => th.cellIndex")
    head.click()
    ratios = [number(t) for t in column(page, table, index)]
    assert ratios == sorted(ratios)
    assert errors == []
