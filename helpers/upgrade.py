"""The upgrade gate: what each side of an upgrade would trust, and which endpoints the upgrade breaks."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import pandas as pd

from helpers.incident import REGION
from helpers.kinds import Change, InputError, Mode, Reason, Rule
from helpers.requirements import WATCHED, Environment, ResolutionError, Target, resolve

if TYPE_CHECKING:
    from helpers.botocore_facts import DefaultEndpoint
    from helpers.bundles import Bundle
    from helpers.chains import Chain

__all__ = [
    "CA_BUNDLE_RULES",
    "DEFAULT_HOST_LABEL",
    "GateFailure",
    "JSON_SCHEMA",
    "Side",
    "UpgradeCheck",
    "check",
    "ignored_ca_settings",
    "parse_ca_bundles",
    "resolve_sides",
    "run_check",
    "side",
    "style_changes",
]

JSON_SCHEMA = 1  # the version of UpgradeCheck.as_dict()'s layout (docs/upgrade-check-json.md)

# botocore's precedence before certifi: the first of these a runtime sets chooses the CA bundle
CA_BUNDLE_RULES = (
    Rule.VERIFY_ARGUMENT,
    Rule.SESSION_CA_BUNDLE,
    Rule.AWS_CA_BUNDLE,
    Rule.CONFIG_FILE,
    Rule.REQUESTS_CA_BUNDLE,
)
_RULE_NAMES = {rule.value.lower(): rule for rule in CA_BUNDLE_RULES} | {
    "verify": Rule.VERIFY_ARGUMENT,
    "session": Rule.SESSION_CA_BUNDLE,
    "config": Rule.CONFIG_FILE,
}


class GateFailure(Exception):
    """The gate's verdict, not an error of input: the upgrade breaks an endpoint, or could not be shown
    safe (an endpoint unchecked, nothing compared). Its message is the result's summary line."""


def parse_ca_bundles(declarations: Iterable[str], *, option: str = "--ca-bundle") -> dict[Rule, str]:
    """``RULE=PATH`` declarations (what a side's runtime sets) -> {rule: path}, checked.

    RULE is one of botocore's steps before certifi: ``verify`` (the client's ``verify=``), ``session``
    (the session's ``ca_bundle``), ``AWS_CA_BUNDLE``, ``config`` (``ca_bundle`` in the config file),
    ``REQUESTS_CA_BUNDLE``.
    """
    declared: dict[Rule, str] = {}
    for text in declarations:
        name, sep, path = str(text).partition("=")
        rule = _RULE_NAMES.get(name.strip().lower())
        if not sep or rule is None or not path.strip():
            raise InputError(
                f"{option} {text!r}: give RULE=PATH with RULE one of verify, session, AWS_CA_BUNDLE, "
                "config, REQUESTS_CA_BUNDLE (botocore's order) and PATH a PEM file"
            )
        if rule in declared and declared[rule] != path.strip():
            raise InputError(f"{option}: {rule} is declared twice ({declared[rule]}, {path.strip()})")
        declared[rule] = path.strip()
    return declared


def ignored_ca_settings(*, environ: Mapping[str, str] | None = None) -> list[str]:
    """CA-bundle settings of *this* shell that the gate does not apply to either side, one note each.

    The gate checks what each side declares (``--ca-bundle``); a variable set where the gate runs may
    or may not be set where the code runs, so it is named, never silently used or dropped.
    """
    environ = os.environ if environ is None else environ
    notes = [
        f"this shell sets {name}={environ[name]}; the gate did not apply it to either side "
        f"(if your runtime sets it too, declare it: --ca-bundle {name}=PATH)"
        for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE")
        if environ.get(name)
    ]
    config = environ.get("AWS_CONFIG_FILE") or os.path.expanduser("~/.aws/config")
    try:
        import configparser

        parser = configparser.ConfigParser()
        parser.read(config, encoding="utf-8")
        profile = environ.get("AWS_PROFILE") or environ.get("AWS_DEFAULT_PROFILE") or "default"
        section = "default" if profile == "default" else f"profile {profile}"
        value = parser.get(section, "ca_bundle", fallback=None)
    except (configparser.Error, OSError, UnicodeDecodeError):
        value = None
    if value:
        notes.append(
            f"the AWS config file {config} sets ca_bundle={value}; the gate did not apply it to either "
            "side (if your runtime has it too, declare it: --ca-bundle config=PATH)"
        )
    return notes


