"""The upgrade gate: what each side of an upgrade would trust, and which endpoints the upgrade breaks."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from helpers.incident import REGION
from helpers.kinds import Change, InputError, Mode, Reason
from helpers.requirements import Environment, ResolutionError, resolve

if TYPE_CHECKING:
    from helpers.botocore_facts import DefaultEndpoint
    from helpers.bundles import Bundle
    from helpers.chains import Chain

__all__ = ["DEFAULT_HOST_LABEL", "Side", "UpgradeCheck", "check", "run_check", "side", "style_changes"]


@dataclass
class Side:
    """One side of an upgrade: what it installs, the trust store botocore would load, its default host."""

    name: str  # "before" or "after"
    environment: Environment
    botocore: str | None  # the botocore in effect (from the file, else the runtime's)
    botocore_from: str  # "the file" or "runtime (assumed)"
    bundle: Bundle | None  # None when the kit cannot reconstruct it (see bundle_rule)
    bundle_rule: str  # why this bundle: certifi importable, or botocore's vendored cacert.pem
    default_endpoint: DefaultEndpoint | None = None

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
) -> Side:
    """Resolve one side: its packages, the trust store botocore would use, its default iot-data host.

    botocore uses ``certifi.where()`` whenever certifi is importable, else its vendored ``cacert.pem``.
    A side that installs no botocore (a Lambda layer: the runtime provides it) uses ``runtime_botocore``
    (default: the installed botocore).
    """
    import botocore

    from helpers import botocore_facts, bundles

    environment = spec if isinstance(spec, Environment) else resolve(spec, use_pip=use_pip)
    if environment.botocore:
        botocore_version, botocore_from = environment.botocore, "the file"
    else:
        botocore_version = runtime_botocore or botocore.__version__
        botocore_from = "runtime (given)" if runtime_botocore else "runtime (assumed: the installed botocore)"
    if environment.certifi:
        try:
            bundle = bundles.certifi(environment.certifi)
        except ValueError as exc:
            raise ResolutionError(f"{environment.source}: {exc}") from None
        rule = f"certifi {environment.certifi} is installed, so botocore loads certifi.where()"
    else:
        bundle, rule = botocore_facts.vendored_bundle(botocore_version)
        rule = "no certifi, so botocore loads its vendored cacert.pem: " + rule
    default = botocore_facts.default_data_endpoint(botocore_version, region=region or REGION)
    return Side(name, environment, botocore_version, botocore_from, bundle, rule, default)


@dataclass
class UpgradeCheck:
    """Every endpoint's verdict before and after an upgrade, and what changed."""

    before: Side
    after: Side
    verdicts: pd.DataFrame  # tidy: one row per (endpoint, side)
    at: dt.datetime | None = None
    chains: dict[str, Chain] = field(default_factory=dict)  # every chain checked, default hosts included

    def sides(self) -> pd.DataFrame:
        """One row per side: sources, versions, trust store and default host."""
        return pd.DataFrame([self.before.row(), self.after.row()])

    def changes(self) -> pd.DataFrame:
        """One row per endpoint: host and verdict on each side, and the change (broke, fixed, ...)."""
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
        changes = self.changes()
        return changes.loc[changes["change"] == Change.BROKE, "endpoint"].tolist()

    @property
    def unknown(self) -> list[str]:
        """Endpoints whose verdict on a side could not be computed."""
        changes = self.changes()
        return changes.loc[changes["change"] == Change.UNKNOWN, "endpoint"].tolist()

    @property
    def exit_code(self) -> int:
        """0 when nothing that passed before fails after, else 1."""
        return 1 if self.broken else 0

    def summary(self) -> str:
        """One line: what the upgrade does to TLS, naming the broken endpoints."""
        b, a = self.before, self.after
        move = f"certifi {b.environment.certifi or '(none)'} -> {a.environment.certifi or '(none)'}, "
        move += f"botocore {b.botocore} -> {a.botocore}"
        if self.broken:
            return f"FAIL: the upgrade ({move}) breaks TLS to {', '.join(self.broken)}"
        tail = f"; could not check {', '.join(self.unknown)}" if self.unknown else ""
        return f"ok: the upgrade ({move}) breaks no endpoint that worked before{tail}"

    def as_dict(self) -> dict:
        """JSON-ready: sides, changes, broken, exit code."""
        return {
            "ok": self.exit_code == 0,
            "summary": self.summary(),
            "broken": self.broken,
            "unknown": self.unknown,
            "sides": _records(self.sides()),
            "endpoints": _records(self.changes()),
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
        return {**base, **verdict.row()}

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
    columns = ["endpoint", "side", "host", "trust_store", "ok", "reason", "missing_issuer", "message"]
    checked = {
        **chains,
        **{f"{DEFAULT_HOST_LABEL} ({h})": c for h, c in by_host.items() if c not in chains.values()},
    }
    return UpgradeCheck(before, after, pd.DataFrame(rows, columns=columns), at=at, chains=checked)


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
) -> UpgradeCheck:
    """The whole upgrade check in one call: what ``atskit upgrade-check`` and notebooks 04/05 run.

    ``mode``: "lab" starts the offline lab and checks ``endpoint_hosts`` (default: its legacy, ATS and
    account ATS hosts) against the lab's trust views; "live" captures ``endpoint_hosts`` (HOST or
    HOST:PORT) from the network; "saved" checks ``chain_files`` only and connects nowhere.
    ``save_dir``: also save each captured chain there.
    """
    from helpers import chains, lab

    mode = Mode(mode)
    region = region or REGION
    sides = [
        side(name, spec, runtime_botocore=runtime_botocore, region=region, use_pip=use_pip)
        for name, spec in (("before", before), ("after", after))
    ]

    def fetch(host: str) -> Chain:
        return chains.fetch_chain(host, 443, timeout=timeout)

    if mode is Mode.LIVE and not endpoint_hosts:
        raise InputError("mode='live' needs endpoint_hosts=['HOST[:PORT]', ...] to capture")
    if mode is Mode.SAVED and not chain_files:
        raise InputError("mode='saved' needs chain_files=['path/to/chain.pem', ...]")
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
        "broke": "background-color: #f8d7da",
        "fixed": "background-color: #d4edda",
        "unknown": "background-color: #fff3cd",
    }
    return styler.map(lambda v: colours.get(v, ""), subset=["change"])
