"""Chains: capture what a server presents, verify it against any trust store at any time, say what's wrong."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.x509.verification import DNSName, IPAddress, PolicyBuilder, Store, VerificationError

from helpers import _x509
from helpers._capture import (  # the capture lives in its own module; its public names are served here
    CLIENT_OFFERS,
    ChainError,
    Target,
    fetch_chain,
    fetch_chains,
    offer,
    parse_endpoint,
    parse_target,
)
from helpers._io import atomic_write_text
from helpers.kinds import InputError, MissingFileError, Reason

if TYPE_CHECKING:  # pandas is imported where a table is built, never for a verdict
    import pandas as pd

    from helpers.bundles import Bundle

__all__ = [
    "CLIENT_OFFERS",
    "Chain",
    "ChainError",
    "Target",
    "Verdict",
    "across_bundles",
    "across_certifi",
    "collect",
    "fetch_chain",
    "fetch_chains",
    "load_chain",
    "matrix",
    "offer",
    "parse_endpoint",
    "parse_target",
    "parse_time",
    "style_verdicts",
    "transitions",
    "verify",
]

VERDICT_COLUMNS = ["ok", "reason", "missing_issuer", "message"]
_HEADER_FIELDS = (
    "host",
    "port",
    "server_name",
    "captured_at",
    "peer_address",
    "tls_version",
    "cipher",
    "alpn",
)
_HEADER_LINE = re.compile(r"^#\s*([a-z_]+):\s?(.*)$")
_MAX_DEPTH = 8  # cryptography's default maximum chain depth


@dataclass(eq=False)
class Chain:
    """The certificates a server presented (leaf first) and where and when they were captured."""

    certificates: list[x509.Certificate]
    host: str | None = None
    port: int | None = None
    server_name: str | None = None  # the SNI sent; None means the host was used
    captured_at: dt.datetime | None = None
    peer_address: str | None = None
    tls_version: str | None = None
    cipher: str | None = None
    alpn: str | None = None  # the protocol the server selected, if ALPN was offered
    notes: dict[str, str] = field(default_factory=dict)  # other '# key: value' lines of a saved chain

    def __post_init__(self) -> None:
        if not self.certificates:
            raise InputError("a Chain needs at least one certificate (the server's own, first)")

    @property
    def leaf(self) -> x509.Certificate:
        """The server's own certificate."""
        return self.certificates[0]

    @property
    def intermediates(self) -> list[x509.Certificate]:
        """Every other certificate the server sent, in the order it sent them."""
        return self.certificates[1:]

    @property
    def hostname(self) -> str | None:
        """The name a client checks the leaf against: the SNI sent, else the host."""
        return self.server_name or self.host

    @property
    def label(self) -> str:
        """'host:port' for a captured chain, else the leaf's name."""
        if self.host:
            return f"{self.host}:{self.port}" if self.port else self.host
        return _x509.display_name(self.leaf.subject)

    def __len__(self) -> int:
        return len(self.certificates)

    def __repr__(self) -> str:
        names = " -> ".join(_x509.display_name(c.subject) for c in self.certificates)
        return f"<Chain {self.label}: {names}>"

    def frame(self) -> pd.DataFrame:
        """One row per presented certificate: position, role, who signed whom, the usual columns, SANs."""
        import pandas as pd

        rows = []
        for position, cert in enumerate(self.certificates):
            previous = self.certificates[position - 1] if position else None
            rows.append(
                {
                    "position": position,
                    "role": "leaf" if position == 0 else ("root" if _self_signed(cert) else "intermediate"),
                    "signs_previous": None if previous is None else _issued_by(previous, cert),
                    **_x509.describe(cert),
                    "sans": "; ".join(_x509.subject_alt_names(cert)) if position == 0 else None,
                }
            )
        columns = ["position", "role", "signs_previous", *_x509.DESCRIBE_COLUMNS, "sans"]
        return pd.DataFrame(rows, columns=columns)

    def pem(self) -> bytes:
        """The certificates as PEM, leaf first, without the metadata header."""
        return _x509.to_pem(self.certificates)

    def header(self) -> str:
        """The metadata as '# key: value' lines (what :meth:`save` writes before the PEM)."""
        lines = ["# atskit chain: certificates as the server presented them, leaf first"]
        for key in _HEADER_FIELDS:
            value = getattr(self, key)
            if value is not None:
                lines.append(f"# {key}: {value.isoformat() if isinstance(value, dt.datetime) else value}")
        lines += [f"# {key}: {' '.join(str(value).split())}" for key, value in self.notes.items()]
        return "\n".join(lines) + "\n"

    def save(self, path: str | os.PathLike) -> Path:
        """Write the chain as PEM with its metadata header (atomically) and return the path."""
        return atomic_write_text(path, self.header() + self.pem().decode("ascii"))


