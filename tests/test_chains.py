"""helpers.chains against real TLS servers on 127.0.0.1, with Python's ssl module as the referee."""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import ssl
import struct
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from helpers import _capture, _x509, bundles, chains, pki
from helpers.chains import ChainError
from helpers.kinds import InputError

# Verdicts are pinned to AT; the PKIs are built so that OpenSSL, which uses the real clock, agrees:
# valid certificates span 2020-2040, the expired ones ended in 2022, the future one starts in 2035.
AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
PAST = dt.datetime(2022, 1, 1, tzinfo=dt.UTC)
FUTURE = dt.datetime(2035, 1, 1, tzinfo=dt.UTC)
G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
G4 = "Symantec Class 3 Secure Server CA - G4"
AWS_HOST = "data.iot.ap-northeast-2.amazonaws.com"

# What OpenSSL (through Python's ssl) says for each reason the kit gives.
OPENSSL_SAYS = {
    "missing-root": {
        "unable to get local issuer certificate",
        "self-signed certificate in certificate chain",
    },
    "missing-intermediate": {"unable to get local issuer certificate"},
    "expired": {"certificate has expired"},
    "not-yet-valid": {"certificate is not yet valid"},
    "hostname-mismatch": {"Hostname mismatch", "IP address mismatch"},
    "self-signed": {"self-signed certificate"},
    "other": {"unsuitable certificate purpose", "unsupported certificate purpose"},
}


def _self_signed_leaf(hostname: str) -> pki.LeafCert:
    """A server certificate signed by its own key (what a device's default certificate looks like)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = pki.make_name(hostname)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.DEFAULT_NOT_BEFORE)
        .not_valid_after(pki.DEFAULT_NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return pki.LeafCert(cert=cert, key=key, issuer_chain=[])


def _client_auth_leaf(ca: pki.CA, hostname: str) -> pki.LeafCert:
    """A leaf issued by ``ca`` for ``hostname`` whose extended key usage is client auth only."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(pki.make_name(hostname))
        .issuer_name(ca.name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.DEFAULT_NOT_BEFORE)
        .not_valid_after(pki.DEFAULT_NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return pki.LeafCert(cert=cert, key=key, issuer_chain=ca.chain)


@dataclass
class World:
    """The test PKIs and stores, built once per module."""

    lab_root: pki.CA
    lab_ca: pki.CA
    g5_lookalike: pki.CA
    g4_lookalike: pki.CA
    expired_root: pki.CA
    leaves: dict[str, pki.LeafCert]
    stores: dict[str, bundles.Bundle]


@pytest.fixture(scope="module")
def world() -> World:
    lab_root = pki.CA("Kit Lab Root CA", organization="ATS kit tests", key_type="ec")
    lab_ca = lab_root.create_child_ca("Kit Lab Issuing CA", organization="ATS kit tests", key_type="ec")
    # VeriSign G5's exact subject, taken from the real root in botocore's vendored bundle; a new key.
    (real_g5,) = bundles.botocore_vendored().find(G5)
    g5 = pki.CA(real_g5.subject, key_type="ec")
    g4 = g5.create_child_ca(
        pki.make_name(
            G4,
            organization="Symantec Corporation",
            organizational_unit="Symantec Trust Network",
            country="US",
        ),
        key_type="ec",
    )
    expired_root = pki.CA("Kit Expired Root CA", key_type="ec", not_after=PAST)
    leaves = {
        "good": lab_ca.issue_cert("good.example"),
        "wildcard": lab_ca.issue_cert("*.iot.example"),
        "ip": lab_ca.issue_cert("127.0.0.1"),
        "aws": g4.issue_cert(AWS_HOST),
        "expired": lab_ca.issue_cert("expired.example", not_after=PAST),
        "future": lab_ca.issue_cert("future.example", not_before=FUTURE),
        "under-expired-root": expired_root.create_child_ca("Kit Issuing CA 2", key_type="ec").issue_cert(
            "old.example"
        ),
        "self-signed": _self_signed_leaf("device.example"),
        "client-auth": _client_auth_leaf(lab_ca, "client.example"),
    }
    stores = {
        "lab": bundles.from_pem(lab_root.cert_pem, name="lab"),
        "with-g5": bundles.from_pem(g5.cert_pem + lab_root.cert_pem, name="with-g5"),
        "without-g5": bundles.from_pem(lab_root.cert_pem, name="without-g5"),
        "g5-only": bundles.from_pem(g5.cert_pem, name="g5-only"),
        "expired-root": bundles.from_pem(expired_root.cert_pem, name="expired-root"),
    }
    return World(lab_root, lab_ca, g5, g4, expired_root, leaves, stores)


@contextlib.contextmanager
def tls_server(
    leaf: pki.LeafCert, tmp_path: Path, *, alpn: list[str] | None = None, **chain
) -> Iterator[int]:
    """A real TLS server on 127.0.0.1 presenting the chain of ``leaf``; yields its port."""
    chain_path, key_path = leaf.write_files(tmp_path, "server", **chain)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    if alpn:
        context.set_alpn_protocols(alpn)

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # until the client closes

    with _serving(handle) as port:
        yield port


@contextlib.contextmanager
def _serving(handle: Callable[[socket.socket], None]) -> Iterator[int]:
    """Accept connections on 127.0.0.1 in a thread and pass each to ``handle``; yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn:
                handle(conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def ssl_handshake(port: int, bundle: bundles.Bundle, hostname: str) -> tuple[bool, str | None]:
    """What Python's ssl concludes for this server, trusting only ``bundle``: (ok, verify_message)."""
    context = ssl.create_default_context(cafile=str(bundle.path()))
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=hostname),
        ):
            return True, None
    except ssl.SSLCertVerificationError as exc:
        return False, exc.verify_message


