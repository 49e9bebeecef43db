"""Capture: connect, do a real TLS handshake and record the chain a server presents, verifying nothing.

Served through ``helpers.chains`` (``fetch_chain``, ``fetch_chains``, ``Target``, ``parse_target``,
``CLIENT_OFFERS``, ``offer``). Two handshakes, one offer: what a capture offers is always an
``ssl.SSLContext`` (:func:`_unverified_capture_context`), and the certificates the server sent are read
through a public API only:

- Python 3.13+: ``ssl.SSLSocket.get_unverified_chain()``, the standard library's own.
- Python 3.11-3.12, whose ``ssl`` has no public way to read an unverified chain: pyOpenSSL
  (``OpenSSL.SSL.Connection.get_peer_cert_chain()``), given the same offer: the ``ssl`` context's cipher
  suites (TLS 1.3 and 1.2), protocol versions, security level and options, the same SNI and ALPN.

Why not pyOpenSSL everywhere: on 3.13+ the standard library does the job with the OpenSSL the rest of
Python (botocore, MQTT clients) uses, and needs no dependency; pyOpenSSL is installed only where it is
needed (``python_version < "3.13"``) and goes when the kit drops 3.12. Everything around the handshake
(connecting through ``socket.create_connection``, so the lab's name routing applies; the timeout; the
errors; the metadata; parsing the certificates) is shared. Known difference: pyOpenSSL runs
``cryptography``'s own OpenSSL, whose default key-exchange groups may be newer than those of the OpenSSL
Python links (neither library lets them be copied); they do not decide which chain a server presents.

Nothing captured here is trusted: a verdict comes only from ``chains.verify`` against an explicit store.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import select
import socket
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

from helpers import _x509
from helpers.kinds import InputError, KitError

if TYPE_CHECKING:
    from helpers.chains import Chain

# Python 3.13+ reads the presented chain itself; before, pyOpenSSL does (imported on the first capture).
PUBLIC_UNVERIFIED_CHAIN = hasattr(ssl.SSLSocket, "get_unverified_chain")


class ChainError(KitError, OSError):
    """A chain could not be captured from host:port; the message says why, in one line."""


# What a client offers, by name: None is Python's default (TLS 1.3 and 1.2, ECDSA and RSA suites); the
# others are TLS 1.2 suites of one key type only, as sslyze offers to find every chain a server has.
CLIENT_OFFERS: dict[str, str | None] = {
    "default": None,
    "rsa-only": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-CHACHA20-POLY1305",
    "ecdsa-only": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305",
}


def offer(context: ssl.SSLContext, client_offer: str) -> ssl.SSLContext:
    """Make ``context`` offer what a :data:`CLIENT_OFFERS` name says (TLS 1.2 and those suites only)."""
    if client_offer not in CLIENT_OFFERS:
        raise InputError(f"offer={client_offer!r}: use one of {', '.join(CLIENT_OFFERS)}")
    suites = CLIENT_OFFERS[client_offer]
    if suites is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(suites)
    return context


def _unverified_capture_context(
    alpn: str | Iterable[str] | None = None, client_offer: str = "default"
) -> ssl.SSLContext:
    """A client context that records what the server presents WITHOUT verifying it (capture only).

    Nothing made with it is ever trusted: :func:`fetch_chain` returns the certificates, and a verdict
    comes only from ``chains.verify`` against an explicit trust store. Before Python 3.13 it is the
    offer pyOpenSSL copies (:func:`_unverified_pyopenssl_context`).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(_alpn_list(alpn))
    return offer(context, client_offer)


def _alpn_list(alpn: str | Iterable[str]) -> list[str]:
    """The ALPN protocols to offer, as a list."""
    return [alpn] if isinstance(alpn, str) else list(alpn)