@dataclass
class Side:
    """One side of an upgrade: what it installs, the trust store botocore would load, its default host."""

    name: str  # "before" or "after"
    environment: Environment
    botocore: str | None  # the botocore in effect (from the file, else the runtime's)
    botocore_from: str  # "the file" or "runtime (assumed)"
    bundle: Bundle | None  # None when the kit cannot reconstruct it (see bundle_rule)
    bundle_rule: str  # why this bundle, in a sentence: a declared setting, certifi, or the vendored file
    default_endpoint: DefaultEndpoint | None = None
    rule: Rule = Rule.CERTIFI  # the step of botocore's precedence that chose the bundle
    bundle_path: str | None = None  # the declared file, when a declaration (--ca-bundle) chose it

    def row(self) -> dict:
        """The side as one tidy row."""
        default = self.default_endpoint
        return {
            "side": self.name,
            "source": self.environment.source,
            "how": self.environment.method,
            "certifi": self.environment.certifi,
            "botocore": self.botocore,
            "botocore_from": self.botocore_from,
            "requests": self.environment.packages.get("requests"),
            "trust_store": self.bundle.label if self.bundle is not None else None,
            "rule": str(self.rule),
            "trust_rule": self.bundle_rule,
            "iot_data_default_host": default.host if default is not None else None,
            "default_host_basis": default.basis if default is not None else None,
        }


def side(
    name: str,
    spec: str | os.PathLike | Environment,
    *,
    runtime_botocore: str | None = None,
    region: str | None = None,
    use_pip: bool = True,
    ca_bundles: Mapping[Rule, str] | None = None,
) -> Side:
    """Resolve one side: its packages, the trust store botocore would use, its default iot-data host.

    botocore's order: a CA bundle the runtime sets (``ca_bundles``: the client's ``verify=``, the
    session's ``ca_bundle``, ``AWS_CA_BUNDLE``, the config file's ``ca_bundle``, ``REQUESTS_CA_BUNDLE``,
    first wins) -> ``certifi.where()`` whenever certifi is importable -> its vendored ``cacert.pem``.
    A side that installs no botocore (a Lambda layer: the runtime provides it) uses ``runtime_botocore``
    (default: the installed botocore). A botocore release the kit's data lacks is read from its own wheel
    through pip (cached); ``use_pip=False`` (offline) leaves it unknown, which fails the gate.
    """
    import botocore

    from helpers import botocore_facts, bundles
    from helpers._paths import kit_path

    environment = spec if isinstance(spec, Environment) else resolve(spec, use_pip=use_pip)
    if environment.botocore:
        botocore_version, botocore_from = environment.botocore, "the file"
    else:
        botocore_version = runtime_botocore or botocore.__version__
        botocore_from = "runtime (given)" if runtime_botocore else "runtime (assumed: the installed botocore)"
    declared = dict(ca_bundles or {})
    chosen = next((rule for rule in CA_BUNDLE_RULES if rule in declared), None)
    path = None
    if chosen is not None:
        path = declared[chosen]
        try:
            bundle = bundles.from_pem(path, name=str(chosen))
        except (OSError, ValueError) as exc:
            raise InputError(f"{name} side: {chosen}={path}: {exc}") from None
        rule = f"{chosen}={kit_path(path)} is declared for this side, and botocore takes it before certifi"
        lower = [str(r) for r in CA_BUNDLE_RULES if r in declared and r is not chosen]
        rule += f" (it also outranks the declared {', '.join(lower)})" if lower else ""
    elif environment.certifi:
        try:
            bundle = bundles.certifi(environment.certifi)
        except ValueError as exc:
            raise ResolutionError(f"{environment.source}: {exc}") from None
        chosen, rule = (
            Rule.CERTIFI,
            f"certifi {environment.certifi} is installed, so botocore loads certifi.where()",
        )
    else:
        bundle, rule = botocore_facts.vendored_bundle(botocore_version, fetch=use_pip)
        chosen, rule = (
            Rule.BOTOCORE_VENDORED,
            "no certifi, so botocore loads its vendored cacert.pem: " + rule,
        )
    default = botocore_facts.default_data_endpoint(botocore_version, region=region or REGION, fetch=use_pip)
    return Side(name, environment, botocore_version, botocore_from, bundle, rule, default, chosen, path)