def test_write_files_keeps_the_private_key_to_its_owner(tmp_path):
    """The server key ``write_files`` saves is 0600, also when it replaces a readable older file."""
    import os
    import stat

    (tmp_path / "server.key.pem").write_bytes(b"old")
    (tmp_path / "server.key.pem").chmod(0o644)
    chain_path, key_path = (
        pki.CA("Key Root", key_type="ec").issue_cert("a.example").write_files(tmp_path, "server")
    )
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and key_path.read_bytes().startswith(b"-----BEGIN")
    assert stat.S_IMODE(chain_path.stat().st_mode) == 0o644  # a chain is public
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    os.remove(key_path)


@pytest.mark.parametrize("how", ["replaced", "appended to"])
def test_a_trust_file_changed_after_its_first_use_is_rewritten_not_trusted(tmp_path, monkeypatch, how):
    """A root planted in a bundle's cache file after the kit handed it out (the file swapped, or
    written in place) is not trusted: the next ``path()`` finds the content no longer matches its
    digest and rewrites it, and a real TLS handshake against the planted root's server fails."""
    import os

    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(tmp_path / "cache"))
    trusted, planted = pki.CA("Kept Root", key_type="ec"), pki.CA("Planted Root", key_type="ec")
    bundle = bundles.from_pem(trusted.cert_pem, name="tamper")
    path = bundle.path()
    with tls_server(planted.issue_cert("planted.example"), tmp_path) as port:
        assert ssl_handshake(port, bundle, "planted.example")[0] is False
        if how == "replaced":
            swapped = tmp_path / "swapped.pem"
            swapped.write_bytes(trusted.cert_pem + planted.cert_pem)
            os.replace(swapped, path)
        else:
            with open(path, "ab") as handle:
                handle.write(planted.cert_pem)
        assert bundle.path() == path and path.read_bytes() == bundle.pem()
        ok, message = ssl_handshake(port, bundle, "planted.example")
    assert not ok and "unable to get local issuer certificate" in message


@dataclass(frozen=True)
class Case:
    """One PKI situation: what the server sends, what the client trusts, and what the kit must say."""

    id: str
    leaf: str  # key of World.leaves
    store: str  # key of World.stores
    hostname: str
    reason: str
    missing_issuer: str | None = None
    include_root: bool = False
    intermediates: bool = True