def _unverified_pyopenssl_context(context: ssl.SSLContext, alpn: str | Iterable[str] | None):
    """A pyOpenSSL client context offering what ``context`` offers, verifying nothing (capture only).

    Copied: the cipher suites (TLS 1.3 and 1.2, in order), the protocol versions, the security level,
    the options both libraries name; ALPN is given again (an ``ssl`` context does not say what it offers).
    """
    from OpenSSL import SSL

    ciphers = [c["name"] for c in context.get_ciphers()]
    tls13 = [name for name in ciphers if name.startswith("TLS_")]
    unverified = SSL.Context(SSL.TLS_CLIENT_METHOD)
    unverified.set_verify(SSL.VERIFY_NONE)
    unverified.set_min_proto_version(max(int(context.minimum_version), 0))  # 0: the lowest supported
    unverified.set_max_proto_version(max(int(context.maximum_version), 0))  # 0: the highest supported
    tls12 = ":".join(name for name in ciphers if name not in tls13)
    unverified.set_cipher_list(f"@SECLEVEL={context.security_level}:{tls12}".encode("ascii"))
    unverified.set_tls13_ciphersuites(":".join(tls13).encode("ascii"))
    options = 0
    for flag in ssl.Options:
        if flag in context.options:
            options |= getattr(SSL, flag.name, 0)
    unverified.set_options(options)
    if alpn:
        unverified.set_alpn_protos([name.encode("ascii") for name in _alpn_list(alpn)])
    return unverified


