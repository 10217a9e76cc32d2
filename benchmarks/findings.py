"""The Markdown tables of what a finished run found: its comparisons with their verdicts
and its headline numbers with their 95% intervals, regenerated from the run folder
(results.csv and config.yaml; `ouroboros.report.markdown`).

Usage: python benchmarks/findings.py RUN_DIR [--out FILE]
Without --out the document is printed. With --out FILE it is written there, and when
FILE held an earlier version, the lines that changed are printed (stderr), so re-running
it after a change shows every finding that moved. The same run gives the same bytes.

Every number the README or docs quote about a shipped study comes from such a file,
docs/findings/<run-name>.md, e.g.:
    ouroboros run configs/scenarios-digits.yaml
    python benchmarks/findings.py runs/scenarios-digits --out docs/findings/scenarios-digits.md
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))  # this checkout's ouroboros first


def main(argv: list[str] | None = None) -> int:
    from ouroboros.api import load_run
    from ouroboros.errors import UserError
    from ouroboros.io import write_text_atomic
    from ouroboros.report.markdown import run_markdown

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a finished run folder")
    parser.add_argument("--out", help="the Markdown file to write (default: print it)")
    args = parser.parse_args(argv)
    try:
        text = run_markdown(load_run(args.run_dir))
        if args.out is None:
            sys.stdout.write(text)
            return 0
        out = Path(args.out)
        old = out.read_text(encoding="utf-8") if out.is_file() else None
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if old is not None and old != text:
        sys.stderr.writelines(difflib.unified_diff(old.splitlines(True), text.splitlines(True), str(out) + " (before)",
                                                   str(out) + " (now)", n=0))
    print(f"{out}: {'unchanged' if old == text else 'written'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