def load_chain(path_or_pem: str | os.PathLike | bytes) -> Chain:
    """A chain from a file or PEM text: a saved chain, ``openssl s_client -showcerts`` output, any PEM.

    '# key: value' lines before the first certificate fill the metadata; other text is ignored.
    """
    if isinstance(path_or_pem, bytes):
        text, source = path_or_pem.decode("utf-8", "replace"), "<PEM bytes>"
    elif isinstance(path_or_pem, str) and "-----BEGIN" in path_or_pem:
        text, source = path_or_pem, "<PEM text>"
    else:
        path = Path(path_or_pem)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such chain file; pass a PEM file saved by Chain.save()")
        text, source = path.read_text("utf-8", "replace"), str(path)
    text = text.removeprefix("\ufeff")  # a byte-order mark would hide the '# host:' header
    parsed = _x509.parse_pem(text)
    if parsed.problems:
        problem = parsed.problems[0]
        raise InputError(
            f"{source}: certificate {problem.position + 1} cannot be read ({problem.reason}); "
            "pass the PEM exactly as captured"
        )
    if not parsed.certificates:
        raise InputError(f"{source}: no PEM CERTIFICATE blocks found; pass a chain saved by --save-chains")
    meta: dict[str, object] = {}
    notes: dict[str, str] = {}
    for line in text.split("-----BEGIN", 1)[0].splitlines():
        match = _HEADER_LINE.match(line.strip())
        if not match:
            continue
        key, value = match.group(1), match.group(2).strip()
        if key not in _HEADER_FIELDS:
            notes[key] = value
        elif key == "port":
            if not value.isdigit():
                raise InputError(f"{source}: header 'port: {value}' is not a port number; fix or remove it")
            meta[key] = int(value)
        elif key == "captured_at":
            try:
                meta[key] = dt.datetime.fromisoformat(value)
            except ValueError:
                raise InputError(
                    f"{source}: header 'captured_at: {value}' is not an ISO 8601 time; fix or remove it"
                ) from None
        else:
            meta[key] = value
    return Chain(certificates=parsed.certificates, notes=notes, **meta)


# --- what to check: saved chains and live captures ------------------------------------------------


def collect(
    endpoint_hosts: Sequence[str] = (),
    *,
    chain_files: Sequence[str | os.PathLike] = (),
    timeout: float = 10.0,
    save_dir: str | os.PathLike | None = None,
    all_chains: bool = False,
    alpn: str | None = None,
) -> dict[str, Chain]:
    """Every chain to check, by label: saved chain files, then live captures of ``endpoint_hosts``
    (HOST, HOST:PORT or HOST:PORT{IP}: connect to IP, send HOST), each saved as ``HOST_PORT.pem`` in
    ``save_dir`` if given; ``alpn`` is offered on every capture (e.g. 'x-amzn-mqtt-ca').

    ``all_chains``: capture every chain each endpoint serves (:func:`fetch_chains`), labelled
    ``HOST:PORT (rsa-only)`` / ``(ecdsa-only)`` and saved as ``HOST_PORT_rsa-only.pem``.
    """
    collected: dict[str, Chain] = {}

    def add(label: str, chain: Chain) -> None:  # the same endpoint twice (a file and a capture): keep both
        collected[label if label not in collected else f"{label} #{len(collected) + 1}"] = chain

    for path in chain_files:
        chain = load_chain(Path(path))
        if not chain.hostname:
            raise InputError(f"{path}: the chain records no host; save it with atskit or add '# host: NAME'")
        add(f"{chain.label} ({Path(path).name})", chain)
    for target in [parse_target(h) for h in endpoint_hosts]:
        host, port = target.host, target.port
        where = {"server_name": host} if target.address else {}
        connect = target.address or host
        if not all_chains:
            captured = {"": fetch_chain(connect, port, timeout=timeout, alpn=alpn, **where)}
        else:
            captured = fetch_chains(connect, port, timeout=timeout, alpn=alpn, **where)
        for client_offer, chain in captured.items():
            add(f"{target.label} ({client_offer})" if client_offer else target.label, chain)
            if save_dir is not None:
                chain.save(Path(save_dir) / f"{host}_{port}{'_' + client_offer if client_offer else ''}.pem")
    return collected


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """Whether a chain verifies against a bundle for a hostname at a moment, and if not, why."""

    ok: bool
    reason: Reason
    message: str  # one plain sentence
    missing_issuer: str | None = None  # the name the path could not reach (missing-*, self-signed)
    path: tuple[x509.Certificate, ...] = ()  # leaf -> trust anchor, when ok
    bundle: str = ""  # the bundle's label
    hostname: str = ""
    at: dt.datetime | None = None
    detail: str | None = None  # cryptography's own error text, when not ok

    def row(self) -> dict:
        """The verdict's tidy columns (ok, reason, missing_issuer, message)."""
        return {column: getattr(self, column) for column in VERDICT_COLUMNS}