CASES = [
    Case("ok", "good", "lab", "good.example", "ok"),
    Case("ok-wildcard", "wildcard", "lab", "shadow.iot.example", "ok"),
    Case("ok-ip", "ip", "lab", "127.0.0.1", "ok"),
    Case("ok-root-sent-too", "good", "lab", "good.example", "ok", include_root=True),
    Case("aws-lookalike-with-g5", "aws", "with-g5", AWS_HOST, "ok"),
    Case("incident-g5-missing", "aws", "without-g5", AWS_HOST, "missing-root", G5),
    Case(
        "aws-intermediate-not-sent",
        "aws",
        "with-g5",
        AWS_HOST,
        "missing-intermediate",
        G4,
        intermediates=False,
    ),
    Case(
        "intermediate-not-sent",
        "good",
        "lab",
        "good.example",
        "missing-intermediate",
        "Kit Lab Issuing CA",
        intermediates=False,
    ),
    Case(
        "untrusted-root-sent",
        "good",
        "g5-only",
        "good.example",
        "missing-root",
        "Kit Lab Root CA",
        include_root=True,
    ),
    Case("expired-leaf", "expired", "lab", "expired.example", "expired"),
    Case("expired-root", "under-expired-root", "expired-root", "old.example", "expired"),
    Case("not-yet-valid", "future", "lab", "future.example", "not-yet-valid"),
    Case("hostname-mismatch", "good", "lab", "other.example", "hostname-mismatch"),
    Case("wildcard-one-label-only", "wildcard", "lab", "a.b.iot.example", "hostname-mismatch"),
    Case("ip-mismatch", "ip", "lab", "127.0.0.2", "hostname-mismatch"),
    Case("self-signed", "self-signed", "lab", "device.example", "self-signed", "device.example"),
    Case("client-auth-only", "client-auth", "lab", "client.example", "other"),
    # Two faults at once: the kit names the one OpenSSL reports (path, then name, then time).
    Case("expired-and-wrong-name", "expired", "lab", "other.example", "hostname-mismatch"),
    Case(
        "expired-and-root-missing", "expired", "g5-only", "expired.example", "missing-root", "Kit Lab Root CA"
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_verdict_agrees_with_ssl(case: Case, world: World, tmp_path: Path) -> None:
    leaf = world.leaves[case.leaf]
    bundle = world.stores[case.store]
    sent = leaf.cert_chain_pems(include_root=case.include_root, intermediates=case.intermediates)
    with tls_server(leaf, tmp_path, include_root=case.include_root, intermediates=case.intermediates) as port:
        chain = chains.fetch_chain("127.0.0.1", port, server_name=case.hostname, timeout=5)
        ssl_ok, ssl_message = ssl_handshake(port, bundle, case.hostname)

    assert [_x509.to_pem([c]) for c in chain.certificates] == sent  # the whole chain, in order
    verdict = chains.verify(chain, bundle, hostname=case.hostname, at=AT)
    assert (verdict.reason, verdict.missing_issuer) == (case.reason, case.missing_issuer), verdict.message
    assert verdict.ok is ssl_ok is (case.reason == "ok"), (ssl_message, verdict.message)
    if not ssl_ok:
        assert any(ssl_message.startswith(text) for text in OPENSSL_SAYS[case.reason]), ssl_message
        assert verdict.path == () and verdict.detail
    else:
        assert verdict.path[0] == chain.leaf and _x509.fingerprint(verdict.path[-1]) in bundle.fingerprints
    assert "\n" not in verdict.message and verdict.message.endswith(".")


def test_incident_message_names_the_missing_root_and_the_bundle(world: World) -> None:
    aws = world.leaves["aws"]
    chain = chains.Chain([aws.cert, world.g4_lookalike.cert], host=AWS_HOST, port=443)
    bundle = bundles.from_pem(world.lab_root.cert_pem, name="certifi", version="2021.10.8")
    verdict = chains.verify(chain, bundle, hostname=AWS_HOST, at=AT)
    assert (
        verdict.message
        == f"The chain ends at a certificate issued by '{G5}', which certifi 2021.10.8 does not contain."
    )


def test_lookalike_against_real_vendored_bundle_is_missing_root_with_a_different_key(world: World) -> None:
    # botocore's vendored cacert.pem holds the real G5: same name, different key, so no path.
    vendored = bundles.botocore_vendored()
    chain = chains.Chain([world.leaves["aws"].cert, world.g4_lookalike.cert])
    verdict = chains.verify(chain, vendored, hostname=AWS_HOST, at=AT)
    assert (verdict.reason, verdict.missing_issuer) == ("missing-root", G5)
    assert "of that name, but with a different key" in verdict.message


def test_time_is_pinned_not_read_from_the_clock(world: World) -> None:
    expired = chains.Chain([world.leaves["expired"].cert, world.lab_ca.cert])
    lab = world.stores["lab"]
    assert chains.verify(expired, lab, hostname="expired.example", at=dt.datetime(2021, 6, 1)).ok
    assert chains.verify(expired, lab, hostname="expired.example", at=AT).reason == "expired"
    future = chains.Chain([world.leaves["future"].cert, world.lab_ca.cert])
    assert chains.verify(future, lab, hostname="future.example", at=dt.datetime(2036, 1, 1)).ok


def test_an_empty_bundle_gives_a_verdict_not_an_error(world: World) -> None:
    empty = bundles.Bundle(name="empty", version=None, source="<test>", certificates=[])
    chain = chains.Chain([world.leaves["good"].cert, world.lab_ca.cert])
    verdict = chains.verify(chain, empty, hostname="good.example", at=AT)
    assert (verdict.ok, verdict.reason, verdict.missing_issuer) == (False, "missing-root", "Kit Lab Root CA")


def test_verifying_keeps_no_certificate_once_the_chains_and_bundles_are_gone(world: World) -> None:
    """Module caches hold no certificates: once the chain and the bundle are dropped, every certificate
    a verdict (and its diagnosis) touched is referenced exactly as often as before."""
    import gc
    import sys

    root = pki.CA("Throw-away Root", key_type="ec")
    leaf = root.issue_cert("good.example", key_type="ec")
    other = pki.CA("Throw-away Root", key_type="ec").cert  # same name, another key: the diagnosis checks it
    before = [sys.getrefcount(c) for c in (root.cert, leaf.cert, other)]
    bundle = bundles.Bundle(name="throw-away", version=None, source="test", certificates=[root.cert])
    wrong = bundles.Bundle(name="other", version=None, source="test", certificates=[other])
    chain = chains.Chain([leaf.cert])
    assert chains.verify(chain, bundle, hostname="good.example", at=AT).ok
    verdict = chains.verify(chain, wrong, hostname="good.example", at=AT)
    assert "different key" in verdict.message
    del bundle, wrong, chain, verdict
    gc.collect()
    assert [sys.getrefcount(c) for c in (root.cert, leaf.cert, other)] == before


def test_bad_hostname_is_a_clear_error(world: World) -> None:
    chain = chains.Chain([world.leaves["good"].cert])
    with pytest.raises(ValueError, match="hostname='not a host'"):
        chains.verify(chain, world.stores["lab"], hostname="not a host", at=AT)


# --- capture ---------------------------------------------------------------------------------------


def test_capture_records_connection_facts_and_alpn(world: World, tmp_path: Path) -> None:
    with tls_server(world.leaves["aws"], tmp_path, alpn=["x-amzn-mqtt-ca"]) as port:
        chain = chains.fetch_chain("127.0.0.1", port, server_name=AWS_HOST, alpn="x-amzn-mqtt-ca", timeout=5)
    assert (chain.host, chain.port, chain.server_name, chain.hostname) == (
        "127.0.0.1",
        port,
        AWS_HOST,
        AWS_HOST,
    )
    assert chain.peer_address == f"127.0.0.1:{port}"
    assert chain.tls_version == "TLSv1.3" and chain.cipher.startswith("TLS_")
    assert chain.alpn == "x-amzn-mqtt-ca"
    assert abs(chain.captured_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=1)
    assert [_x509.display_name(c.subject) for c in chain.certificates] == [AWS_HOST, G4]


def _der(pems: list[bytes]) -> list[bytes]:
    """DER of each PEM certificate, in order."""
    return [x509.load_pem_x509_certificate(p).public_bytes(serialization.Encoding.DER) for p in pems]


def _presented(chain: chains.Chain) -> list[bytes]:
    """DER of each certificate a capture recorded, in order."""
    return [c.public_bytes(serialization.Encoding.DER) for c in chain.certificates]


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="checks the pre-3.13 path; 3.13+ has the public API")
def test_capture_gets_the_whole_chain_before_python_3_13(world: World, tmp_path: Path) -> None:
    assert not hasattr(ssl.SSLSocket, "get_unverified_chain")  # so pyOpenSSL reads the chain
    with tls_server(world.leaves["good"], tmp_path, include_root=True) as port:
        chain = chains.fetch_chain("127.0.0.1", port, timeout=5)
    assert "OpenSSL.SSL" in sys.modules  # imported by the capture (no chain file needs it: test_cli)
    assert _presented(chain) == _der(world.leaves["good"].cert_chain_pems(include_root=True))
    assert chain.certificates[-1] == world.lab_root.cert and "handshake" not in chain.notes


@pytest.mark.skipif(sys.version_info < (3, 13), reason="SSLSocket.get_unverified_chain is public from 3.13")
def test_capture_uses_the_public_api_from_python_3_13(world: World, tmp_path: Path) -> None:
    with tls_server(world.leaves["good"], tmp_path, include_root=True) as port:
        chain = chains.fetch_chain("127.0.0.1", port, timeout=5)
    assert len(chain) == 3 and chain.certificates[-1] == world.lab_root.cert


@pytest.mark.parametrize("client_offer", ["default", "rsa-only"])
def test_a_tls12_server_wanting_a_client_certificate_still_gives_its_exact_chain(
    world: World, tmp_path: Path, client_offer: str
) -> None:
    """The handshake fails for want of a client certificate, after the server sent its chain: the
    capture records that chain, certificate for certificate, and says the handshake failed."""
    root = pki.CA("Kit Client-Auth Root", key_type="rsa")
    leaf = root.issue_cert("mqtt.example", key_type="rsa")
    chain_path, key_path = leaf.write_files(tmp_path, "server", include_root=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the client learns of the refusal in the handshake
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=root.cert_pem.decode())
    refusals: list[str] = []

    def handle(conn: socket.socket) -> None:
        try:
            with context.wrap_socket(conn, server_side=True):
                refusals.append("accepted")
        except ssl.SSLError as exc:
            refusals.append(exc.reason)

    with _serving(handle) as port:
        chain = chains.fetch_chain(
            "127.0.0.1", port, server_name="mqtt.example", timeout=5, client_offer=client_offer
        )
    assert refusals == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]
    assert _presented(chain) == _der(leaf.cert_chain_pems(include_root=True))
    assert "failed after the server sent its chain" in chain.notes["handshake"]
    assert chain.tls_version == "TLSv1.2" and chain.cipher.startswith("ECDHE-RSA-")
    assert chain.peer_address == f"127.0.0.1:{port}"


