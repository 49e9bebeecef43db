"""The ``atskit`` command (also ``python -m helpers``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from helpers import _cli_gate, _cli_parser
from helpers._cli_gate import summary_markdown as summary_markdown  # cli.summary_markdown: the job summary
from helpers._cli_parser import Parser, UsageError, fail, folder, regular_file
from helpers.kinds import Change, InputError, KitError


def _run_notebooks(args: argparse.Namespace) -> int:
    """Execute every notebook in lab mode into ``--out`` (exit 1 if any fails)."""
    import time

    from helpers import runner

    if not runner.notebook_paths():
        raise UsageError("no numbered notebooks found in notebooks/")
    folder(args.out, "--out", "a folder for the reports (made if missing)")
    started = time.perf_counter()
    runs = runner.run_all(args.out, on_done=None if args.json else lambda r: print(r.line(), flush=True))
    wall = time.perf_counter() - started
    failed = [r for r in runs if not r.ok]
    summary = f"{len(runs) - len(failed)}/{len(runs)} notebooks ok in {wall:.1f} s; reports in {args.out}/"
    data = {
        "ok": not failed,
        "seconds": round(wall, 2),
        "out": str(args.out),
        "notebooks": [
            {
                "notebook": r.notebook,
                "ok": r.ok,
                "seconds": round(r.seconds, 2),
                "error": r.error,
                "ipynb": str(r.output_ipynb),
                "html": str(r.output_html) if r.output_html else None,
            }
            for r in runs
        ],
    }
    _emit(args, data, summary)
    return 1 if failed else 0


MAX_WORKERS = 32  # parallel pip downloads refresh-certifi runs at most


def _refresh_certifi(args: argparse.Namespace) -> int:
    """Rebuild or extend data/certifi from the package index through pip (exit 1 if it cannot)."""
    import json
    import signal
    from pathlib import Path

    from helpers import _certifi_build, _index

    if not 1 <= args.workers <= MAX_WORKERS:
        raise UsageError(f"--workers {args.workers}: give a number from 1 to {MAX_WORKERS}")
    for option, path in (("--data-dir", args.data_dir), ("--cache-dir", args.cache_dir)):
        if path is not None:
            folder(path, option, "a folder (made if missing)")

    def interrupted(*_):  # SIGTERM ends a refresh as Ctrl-C does: pip ended, the data left as it was
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    try:
        result = _certifi_build.build(
            data_dir=Path(args.data_dir) if args.data_dir is not None else None,
            cache_dir=Path(args.cache_dir) if args.cache_dir is not None else None,
            full=args.full,
            progress=not args.json and sys.stderr.isatty(),
            workers=args.workers,
            prune=args.prune,
        )
    except (_index.IndexUnreachable, _index.BuildError) as exc:
        print(f"atskit: error: {exc}; the embedded certifi data is unchanged", file=sys.stderr)
        return 1
    print(json.dumps(result.as_dict(), indent=2) if args.json else result.line())
    return 0


# --- shared input parsing --------------------------------------------------------------------------


def parse_at(text: str | None) -> dt.datetime | None:
    """--at DATE: 'YYYY-MM-DD' or an ISO 8601 time (naive = UTC); None for now."""
    from helpers.chains import parse_time

    try:
        return parse_time(text)
    except ValueError as exc:
        raise UsageError(f"bad --at {text!r}: {exc}") from None


def _as_of(text: str | None, option: str) -> dt.date | dt.datetime | None:
    """--as-of DATE: 'YYYY-MM-DD' (the whole day, UTC) or an ISO 8601 time (naive = UTC); None for none."""
    from helpers.requirements import parse_as_of

    if not text:
        return None
    try:
        return parse_as_of(text)
    except ValueError:
        raise UsageError(f"bad {option} {text!r}: use YYYY-MM-DD or an ISO 8601 time") from None


def load_bundles(spec: str, *, option: str = "--bundle") -> list:
    """--bundle: certifi==V | certifi==all | installed | botocore | system | PATH -> Bundles."""
    from helpers import bundles

    text = spec.strip()
    try:
        if text.lower() == "certifi==all":
            return [bundles.certifi(v) for v in bundles.certifi_versions()]
        if text.lower().startswith("certifi=="):
            return [bundles.certifi(text.split("==", 1)[1])]
        if text in _NAMED_BUNDLES:
            return [getattr(bundles, _NAMED_BUNDLES[text])()]
        if Path(text).exists():
            regular_file(text, option, "the path of a PEM file")
            bundle = bundles.from_pem(text)
            _warn_not_authorities(bundle, f"{option} {spec}")
            return [bundle]
    except (ValueError, OSError) as exc:
        reason = str(exc).removeprefix(f"{text}:").strip()  # the reader's message may name the file too
        raise UsageError(f"{option} {spec}: {reason}") from None
    raise UsageError(
        f"bad {option} {spec!r}: use certifi==VERSION, certifi==all, installed, botocore, system, "
        "or the path of a PEM file"
    )


_NAMED_BUNDLES = {"installed": "installed_certifi", "botocore": "botocore_vendored", "system": "system"}


def _warn_not_authorities(bundle, given: str) -> None:
    """A warning line on stderr if ``bundle`` holds certificates that are not CAs (a captured chain)."""
    leaves = ", ".join(repr(name) for name in bundle.not_authorities())
    if leaves:
        warning = f"{given}: {leaves} is not a CA certificate, yet becomes a trust anchor"
        print(f"atskit: warning: {warning}; is this a captured chain?", file=sys.stderr)


def read_endpoints_file(path: str) -> list[str]:
    """Endpoints from a file: one HOST[:PORT] a line; blank lines and '#' comments ignored."""
    regular_file(path, "--endpoints-file", "a file with one HOST[:PORT] a line")
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--endpoints-file {path}: cannot read it ({exc.__class__.__name__})") from None
    hosts = [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]
    if not hosts:
        raise UsageError(f"--endpoints-file {path}: no endpoints in it; write one HOST[:PORT] a line")
    return hosts


def _endpoint_hosts(args: argparse.Namespace) -> list[str]:
    """The endpoints named on the command line and in --endpoints-file, checked."""
    from helpers.chains import parse_target

    hosts = list(args.endpoints) + (
        read_endpoints_file(args.endpoints_file) if args.endpoints_file is not None else []
    )
    for host in hosts:
        try:
            parse_target(host)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    return hosts


def _chain_files(args: argparse.Namespace) -> list[str]:
    """--chain-file paths, each an existing file."""
    paths = args.chain_file or []
    for path in paths:
        regular_file(path, "--chain-file", "a PEM file saved by atskit")
    return paths


def _mode(args: argparse.Namespace, hosts: list[str]) -> str:
    """lab with --lab, live when endpoints are named, else saved chains only."""
    from helpers.kinds import Mode

    if args.lab:
        return Mode.LAB
    if hosts:
        return Mode.LIVE
    if not args.chain_file:
        raise UsageError("no endpoints: name HOST[:PORT], --endpoints-file, --chain-file, or --lab")
    return Mode.SAVED


def _emit(args: argparse.Namespace, data, text: str, *, redacted: bool = True) -> None:
    """Print JSON (--json) or the text, redacted unless told otherwise (the lab's fake values)."""
    from helpers.redaction import redact

    if isinstance(getattr(args, "results", None), list):  # upgrade-check's per-file wrapper keeps each result
        args.results.append(data)
    out = json.dumps(data, indent=2, default=_json_value) if args.json else text
    print(redact(out) if redacted else out)


def _json_value(value) -> str:
    """JSON for what json cannot write itself: times as ISO 8601, anything else as text."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _text_table(rows: list[dict], columns: list[str]) -> str:
    """Rows as a plain text table for the terminal (no pandas needed)."""
    from helpers.redaction import redact

    shown: dict[str, str] = {}  # each distinct value redacted once, before the widths are measured

    def cell(value) -> str:
        text = "" if value is None else str(value)
        if text not in shown:
            shown[text] = redact(text)
        return shown[text]

    cells = [[str(column) for column in columns]]
    cells += [[cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _table(frame) -> str:
    """A frame as plain text for the terminal, redacted before the columns are measured."""
    import pandas as pd

    from helpers.redaction import redact_frame

    with pd.option_context("display.width", 200, "display.max_colwidth", 70, "display.max_rows", 500):
        return redact_frame(frame).to_string(index=False)


def _records(frame) -> list[dict]:
    """A frame as JSON-ready records."""
    return json.loads(frame.to_json(orient="records", date_format="iso", default_handler=str))


# --- subcommands -----------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    """Verify every endpoint against every bundle: exit 1 if any verdict fails."""
    from helpers import chains

    at = parse_at(args.at)
    folder(args.save_chains, "--save-chains", "a folder to save the chains in (made if missing)")
    bundle_list = [b for spec in (args.bundle or ["installed"]) for b in load_bundles(spec)]
    hosts, chain_files = _endpoint_hosts(args), _chain_files(args)
    mode = _mode(args, hosts)
    options = {
        "chain_files": chain_files,
        "timeout": args.timeout,
        "save_dir": args.save_chains,
        "all_chains": args.all_chains,
    }
    if mode == "lab":
        from helpers import lab

        with lab.environment("lab", region=args.region or lab.REGION) as env:
            if hosts or chain_files:  # what was named (saved lab chains, lab hosts), nothing more
                collected = chains.collect(hosts, alpn=args.alpn, **options)
            else:
                collected = {}
                for endpoints, alpn in _lab_endpoints(env):
                    found = chains.collect(endpoints, alpn=alpn, **options)
                    collected |= {f"{k} (ALPN {alpn})" if alpn else k: v for k, v in found.items()}
            bundle_list = [env.trust_view(b) for b in bundle_list]
    else:
        collected = chains.collect(hosts, alpn=args.alpn, **options)
    rows = chains.matrix(collected, bundle_list, at=at)
    failed = sum(not row["ok"] for row in rows)
    summary = f"{len(rows) - failed}/{len(rows)} endpoint x bundle checks pass"
    failures = [f"- {r['endpoint']} x {r['bundle']}: {r['message']}" for r in rows if not r["ok"]]
    text = "\n".join([_text_table(rows, ["endpoint", "bundle", "ok", "reason"]), *failures, summary])
    _emit(args, {"schema": 1, "ok": failed == 0, "summary": summary, "results": rows}, text)
    return 1 if failed else 0


def _lab_endpoints(env) -> list[tuple[list[str], str | None]]:
    """What ``check --lab`` covers, as (endpoints, ALPN) groups: the HTTPS data endpoints, then the
    account's device (MQTT) endpoints as the lab serves them: 8883, and 443 with ALPN x-amzn-mqtt-ca
    (their servers ask for a client certificate; the chain is captured before that matters)."""
    groups: list[tuple[list[str], str | None]] = [(env.checked_hosts(), None)]
    by_alpn: dict[str | None, list[str]] = {}
    for device in env.device_endpoints():
        by_alpn.setdefault(device.alpn, []).append(f"{device.host}:{device.port}")
    return groups + [(hosts, alpn) for alpn, hosts in by_alpn.items()]


def _devices(args: argparse.Namespace) -> int:
    """Verify each inventory device's endpoint against the one root it carries: exit 1 if any fails."""
    from helpers import devices
    from helpers.kinds import Mode

    regular_file(args.inventory, "devices", "a CSV inventory (device, endpoint, root_file or root_sha256)")
    chain_files = _chain_files(args)
    mode = Mode.LAB if args.lab else Mode.SAVED if chain_files else Mode.LIVE
    result = devices.check_inventory(
        args.inventory, mode=mode, chain_files=chain_files, at=parse_at(args.at), timeout=args.timeout
    )
    failed = sum(not row["ok"] for row in result.rows)
    outcomes = ", ".join(f"{reason} {count}" for reason, count in result.summary().items())
    summary = f"{len(result.rows) - failed}/{len(result.rows)} devices pass ({outcomes})"
    failures = [f"- {r['device']}: {r['message']}" for r in result.rows if not r["ok"]]  # why, one line each
    table = _text_table(result.rows, ["device", "endpoint", "client", "root", "ok", "reason"])
    text = "\n".join([table, *failures, summary])
    _emit(args, result.as_dict() | {"summary_line": summary}, text)
    return 0 if result.ok else 1


def _diff_bundles(args: argparse.Namespace) -> int:
    """Roots removed and added going from bundle A to bundle B."""
    from helpers import bundles

    a, b = (_one_bundle(spec, option) for spec, option in ((args.a, "A"), (args.b, "B")))
    comparison = bundles.compare(a, b)
    columns = ["change", "name", "subject_o", "not_after", "fingerprint_sha256"]
    changed = [{c: row[c] for c in columns} for row in comparison.changed()]
    text = (_text_table(changed, columns) + "\n" if changed else "") + comparison.summary
    _emit(args, {"a": a.label, "b": b.label, "summary": comparison.summary, "changes": changed}, text)
    return 0


def _one_bundle(spec: str, option: str):
    """A bundle spec that must name exactly one bundle."""
    found = load_bundles(spec, option=option)
    if len(found) != 1:
        raise UsageError(f"{spec}: names {len(found)} bundles; give one (certifi==VERSION, installed, ...)")
    return found[0]


def _history(args: argparse.Namespace) -> int:
    """certifi's releases, or one root's presence across them and the release that removed it."""
    from helpers import bundles

    if args.root is None:
        frame = bundles.certifi_releases()[["version", "released", "roots"]]
        _emit(args, {"releases": _records(frame)}, _table(frame) + f"\n{len(frame)} certifi releases")
        return 0
    try:
        presence = bundles.root_presence(args.root)
        removed = bundles.removed_in(args.root)
    except (KeyError, ValueError) as exc:
        raise UsageError(f"--root {args.root}: {exc}") from None
    any_present = presence.groupby("version", observed=True, sort=False)["present"].any()
    releases = [str(v) for v in bundles.certifi_releases()["version"]]
    carried = [v for v in releases if any_present.get(v, False)]  # release order, not name order
    matched = presence["fingerprint_sha256"].nunique()
    what = f"{args.root} ({matched} roots match; any of them)" if matched > 1 else args.root
    span = f"in certifi {carried[0]} .. {carried[-1]}" if carried else "in no certifi release"
    summary = f"{what}: {span}; " + (f"removed in {removed}" if removed else "never removed")
    changes = presence[presence.groupby("fingerprint_sha256")["present"].diff().fillna(True).astype(bool)]
    text = _table(changes[["version", "released", "name", "present"]]) + "\n" + summary
    data = {
        "root": args.root,
        "roots_matched": matched,
        "removed_in": removed,
        "presence": _records(presence),
    }
    _emit(args, data, text)
    return 0


def _which_bundle(args: argparse.Namespace) -> int:
    """The CA bundle botocore would load in this environment, and the rule that chose it."""
    from helpers import botocore_facts

    choice = botocore_facts.effective_ca_bundle()
    bundle = choice.bundle
    if bundle is not None:
        _warn_not_authorities(bundle, f"{choice.rule} {choice.path}")
    data = {
        "path": str(choice.path),
        "rule": choice.rule,
        "why": choice.explanation,
        "bundle": bundle.label if bundle is not None else None,
        "roots": len(bundle) if bundle is not None else None,
    }
    text = "\n".join(f"{k:7} {v}" for k, v in data.items() if v is not None)
    _emit(args, data, text)
    return 0 if bundle is not None else 1  # no usable bundle (or verification off): every TLS call is at risk


def _lab_serve(args: argparse.Namespace) -> int:
    """Run the lab in the foreground and print how to reach it with curl and the AWS CLI."""
    import signal
    import threading

    from helpers import lab

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with lab.environment("lab", region=args.region or lab.REGION, port=args.port) as env:
        view = (env.trust_view(args.certifi) if args.certifi else lab.twin_roots()).path()
        port = env.port
        data = {
            "port": port,
            "region": env.region,
            "ca_bundle": str(view),
            "endpoints": env.endpoints,
            "thing": env.thing_name,
            "aws_access_key_id": lab.FAKE_ACCESS_KEY_ID,
            "mqtt_port": env.lab.mqtt_port,
        }
        lines = [f"lab serving {env.region} on 127.0.0.1:{port} (Ctrl-C to stop); CA bundle: {view}",
                 f"  MQTT (the device endpoints' 8883) on 127.0.0.1:{env.lab.mqtt_port}; 443 with ALPN "
                 "x-amzn-mqtt-ca on the port above"]  # fmt: skip
        for name, host in env.endpoints.items():
            lines.append(f"  {name:15} {host}")
        legacy = env.endpoints["data_legacy"]
        lines += [
            "",
            "curl, TLS only (--resolve sends the real name, so the lab picks the chain by SNI;",
            "an API call needs SigV4, so use the AWS CLI for those):",
            f"  curl -sS -o /dev/null -w '%{{http_code}}\\n' --cacert {view} "
            f"--resolve {legacy}:{port}:127.0.0.1 https://{legacy}:{port}/",
            "AWS CLI (add '127.0.0.1 <host>' to /etc/hosts for the hosts you use; the credentials are fake):",
            f"  AWS_ACCESS_KEY_ID={lab.FAKE_ACCESS_KEY_ID} AWS_SECRET_ACCESS_KEY=fake "
            f"aws iot-data list-named-shadows-for-thing --thing-name {env.thing_name} --region {env.region} "
            f"--endpoint-url https://{legacy}:{port} --ca-bundle {view}",
            "Every value above is the lab's own (fake account, fake key, lab twin certificates).",
        ]
        _emit(args, data, "\n".join(lines), redacted=False)
        sys.stdout.flush()
        stop.wait(args.duration)
    return 0


def _upgrade_check(args: argparse.Namespace) -> int:
    """Would this upgrade break TLS to these endpoints? Exit 1 if an endpoint that passed now fails,
    or if the gate could not check one (unless --allow-unknown), or compared nothing."""
    from helpers import requirements, upgrade

    def as_of(name: str):
        given = getattr(args, f"{name}_as_of")
        return _as_of(given or args.as_of, f"--{name}-as-of" if given else "--as-of")

    for name in ("before", "after"):
        if not str(getattr(args, name)).strip():
            regular_file(
                "", f"--{name}", "a requirements or lock file, or inline pins like 'certifi==2021.10.8'"
            )
    folder(args.save_chains, "--save-chains", "a folder to save the chains in (made if missing)")
    try:  # the options first, then what each side installs: a bad file is named before anything is fetched
        common = upgrade.parse_ca_bundles(args.ca_bundle or [])
        declared = {
            name: common | upgrade.parse_ca_bundles(extra or [], option=f"--{name}-ca-bundle")
            for name, extra in (("before", args.before_ca_bundle), ("after", args.after_ca_bundle))
        }
        target = requirements.Target.parse(args.python_version, args.platform)
        dates = {name: as_of(name) for name in ("before", "after")}
        frozen = {"both": ("before", "after"), None: ()}.get(args.freeze, (args.freeze,))
        sides = upgrade.resolve_sides(args.before, args.after, use_pip=not args.no_pip, target=target,
                                      groups=args.group or (), as_of=dates, freeze=frozen)  # fmt: skip
    except (requirements.ResolutionError, InputError) as exc:
        raise UsageError(str(exc)) from None
    hosts = _endpoint_hosts(args)
    result = upgrade.run_check(
        sides["before"],
        sides["after"],
        mode=_mode(args, hosts),
        endpoint_hosts=hosts,
        chain_files=_chain_files(args),
        region=args.region,
        runtime_botocore=args.runtime_botocore,
        at=parse_at(args.at),
        use_pip=not args.no_pip,
        timeout=args.timeout,
        save_dir=args.save_chains,
        before_ca_bundles=declared["before"],
        after_ca_bundles=declared["after"],
        allow_unknown=args.allow_unknown,
    )
    sides = result.sides()[
        ["side", "certifi", "botocore", "botocore_from", "trust_store", "rule", "iot_data_default_host"]
    ]
    changes = result.changes()
    table = changes[["endpoint", "change", "ok_before", "reason_before", "ok_after", "reason_after"]]
    moved = changes[changes["change"] != Change.STILL_OK]
    notes = [f"- {r.endpoint}: {r.message_after}" for r in moved.itertuples()]
    notes += [f"- root at fault: {r['name']} (sha256 {r['sha256']})" for r in result.roots_at_fault()]
    notes += [
        f"- how the {s.name} side was resolved: {s.environment.note}" for s in (result.before, result.after)
    ]
    notes += [f"- note: {note}" for note in result.notes]
    text = "\n\n".join([_table(sides), "\n".join([_table(table), *notes]), result.summary()])
    _emit(args, result.as_dict(), text)
    return result.exit_code


def _upgrade_check_files(args: argparse.Namespace) -> int:
    """upgrade-check: one --before/--after pair, or each FILE against its version at --before-ref
    (``_cli_gate``), with the --summary-md job summary."""
    return _cli_gate.check_files(args, _upgrade_check)


def _redact_files(args: argparse.Namespace) -> int:
    """Mask secrets in text, Markdown, HTML or notebook files: to stdout, or in place with a backup.

    Every file is read and redacted before any is written, so one bad input leaves all of them as they
    were; a file rewritten in place, and its backup, keep the file's permissions."""
    import stat

    from helpers._io import atomic_write_bytes, atomic_write_text

    cleaned = [(name, *_redacted_file(name)) for name in args.files]
    outputs = []
    for name, text, clean in cleaned:
        path = Path(name)
        if args.in_place and clean != text:
            mode = stat.S_IMODE(path.stat().st_mode)
            atomic_write_bytes(path.with_name(path.name + ".bak"), text.encode("utf-8"), mode=mode)
            atomic_write_text(path, clean, mode=mode)
        outputs.append({"file": name, "changed": clean != text, **({} if args.in_place else {"text": clean})})
    if args.json:
        print(json.dumps({"files": outputs}, indent=2))
    elif args.in_place:
        print("\n".join(f"{'redacted' if o['changed'] else 'unchanged'} {o['file']}" for o in outputs))
        if any(o["changed"] for o in outputs):  # the backups are the originals: secrets and all
            print("each FILE.bak beside them is the original, secrets and all: delete it before sharing")
    else:
        sys.stdout.write("".join(o["text"] for o in outputs))
    return 0


def _redacted_file(name: str) -> tuple[str, str]:
    """A file's text and its redaction, by its kind (.ipynb, .html, .md, else text); bad input is exit 2."""
    from helpers import redaction

    regular_file(name, "redact", "text, Markdown, HTML or .ipynb files")
    path = Path(name)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{name}: not UTF-8 text; give text, Markdown, HTML or .ipynb files") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    suffix = path.suffix.lower()
    if suffix == ".ipynb":
        import nbformat

        try:
            nb = nbformat.reads(text, as_version=4)
        except Exception as exc:  # nbformat raises several kinds for a broken file
            raise UsageError(f"{name}: not a readable notebook ({type(exc).__name__})") from None
        redaction.redact_notebook(nb)
        return text, nbformat.writes(nb)
    if suffix in (".html", ".htm"):
        return text, redaction.redact(text, html=True)
    if suffix in (".md", ".markdown"):
        return text, redaction.redact_markdown(text)
    return text, redaction.redact(text)


def build_parser() -> argparse.ArgumentParser:
    """The command line (``_cli_parser``), each subcommand calling its function here as ``args.func``."""
    return _cli_parser.build_parser(
        {
            "run-notebooks": _run_notebooks,
            "refresh-certifi": _refresh_certifi,
            "check": _check,
            "devices": _devices,
            "diff-bundles": _diff_bundles,
            "history": _history,
            "which-bundle": _which_bundle,
            "lab serve": _lab_serve,
            "upgrade-check": _upgrade_check_files,
            "redact": _redact_files,
        },
        description=__doc__.replace("``", ""),  # reST quotes read as noise in a terminal
    )


PIPE_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe


def _reader_left() -> int:
    """The reader of stdout closed it early (``atskit ... | head -1``): no error line, nothing more
    written (stdout pointed at /dev/null, as Python's documentation advises for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return PIPE_CLOSED


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn errors into one line and an exit code."""
    parser = build_parser()
    Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already printed as one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    as_json = bool(getattr(args, "json", False))
    try:
        code = args.func(args)
        sys.stdout.flush()  # a reader that left early is found here, not in the interpreter's exit
        return code
    except BrokenPipeError:
        return _reader_left()
    except UsageError as exc:
        return fail(exc, as_json=as_json)
    except KeyboardInterrupt:
        print("atskit: interrupted", file=sys.stderr)
        return 130
    except (KitError, OSError, ValueError, LookupError, RuntimeError) as exc:  # bad input or data, ...
        return fail(exc, as_json=as_json)
    except Exception as exc:  # never a traceback: one line, and how to see more
        if type(exc).__module__.startswith("botocore."):  # a broken ~/.aws/config, an unknown profile
            return fail(exc, as_json=as_json)
        if os.environ.get("ATSKIT_DEBUG"):
            raise
        message = f"unexpected {type(exc).__name__}: {exc} (set ATSKIT_DEBUG=1 for the traceback)"
        return fail(message, as_json=as_json)
