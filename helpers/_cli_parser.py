"""The ``atskit`` command line: its argparse parser (``build_parser``), the argument types and checks,
and usage errors as one line with exit code 2 (``cli`` only)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from helpers import endpoints
from helpers.kinds import KitError

Command = Callable[[argparse.Namespace], int]  # a subcommand: the parsed arguments -> the exit code


class UsageError(KitError):
    """Bad usage or input: exit code 2, one line."""


class Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit 2), like every other atskit error."""

    json_errors = False  # set by main() when --json is on the command line: the error as JSON too

    def error(self, message: str):
        """Print ``atskit: error: ...`` naming the subcommand's --help, and exit 2."""
        fail(UsageError(f"{message} (see '{self.prog} --help')"), as_json=Parser.json_errors)
        raise SystemExit(2)


def fail(message, *, as_json: bool = False) -> int:
    """Print one redacted error line (and, under --json, a JSON error object on stdout); exit code 2."""
    from helpers.redaction import redact

    text = redact(" ".join(str(message).split()) or type(message).__name__)
    print(f"atskit: error: {text}", file=sys.stderr)
    if as_json:
        kind = type(message).__name__ if isinstance(message, BaseException) else "Error"
        print(
            json.dumps({"schema": 1, "ok": False, "exit_code": 2, "error": {"kind": kind, "message": text}})
        )
    return 2


# --- argument types and checks ---------------------------------------------------------------------


def regular_file(path: str, option: str, what: str) -> None:
    """UsageError unless ``path`` is an existing regular file (a folder, FIFO or device would hang or
    mislead); ``what`` says what to pass instead."""
    import stat

    if not str(path).strip():
        raise UsageError(f"{option}: the path is empty; pass {what}")
    try:
        mode = Path(path).stat().st_mode
    except OSError:
        raise UsageError(f"{option} {path or repr(path)}: no such file; pass {what}") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{option} {path}: is a directory; pass {what}")
    if not stat.S_ISREG(mode):
        raise UsageError(f"{option} {path}: not a regular file (a pipe or device); pass {what}")


def folder(path: str | None, option: str, what: str = "a folder") -> None:
    """UsageError unless ``path`` is None, a folder, or a path a folder can be made at: an empty path
    (the current folder, silently) or a file in the way (found only after the downloads, or a device
    such as /dev/null) is refused."""
    if path is None:
        return
    if not str(path).strip():
        raise UsageError(f"{option}: the path is empty; pass {what}")
    here = Path(path)
    while not os.path.lexists(here) and here != here.parent:  # the nearest part of the path that exists
        here = here.parent
    if not here.is_dir():
        which = "it" if here == Path(path) else str(here)
        raise UsageError(f"{option} {path}: {which} is not a folder; pass {what}")


def not_empty(what: str):
    """An argparse type for a text option that must not be empty (an empty value would silently
    mean the default); ``what`` says what to give."""

    def text(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"empty; give {what}, or leave the option out")
        return value

    return text


MIN_SECONDS = 0.01  # below this no handshake or lab can finish: the value is a typo