@dataclass
class UpgradeCheck:
    """Every endpoint's verdict before and after an upgrade, and what changed."""

    before: Side
    after: Side
    verdicts: pd.DataFrame  # tidy: one row per (endpoint, side)
    at: dt.datetime | None = None
    chains: dict[str, Chain] = field(default_factory=dict)  # every chain checked, default hosts included
    notes: list[str] = field(default_factory=list)  # what the gate saw but did not apply (ignored settings)
    allow_unknown: bool = False  # an endpoint it could not check is a warning, not a failure

    def sides(self) -> pd.DataFrame:
        """One row per side: sources, versions, trust store and default host."""
        return pd.DataFrame([self.before.row(), self.after.row()])

    def changes(self) -> pd.DataFrame:
        """One row per endpoint: host and verdict on each side, and the change (broke, fixed, ...)."""
        return self._changes.copy()  # a copy: the caller may edit it

    @cached_property
    def _changes(self) -> pd.DataFrame:
        """changes(), computed once: broken, unknown, exit_code, summary and as_dict all read it."""
        wide = self.verdicts.pivot(
            index="endpoint", columns="side", values=["host", "ok", "reason", "message"]
        )
        wide.columns = [f"{value}_{side}" for value, side in wide.columns]
        order = list(dict.fromkeys(self.verdicts["endpoint"]))
        frame = wide.reindex(order).reset_index()
        return frame.assign(
            change=[_change(b, a) for b, a in zip(frame["ok_before"], frame["ok_after"], strict=True)]
        )[
            [
                "endpoint",
                "change",
                "host_before",
                "ok_before",
                "reason_before",
                "host_after",
                "ok_after",
                "reason_after",
                "message_after",
            ]
        ]

    @property
    def broken(self) -> list[str]:
        """Endpoints that passed before and fail after."""
        changes = self._changes
        return changes.loc[changes["change"] == Change.BROKE, "endpoint"].tolist()

    @property
    def unknown(self) -> list[str]:
        """Endpoints whose verdict on a side could not be computed."""
        changes = self._changes
        return changes.loc[changes["change"] == Change.UNKNOWN, "endpoint"].tolist()

    @property
    def compared_nothing(self) -> bool:
        """True when no endpoint worked on either side: every verdict the gate has is a failure on both."""
        known = self._changes["change"]
        known = known[known != Change.UNKNOWN]
        return not known.empty and bool((known == Change.STILL_FAILING).all())

    @property
    def exit_code(self) -> int:
        """1 when the upgrade breaks an endpoint, when an endpoint could not be checked (unless
        ``allow_unknown``), or when nothing was compared (every endpoint fails on both sides); else 0."""
        unchecked = bool(self.unknown) and not self.allow_unknown
        return 1 if self.broken or unchecked or self.compared_nothing else 0

    def raise_for_gate(self) -> None:
        """Raise :class:`GateFailure` with the summary when the gate fails (``exit_code`` 1)."""
        if self.exit_code:
            from helpers.redaction import redact

            raise GateFailure(redact(self.summary()))

    def roots_at_fault(self) -> list[dict]:
        """The roots the before side trusts and the after side lacks that a broken endpoint needed."""
        from cryptography.hazmat.primitives import hashes

        if self.before.bundle is None or self.after.bundle is None:
            return []
        changes = self._changes.set_index("endpoint")
        missing = self.verdicts[
            (self.verdicts["side"] == "after") & self.verdicts["endpoint"].isin(self.broken)
        ]["missing_issuer"].dropna()
        found: dict[str, dict] = {}
        for name in dict.fromkeys(missing):
            for cert in self.before.bundle.find(name):
                sha256 = cert.fingerprint(hashes.SHA256()).hex()
                if sha256 not in self.after.bundle.fingerprints:
                    endpoints = [e for e in self.broken if name in str(changes.loc[e, "message_after"])]
                    found.setdefault(sha256, {"name": name, "sha256": sha256, "endpoints": endpoints})
        return list(found.values())

    def summary(self) -> str:
        """One line: what the upgrade does to TLS, naming the broken or unchecked endpoints."""
        b, a = self.before, self.after
        move = f"certifi {b.environment.certifi or '(none)'} -> {a.environment.certifi or '(none)'}, "
        move += f"botocore {b.botocore} -> {a.botocore}"
        unknown = f"could not check {', '.join(self.unknown)}" if self.unknown else ""
        if self.broken:
            return f"FAIL: the upgrade ({move}) breaks TLS to {', '.join(self.broken)}"
        if unknown and not self.allow_unknown:
            return f"FAIL: {unknown}, so the upgrade ({move}) is not shown safe (--allow-unknown accepts it)"
        if self.compared_nothing:
            return (
                f"FAIL: nothing was compared: every endpoint fails TLS on both sides ({move}); "
                "check the endpoints and the trust stores"
            )
        tail = f"; warning: {unknown}" if unknown else ""
        today = [s.name for s in (b, a) if s.environment.method == "resolved" and not s.environment.as_of]
        if today:  # both resolved today can hide what a dated rebuild pulls in: say so in the verdict line
            tail += f"; the {' and '.join(today)} side resolved as of today (--as-of DATE for a past build)"
        return f"ok: the upgrade ({move}) breaks no endpoint that worked before{tail}"

    def as_dict(self) -> dict:
        """JSON-ready, layout ``schema`` 1 (docs/upgrade-check-json.md)."""
        verdicts = {(r["endpoint"], r["side"]): r for r in _records(self.verdicts)}
        endpoints = []
        for row in _records(self._changes):
            entry = {"endpoint": row["endpoint"], "change": row["change"]}
            for name in ("before", "after"):
                v = verdicts[(row["endpoint"], name)]
                entry[name] = {
                    "host": v["host"],
                    "ok": v["ok"],
                    "reason": v["reason"],
                    "message": v["message"],
                    "certificate": _certificate_at_fault(v),
                }
            endpoints.append(entry)
        return {
            "schema": JSON_SCHEMA,
            "ok": self.exit_code == 0,
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "broken": self.broken,
            "unknown": self.unknown,
            "compared_nothing": self.compared_nothing,
            "roots_at_fault": self.roots_at_fault(),
            "at": self.at.isoformat() if self.at else None,
            "notes": list(self.notes),
            "sides": {s.name: _side_dict(s) for s in (self.before, self.after)},
            "endpoints": endpoints,
        }