def test_capture_verifies_nothing_and_says_so(world: World, tmp_path: Path) -> None:
    context = _capture._unverified_capture_context()
    assert context.verify_mode == ssl.CERT_NONE and not context.check_hostname
    # A self-signed certificate for another name: no store trusts it, and the capture still records it.
    stranger = _self_signed_leaf("stranger.example")
    with tls_server(stranger, tmp_path) as port:
        chain = chains.fetch_chain("127.0.0.1", port, server_name="good.example", timeout=5)
    assert chain.certificates == [stranger.cert] and "handshake" not in chain.notes
    assert not chains.verify(chain, world.stores["lab"], hostname="good.example", at=AT).ok


@pytest.mark.parametrize("client_offer", list(chains.CLIENT_OFFERS))
def test_pyopenssl_offers_what_pythons_ssl_offers(client_offer: str) -> None:
    """Before 3.13 pyOpenSSL does the handshake: it offers the ssl context's suites, in order, its
    versions, and verifies nothing."""
    SSL = pytest.importorskip("OpenSSL.SSL")  # installed where Python < 3.13
    context = _capture._unverified_capture_context(client_offer=client_offer)
    copied = _capture._unverified_pyopenssl_context(context, "x-amzn-mqtt-ca")
    assert copied.get_verify_mode() == SSL.VERIFY_NONE
    assert SSL.Connection(copied).get_cipher_list() == [c["name"] for c in context.get_ciphers()]


