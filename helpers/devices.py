"""Devices: classify an inventory of IoT devices by whether the root each carries verifies its endpoint.

An inventory is CSV with the columns ``device`` (an id), ``endpoint`` (HOST[:PORT][{IP}], port 8883 by
default), ``root_file`` (the PEM the device carries) or ``root_sha256`` (the SHA-256 of the root it
carries, looked up among the real roots of the kit's certifi releases), and optionally ``client``
(``default``, ``rsa-only``, ``ecdsa-only``: what the device's TLS stack offers; ``chains.CLIENT_OFFERS``).
Each endpoint's chain comes from a live capture, saved chain files or the lab, and is verified against a
trust store holding only the device's root; a verdict is computed once per distinct (chain, root) pair.
"""

from __future__ import annotations

import csv
import datetime as dt
import functools
import io
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import _x509, bundles, chains, endpoints
from helpers.kinds import InputError, Mode, Reason

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["COLUMNS", "DEFAULT_PORT", "DeviceCheck", "check_inventory", "read_inventory"]

DEFAULT_PORT = endpoints.MQTT_PORT  # MQTT over TLS, where devices connect
COLUMNS = ["device", "endpoint", "client", "root", "ok", "reason", "message"]
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class _Row:
    """One inventory row, checked: where it came from, its target, client and root key."""

    line: int
    device: str
    endpoint: str
    target: chains.Target
    client: str
    root_key: tuple[str, str]  # ('file', resolved path) or ('sha256', fingerprint)


