"""The ``atskit`` command (also ``python -m helpers``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path

from helpers.kinds import InputError, KitError


class UsageError(KitError):
    """Bad usage or input: exit code 2, one line."""


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (exit 2), like every other atskit error."""

    json_errors = False  # set by main() when --json is on the command line: the error as JSON too

    def error(self, message: str):
        """Print ``atskit: error: ...`` naming the subcommand's --help, and exit 2."""
        _fail(UsageError(f"{message} (see '{self.prog} --help')"), as_json=_Parser.json_errors)
        raise SystemExit(2)


def _run_notebooks(args: argparse.Namespace) -> int:
    """Execute every notebook in lab mode into ``--out`` (exit 1 if any fails)."""
    import time

    from helpers import runner

    if not runner.notebook_paths():
        raise UsageError("no numbered notebooks found in notebooks/")
    _folder(args.out, "--out", "a folder for the reports (made if missing)")
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
            _folder(path, option, "a folder (made if missing)")

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
            _regular_file(text, option, "the path of a PEM file")
            bundle = bundles.from_pem(text)
            _warn_not_authorities(bundle, f"{option} {spec}")
            return [bundle]
    except (ValueError, OSError) as exc:
        raise UsageError(f"{option} {spec}: {exc}") from None
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
    _regular_file(path, "--endpoints-file", "a file with one HOST[:PORT] a line")
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
        _regular_file(path, "--chain-file", "a PEM file saved by atskit")
    return paths


def _regular_file(path: str, option: str, what: str) -> None:
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


def _folder(path: str | None, option: str, what: str = "a folder") -> None:
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


def _not_empty(what: str):
    """An argparse type for a text option that must not be empty (an empty value would silently
    mean the default); ``what`` says what to give."""

    def text(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"empty; give {what}, or leave the option out")
        return value

    return text


MIN_SECONDS = 0.01  # below this no handshake or lab can finish: the value is a typo


def _seconds(text: str) -> float:
    """--timeout / --duration: a finite number of seconds, from 0.01 to a day."""
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not MIN_SECONDS <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r}: give seconds above 0 (0.01 or more) and at most 86400")
    return value


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
    _folder(args.save_chains, "--save-chains", "a folder to save the chains in (made if missing)")
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
            if hosts:
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


MQTT_ALPN = "x-amzn-mqtt-ca"  # AWS IoT's ALPN for MQTT with a client certificate on port 443


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

    _regular_file(args.inventory, "devices", "a CSV inventory (device, endpoint, root_file or root_sha256)")
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
    with lab.running(region=args.region or lab.REGION, port=args.port) as env:
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
            f"aws iot-data get-thing-shadow --thing-name {env.thing_name} --region {env.region} "
            f"--endpoint-url https://{legacy}:{port} --ca-bundle {view} /dev/stdout",
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
            _regular_file(
                "", f"--{name}", "a requirements or lock file, or inline pins like 'certifi==2021.10.8'"
            )
    _folder(args.save_chains, "--save-chains", "a folder to save the chains in (made if missing)")
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
    notes = [f"- {r.endpoint}: {r.message_after}" for r in changes.itertuples() if r.change != "still-ok"]
    notes += [f"- root at fault: {r['name']} (sha256 {r['sha256']})" for r in result.roots_at_fault()]
    notes += [
        f"- how the {s.name} side was resolved: {s.environment.note}" for s in (result.before, result.after)
    ]
    notes += [f"- note: {note}" for note in result.notes]
    text = "\n\n".join([_table(sides), "\n".join([_table(table), *notes]), result.summary()])
    _emit(args, result.as_dict(), text)
    return result.exit_code


# --- upgrade-check's wrapper: --before-ref FILE..., --summary-md (calls _upgrade_check once per file) ---


def _upgrade_check_files(args: argparse.Namespace) -> int:
    """upgrade-check: --before/--after once, or with --before-ref each FILE against its version at REF
    (a file new since REF is skipped with a note); the worst exit code (2 > 1 > 0)."""
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
        code = _upgrade_check(args)
        _append_summary(args, f"{args.before} -> {args.after}", args.results[-1] if args.results else None)
        return code
    if args.before is not None or args.after is not None:
        raise UsageError("--before-ref takes the before side from git: drop --before/--after, name the FILEs")
    files, args.endpoints = list(args.endpoints), []  # with --before-ref the positionals are files
    if not files:
        raise UsageError(f"--before-ref {args.before_ref}: name the requirements or lock FILEs to check")
    for name in files:
        _regular_file(name, "upgrade-check", "a requirements or lock file")
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
                    report["exit_code"] = _upgrade_check(args)
        except KitError as exc:
            report["exit_code"], report["note"] = _fail(f"{name}: {exc}"), f"error: {exc}"
        report["result"] = args.results[-1] if args.results else None
        if not args.json:  # an error is already the one line on stderr: not repeated here
            shown = out.getvalue().rstrip() or (report["note"] if report["exit_code"] != 2 else "")
            print(f"== {name} (before: {args.before_ref})" + (f"\n{shown}" if shown else ""))
        _append_summary(args, f"{name} (before: {args.before_ref})", report["result"], note=report["note"])
        worst = max(worst, report["exit_code"])
        reports.append(report)
    if args.json:
        document = {"schema": 1, "ok": worst == 0, "exit_code": worst, "files": reports}
        print(json.dumps(document, indent=2, default=str))
    return worst