def test_capture_sends_the_server_name_but_no_sni_for_an_address(world: World, tmp_path: Path) -> None:
    seen: list[str | None] = []
    chain_path, key_path = world.leaves["good"].write_files(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    context.sni_callback = lambda _tls, name, _context: seen.append(name)

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    with _serving(handle) as port:
        chains.fetch_chain("127.0.0.1", port, server_name="good.example", timeout=5)
        chains.fetch_chain("127.0.0.1", port, timeout=5)
    assert seen == ["good.example", None]


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return probe.getsockname()[1]


def _write_http(conn: socket.socket) -> None:
    """Answer like a plain HTTP server, whatever the client sent."""
    with contextlib.suppress(OSError):
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def _reset(conn: socket.socket) -> None:
    """Read the ClientHello, then abort the connection with a TCP reset."""
    with contextlib.suppress(OSError):
        conn.recv(1024)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _close(conn: socket.socket) -> None:
    """Read the whole ClientHello record, then close the connection cleanly (a TCP FIN)."""
    with contextlib.suppress(OSError):
        header = conn.recv(5, socket.MSG_WAITALL)
        conn.recv(int.from_bytes(header[3:5], "big"), socket.MSG_WAITALL)


@contextlib.contextmanager
def _silent_listener() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel's backlog) but never says anything."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("dns", "cannot resolve"),
        ("refused", "connection refused"),
        ("timeout", "no answer within 0.3 s"),
        ("not-tls", "is this a TLS port"),
        ("reset", "reset the connection"),
        ("closed", "closed the connection during the TLS handshake"),
    ],
)
def test_capture_errors_are_one_line_and_name_host_port(kind: str, words: str) -> None:
    with contextlib.ExitStack() as stack:
        host = "127.0.0.1"
        if kind == "dns":
            host, port = "no-such-endpoint.invalid", 443
        elif kind == "refused":
            port = _closed_port()
        elif kind == "timeout":
            port = stack.enter_context(_silent_listener())
        else:
            handle = {"not-tls": _write_http, "reset": _reset, "closed": _close}[kind]
            port = stack.enter_context(_serving(handle))
        with pytest.raises(ChainError) as caught:
            chains.fetch_chain(host, port, timeout=0.3)
    message = str(caught.value)
    assert message.startswith(f"{host}:{port}: ") and words in message and "\n" not in message
    assert isinstance(caught.value, OSError)