@dataclass
class DeviceCheck:
    """The verdict of every device of an inventory, and how much work it took."""

    rows: list[dict]  # one per device, COLUMNS
    mode: str
    verifications: int = 0  # distinct (chain, root) verdicts computed
    captures: int = 0  # distinct (endpoint, client) chains obtained
    at: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every device's chain verifies against its root."""
        return all(row["ok"] for row in self.rows)

    def summary(self) -> dict[str, int]:
        """Devices by outcome: 'ok' or the reason they fail, most frequent first."""
        return dict(Counter(str(row["reason"]) for row in self.rows).most_common())

    def frame(self) -> pd.DataFrame:
        """One row per device (COLUMNS)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=COLUMNS)

    def as_dict(self) -> dict:
        """The result as JSON-ready data, layout ``schema: 1``."""
        return {
            "schema": 1,
            "ok": self.ok,
            "mode": self.mode,
            "at": self.at.isoformat() if self.at else None,
            "devices": len(self.rows),
            "summary": self.summary(),
            "verifications": self.verifications,
            "captures": self.captures,
            "results": [{**row, "reason": str(row["reason"])} for row in self.rows],
        }


def read_inventory(path_or_text: str | os.PathLike | Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """The rows of an inventory: a CSV path, CSV text (containing a newline) or mappings already read.

    Each row gets ``_line`` (its line in the file; 2 is the first row). One-line InputError for a file
    that cannot be read or lacks the columns.
    """
    if isinstance(path_or_text, str | os.PathLike) and not (
        isinstance(path_or_text, str) and "\n" in path_or_text
    ):
        path = Path(path_or_text)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the inventory ({exc.__class__.__name__})") from None
        source = str(path)
    elif isinstance(path_or_text, str):
        text, source = path_or_text, "inventory"
    else:
        return [{**row, "_line": str(line)} for line, row in enumerate(path_or_text, start=2)]
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in ("device", "endpoint") if c not in columns]
    if not ("root_file" in columns or "root_sha256" in columns):
        missing.append("root_file or root_sha256")
    if missing:
        raise InputError(
            f"{source}: no {', '.join(missing)} column; an inventory has device, endpoint, "
            "root_file or root_sha256, and optionally client"
        )
    rows, seen = [], {}
    for row in reader:
        if None in row:  # csv puts a row's extra fields under None: a shifted or mistyped row
            raise InputError(f"{source}: inventory row {reader.line_num} has more fields than the header")
        device = (row.get("device") or "").strip()
        if device and device in seen:
            raise InputError(
                f"{source}: inventory rows {seen[device]} and {reader.line_num} are both device {device!r}; "
                "give each device one row"
            )
        seen[device] = reader.line_num
        cleaned = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        rows.append(cleaned | {"_line": str(reader.line_num)})
    return rows


def check_inventory(
    rows_or_path: str | os.PathLike | Iterable[Mapping[str, str]],
    *,
    mode: str = Mode.LIVE,
    chain_files: Sequence[str | os.PathLike] = (),
    at: dt.datetime | dt.date | str | None = None,
    timeout: float = 10.0,
) -> DeviceCheck:
    """Verify every device's endpoint chain against a trust store of the one root it carries.

    ``mode``: 'live' captures each (endpoint, client) once with ``chains.fetch_chain``; 'saved' takes
    the chains from ``chain_files`` (matched by host, port and the '# client_offer' a capture records;
    none for 'default'); 'lab' captures from a lab started per region (or takes ``chain_files`` saved
    from a lab), with each real root mapped to its lab twin (``lab.trust_view``). A capture that fails
    is that device's failure (reason 'unknown'). Bad input (missing columns, an unknown fingerprint,
    an unreadable root file, a bad endpoint or client) raises a one-line InputError naming the row.
    Verdicts are computed once per distinct (chain, root) and counted in ``DeviceCheck.verifications``.
    """
    mode = Mode(mode)
    moment = chains.parse_time(at) or dt.datetime.now(dt.UTC)
    base = _inventory_folder(rows_or_path)
    resolved: dict[str, str] = {}  # root_file as written -> its absolute path, resolved once
    rows = [_parse_row(raw, base, resolved) for raw in read_inventory(rows_or_path)]
    if not rows:
        raise InputError("the inventory has no devices; add one row per device under the header")
    first_row = {row.root_key: row for row in reversed(rows)}  # each distinct root, with its first row
    roots = {key: _load_root(key, row) for key, row in reversed(first_row.items())}
    wanted = list(dict.fromkeys((row.target, row.client) for row in rows))
    if mode is Mode.LAB:
        chain_of = _saved_chains(wanted, chain_files) if chain_files else _lab_chains(wanted, timeout=timeout)
        roots = _lab_views(roots)
    elif mode is Mode.SAVED:
        chain_of = _saved_chains(wanted, chain_files)
    else:
        chain_of = {key: _capture(*key, timeout=timeout) for key in wanted}
    verdicts: dict[tuple, chains.Verdict] = {}
    results = []
    for row in rows:
        chain = chain_of[(row.target, row.client)]
        root = roots[row.root_key]
        base_row = {"device": row.device, "endpoint": row.endpoint, "client": row.client, "root": root.name}
        if isinstance(chain, str):  # the capture failed: its one-line error
            results.append(base_row | {"ok": False, "reason": Reason.UNKNOWN, "message": chain})
            continue
        key = (row.target, row.client, row.root_key)
        verdict = verdicts.get(key)
        if verdict is None:
            verdict = verdicts[key] = chains.verify(chain, root, hostname=row.target.host, at=moment)
        results.append(base_row | {"ok": verdict.ok, "reason": verdict.reason, "message": verdict.message})
    return DeviceCheck(results, str(mode), verifications=len(verdicts), captures=len(chain_of), at=moment)


def _inventory_folder(rows_or_path) -> Path:
    """What a root_file is relative to: the inventory file's folder (the working folder for text or rows)."""
    if isinstance(rows_or_path, str | os.PathLike) and "\n" not in str(rows_or_path):
        return Path(rows_or_path).parent
    return Path.cwd()


