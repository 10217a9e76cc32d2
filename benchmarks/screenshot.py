"""Screenshot of a run's report, taken the way the browser test takes it (README figure).

    python benchmarks/screenshot.py RUN_DIR OUT.png [--width 1100] [--height 1700]

Writes RUN_DIR/report.html from results.csv, renders it in headless Chromium, checks
that every image loaded and that no console error appeared, and saves the top of the
page (findings and plots) as OUT.png.
"""

import argparse
import sys
from pathlib import Path

from ouroboros.report.browser import render
from ouroboros.api import report as write_report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=1700, help="at most this many pixels of the page")
    args = parser.parse_args()
    page = write_report([Path(args.run_dir)])
    seen = render(page, Path(args.out), width=args.width, max_height=args.height)
    print(f"{page}: {len(seen.images)} images, {len(seen.broken_images)} broken, "
          f"{len(seen.console_errors)} console errors; page {seen.width} x {seen.height} px -> {args.out}")
    return 1 if seen.broken_images or seen.console_errors else 0


if __name__ == "__main__":
    sys.exit(main())
