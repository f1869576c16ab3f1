"""A report's top as a 1,280 px browser window shows it (docs/report.md): ``bench report`` into a copy of
RESULTS_DIR, then headless Chromium (the system's, through Playwright) saves the first HEIGHT pixels as OUT.png
(64 colours: small enough to commit)."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from PIL import Image
from playwright.sync_api import sync_playwright

from bench import report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("results_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--height", type=int, default=1400)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "results"
        shutil.copytree(args.results_dir, copy, ignore=shutil.ignore_patterns("report"))
        page_path = report.write(copy).parent / "report.html"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": args.height})
            page.goto(page_path.as_uri())
            page.screenshot(path=str(args.out))
            browser.close()
    Image.open(args.out).convert("RGB").quantize(64).save(args.out, optimize=True)  # small enough to commit
    print(args.out)


if __name__ == "__main__":
    main()