def _parse_row(raw: Mapping[str, str], base: Path, resolved: dict[str, str]) -> _Row:
    """An inventory row checked; one-line InputError naming the row otherwise."""
    line = raw.get("_line", "?")
    device = (raw.get("device") or "").strip()
    where = f"inventory row {line}" + (f" (device {device!r})" if device else "")
    if not device:
        raise InputError(f"{where}: no device id; fill the device column")
    endpoint = (raw.get("endpoint") or "").strip()
    try:
        target = _target(endpoint)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    client = (raw.get("client") or "").strip() or "default"
    if client not in chains.CLIENT_OFFERS:
        raise InputError(f"{where}: client {client!r}: use one of {', '.join(chains.CLIENT_OFFERS)}")
    root_file, root_sha = (raw.get("root_file") or "").strip(), (raw.get("root_sha256") or "").strip()
    if bool(root_file) == bool(root_sha):
        raise InputError(f"{where}: give exactly one of root_file and root_sha256")
    if root_file:
        if root_file not in resolved:
            resolved[root_file] = str((base / root_file).resolve())
        return _Row(int(line) if line.isdigit() else 0, device, endpoint, target, client,
                    ("file", resolved[root_file]))  # fmt: skip
    fingerprint = root_sha.lower().replace(":", "")
    if not _SHA256.match(fingerprint):
        raise InputError(f"{where}: root_sha256 {root_sha!r} is not a SHA-256 (64 hex digits)")
    return _Row(int(line) if line.isdigit() else 0, device, endpoint, target, client, ("sha256", fingerprint))


@functools.lru_cache(maxsize=4096)
def _target(endpoint: str) -> chains.Target:
    """``chains.parse_target`` with port 8883 by default, once per distinct endpoint text."""
    return chains.parse_target(endpoint, default_port=DEFAULT_PORT)


def _load_root(key: tuple[str, str], row: _Row) -> bundles.Bundle:
    """The trust store of one device root: its PEM file, or the real root of that fingerprint."""
    kind, value = key
    where = f"inventory row {row.line} (device {row.device!r})"
    if kind == "file":
        path = Path(value)
        if not path.is_file():
            raise InputError(f"{where}: root_file {path}: no such file; give the PEM the device carries")
        try:
            bundle = bundles.from_pem(path)
        except (InputError, OSError) as exc:
            raise InputError(f"{where}: root_file {path}: {exc}") from None
        first = _x509.display_name(bundle.certificates[0].subject)
        bundle.name = first if len(bundle) == 1 else f"{path.name} ({len(bundle)} roots)"
        return bundle
    for version in _releases_holding(value):
        found = bundles.certifi(version).find(value)
        if found:
            name = _x509.display_name(found[0].subject)
            return bundles.from_pem(_x509.to_pem(found[:1]), name=name)
    raise InputError(
        f"{where}: root_sha256 {value[:16]}...: no root with this fingerprint in any certifi release; "
        "check the value (sha256 of the DER certificate) or give root_file"
    )


def _releases_holding(fingerprint: str) -> list[str]:
    """The certifi releases holding the root of this full fingerprint (newest first), or none."""
    try:
        presence = bundles.root_presence(fingerprint)
    except InputError:
        return []
    presence = presence[presence["present"] & presence["fingerprint_sha256"].eq(fingerprint)]
    return [str(v) for v in reversed(presence["version"].tolist())]


def _capture(target: chains.Target, client: str, *, timeout: float) -> chains.Chain | str:
    """The chain ``target`` presents to ``client``, or the one-line reason it could not be captured."""
    where = {"server_name": target.host} if target.address else {}
    try:
        return chains.fetch_chain(
            target.address or target.host, target.port, timeout=timeout, client_offer=client, **where
        )
    except chains.ChainError as exc:
        return str(exc)


def _region(host: str) -> str | None:
    """The region of an ``*.amazonaws.com`` IoT host name, else None."""
    labels = host.lower().rstrip(".").split(".")
    if labels[-2:] != ["amazonaws", "com"] or len(labels) < 4:
        return None
    return labels[-3]


def _lab_chains(wanted: list[tuple[chains.Target, str]], *, timeout: float) -> dict:
    """Each (target, client)'s chain from a lab of its region (one lab at a time)."""
    from helpers import lab

    by_region: dict[str, list[tuple[chains.Target, str]]] = {}
    for target, client in wanted:
        region = _region(target.host)
        if region is None or target.address:
            raise InputError(
                f"endpoint {target.label}: the lab serves AWS IoT names only (HOST.iot.REGION.amazonaws.com, "
                "without {IP}); check it live or from saved chains"
            )
        by_region.setdefault(region, []).append((target, client))
    found: dict = {}
    for region, keys in by_region.items():
        with lab.environment("lab", region=region):
            found |= {key: _capture(*key, timeout=timeout) for key in keys}
    return found


