"""The `ouroboros` command line. Bad input -> one `error:` line on stderr, exit code 2."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ouroboros.errors import UserError


def _run_study(config, out: Path, quiet: bool) -> int:
    from ouroboros.runner import check_run_dir
    from ouroboros.studies import loop

    out = check_run_dir(out)
    start = time.perf_counter()
    summary = loop.run(config, out, progress=not quiet)
    if not quiet:
        from ouroboros.report.results import read_results

        header, table = loop.summary_table(read_results(out / "results.csv"))
        widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(header)]
        print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
        for r in table:
            print("  ".join(c.rjust(w) for c, w in zip(r, widths)))
        ran = len(summary["timings"])
        print(f"done in {time.perf_counter() - start:.1f}s ({ran} stages run, the rest cached): "
              f"{out}/results.csv, {out}/plots/, {out}/samples/, {out}/report.html", file=sys.stderr)
    return 0


def cmd_demo(args) -> int:
    from ouroboros.config import load_config

    config = load_config(None, args.set, base={"name": "demo"})
    return _run_study(config, Path(args.out), args.quiet)


def cmd_run(args) -> int:
    from ouroboros.config import load_config

    config = load_config(args.config, args.set)
    out = Path(args.out) if args.out else Path("runs") / config.name
    return _run_study(config, out, args.quiet)


def cmd_report(args) -> int:
    from ouroboros.studies import loop

    print(loop.report(Path(args.run_dir)))
    return 0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, like every other input error
        print(f"error: {message} (see ouroboros --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ouroboros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p):
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. --set loop.generations=3 (repeatable)")
        p.add_argument("--quiet", action="store_true", help="no progress bar or summary")

    p = sub.add_parser("demo", help="the feedback-loop study on the embedded digits (what `make demo` runs)")
    p.add_argument("--out", default="runs/demo", help="run folder (default: runs/demo)")
    common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run or resume a study config")
    p.add_argument("config", help="study config (YAML), e.g. configs/loop-digits.yaml")
    p.add_argument("--out", help="run folder (default: runs/<name>)")
    p.add_argument("--executor", choices=["local"], default="local", help="where stages run (default: local)")
    common(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("report", help="redraw plots and report.html of a run folder from its results.csv")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished stages are cached; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