def _certificate_at_fault(verdict: dict) -> dict | None:
    """The certificate a failed verdict names (missing, expired or not yet valid), or None."""
    if verdict["ok"] is not False or not verdict.get("certificate"):
        return None
    return {"name": verdict["certificate"], "sha256": verdict.get("sha256")}


def _at_fault(verdict, chain: Chain, real_bundles: Sequence[Bundle | None]) -> dict:
    """certificate/sha256 columns: the issuer a path could not reach (its SHA-256 when either side's real
    bundle holds it), or the chain's certificate that was not valid at the verdict's time."""
    from cryptography.hazmat.primitives import hashes

    def sha256(cert) -> str:
        return cert.fingerprint(hashes.SHA256()).hex()

    if verdict.ok:
        return {"certificate": None, "sha256": None}
    if verdict.reason in (Reason.MISSING_ROOT, Reason.MISSING_INTERMEDIATE) and verdict.missing_issuer:
        known = [c for b in real_bundles if b is not None for c in b.find(verdict.missing_issuer)]
        return {"certificate": verdict.missing_issuer, "sha256": sha256(known[0]) if known else None}
    if verdict.reason in (Reason.EXPIRED, Reason.NOT_YET_VALID) and verdict.at is not None:
        for cert in chain.certificates:
            if not cert.not_valid_before_utc <= verdict.at <= cert.not_valid_after_utc:
                return {"certificate": cert.subject.rfc4514_string(), "sha256": sha256(cert)}
    return {"certificate": verdict.missing_issuer, "sha256": None}


def _side_dict(s: Side) -> dict:
    """One side for JSON: how it was resolved, its packages, its bundle and the rule that chose it."""
    env = s.environment
    default = s.default_endpoint
    return {
        "source": env.source,
        "resolution": {
            "method": env.method,
            "note": env.note,
            "as_of": env.as_of or None,
            "target": env.target or None,
            "floated": list(env.floated),
        },
        "packages": {name: env.packages.get(name) for name in WATCHED},
        "botocore": {"version": s.botocore, "from": s.botocore_from},
        "bundle": {
            "rule": str(s.rule),
            "label": s.bundle.label if s.bundle is not None else None,
            "version": s.bundle.version if s.bundle is not None else None,
            "path": s.bundle_path,
            "roots": len(s.bundle) if s.bundle is not None else None,
            "why": s.bundle_rule,
        },
        "iot_data_default_host": {
            "host": default.host if default is not None else None,
            "basis": default.basis if default is not None else None,
        },
    }