def _lab_views(roots: dict[tuple[str, str], bundles.Bundle]) -> dict[tuple[str, str], bundles.Bundle]:
    """Each device root's lab trust view: the real root replaced by its lab twin, named as the root."""
    from helpers import lab

    views = {}
    for key, bundle in roots.items():
        view = lab.trust_view(bundle)
        view.name, view.version = bundle.name, None
        views[key] = view
    return views


def _saved_chains(
    wanted: list[tuple[chains.Target, str]], chain_files: Sequence[str | os.PathLike]
) -> dict[tuple[chains.Target, str], chains.Chain]:
    """Each (target, client)'s chain among the saved files, by host, port and recorded client offer."""
    if not chain_files:
        raise InputError("no chains to check against: pass --chain-file, --lab, or check live")
    saved: dict[tuple[str, int | None, str], chains.Chain] = {}
    for path in chain_files:
        chain = chains.load_chain(path)
        if not chain.hostname:
            raise InputError(f"{path}: the chain records no host; save it with atskit or add '# host: NAME'")
        offer = chain.notes.get("client_offer", "default")
        saved.setdefault((chain.hostname.lower(), chain.port, offer), chain)
    found = {}
    for target, client in wanted:
        chain = saved.get((target.host, target.port, client))
        if chain is None:
            offer = "" if client == "default" else f" --all-chains (the {client} chain)"
            raise InputError(
                f"no saved chain for {target.host}:{target.port} as a {client} client; capture it with "
                f"'atskit check {target.host}:{target.port}{offer} --save-chains DIR'"
            )
        found[(target, client)] = chain
    return found


# --- a fleet's migration, and a real device's connection ---------------------------------------------

OUTCOMES = ("fails now", "breaks on ATS migration", "breaks on legacy retirement", "fine")


def ats_counterpart(endpoint: str) -> str:
    """The ATS endpoint a legacy one migrates to (``<prefix>.iot`` -> ``<prefix>-ats.iot``, ``data.iot`` ->
    ``data-ats.iot``), port kept; an ATS endpoint is its own."""
    target = chains.parse_target(endpoint, default_port=DEFAULT_PORT)
    first, _, rest = target.host.partition(".")
    host = target.host if first.endswith("-ats") else f"{first}-ats.{rest}"
    return f"{host}:{target.port}"


def classify_fleet(
    rows_or_path: str | os.PathLike | Iterable[Mapping[str, str]],
    *,
    mode: str = Mode.LAB,
    chain_files: Sequence[str | os.PathLike] = (),
    at: dt.datetime | dt.date | str | None = None,
    timeout: float = 10.0,
) -> pd.DataFrame:
    """Each device's outcome when AWS retires the legacy endpoints (one of :data:`OUTCOMES`).

    - 'fails now': its root does not verify the endpoint it uses today;
    - 'breaks on ATS migration': it works on its legacy endpoint, but its root does not verify the ATS
      chain: moving it to ``-ats`` breaks it until its root file is replaced (a VeriSign G5 root-CA.crt);
    - 'breaks on legacy retirement': it works on its legacy endpoint and its root verifies the ATS chain
      too: only its endpoint must change before the legacy one is retired;
    - 'fine': it is on an ATS endpoint and its root verifies that chain.
    """
    import pandas as pd

    rows = read_inventory(rows_or_path)
    folder = _inventory_folder(rows_or_path)  # rows are passed on as mappings: root files made absolute here
    rows = [row | {"root_file": str(folder / row["root_file"])} if row.get("root_file") else row
            for row in rows]  # fmt: skip
    moved = [{**row, "device": f"{row['device']} (ATS)", "endpoint": ats_counterpart(row["endpoint"])}
             for row in rows]  # fmt: skip
    checked = check_inventory([*rows, *moved], mode=mode, chain_files=chain_files, at=at, timeout=timeout)
    now, on_ats = checked.rows[: len(rows)], checked.rows[len(rows) :]
    table = []
    for row, today, ats in zip(rows, now, on_ats, strict=True):
        host = chains.parse_target(row["endpoint"], default_port=DEFAULT_PORT).host
        on_legacy = not host.partition(".")[0].endswith("-ats")
        if not today["ok"]:
            outcome = OUTCOMES[0]
        elif on_legacy:
            outcome = OUTCOMES[2] if ats["ok"] else OUTCOMES[1]
        else:
            outcome = OUTCOMES[3]
        table.append({"device": row["device"], "endpoint": today["endpoint"], "root": today["root"],
                      "ok_now": today["ok"], "ok_on_ats": ats["ok"], "outcome": outcome})  # fmt: skip
    return pd.DataFrame(table, columns=["device", "endpoint", "root", "ok_now", "ok_on_ats", "outcome"])