class _HandshakeError(Exception):
    """A TLS handshake that failed, as OpenSSL said it: its reason (e.g. 'WRONG_VERSION_NUMBER'), and
    whether the peer just closed the connection."""

    def __init__(self, reason: str, *, closed: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.closed = reason, closed


@dataclass
class _Handshake:
    """What a handshake left: the presented certificates (DER, in the server's order) and the session."""

    ders: list[bytes]
    tls_version: str | None
    cipher: str | None
    alpn: str | None
    failure: _HandshakeError | None = None  # the handshake failed after the server sent its chain


def _handshake_ssl(raw: socket.socket, context: ssl.SSLContext, server_hostname: str) -> _Handshake:
    """The handshake through Python's ssl (3.13+: ``SSLSocket.get_unverified_chain`` is public)."""
    with context.wrap_socket(raw, server_hostname=server_hostname, do_handshake_on_connect=False) as tls:
        failure = None
        try:
            tls.do_handshake()
        except ssl.SSLEOFError as exc:
            failure = _HandshakeError(str(exc.reason or exc), closed=True)
        except ssl.SSLError as exc:  # e.g. a TLS 1.2 server that wants a client certificate
            failure = _HandshakeError(str(exc.reason or exc))
        ders = [bytes(der) for der in tls.get_unverified_chain() or []]
        cipher = tls.cipher()
        return _Handshake(
            ders,
            tls_version=tls.version() or (cipher[1] if cipher else None),
            cipher=cipher[0] if cipher else None,
            alpn=tls.selected_alpn_protocol(),
            failure=failure,
        )


def _handshake_pyopenssl(
    raw: socket.socket, context: ssl.SSLContext, server_hostname: str, alpn: str | Iterable[str] | None
) -> _Handshake:
    """The same handshake through pyOpenSSL (Python < 3.13), within the socket's timeout."""
    from cryptography.hazmat.primitives.serialization import Encoding
    from OpenSSL import SSL

    tls = SSL.Connection(_unverified_pyopenssl_context(context, alpn), raw)
    if not _is_ip(server_hostname):  # as Python's ssl: no SNI for an IP address
        tls.set_tlsext_host_name(server_hostname.encode("idna"))
    tls.set_connect_state()
    timeout = raw.gettimeout()
    deadline = None if timeout is None else time.monotonic() + timeout
    failure = None
    while True:
        try:
            tls.do_handshake()
            break
        except SSL.WantReadError:  # a socket with a timeout is non-blocking underneath: wait for it here
            _wait(raw, deadline, read=True)
        except SSL.WantWriteError:
            _wait(raw, deadline, read=False)
        except SSL.ZeroReturnError:
            failure = _HandshakeError("EOF", closed=True)
            break
        except SSL.SysCallError as exc:
            errno, text = exc.args[0], exc.args[1]
            if errno > 0:
                raise OSError(errno, os.strerror(errno)) from None  # e.g. ConnectionResetError
            failure = _HandshakeError(str(text), closed=True)  # (-1, 'Unexpected EOF')
            break
        except SSL.Error as exc:  # e.g. a TLS 1.2 server that wants a client certificate
            failure = _pyopenssl_failure(exc)
            break
    presented = tls.get_peer_cert_chain(as_cryptography=True) or []  # not pyOpenSSL's legacy X509 objects
    ders = [cert.public_bytes(Encoding.DER) for cert in presented]
    finished = failure is None
    negotiated = tls.get_alpn_proto_negotiated()
    return _Handshake(
        ders,
        # as Python's ssl: the negotiated version once the handshake is done, else the cipher's
        tls_version=(tls.get_protocol_version_name() if finished else None) or tls.get_cipher_version(),
        cipher=tls.get_cipher_name(),
        alpn=negotiated.decode() if negotiated else None,
        failure=failure,
    )


def _pyopenssl_failure(exc: Exception) -> _HandshakeError:
    """OpenSSL's first reason in a pyOpenSSL error, spelt as Python's ssl does ('WRONG_VERSION_NUMBER')."""
    errors = exc.args[0] if exc.args and isinstance(exc.args[0], list) else []
    reasons = [str(entry[2]) for entry in errors if isinstance(entry, tuple) and len(entry) == 3 and entry[2]]
    reason = reasons[0] if reasons else str(exc)
    closed = "unexpected eof" in reason.lower()  # OpenSSL 3+: the peer closed in the middle
    return _HandshakeError(reason.upper().replace(" ", "_"), closed=closed)


def _wait(sock: socket.socket, deadline: float | None, *, read: bool) -> None:
    """Wait until ``sock`` can be read (or written); TimeoutError once ``deadline`` has passed."""
    remaining = None if deadline is None else deadline - time.monotonic()
    if remaining is not None and remaining <= 0:
        raise TimeoutError("the TLS handshake timed out")
    ready = select.select([sock], [], [], remaining) if read else select.select([], [sock], [], remaining)
    if not any(ready):
        raise TimeoutError("the TLS handshake timed out")


def _is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address (a TLS client sends no SNI for one)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def fetch_chain(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    timeout: float = 10.0,
    alpn: str | Iterable[str] | None = None,
    client_offer: str = "default",
) -> Chain:
    """Connect, do a real TLS handshake and record the whole chain the server presents, untrusted.

    ``server_name`` is the SNI to send (default: ``host``); ``alpn`` offers protocols, e.g.
    ``"x-amzn-mqtt-ca"`` for AWS IoT's MQTT on 443; ``client_offer`` names what the client offers
    (:data:`CLIENT_OFFERS`: 'default', 'rsa-only', 'ecdsa-only'). No client certificate is sent: a
    server asks for one only after presenting its chain, so a handshake that then fails (TLS 1.2
    servers such as AWS IoT's port 8883) still yields the chain, noted as ``notes['handshake']``.
    Failures before the chain arrives raise a one-line :class:`ChainError`.
    """
    from helpers.chains import Chain  # chains re-exports this module: Chain is taken when first needed

    where = f"{host}:{port}"
    context = _unverified_capture_context(alpn, client_offer)
    notes = {} if client_offer == "default" else {"client_offer": client_offer}
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            peer = raw.getpeername()  # before the handshake: a server refusing us may reset the connection
            if PUBLIC_UNVERIFIED_CHAIN:
                handshake = _handshake_ssl(raw, context, server_name or host)
            else:
                handshake = _handshake_pyopenssl(raw, context, server_name or host, alpn)
        if handshake.failure is not None:
            if not handshake.ders:  # nothing presented yet: a plain failed handshake
                raise handshake.failure
            notes["handshake"] = (
                f"failed after the server sent its chain ({handshake.failure.reason}); "
                "a server that requires a client certificate ends TLS 1.2 handshakes this way"
            )
    except socket.gaierror as exc:
        raise ChainError(
            f"{where}: cannot resolve {host!r} ({exc.strerror}); "
            "check the name, and this machine's network and DNS"
        ) from None
    except ConnectionRefusedError:
        raise ChainError(f"{where}: connection refused; nothing is listening there") from None
    except TimeoutError:
        raise ChainError(
            f"{where}: no answer within {timeout:g} s; check the host, port and firewall"
        ) from None
    except ConnectionResetError:
        raise ChainError(f"{where}: the peer reset the connection during the TLS handshake") from None
    except _HandshakeError as exc:
        if exc.closed:
            raise ChainError(f"{where}: the peer closed the connection during the TLS handshake") from None
        raise ChainError(f"{where}: TLS handshake failed ({exc.reason}); is this a TLS port?") from None
    except OSError as exc:
        raise ChainError(f"{where}: cannot connect ({exc.strerror or exc})") from None
    return Chain(
        _certificates_from_der(handshake.ders, where),
        host=host,
        port=port,
        server_name=server_name,
        captured_at=dt.datetime.now(dt.UTC),
        notes=notes,
        peer_address=f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}",
        tls_version=handshake.tls_version,
        cipher=handshake.cipher,
        alpn=handshake.alpn,
    )