class _Trust:
    """A bundle prepared for verification: its cryptography Store, and (when a failure needs them) its
    roots by subject name and as a set."""

    def __init__(self, certificates: list[x509.Certificate]) -> None:
        self.certificates = certificates
        self.store = Store(certificates) if certificates else None  # cryptography refuses an empty Store

    @cached_property
    def has_lab_twins(self) -> bool:
        """Whether the store holds lab twins (a lab trust view)."""
        return any(_x509.is_lab_twin_name(cert.subject) for cert in self.certificates)

    @cached_property
    def by_subject(self) -> dict[bytes, list[x509.Certificate]]:
        """Subject name DER -> roots of that name."""
        index: dict[bytes, list[x509.Certificate]] = {}
        for cert in self.certificates:
            index.setdefault(_names(cert)[0], []).append(cert)
        return index


_TRUST: weakref.WeakKeyDictionary[Bundle, _Trust] = weakref.WeakKeyDictionary()


def _trust(bundle: Bundle) -> _Trust:
    """The bundle's store and index, built once per Bundle object and reused."""
    trust = _TRUST.get(bundle)
    if trust is None:
        trust = _TRUST[bundle] = _Trust(list(bundle.certificates))
    return trust


def _server_name(hostname: str) -> DNSName | IPAddress:
    """cryptography's subject for a hostname: an IPAddress for an IP literal, else a DNSName."""
    try:
        return IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        pass
    return DNSName(hostname)


def parse_time(value: dt.datetime | dt.date | str | None) -> dt.datetime | None:
    """A moment to verify at, as an aware UTC time: a datetime, a date, 'YYYY-MM-DD' or ISO 8601 text
    (a naive time is UTC); None stays None (meaning now). ValueError says what to write instead."""
    if value is None or isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        moment = dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InputError(
                "not a date: use YYYY-MM-DD or an ISO 8601 time like 2021-12-03T10:00:00Z"
            ) from None
    else:
        raise InputError(f"not a date ({type(value).__name__}): give a datetime, a date or YYYY-MM-DD text")
    if moment is None:
        return None
    try:
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    except OverflowError:
        bound = "after 0001-01-01" if moment.year < 5000 else "before 9999-12-31"
        raise InputError(f"out of range once converted to UTC; use a date {bound}") from None


def _utc(at: dt.datetime | dt.date | str | None) -> dt.datetime:
    """``at`` as an aware UTC time, now when None (see :func:`parse_time`)."""
    return parse_time(at) or dt.datetime.now(dt.UTC)