@dataclass(frozen=True)
class MqttAttempt:
    """What a real MQTT client did: connected (and published) or the one-line error it raised."""

    library: str
    endpoint: str
    ok: bool
    error: str = ""
    published: bool = False


def try_mqtt(
    host: str,
    port: int,
    *,
    root_file: str | os.PathLike,
    cert_file: str | os.PathLike,
    key_file: str | os.PathLike,
    alpn: str | None = None,
    library: str = "paho",
    publish: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> MqttAttempt:
    """Connect a real device client (``paho`` for paho-mqtt, ``sdk`` for AWSIoTPythonSDK) as a device
    does: the root file it carries, its certificate and key; optionally publish ``(topic, payload)`` at
    QoS 1; disconnect. A failure is returned as the library's own error, in one line (never raised)."""
    label = f"{host}:{port}" + (f" (ALPN {alpn})" if alpn else "")
    try:
        if library == "paho":
            _paho_session(host, port, root_file, cert_file, key_file, alpn, publish, timeout)
        elif library == "sdk":
            _sdk_session(host, port, root_file, cert_file, key_file, publish, timeout)
        else:
            raise InputError(f"library={library!r}: use 'paho' (paho-mqtt) or 'sdk' (AWSIoTPythonSDK)")
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - the library's error is the result: shown, not raised
        return MqttAttempt(library, label, False, " ".join(f"{type(exc).__name__}: {exc}".split()))
    return MqttAttempt(library, label, True, published=publish is not None)


def _paho_session(host, port, root_file, cert_file, key_file, alpn, publish, timeout) -> None:
    """paho-mqtt: connect (TLS with the root file and device certificate), publish, disconnect."""
    import queue
    import ssl
    import uuid

    import paho.mqtt.client as paho

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"device-{uuid.uuid4().hex[:8]}")
    context = ssl.create_default_context(cafile=str(root_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    if alpn:
        context.set_alpn_protocols([alpn])
    client.tls_set_context(context)
    connected: queue.Queue = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        reason = connected.get(timeout=timeout)
        if reason != 0:
            raise ConnectionRefusedError(f"CONNACK {reason}")
        if publish is not None:
            client.publish(*publish, qos=1).wait_for_publish(timeout=timeout)
    finally:
        client.disconnect()
        client.loop_stop()


def _sdk_session(host, port, root_file, cert_file, key_file, publish, timeout) -> None:
    """AWSIoTPythonSDK (the incident era's device SDK; it offers ALPN x-amzn-mqtt-ca by itself on 443)."""
    import uuid
    import warnings

    from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient

    client = AWSIoTMQTTClient(f"sdk-{uuid.uuid4().hex[:8]}")
    client.configureEndpoint(host, port)
    client.configureCredentials(str(root_file), str(key_file), str(cert_file))
    client.configureConnectDisconnectTimeout(timeout)
    client.configureMQTTOperationTimeout(timeout)
    client.configureAutoReconnectBackoffTime(1, 2, 3)
    with warnings.catch_warnings():  # the SDK's own ssl.PROTOCOL_TLS deprecation, not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        client.connect(keepAliveIntervalSecond=30)
    try:
        if publish is not None:
            client.publish(*publish, 1)
    finally:
        client.disconnect()