def test_a_presented_certificate_that_cannot_be_parsed_is_named_in_one_line(world: World) -> None:
    # An OpenSSL server will not send a certificate it cannot load, so the parser is fed directly
    # what a broken peer could send: a good certificate, then a DER INTEGER.
    der = world.leaves["good"].cert.public_bytes(serialization.Encoding.DER)
    assert _capture._certificates_from_der([der], "h:1") == [world.leaves["good"].cert]
    with pytest.raises(ChainError) as caught:
        _capture._certificates_from_der([der, b"\x02\x01\x01"], "h:1")
    message = str(caught.value)
    assert message.startswith("h:1: certificate 2 of 2 the server sent cannot be parsed")
    assert "\n" not in message
    with pytest.raises(ChainError, match="^h:1: the server presented no certificate$"):
        _capture._certificates_from_der([], "h:1")


# --- evidence: save and load -----------------------------------------------------------------------


def test_save_and_load_keep_certificates_and_metadata(world: World, tmp_path: Path) -> None:
    with tls_server(world.leaves["aws"], tmp_path) as port:
        chain = chains.fetch_chain("127.0.0.1", port, server_name=AWS_HOST, timeout=5)
    path = chain.save(tmp_path / "evidence" / "chain.pem")
    text = path.read_text()
    assert text.startswith("# atskit chain") and f"# server_name: {AWS_HOST}\n" in text
    loaded = chains.load_chain(path)
    for name in ("host", "port", "server_name", "captured_at", "peer_address", "tls_version", "cipher"):
        assert getattr(loaded, name) == getattr(chain, name), name
    assert loaded.certificates == chain.certificates
    assert chains.load_chain(text).certificates == chain.certificates  # PEM text works too
    assert [p.name for p in path.parent.iterdir()] == ["chain.pem"]  # no temp files left behind


def test_load_reads_s_client_output_and_keeps_unknown_notes(world: World) -> None:
    pem = world.leaves["good"].cert_pem.decode()
    text = f"# ticket: INC-42\nCONNECTED(00000003)\ndepth=0 CN = good.example\n---\n{pem}---\nDone\n"
    chain = chains.load_chain(text.encode())
    assert chain.certificates == [world.leaves["good"].cert] and chain.notes == {"ticket": "INC-42"}
    assert chain.label == "good.example" and chain.hostname is None