def verify(
    chain: Chain, bundle: Bundle, *, hostname: str, at: dt.datetime | dt.date | str | None = None
) -> Verdict:
    """Verify ``chain`` for ``hostname`` against ``bundle`` at ``at`` (default now) and say what is wrong.

    The verdict is cryptography's (``cryptography.x509.verification``, server policy). When it fails,
    the reason is derived from the chain and the store, checked in the order OpenSSL reports them:

    1. Path. Follow issuers from the leaf (name match and a valid signature), preferring a store
       certificate over a presented one at each step. If no store certificate is reached:
       a lone self-signed leaf is ``self-signed``; a self-signed certificate above the leaf (a root the
       server sent) is ``missing-root``; otherwise the walk stopped at a certificate whose issuer is
       neither presented nor in the store. If that certificate is the leaf itself, the issuer is an
       intermediate (a root never signs a server certificate directly: CA/Browser Forum Baseline
       Requirements 6.1.7), so the reason is ``missing-intermediate``: the server did not send it.
       If it is a CA certificate the server sent, the gap is above every intermediate the server sent,
       where the root belongs: ``missing-root`` (the incident: [leaf, Symantec G4], G5 absent).
       ``missing_issuer`` names the certificate that could not be reached. (A server that sends some
       but not all of several intermediates looks like missing-root; without the absent certificate no
       offline rule can tell; the message, "issued by X, which B does not contain", is true either way.)
    2. Hostname: the leaf's subjectAltName does not cover ``hostname`` -> ``hostname-mismatch``.
    3. Time: a certificate of the path is outside its validity at ``at`` -> ``expired`` or
       ``not-yet-valid``.
    4. Anything else cryptography rejects (key usage, extensions, ...) -> ``other`` with its text.

    Known difference: a store holding only an intermediate is a trust anchor here (as with Python 3.13's
    default ``VERIFY_X509_PARTIAL_CHAIN``) but not for OpenSSL's default flags on older Pythons.
    """
    at = _utc(at)
    trust = _trust(bundle)
    subject = _server_name(hostname)
    base = {"bundle": bundle.label, "hostname": hostname, "at": at}
    detail = f"{bundle.label} is empty"
    if trust.store is not None:
        try:
            verifier = PolicyBuilder().store(trust.store).time(at).build_server_verifier(subject)
        except ValueError:  # cryptography checks the name here
            raise InputError(f"hostname={hostname!r} is neither a DNS name nor an IP address") from None
        try:
            path = verifier.verify(chain.leaf, chain.intermediates)
        except VerificationError as exc:
            detail = str(exc)
        else:
            names = " -> ".join(f"'{_x509.display_name(c.subject)}'" for c in path)
            message = f"The chain verifies for '{hostname}' against {bundle.label}: {names}."
            return Verdict(True, Reason.OK, message, path=tuple(path), **base)
    diagnosis = _diagnose(chain, bundle, trust, hostname=hostname, at=at, detail=detail)
    return Verdict(False, **diagnosis, detail=detail, **base)


def _diagnose(
    chain: Chain, bundle: Bundle, trust: _Trust, *, hostname: str, at: dt.datetime, detail: str
) -> dict:
    """reason, message and missing_issuer for a chain cryptography rejected (rules in :func:`verify`)."""
    label = bundle.label
    path, anchored = _walk(chain, trust)
    top = path[-1]
    top_name = _x509.display_name(top.subject)
    if not anchored:
        if _self_signed(top):
            if len(path) == 1:
                message = (
                    f"The server's certificate '{top_name}' is self-signed and {label} does not contain it."
                )
                return {"reason": Reason.SELF_SIGNED, "message": message, "missing_issuer": top_name}
            message = (
                f"The chain ends at the root '{top_name}', which the server sent "
                f"but {label} does not contain."
            )
            return {"reason": Reason.MISSING_ROOT, "message": message, "missing_issuer": top_name}
        issuer = _x509.display_name(top.issuer)
        same_name = (
            f" ({label} has a certificate of that name, but with a different key)"
            if trust.by_subject.get(_names(top)[1])
            else ""
        )
        named, lacking = f"'{issuer}'", f"{label} does not contain"
        if _x509.is_lab_twin_name(top.issuer):  # a lab chain: only lab trust views hold its twins
            named = f"the kit's lab twin of '{issuer}'"
            if not trust.has_lab_twins:
                named, same_name = named + " (no real bundle has it: check a lab chain with --lab)", ""
        if len(path) == 1:
            message = (
                f"The server did not send the intermediate {named} that issued its certificate, "
                f"and {lacking} it{same_name}."
            )
            return {"reason": Reason.MISSING_INTERMEDIATE, "message": message, "missing_issuer": issuer}
        message = f"The chain ends at a certificate issued by {named}, which {lacking}{same_name}."
        return {"reason": Reason.MISSING_ROOT, "message": message, "missing_issuer": issuer}
    if not _covers(chain.leaf, hostname):
        names = ", ".join(f"'{n}'" for n in _x509.subject_alt_names(chain.leaf)) or "no names"
        message = f"The server's certificate is for {names}, not '{hostname}'."
        return {"reason": Reason.HOSTNAME_MISMATCH, "message": message, "missing_issuer": None}
    for cert in path:
        name = _x509.display_name(cert.subject)
        if at > cert.not_valid_after_utc:
            message = (
                f"'{name}' expired on {cert.not_valid_after_utc:%Y-%m-%d} "
                f"(checked at {at:%Y-%m-%d %H:%M} UTC)."
            )
            return {"reason": Reason.EXPIRED, "message": message, "missing_issuer": None}
        if at < cert.not_valid_before_utc:
            message = (
                f"'{name}' is not valid before {cert.not_valid_before_utc:%Y-%m-%d} "
                f"(checked at {at:%Y-%m-%d %H:%M} UTC)."
            )
            return {"reason": Reason.NOT_YET_VALID, "message": message, "missing_issuer": None}
    path_names = " -> ".join(f"'{_x509.display_name(c.subject)}'" for c in path)
    why = detail.split(" (encountered processing", 1)[0].removeprefix("validation failed: ")
    message = f"The path {path_names} reaches {label}, but cryptography rejects it ({why})."
    return {"reason": Reason.OTHER, "message": message, "missing_issuer": None}


