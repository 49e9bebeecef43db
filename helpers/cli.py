"""The ``atskit`` command (also ``python -m helpers``)."""

from __future__ import annotations

import argparse
import sys


class UsageError(Exception):
    """Bad usage or input: exit code 2, one line."""


def _run_notebooks(args: argparse.Namespace) -> int:
    """Execute every notebook in lab mode into ``--out``."""
    from helpers import runner

    runs = runner.run_all(args.out)
    if not runs:
        raise UsageError("no numbered notebooks found in notebooks/")
    failed = [r for r in runs if not r.ok]
    total = sum(r.seconds for r in runs)
    print(f"{len(runs) - len(failed)}/{len(runs)} notebooks ok in {total:.1f} s; reports in {args.out}/")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subparser per subcommand."""
    parser = argparse.ArgumentParser(prog="atskit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run-notebooks", help="execute every notebook in lab mode into a folder")
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.set_defaults(func=_run_notebooks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn errors into one line and an exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"atskit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atskit: interrupted", file=sys.stderr)
        return 130