def fetch_chains(
    host: str,
    port: int = 443,
    *,
    server_name: str | None = None,
    timeout: float = 10.0,
    alpn: str | Iterable[str] | None = None,
) -> dict[str, Chain]:
    """Every chain the server presents, as sslyze finds them: offer RSA suites only, then ECDSA only.

    Returns {'rsa-only': Chain, 'ecdsa-only': Chain}, without an offer the server refused (it has no
    chain of that key type) or one that got the same chain as an earlier offer. Untrusted, as
    :func:`fetch_chain`; ChainError if no offer gets a chain.
    """
    found: dict[str, Chain] = {}
    errors: list[str] = []
    for client_offer in ("rsa-only", "ecdsa-only"):
        try:
            chain = fetch_chain(
                host, port, server_name=server_name, timeout=timeout, alpn=alpn, client_offer=client_offer
            )
        except ChainError as exc:
            if "TLS handshake failed" not in str(exc):  # unreachable, not a key type it lacks
                raise
            errors.append(f"{client_offer}: {exc}")
            continue
        if not any(chain.certificates == seen.certificates for seen in found.values()):
            found[client_offer] = chain
    if not found:
        raise ChainError("; ".join(errors))
    return found


def _certificates_from_der(ders: list[bytes], where: str) -> list[x509.Certificate]:
    """The presented certificates, parsed; a one-line ChainError naming the one that cannot be."""
    if not ders:
        raise ChainError(f"{where}: the server presented no certificate")
    certificates = []
    for position, der in enumerate(ders, start=1):
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise ChainError(
                f"{where}: certificate {position} of {len(ders)} the server sent cannot be parsed "
                f"({' '.join(str(exc).split())}; sha256 {_x509.der_fingerprint(der)})"
            ) from None
    return certificates


_ENDPOINT = re.compile(
    r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?))(?::(?P<port>\d{1,5}))?"
    r"(?:\{(?P<address>[^{}]*)\})?$"
)


@dataclass(frozen=True)
class Target:
    """An endpoint to capture: the name (sent as SNI and checked), the port, and the address to connect
    to when it is not the name's own (sslyze's ``host:port{ip}``)."""

    host: str
    port: int
    address: str | None = None

    @property
    def label(self) -> str:
        """'host:port', or 'host:port{address}'."""
        return f"{self.host}:{self.port}" + (f"{{{self.address}}}" if self.address else "")


def parse_target(text: str, *, default_port: int = 443) -> Target:
    """'HOST[:PORT][{IP}]' or '[v6][:PORT][{IP}]' -> :class:`Target`; a one-line InputError otherwise.

    ``{IP}`` connects to that address (IPv4, or IPv6 with or without brackets) while sending HOST.
    """
    usage = "use HOST, HOST:PORT or HOST:PORT{IP} with a port from 1 to 65535"
    match = _ENDPOINT.match(text.strip()) if isinstance(text, str) else None
    if not match:
        raise InputError(f"bad endpoint {text!r}: {usage}")
    port = int(match["port"]) if match["port"] else default_port
    if not 0 < port < 65536:
        raise InputError(f"bad endpoint {text!r}: {usage}")
    address = match["address"]
    if address is not None:
        literal = address.strip().removeprefix("[").removesuffix("]")
        try:
            address = str(ipaddress.ip_address(literal))
        except ValueError:
            raise InputError(
                f"bad endpoint {text!r}: {{{address}}} is not an IP address; {usage}, e.g. "
                "a1b2-ats.iot.eu-west-1.amazonaws.com:8883{10.0.0.5}"
            ) from None
    return Target((match["v6"] or match["name"]).lower(), port, address)


def parse_endpoint(text: str) -> tuple[str, int]:
    """'host', 'host:port' or '[v6]:port' -> (host, port); ValueError naming the input otherwise."""
    target = parse_target(text)
    if target.address:
        raise InputError(f"bad endpoint {text!r}: use HOST or HOST:PORT here, without {{IP}}")
    return target.host, target.port