def _walk(chain: Chain, trust: _Trust) -> tuple[list[x509.Certificate], bool]:
    """Follow issuers from the leaf, store first, then presented certificates; (path, reached the store)."""
    path = [chain.leaf]
    unused = list(chain.intermediates)
    while len(path) <= _MAX_DEPTH:
        current = path[-1]
        if current in trust.by_subject.get(_names(current)[0], ()):
            return path, True
        candidates = trust.by_subject.get(_names(current)[1], ())
        anchor = next((c for c in candidates if _issued_by(current, c)), None)
        if anchor is not None:
            return [*path, anchor], True
        if _self_signed(current):
            return path, False
        issuer = next((c for c in unused if _issued_by(current, c)), None)
        if issuer is None:
            return path, False
        unused.remove(issuer)
        path.append(issuer)
    return path, False


_ISSUED: dict[tuple[bytes, bytes], bool] = {}  # (signature, issuer's signature) -> issued; no certificates
_ISSUED_MAX = 4096


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` issued ``cert``: key identifiers (where both have one), then the signature.

    Answers are remembered by the two certificates' signatures (bounded; no certificate is kept).
    """
    key = (cert.signature, issuer.signature)
    known = _ISSUED.get(key)
    if known is None:
        if len(_ISSUED) >= _ISSUED_MAX:
            _ISSUED.clear()
        known = _ISSUED[key] = _signed_by(cert, issuer)
    return known


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """:func:`_issued_by`, uncached."""
    authority_key, subject_key = (
        _key_id(cert, x509.AuthorityKeyIdentifier),
        _key_id(issuer, x509.SubjectKeyIdentifier),
    )
    if authority_key and subject_key and authority_key != subject_key:
        return False  # as OpenSSL's issuer check: different key identifiers, not this issuer
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # ValueError (names), InvalidSignature, TypeError (unsupported key)
        return False
    return True


def _key_id(cert: x509.Certificate, kind: type) -> bytes | None:
    """The certificate's authority or subject key identifier, None where it has none."""
    try:
        value = cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    return value.key_identifier if kind is x509.AuthorityKeyIdentifier else value.digest


_NAME_DER: dict[bytes, tuple[bytes, bytes]] = {}  # signature -> (subject DER, issuer DER); no certificates
_NAME_DER_MAX = 8192


def _names(cert: x509.Certificate) -> tuple[bytes, bytes]:
    """DER of the certificate's subject and issuer names: cheap, exact keys for name lookups.

    Remembered by the certificate's signature (bounded; no certificate is kept): the roots of one
    certifi release recur in most others.
    """
    key = cert.signature
    names = _NAME_DER.get(key)
    if names is None:
        if len(_NAME_DER) >= _NAME_DER_MAX:
            _NAME_DER.clear()
        names = _NAME_DER[key] = (cert.subject.public_bytes(), cert.issuer.public_bytes())
    return names


def _self_signed(cert: x509.Certificate) -> bool:
    """Whether the certificate is self-issued and signed by its own key."""
    subject, issuer = _names(cert)
    return subject == issuer and _issued_by(cert, cert)


def _covers(leaf: x509.Certificate, hostname: str) -> bool:
    """Whether the leaf's subjectAltName covers ``hostname`` (exact, or '*' as the whole first label)."""
    names = _x509.subject_alt_names(leaf)
    try:
        address = ipaddress.ip_address(hostname)
    except ValueError:
        address = None
    if address is not None:
        return any(_as_ip(name) == address for name in names)
    host = hostname.lower().rstrip(".")
    for name in (n.lower().rstrip(".") for n in names):
        if name == host or (name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in name[2:]):
            return True
    return False


def _as_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``text`` as an IP address, or None."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# --- tables ----------------------------------------------------------------------------------------


def matrix(
    chains: Mapping[str, Chain] | Iterable[Chain],
    bundles: Iterable[Bundle],
    *,
    at: dt.datetime | str | None = None,
) -> list[dict]:
    """One row per (endpoint, bundle): endpoint, host, bundle, ok, reason, missing_issuer, message.

    ``chains`` is a mapping label -> Chain or Chains (labelled ``host:port``); each is checked against
    its own hostname (the SNI it was captured with, else its host). Rows are plain dicts (the command
    prints them without pandas); ``pd.DataFrame(rows)`` makes the table.
    """
    labelled = chains.items() if isinstance(chains, Mapping) else [(c.label, c) for c in chains]
    bundle_list = list(bundles)
    at = _utc(at)
    rows = []
    for endpoint, chain in labelled:
        if not chain.hostname:
            raise InputError(f"chain {endpoint!r} has no host; set Chain.host or Chain.server_name")
        for bundle in bundle_list:
            verdict = verify(chain, bundle, hostname=chain.hostname, at=at)
            rows.append(
                {"endpoint": endpoint, "host": chain.hostname, "bundle": bundle.label, **verdict.row()}
            )
    return rows


def across_bundles(
    chain: Chain, bundles: Iterable[Bundle], *, hostname: str, at: dt.datetime | str | None = None
) -> pd.DataFrame:
    """One row per bundle, in the order given: bundle, version, verdict, ``changed`` from the row before."""
    import pandas as pd

    at = _utc(at)
    rows = [
        {"bundle": b.label, "version": b.version, **verify(chain, b, hostname=hostname, at=at).row()}
        for b in bundles
    ]
    frame = pd.DataFrame(rows, columns=["bundle", "version", *VERDICT_COLUMNS])
    return frame.assign(changed=frame["reason"].ne(frame["reason"].shift()) & (frame.index > 0))


def across_certifi(
    chain: Chain,
    *,
    hostname: str,
    at: dt.datetime | str | None = None,
    trust: Callable[[str], Bundle] | None = None,
) -> pd.DataFrame:
    """One row per certifi release (oldest first) with the chain's verdict; :func:`transitions` picks
    the releases where it changed.

    ``trust(version)`` is the store that stands for a release: by default its real roots
    (``bundles.certifi``); in the lab, ``env.trust_view`` (the release with lab twins swapped in).
    """
    from helpers import bundles

    releases = bundles.certifi_releases()
    stores = (
        (trust or bundles.certifi)(version) for version in releases["version"]
    )  # one shared Bundle per release: each store is built once
    frame = across_bundles(chain, stores, hostname=hostname, at=at)
    return frame.assign(version=releases["version"].to_numpy(), released=releases["released"].to_numpy())[
        ["version", "released", *VERDICT_COLUMNS, "changed"]
    ]


def transitions(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an :func:`across_certifi` / :func:`across_bundles` frame where the verdict changed.

    Adds ``previous`` (the version or bundle before) and ``previous_reason``.
    """
    key = "version" if "version" in frame and frame["version"].notna().all() else "bundle"
    return (
        frame.assign(previous=frame[key].shift(), previous_reason=frame["reason"].shift())
        .loc[lambda f: f["changed"]]
        .reset_index(drop=True)
    )


def style_verdicts(styler):
    """Colour a verdict table's ``ok`` and ``reason`` cells: green where the chain verifies, red where not."""

    def colour(value) -> str:
        return "background-color: #d4edda" if value in (True, "ok") else "background-color: #f8d7da"

    return styler.map(colour, subset=[c for c in ("ok", "reason") if c in styler.data.columns])
