"""upgrade-check's plumbing around one check: each FILE against its version at a git ref
(``--before-ref``), and the Markdown job summary (``--summary-md``) (``cli`` only)."""

from __future__ import annotations

import argparse
import json

from helpers._cli_parser import Command, UsageError, fail, regular_file
from helpers.kinds import KitError


def check_files(args: argparse.Namespace, check: Command) -> int:
    """upgrade-check: ``check`` (one --before/--after pair) once, or with --before-ref for each FILE
    against its version at REF (a file new since REF is skipped with a note); the worst exit code
    (2 > 1 > 0)."""
    import contextlib
    import io

    from helpers import _git

    if args.before_ref is None:
        missing = [option for option in ("--before", "--after") if getattr(args, option[2:]) is None]
        if missing:  # worded as argparse words it: --before/--after are required unless --before-ref
            raise UsageError(
                f"the following arguments are required: {', '.join(missing)} (see 'atskit upgrade-check "
                "--help'); or give --before-ref REF and the FILEs to check"
            )
        args.results = []
        code = check(args)
        append_summary(args, f"{args.before} -> {args.after}", args.results[-1] if args.results else None)
        return code
    if args.before is not None or args.after is not None:
        raise UsageError("--before-ref takes the before side from git: drop --before/--after, name the FILEs")
    files, args.endpoints = list(args.endpoints), []  # with --before-ref the positionals are files
    if not files:
        raise UsageError(f"--before-ref {args.before_ref}: name the requirements or lock FILEs to check")
    for name in files:
        regular_file(name, "upgrade-check", "a requirements or lock file")
    worst, reports = 0, []
    for name in files:
        report = {"file": name, "before_ref": args.before_ref, "exit_code": 0, "note": None, "result": None}
        args.results, out = [], io.StringIO()
        try:
            with _git.file_at_ref(name, args.before_ref) as before, contextlib.redirect_stdout(out):
                if before is None:
                    report["note"] = f"{name}: new since {args.before_ref}; nothing to compare, skipped"
                else:
                    args.before, args.after = str(before), name
                    report["exit_code"] = check(args)
        except KitError as exc:
            report["exit_code"], report["note"] = fail(f"{name}: {exc}"), f"error: {exc}"
        report["result"] = args.results[-1] if args.results else None
        if not args.json:  # an error is already the one line on stderr: not repeated here
            shown = out.getvalue().rstrip() or (report["note"] if report["exit_code"] != 2 else "")
            print(f"== {name} (before: {args.before_ref})" + (f"\n{shown}" if shown else ""))
        append_summary(args, f"{name} (before: {args.before_ref})", report["result"], note=report["note"])
        worst = max(worst, report["exit_code"])
        reports.append(report)
    if args.json:
        document = {"schema": 1, "ok": worst == 0, "exit_code": worst, "files": reports}
        print(json.dumps(document, indent=2, default=str))
    return worst


def append_summary(args: argparse.Namespace, title: str, result: dict | None, *, note: str | None = None):
    """Append one check's Markdown to --summary-md (GitHub's $GITHUB_STEP_SUMMARY), if given."""
    if args.summary_md:
        with open(args.summary_md, "a", encoding="utf-8") as out:
            out.write(summary_markdown(title, result, note=note))


def summary_markdown(title: str, result: dict | None, *, note: str | None = None) -> str:
    """A job summary from an UpgradeCheck.as_dict(): the verdict, endpoint / change / before / after, and
    each side's certifi and botocore (or the note of a file skipped or in error)."""
    from helpers.redaction import redact_markdown

    def cell(value) -> str:
        return "" if value is None else str(value).replace("|", "\\|").replace("\n", " ")

    def verdict(ok, reason) -> str:
        return "?" if ok is None else ("pass" if ok else f"FAIL ({cell(reason)})")

    lines = [f"### atskit upgrade-check: {title}", ""]
    if result is None:
        return "\n".join([*lines, f"- {note or 'no result'}", "", ""])
    mark = "✅" if result["ok"] else "❌"
    lines += [f"{mark} {cell(result['summary'])}", "", "| endpoint | change | before | after |"]
    lines.append("|---|---|---|---|")
    for row in result["endpoints"]:
        before, after = (verdict(row[s]["ok"], row[s]["reason"]) for s in ("before", "after"))
        lines.append(f"| {cell(row['endpoint'])} | {cell(row['change'])} | {before} | {after} |")
    faults = result["roots_at_fault"]
    lines += [f"- root at fault: {cell(r['name'])} (sha256 `{r['sha256']}`)" for r in faults]
    lines += ["", "| side | certifi | botocore | trust store (rule) | resolved |", "|---|---|---|---|---|"]
    for name, side in result["sides"].items():
        botocore = f"{cell(side['botocore']['version'])} ({cell(side['botocore']['from'])})"
        store = f"{cell(side['bundle']['label'])} ({cell(side['bundle']['rule'])})"
        resolution = side["resolution"]
        when = resolution["as_of"] or ("today" if resolution["method"] == "resolved" else "")
        how = resolution["method"] + (f" as of {when}" if when else "")
        lines.append(f"| {name} | {cell(side['packages']['certifi'])} | {botocore} | {store} | {cell(how)} |")
    lines += [f"- note: {cell(n)}" for n in result["notes"]]
    return redact_markdown("\n".join([*lines, "", ""]))