def _records(frame: pd.DataFrame) -> list[dict]:
    """A frame as JSON-ready records (NaN -> None)."""
    return json.loads(frame.to_json(orient="records", date_format="iso"))


def _change(ok_before, ok_after) -> Change:
    """still-ok, broke, fixed, still-failing, or unknown (a side could not be checked)."""
    if ok_before is None or ok_after is None or pd.isna(ok_before) or pd.isna(ok_after):
        return Change.UNKNOWN
    return {(True, True): Change.STILL_OK, (True, False): Change.BROKE, (False, True): Change.FIXED}.get(
        (bool(ok_before), bool(ok_after)), Change.STILL_FAILING
    )


DEFAULT_HOST_LABEL = "iot-data default host"


def check(
    before: Side,
    after: Side,
    chains: dict[str, Chain],
    *,
    fetch: Callable[[str], Chain] | None = None,
    trust: Callable[[Bundle], Bundle] | None = None,
    at: dt.datetime | None = None,
) -> UpgradeCheck:
    """Verify each endpoint's chain against both sides' trust stores, plus each side's default host.

    ``chains`` maps endpoint labels to chains (live, saved or lab captures). ``fetch(host)`` captures
    a chain for a default iot-data host that is not among them (None: the default host is checked only
    when one of ``chains`` is for it). ``trust`` maps a real bundle to the one to verify with (the lab's
    :func:`helpers.lab.trust_view`, so that the lab's twins stand in for the real roots).
    """
    from helpers import chains as _chains

    at = _chains.parse_time(at)

    by_host = {chain.hostname: chain for chain in chains.values() if chain.hostname}
    stores = {}
    for s in (before, after):
        stores[s.name] = None if s.bundle is None else (trust(s.bundle) if trust else s.bundle)
    rows = []

    def verdict_row(endpoint: str, s: Side, chain: Chain | None, host: str | None, note: str = "") -> dict:
        store = stores[s.name]
        base = {
            "endpoint": endpoint,
            "side": s.name,
            "host": host,
            "trust_store": store.label if store else None,
        }
        if chain is None or store is None:
            why = note or s.bundle_rule
            return {**base, "ok": None, "reason": Reason.UNKNOWN, "missing_issuer": None, "message": why}
        verdict = _chains.verify(chain, store, hostname=host, at=at)
        return {**base, **verdict.row(), **_at_fault(verdict, chain, (before.bundle, after.bundle))}

    for label, chain in chains.items():
        for s in (before, after):
            rows.append(verdict_row(label, s, chain, chain.hostname))
    for s in (before, after) if before.default_endpoint or after.default_endpoint else ():
        default = s.default_endpoint
        host = default.host if default is not None and default.covered else None
        if host is None:
            why = default.basis if default is not None else "no default-endpoint data"
            rows.append(verdict_row(DEFAULT_HOST_LABEL, s, None, None, f"default host unknown: {why}"))
            continue
        chain = by_host.get(host)
        note = ""
        if chain is None and fetch is not None:
            try:
                chain = by_host[host] = fetch(host)
            except (OSError, ValueError) as exc:
                note = f"could not capture {host}: {exc}"
        elif chain is None:
            note = f"no chain for {host}: pass it as an endpoint"
        rows.append(verdict_row(DEFAULT_HOST_LABEL, s, chain, host, note))
    columns = [
        "endpoint", "side", "host", "trust_store", "ok", "reason", "missing_issuer", "message", "certificate",
        "sha256",
    ]  # fmt: skip
    checked = {
        **chains,
        **{f"{DEFAULT_HOST_LABEL} ({h})": c for h, c in by_host.items() if c not in chains.values()},
    }
    return UpgradeCheck(before, after, pd.DataFrame(rows, columns=columns), at=at, chains=checked)


def resolve_sides(
    before: str | os.PathLike | Environment,
    after: str | os.PathLike | Environment,
    *,
    use_pip: bool = True,
    target: Target | None = None,
    groups: Sequence[str] = (),
    as_of: Mapping[str, dt.date | dt.datetime | None] | None = None,
    freeze: Sequence[str] = (),
) -> dict[str, Environment]:
    """What each side installs ({"before": ..., "after": ...}), read for ``target`` with ``groups``; a side
    named in ``freeze`` is `pip freeze` output; ``as_of`` maps a side to the date its index is read as of.
    An Environment given as a side is taken as it is."""
    as_of = as_of or {}
    return {
        name: spec
        if isinstance(spec, Environment)
        else resolve(
            spec, use_pip=use_pip, target=target, groups=groups, freeze=name in freeze, as_of=as_of.get(name)
        )
        for name, spec in (("before", before), ("after", after))
    }