def seconds(text: str) -> float:
    """--timeout / --duration: a finite number of seconds, from 0.01 to a day."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not MIN_SECONDS <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0 (0.01 or more) and at most 86400")
    return value


# --- the parser ------------------------------------------------------------------------------------


def build_parser(
    commands: Mapping[str, Command], *, description: str | None = None
) -> argparse.ArgumentParser:
    """The command line: one subparser per subcommand, each calling ``commands[its name]`` ('check',
    'lab serve', ...) as ``args.func``."""
    parser = Parser(prog="atskit", description=description)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "run-notebooks",
        help="execute every notebook in lab mode into a folder",
        description="Execute every notebook in lab mode (offline) into --out as .ipynb and .html, side by "
        "side; one status line per notebook; exit 1 if any fails.",
    )
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no per-notebook lines)")
    p.set_defaults(func=commands["run-notebooks"])
    p = sub.add_parser(
        "refresh-certifi",
        help="rebuild data/certifi from the package index through pip",
        description="Extend data/certifi with the certifi releases your package index has (through pip, "
        "with your pip settings); exit 1 if the index cannot be reached or a file cannot be checked.",
    )
    p.add_argument(
        "--full",
        action="store_true",
        help="download every release the index lists again (default: only new ones); releases it does "
        "not list are still kept",
    )
    p.add_argument("--cache-dir", help="keep downloaded release files here (default: ~/.cache/atskit)")
    p.add_argument("--data-dir", help="write here instead of the kit's data/certifi")
    p.add_argument("--workers", type=int, default=4, help="parallel pip downloads, 1 to 32 (default: 4)")
    p.add_argument(
        "--prune",
        action="store_true",
        help="drop releases the index does not list, naming them (default: keep them); also replaces "
        "existing data that cannot be read",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands["refresh-certifi"])
    _add_subcommands(sub, commands)
    p = sub.add_parser(
        "redact",
        help="mask keys, tokens, account ids, endpoint prefixes and home folders in files before sharing",
        epilog="example: atskit redact reports/postmortem.md --in-place",
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="text, Markdown (.md), HTML (.html) or notebook (.ipynb)"
    )
    p.add_argument(
        "--in-place",
        action="store_true",
        help="rewrite each file that changes, keeping the original as FILE.bak (secrets and all: delete it "
        "before sharing)",
    )
    p.add_argument("--json", action="store_true", help="print what changed (and the text) as JSON")
    p.set_defaults(func=commands["redact"])
    return parser


def _endpoint_options(p: argparse.ArgumentParser) -> None:
    """The endpoint options shared by check and upgrade-check."""
    p.add_argument(
        "endpoints",
        nargs="*",
        metavar="HOST[:PORT]",
        help="live endpoints to capture (port 443); HOST:PORT{IP} connects to IP and sends HOST",
    )
    p.add_argument("--endpoints-file", metavar="F", help="endpoints one per line ('#' comments allowed)")
    p.add_argument("--chain-file", action="append", metavar="PEM", help="a saved chain (repeatable)")
    p.add_argument(
        "--lab", action="store_true", help="run the offline lab in-process and check its endpoints"
    )
    p.add_argument(
        "--region",
        type=not_empty("an AWS region like 'ap-northeast-2'"),
        help="AWS region for the lab and the default iot-data host (ap-northeast-2)",
    )
    p.add_argument(
        "--at", metavar="DATE", help="verify as of this date/time (YYYY-MM-DD or ISO 8601; default now)"
    )
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds per live TLS capture (default 10)")
    p.add_argument(
        "--save-chains", metavar="DIR", help="also save each captured chain as HOST_PORT.pem in DIR"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


_BUNDLE_HELP = "certifi==VERSION | certifi==all | installed | botocore | system | PATH of a PEM file"


def _add_subcommands(sub, commands: Mapping[str, Command]) -> None:
    """check, diff-bundles, history, which-bundle, lab serve, upgrade-check."""
    p = sub.add_parser(
        "check",
        help="verify endpoints' chains against trust bundles (the endpoint x bundle table)",
        description="Verify each endpoint's chain against each bundle. "
        "Exit 0 all pass, 1 any fails, 2 bad input.",
        epilog="example: atskit check --lab --bundle certifi==2020.6.20 --bundle certifi==2021.10.8",
    )
    _endpoint_options(p)
    p.add_argument(
        "--bundle", action="append", metavar="SPEC", help=f"{_BUNDLE_HELP} (repeatable; default installed)"
    )
    p.add_argument(
        "--all-chains",
        action="store_true",
        help="capture every chain each endpoint serves (RSA-only, then ECDSA-only offers) and check each",
    )
    p.add_argument(
        "--alpn",
        metavar="PROTOCOL",
        type=not_empty(f"an ALPN protocol such as {endpoints.MQTT_ALPN}"),
        help=f"offer this ALPN protocol on every capture (AWS IoT MQTT on 443: {endpoints.MQTT_ALPN})",
    )
    p.set_defaults(func=commands["check"])

    p = sub.add_parser(
        "devices",
        help="would each device's root file verify its endpoint? (an inventory CSV; exit 1 if any fails)",
        description="Verify each device of an inventory (CSV: device, endpoint HOST[:PORT] (port 8883), "
        "root_file or root_sha256, optional client default|rsa-only|ecdsa-only) against a trust store of "
        "the one root it carries. Exit 0 all pass, 1 any fails, 2 bad input.",
        epilog="example: atskit devices fleet.csv --lab\n         atskit devices fleet.csv --chain-file "
        "evidence/a1b2-ats.iot.eu-west-1.amazonaws.com_8883.pem",
    )
    p.add_argument("inventory", metavar="INVENTORY.csv", help="one row per device")
    p.add_argument("--chain-file", action="append", metavar="PEM", help="a saved chain (repeatable)")
    p.add_argument(
        "--lab",
        action="store_true",
        help="check against the offline lab, or --chain-file chains saved from it (real roots -> twins)",
    )
    p.add_argument(
        "--at", metavar="DATE", help="verify as of this date/time (YYYY-MM-DD or ISO 8601; default now)"
    )
    p.add_argument("--timeout", type=seconds, default=10.0, help="seconds per live TLS capture (default 10)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema 1)")
    p.set_defaults(func=commands["devices"])

    p = sub.add_parser(
        "diff-bundles",
        help="roots removed and added between two bundles",
        epilog="example: atskit diff-bundles certifi==2020.6.20 certifi==2021.10.8",
    )
    p.add_argument("a", metavar="A", help=_BUNDLE_HELP)
    p.add_argument("b", metavar="B", help=_BUNDLE_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands["diff-bundles"])

    p = sub.add_parser(
        "history",
        help="certifi's releases, or one root's presence across them",
        epilog="example: atskit history --root 'VeriSign Class 3 Public Primary Certification Authority - G5'"
        "\n         atskit history --root 'Amazon Root CA 1'",
    )
    p.add_argument(
        "--root", metavar="NAME_OR_FINGERPRINT", help="a root's subject name or SHA-256 fingerprint"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands["history"])

    p = sub.add_parser(
        "which-bundle", help="the CA bundle botocore would load here, and the rule that chose it"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=commands["which-bundle"])

    lab_parser = sub.add_parser("lab", help="the offline lab")
    lab_sub = lab_parser.add_subparsers(dest="lab_command", required=True)
    p = lab_sub.add_parser(
        "serve", help="run the lab in the foreground; prints how to reach it with curl and the AWS CLI"
    )
    p.add_argument(
        "--region",
        type=not_empty("an AWS region like 'ap-northeast-2'"),
        help="the lab's region (default ap-northeast-2)",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    p.add_argument(
        "--certifi",
        metavar="VERSION",
        help="print the trust view of this certifi release (default: the twin roots)",
    )
    p.add_argument("--duration", type=seconds, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the lab's details as JSON")
    p.set_defaults(func=commands["lab serve"])

    p = sub.add_parser(
        "upgrade-check",
        help="would this dependency upgrade break TLS to these endpoints? (exit 1 if so)",
        description=(
            "Find the certifi and botocore each side installs (from pins, lock files or a freeze, else uv's "
            "resolution, as of --as-of), verify every endpoint and each side's default iot-data host against "
            "each side's trust store, and exit 1 if an endpoint that passed before fails after."
        ),
        epilog=(
            "example: atskit upgrade-check --before docs/examples/incident-before.txt "
            "--after docs/examples/incident-after.txt --runtime-botocore 1.23.1 --lab\n"
            "         atskit upgrade-check --before-ref origin/main --lab requirements.txt poetry.lock"
        ),
    )
    p.add_argument("--before", metavar="REQS_OR_LOCK", help="requirements/lock file, or inline pins")
    p.add_argument("--after", metavar="REQS_OR_LOCK", help="requirements/lock file, or inline pins")
    p.add_argument(
        "--before-ref",
        metavar="REF",
        help="instead of --before/--after: check each FILE (the positionals) against its version at git REF; "
        "a file new since REF is skipped; name live endpoints with --endpoints-file",
    )
    p.add_argument(
        "--summary-md", metavar="PATH", help="append a Markdown summary to PATH (e.g. $GITHUB_STEP_SUMMARY)"
    )
    p.add_argument(
        "--runtime-botocore",
        metavar="VERSION",
        help="botocore of a side whose file installs none (e.g. Lambda's runtime; default: installed)",
    )
    p.add_argument(
        "--no-pip",
        action="store_true",
        help="offline: never resolve or fetch through the index (pins, locks and freezes only)",
    )
    p.add_argument("--as-of", metavar="DATE", help="resolve unpinned sides as the index stood on DATE")
    p.add_argument("--before-as-of", metavar="DATE", help="the same for the before side (wins over --as-of)")
    p.add_argument("--after-as-of", metavar="DATE", help="the same for the after side (wins over --as-of)")
    p.add_argument("--python-version", metavar="X.Y", help="the target's Python (default: this one)")
    p.add_argument(
        "--platform",
        metavar="NAME",
        help="the target's platform: linux-x86_64, linux-aarch64, macos-x86_64, macos-arm64, windows-x86_64 "
        "(default: this machine; AWS Lambda: linux-x86_64 or linux-aarch64)",
    )
    p.add_argument(
        "--group", action="append", metavar="NAME", help="also install this lock-file group (e.g. dev)"
    )
    p.add_argument(
        "--freeze",
        choices=["before", "after", "both"],
        help="read that side's file as `pip freeze` output: everything installed, nothing resolved",
    )
    for flag, whose in (("--ca-bundle", "both sides'"), ("--before-ca-bundle", "the before side's"),
                        ("--after-ca-bundle", "the after side's")):  # fmt: skip
        p.add_argument(
            flag,
            action="append",
            metavar="RULE=PEM",
            help=f"a CA bundle {whose} runtime sets, which botocore takes before certifi; RULE: verify, "
            "session, AWS_CA_BUNDLE, config, REQUESTS_CA_BUNDLE (repeatable)",
        )
    p.add_argument(
        "--allow-unknown",
        action="store_true",
        help="an endpoint the gate cannot check is a warning, not a failure (default: exit 1)",
    )
    _endpoint_options(p)
    p.set_defaults(func=commands["upgrade-check"])