def test_load_rejects_bad_input_in_one_line(world: World, tmp_path: Path) -> None:
    cases = {
        b"just some text, no certificates": "no PEM CERTIFICATE blocks",
        b"-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----\n": "cannot be read",
        b"# port: https\n" + world.leaves["good"].cert_pem: "'port: https' is not a port number",
        b"# captured_at: yesterday\n" + world.leaves["good"].cert_pem: "not an ISO 8601 time",
    }
    for data, words in cases.items():
        path = tmp_path / "bad.pem"
        path.write_bytes(data)
        with pytest.raises(ValueError) as caught:
            chains.load_chain(path)
        assert str(caught.value).startswith(str(path)) and words in str(caught.value)
        assert "\n" not in str(caught.value)
    with pytest.raises(FileNotFoundError, match="no such chain file"):
        chains.load_chain(tmp_path / "missing.pem")


def test_frame_shows_roles_and_who_signed_whom(world: World) -> None:
    good = world.leaves["good"]
    frame = chains.Chain([good.cert, world.lab_ca.cert, world.lab_root.cert], host="good.example").frame()
    assert frame["role"].tolist() == ["leaf", "intermediate", "root"]
    assert frame["signs_previous"].tolist() == [None, True, True]
    assert frame.loc[0, "sans"] == "good.example" and frame["sans"].iloc[1:].isna().all()
    shuffled = chains.Chain([good.cert, world.lab_root.cert, world.lab_ca.cert]).frame()
    assert shuffled["signs_previous"].tolist() == [None, False, False]  # out of order: nothing lines up


# --- tables ----------------------------------------------------------------------------------------


def test_matrix_has_one_row_per_endpoint_and_bundle(world: World) -> None:
    legacy = chains.Chain([world.leaves["aws"].cert, world.g4_lookalike.cert], host=AWS_HOST, port=443)
    lab = chains.Chain([world.leaves["good"].cert, world.lab_ca.cert], host="good.example", port=443)
    stores = [world.stores["with-g5"], world.stores["without-g5"]]
    rows = chains.matrix([legacy, lab], stores, at=AT)
    assert all(isinstance(row, dict) for row in rows)  # plain rows: the command prints them without pandas
    frame = pd.DataFrame(rows)
    assert list(frame.columns) == ["endpoint", "host", "bundle", "ok", "reason", "missing_issuer", "message"]
    assert frame[["endpoint", "bundle", "reason"]].values.tolist() == [
        [f"{AWS_HOST}:443", "with-g5", "ok"],
        [f"{AWS_HOST}:443", "without-g5", "missing-root"],
        ["good.example:443", "with-g5", "ok"],
        ["good.example:443", "without-g5", "ok"],
    ]
    html = frame.style.pipe(chains.style_verdicts).to_html()
    cells = {
        colour: sel.count("_row")
        for sel, colour in re.findall(r"([^{}]+)\{\s*background-color: (#\w+);", html)
    }
    assert cells == {"#d4edda": 6, "#f8d7da": 2}  # the ok and reason cells of 3 verifying rows, 1 failing
    named = chains.matrix({"legacy": legacy}, stores[1:], at=AT)
    assert named[0]["endpoint"] == "legacy" and named[0]["missing_issuer"] == G5
    with pytest.raises(ValueError, match="has no host"):
        chains.matrix([chains.Chain([world.leaves["good"].cert])], stores, at=AT)


def test_transitions_are_the_bundles_where_the_verdict_changed(world: World) -> None:
    legacy = chains.Chain([world.leaves["aws"].cert, world.g4_lookalike.cert])
    with_g5, without_g5 = world.stores["with-g5"], world.stores["without-g5"]
    frame = chains.across_bundles(
        legacy, [with_g5, with_g5, without_g5, without_g5, with_g5], hostname=AWS_HOST, at=AT
    )
    assert frame["reason"].tolist() == ["ok", "ok", "missing-root", "missing-root", "ok"]
    assert frame["changed"].tolist() == [False, False, True, False, True]
    changes = chains.transitions(frame)
    assert changes[["previous", "bundle", "previous_reason", "reason"]].values.tolist() == [
        ["with-g5", "without-g5", "ok", "missing-root"],
        ["without-g5", "with-g5", "missing-root", "ok"],
    ]