def run_check(
    before: str | os.PathLike | Environment,
    after: str | os.PathLike | Environment,
    *,
    mode: str = Mode.LAB,
    endpoint_hosts: Sequence[str] = (),
    chain_files: Sequence[str | os.PathLike] = (),
    region: str | None = None,
    runtime_botocore: str | None = None,
    at: dt.datetime | str | None = None,
    use_pip: bool = True,
    timeout: float = 10.0,
    save_dir: str | os.PathLike | None = None,
    before_ca_bundles: Mapping[Rule, str] | None = None,
    after_ca_bundles: Mapping[Rule, str] | None = None,
    allow_unknown: bool = False,
    before_as_of: dt.date | dt.datetime | None = None,
    after_as_of: dt.date | dt.datetime | None = None,
    target: Target | None = None,
    groups: Sequence[str] = (),
) -> UpgradeCheck:
    """The whole upgrade check in one call: what ``atskit upgrade-check`` and notebooks 04/05 run.

    ``mode``: "lab" starts the offline lab and checks ``endpoint_hosts`` (default: its legacy, ATS and
    account ATS hosts) against the lab's trust views; "live" captures ``endpoint_hosts`` (HOST or
    HOST:PORT) from the network; "saved" checks ``chain_files`` only and connects nowhere.
    ``save_dir``: also save each captured chain there. ``before_ca_bundles``/``after_ca_bundles``: the
    CA-bundle settings each side's runtime makes (:func:`parse_ca_bundles`); with none declared, settings
    of this shell are named in the result's notes, not applied. ``allow_unknown``: an endpoint that could
    not be checked warns instead of failing. ``before_as_of``/``after_as_of``: resolve an unpinned side as
    the index stood then; ``target``/``groups``: what a side installs for that Python and platform, with
    those lock-file groups (:func:`helpers.requirements.resolve`).
    """
    mode = Mode(mode)
    region = region or REGION
    if mode is Mode.LIVE and not endpoint_hosts:
        raise InputError("mode='live' needs endpoint_hosts=['HOST[:PORT]', ...] to capture")
    if mode is Mode.SAVED and not chain_files:
        raise InputError("mode='saved' needs chain_files=['path/to/chain.pem', ...]")
    declared = {"before": before_ca_bundles, "after": after_ca_bundles}
    environments = resolve_sides(before, after, use_pip=use_pip, target=target, groups=groups,
                                 as_of={"before": before_as_of, "after": after_as_of})  # fmt: skip
    sides = [
        side(
            name,
            environment,
            runtime_botocore=runtime_botocore,
            region=region,
            use_pip=use_pip,
            ca_bundles=declared[name],
        )  # fmt: skip
        for name, environment in environments.items()
    ]
    notes = [] if any(declared.values()) else ignored_ca_settings()
    result = _run(sides, mode=mode, region=region, endpoint_hosts=endpoint_hosts, chain_files=chain_files,
                  at=at, timeout=timeout, save_dir=save_dir)  # fmt: skip
    result.notes += notes
    result.allow_unknown = allow_unknown
    return result


def _run(sides: list[Side], *, mode: Mode, region: str, endpoint_hosts, chain_files, at, timeout, save_dir):
    """Collect the chains for ``mode`` and check both sides against them."""
    from helpers import chains, lab

    def fetch(host: str) -> Chain:
        return chains.fetch_chain(host, 443, timeout=timeout)

    options = {"chain_files": chain_files, "timeout": timeout, "save_dir": save_dir}
    if mode is Mode.SAVED:
        return check(*sides, chains.collect(**options), at=at)
    if mode is Mode.LIVE:
        return check(*sides, chains.collect(endpoint_hosts, **options), fetch=fetch, at=at)
    with lab.environment(Mode.LAB, region=region) as env:
        collected = chains.collect(list(endpoint_hosts) or env.checked_hosts(), **options)
        return check(*sides, collected, fetch=fetch, trust=env.trust_view, at=at)


def style_changes(styler):
    """Colour the change column: broke red, fixed green."""
    colours = {
        Change.BROKE: "background-color: #f8d7da",
        Change.FIXED: "background-color: #d4edda",
        Change.UNKNOWN: "background-color: #fff3cd",
    }
    return styler.map(lambda v: colours.get(v, ""), subset=["change"])
