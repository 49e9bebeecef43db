"""Certificate parsing and description shared by bundles and chains."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (TRUSTED )?CERTIFICATE-----\s*(.*?)\s*-----END (?:TRUSTED )?CERTIFICATE-----", re.S
)


LAB_TWIN_OU = "ATS kit lab twin - not the real certificate"  # the OU every lab-made certificate carries


def is_lab_twin_name(name: x509.Name) -> bool:
    """True for a name carrying the lab-twin OU (a certificate the kit's lab made, or its issuer)."""
    return any(a.value == LAB_TWIN_OU for a in name.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME))


@dataclass(frozen=True)
class Problem:
    """A certificate that was in a source but cannot be used, and why."""

    position: int  # 0-based index of the PEM block in its source
    fingerprint_sha256: str  # SHA-256 of the DER bytes (of the block text if it is not base64)
    reason: str


@dataclass(frozen=True)
class ParsedPEM:
    """What one PEM source held: usable certificates (with any parser warnings) and problems."""

    certificates: list[x509.Certificate]
    warnings: dict[str, str]  # fingerprint -> warning text for certificates loaded with a warning
    problems: list[Problem]


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER, no colons."""
    return cert.fingerprint(hashes.SHA256()).hex()


def der_fingerprint(der: bytes) -> str:
    """Lowercase hex SHA-256 of raw DER bytes."""
    return hashlib.sha256(der).hexdigest()


def pem_blocks(data: bytes) -> Iterator[tuple[str, bytes | None, bytes, str | None]]:
    """Every CERTIFICATE block of ``data`` in order: (fingerprint, DER, raw body, base64 error).

    A block that is not base64 has DER None, the error text, and the SHA-256 of its raw body as its
    fingerprint; every other block is identified by the SHA-256 of its DER. This is the one place
    that decides a block's identity, for bundles and for data/certifi alike.
    """
    for match in _PEM_BLOCK.finditer(data):
        body = match.group(2)
        try:
            der = base64.b64decode(b"".join(body.split()), validate=True)
        except (binascii.Error, ValueError) as exc:
            yield hashlib.sha256(body).hexdigest(), None, body, str(exc)
            continue
        if match.group(1):  # OpenSSL's TRUSTED CERTIFICATE: the certificate, then its trust settings
            der = _first_der_element(der)
        yield der_fingerprint(der), der, body, None


def _first_der_element(der: bytes) -> bytes:
    """The first DER element of ``der`` (all of it if its length cannot be read)."""
    if len(der) < 2 or der[0] != 0x30:
        return der
    if der[1] < 0x80:
        return der[: 2 + der[1]]
    count = der[1] & 0x7F
    return der[: 2 + count + int.from_bytes(der[2 : 2 + count], "big")] if 0 < count <= 4 else der


def pem_block_text(der: bytes | None, body: bytes) -> bytes:
    """A block as PEM text: re-wrapped base64 of the DER, or the raw body when it is not base64."""
    if der is not None:
        return ssl.DER_cert_to_PEM_cert(der).encode("ascii")
    return b"-----BEGIN CERTIFICATE-----\n" + body + b"\n-----END CERTIFICATE-----\n"


def parse_pem(data: bytes | str) -> ParsedPEM:
    """Load every CERTIFICATE block of ``data``; a block that cannot be loaded becomes a Problem."""
    if isinstance(data, str):
        data = data.encode("utf-8", "replace")
    return parse_blocks(enumerate(pem_blocks(data)))


def parse_blocks(blocks) -> ParsedPEM:
    """Load (position, (fingerprint, DER, body, base64 error)) blocks, as :func:`pem_blocks` gives them."""
    certificates: list[x509.Certificate] = []
    loaded_with_warning: dict[str, str] = {}
    problems: list[Problem] = []
    for position, (block_fingerprint, der, _, base64_error) in blocks:
        if der is None:
            problems.append(Problem(position, block_fingerprint, f"not base64: {base64_error}"))
            continue
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                cert = x509.load_der_x509_certificate(der)
                cert.serial_number  # noqa: B018 - some problems surface only on access
                cert.subject, cert.issuer  # noqa: B018 - so are warnings about malformed names
            except Exception as exc:  # cryptography raises ValueError and friends for bad DER
                problems.append(Problem(position, block_fingerprint, f"unparseable: {exc}"))
                continue
        certificates.append(cert)
        if caught:
            loaded_with_warning[fingerprint(cert)] = "; ".join(dict.fromkeys(str(w.message) for w in caught))
    return ParsedPEM(certificates, loaded_with_warning, problems)


def to_pem(certs: list[x509.Certificate]) -> bytes:
    """Concatenate certificates as PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    """First value of ``oid`` in ``name`` (e.g. the CN), or None."""
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def display_name(name: x509.Name) -> str:
    """What a person calls a certificate: its CN, else its OU, else O, else the whole RFC 4514 name."""
    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.ORGANIZATION_NAME):
        value = name_attr(name, oid)
        if value:
            return value
    return name.rfc4514_string()


def key_description(cert: x509.Certificate) -> str:
    """'RSA 2048', 'EC secp384r1', 'Ed25519', ... for the certificate's public key."""
    try:
        key = cert.public_key()
    except Exception as exc:  # unsupported or malformed key
        return f"unreadable ({exc})"
    if isinstance(key, rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name}"
    if isinstance(key, dsa.DSAPublicKey):
        return f"DSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448"
    return type(key).__name__


def signature_hash(cert: x509.Certificate) -> str | None:
    """Name of the signature's hash algorithm ('sha256', 'sha1', ...), None where there is none."""
    try:
        algorithm = cert.signature_hash_algorithm
    except Exception:  # unsupported algorithm
        return "unsupported"
    return algorithm.name if algorithm is not None else None


def subject_alt_names(cert: x509.Certificate) -> list[str]:
    """DNS names and IP addresses of the subjectAltName extension (empty without one)."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (x509.ExtensionNotFound, ValueError):
        return []
    names = [str(n) for n in ext.value.get_values_for_type(x509.DNSName)]
    names += [str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)]
    return names


DESCRIBE_COLUMNS = [
    "fingerprint_sha256",
    "subject_cn",
    "subject_o",
    "subject_ou",
    "name",
    "issuer",
    "self_issued",
    "not_before",
    "not_after",
    "key",
    "signature_hash",
    "serial",
]


def describe(cert: x509.Certificate) -> dict:
    """One row describing ``cert`` (the shared columns of every certificate table in the kit).

    Parser warnings (malformed names, negative serials) are not repeated here: :func:`parse_pem`
    records them once per certificate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return _describe(cert)


def _describe(cert: x509.Certificate) -> dict:
    """The row of :func:`describe`."""
    return {
        "fingerprint_sha256": fingerprint(cert),
        "subject_cn": name_attr(cert.subject, NameOID.COMMON_NAME),
        "subject_o": name_attr(cert.subject, NameOID.ORGANIZATION_NAME),
        "subject_ou": name_attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME),
        "name": display_name(cert.subject),
        "issuer": display_name(cert.issuer),
        "self_issued": cert.subject == cert.issuer,
        "not_before": cert.not_valid_before_utc,
        "not_after": cert.not_valid_after_utc,
        "key": key_description(cert),
        "signature_hash": signature_hash(cert),
        "serial": serial_hex(cert),
    }


def serial_hex(cert: x509.Certificate) -> str:
    """Serial number in hex; the warning cryptography gives for a non-positive one is already recorded
    by :func:`parse_pem`, so it is not repeated here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return format(cert.serial_number, "x")