def test_known_difference_an_intermediate_alone_is_a_trust_anchor(world: World, tmp_path: Path) -> None:
    # cryptography anchors at any store certificate; OpenSSL does so only with VERIFY_X509_PARTIAL_CHAIN
    # (Python 3.13's default). Documented in verify(); this pins both sides of the difference.
    only_issuing_ca = bundles.from_pem(world.lab_ca.cert_pem, name="issuing-ca-only")
    with tls_server(world.leaves["good"], tmp_path) as port:
        chain = chains.fetch_chain("127.0.0.1", port, timeout=5)
        context = ssl.create_default_context(cafile=str(only_issuing_ca.path()))
        context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            context.wrap_socket(raw, server_hostname="good.example").close()
        default_ok, _ = ssl_handshake(port, only_issuing_ca, "good.example")
    assert chains.verify(chain, only_issuing_ca, hostname="good.example", at=AT).ok
    assert default_ok is (sys.version_info >= (3, 13))


# --- every certifi release (real data from data/certifi) ------------------------------------------


def _lab_view(release: bundles.Bundle, lookalike_root: pki.CA) -> bundles.Bundle:
    """A certifi release with the real G5 (matched by exact subject) swapped for the look-alike root."""
    certs = [
        lookalike_root.cert if c.subject == lookalike_root.cert.subject else c for c in release.certificates
    ]
    return bundles.Bundle(
        name="lab view of certifi", version=release.version, source="test", certificates=certs
    )


def test_across_certifi_has_one_row_per_release_and_spots_the_real_g5(world: World) -> None:
    legacy = chains.Chain([world.leaves["aws"].cert, world.g4_lookalike.cert], host=AWS_HOST, port=443)
    frame = chains.across_certifi(legacy, hostname=AWS_HOST, at=AT)
    versions = bundles.certifi_releases()["version"].tolist()
    assert frame["version"].tolist() == versions
    assert list(frame.columns) == [
        "version",
        "released",
        "ok",
        "reason",
        "missing_issuer",
        "message",
        "changed",
    ]
    # The look-alike's root is not the real G5 in any release, so the reason never changes ...
    assert set(frame["reason"]) == {"missing-root"} and set(frame["missing_issuer"]) == {G5}
    assert chains.transitions(frame).empty
    # ... but the message says "same name, different key" exactly where a release held the real G5.
    presence = bundles.root_presence(G5).groupby("version", sort=False)["present"].any()
    holds_real_g5 = presence.reindex(versions).tolist()
    assert any(holds_real_g5) and not all(holds_real_g5)
    assert frame["message"].str.contains("different key").tolist() == holds_real_g5


def test_lab_views_of_every_release_break_where_g5_left_and_ssl_agrees(world: World, tmp_path: Path) -> None:
    versions = bundles.certifi_releases()["version"].tolist()
    views = [_lab_view(bundles.certifi(v), world.g5_lookalike) for v in versions]
    legacy = chains.Chain([world.leaves["aws"].cert, world.g4_lookalike.cert], host=AWS_HOST, port=443)
    frame = chains.across_bundles(legacy, views, hostname=AWS_HOST, at=AT)
    changes = chains.transitions(frame)
    removed = bundles.removed_in(G5)  # derived from data/certifi, not typed in
    assert changes[["version", "previous_reason", "reason"]].values.tolist() == [
        [removed, "ok", "missing-root"]
    ]
    before = changes.loc[0, "previous"]
    # The same two releases through a real handshake: OpenSSL trusts the last with G5, not the first without.
    with tls_server(world.leaves["aws"], tmp_path) as port:
        for version, expected in [
            (before, (True, None)),
            (removed, (False, "unable to get local issuer certificate")),
        ]:
            assert ssl_handshake(port, views[versions.index(version)], AWS_HOST) == expected, version


def test_an_unknown_client_offer_is_refused_in_one_line_before_connecting() -> None:
    with pytest.raises(InputError, match=r"^offer='dsa-only': use one of default, rsa-only, ecdsa-only$"):
        chains.fetch_chain("127.0.0.1", 1, client_offer="dsa-only")