def _append_summary(args: argparse.Namespace, title: str, result: dict | None, *, note: str | None = None):
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
    else:
        sys.stdout.write("".join(o["text"] for o in outputs))
    return 0


def _redacted_file(name: str) -> tuple[str, str]:
    """A file's text and its redaction, by its kind (.ipynb, .html, .md, else text); bad input is exit 2."""
    from helpers import redaction

    _regular_file(name, "redact", "text, Markdown, HTML or .ipynb files")
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
    """The command line: one subparser per subcommand."""
    parser = _Parser(prog="atskit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "run-notebooks",
        help="execute every notebook in lab mode into a folder",
        description="Execute every notebook in lab mode (offline) into --out as .ipynb and .html, side by "
        "side; one status line per notebook; exit 1 if any fails.",
    )
    p.add_argument("--out", default="reports", help="output folder (default: reports)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no per-notebook lines)")
    p.set_defaults(func=_run_notebooks)
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
    p.set_defaults(func=_refresh_certifi)
    _add_subcommands(sub)
    p = sub.add_parser(
        "redact",
        help="mask keys, tokens, account ids, endpoint prefixes and home folders in files before sharing",
        epilog="example: atskit redact reports/postmortem.md --in-place",
    )
    p.add_argument(
        "files", nargs="+", metavar="FILE", help="text, Markdown (.md), HTML (.html) or notebook (.ipynb)"
    )
    p.add_argument("--in-place", action="store_true", help="rewrite each file that changes, keeping FILE.bak")
    p.add_argument("--json", action="store_true", help="print what changed (and the text) as JSON")
    p.set_defaults(func=_redact_files)
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
        type=_not_empty("an AWS region like 'ap-northeast-2'"),
        help="AWS region for the lab and the default iot-data host (ap-northeast-2)",
    )
    p.add_argument(
        "--at", metavar="DATE", help="verify as of this date/time (YYYY-MM-DD or ISO 8601; default now)"
    )
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per live TLS capture (default 10)")
    p.add_argument(
        "--save-chains", metavar="DIR", help="also save each captured chain as HOST_PORT.pem in DIR"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")


_BUNDLE_HELP = "certifi==VERSION | certifi==all | installed | botocore | system | PATH of a PEM file"


def _add_subcommands(sub) -> None:
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
        type=_not_empty(f"an ALPN protocol such as {MQTT_ALPN}"),
        help=f"offer this ALPN protocol on every capture (AWS IoT MQTT on 443: {MQTT_ALPN})",
    )
    p.set_defaults(func=_check)

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
    p.add_argument("--timeout", type=_seconds, default=10.0, help="seconds per live TLS capture (default 10)")
    p.add_argument("--json", action="store_true", help="print the result as JSON (schema 1)")
    p.set_defaults(func=_devices)

    p = sub.add_parser(
        "diff-bundles",
        help="roots removed and added between two bundles",
        epilog="example: atskit diff-bundles certifi==2020.6.20 certifi==2021.10.8",
    )
    p.add_argument("a", metavar="A", help=_BUNDLE_HELP)
    p.add_argument("b", metavar="B", help=_BUNDLE_HELP)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_diff_bundles)

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
    p.set_defaults(func=_history)

    p = sub.add_parser(
        "which-bundle", help="the CA bundle botocore would load here, and the rule that chose it"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_which_bundle)

    lab_parser = sub.add_parser("lab", help="the offline lab")
    lab_sub = lab_parser.add_subparsers(dest="lab_command", required=True)
    p = lab_sub.add_parser(
        "serve", help="run the lab in the foreground; prints how to reach it with curl and the AWS CLI"
    )
    p.add_argument(
        "--region",
        type=_not_empty("an AWS region like 'ap-northeast-2'"),
        help="the lab's region (default ap-northeast-2)",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: a free one)")
    p.add_argument(
        "--certifi",
        metavar="VERSION",
        help="print the trust view of this certifi release (default: the twin roots)",
    )
    p.add_argument("--duration", type=_seconds, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--json", action="store_true", help="print the lab's details as JSON")
    p.set_defaults(func=_lab_serve)

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
    p.set_defaults(func=_upgrade_check_files)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse, dispatch, turn errors into one line and an exit code."""
    parser = build_parser()
    _Parser.json_errors = "--json" in (sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0), or a usage error already printed as one line (2)
        return exc.code if isinstance(exc.code, int) else 2
    as_json = bool(getattr(args, "json", False))
    try:
        return args.func(args)
    except UsageError as exc:
        return _fail(exc, as_json=as_json)
    except KeyboardInterrupt:
        print("atskit: interrupted", file=sys.stderr)
        return 130
    except (KitError, OSError, ValueError, LookupError, RuntimeError) as exc:  # bad input or data, ...
        return _fail(exc, as_json=as_json)
    except Exception as exc:  # never a traceback: one line, and how to see more
        if type(exc).__module__.startswith("botocore."):  # a broken ~/.aws/config, an unknown profile
            return _fail(exc, as_json=as_json)
        if os.environ.get("ATSKIT_DEBUG"):
            raise
        message = f"unexpected {type(exc).__name__}: {exc} (set ATSKIT_DEBUG=1 for the traceback)"
        return _fail(message, as_json=as_json)


def _fail(message, *, as_json: bool = False) -> int:
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
