"""Small PKIs made with ``cryptography``: CAs, intermediates and leaves for the lab and the tests.

Modelled on trustme: ``CA(...)``, ``ca.create_child_ca(...)``, ``ca.issue_cert(*hostnames)``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

from helpers._io import atomic_write_bytes
from helpers.kinds import InputError

__all__ = ["CA", "LeafCert", "make_name"]

# Wide enough to cover the incident (2021) and today, so lab chains verify under the real clock.
DEFAULT_NOT_BEFORE = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
DEFAULT_NOT_AFTER = dt.datetime(2040, 1, 1, tzinfo=dt.UTC)
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def make_name(
    common_name: str | None,
    *,
    organization: str | None = None,
    organizational_unit: str | None = None,
    country: str | None = None,
) -> x509.Name:
    """An X.509 name from its usual parts (C, O, OU, CN, in that order)."""
    parts = [
        (NameOID.COUNTRY_NAME, country),
        (NameOID.ORGANIZATION_NAME, organization),
        (NameOID.ORGANIZATIONAL_UNIT_NAME, organizational_unit),
        (NameOID.COMMON_NAME, common_name),
    ]
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in parts if value])


def _new_key(key_type: str) -> PrivateKey:
    """A fresh private key: 'rsa' (2048), 'rsa4096', 'ec' (P-256) or 'ec384' (P-384)."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    if key_type == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec384":
        return ec.generate_private_key(ec.SECP384R1())
    raise InputError(f"key_type={key_type!r}: use 'rsa', 'rsa4096', 'ec' or 'ec384'")


def _pem(cert: x509.Certificate) -> bytes:
    """PEM of one certificate."""
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    """Unencrypted PKCS#8 PEM of a private key."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _builder(subject: x509.Name, issuer: x509.Name, public_key, not_before, not_after, serial=None):
    """Certificate builder with the parts every certificate shares."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


_KEY_IDENTIFIERS = (ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.AUTHORITY_KEY_IDENTIFIER)


class CA:
    """A certificate authority: a root (no ``parent``) or an intermediate under ``parent``."""

    def __init__(
        self,
        name: str | x509.Name,
        *,
        organization: str | None = None,
        organizational_unit: str | None = None,
        country: str | None = None,
        key_type: str = "rsa",
        parent: CA | None = None,
        path_length: int | None = None,
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
        extensions: Sequence[x509.Extension] | None = None,
    ) -> None:
        """``extensions``: carry these (a real certificate's, for a twin) instead of the default basic
        constraints and CA key usage; the key identifiers are always this CA's own."""
        self.name = (
            name
            if isinstance(name, x509.Name)
            else make_name(
                name, organization=organization, organizational_unit=organizational_unit, country=country
            )
        )
        self.key: PrivateKey = _new_key(key_type)
        self.parent = parent
        signer = parent.key if parent else self.key
        builder = _builder(
            self.name, parent.name if parent else self.name, self.key.public_key(), not_before, not_after
        )
        if extensions is None:
            extensions = [
                x509.Extension(x509.BasicConstraints.oid, True, x509.BasicConstraints(True, path_length)),
                x509.Extension(x509.KeyUsage.oid, True, _CA_KEY_USAGE),
            ]
        for extension in extensions:
            if extension.oid not in _KEY_IDENTIFIERS:
                builder = builder.add_extension(extension.value, critical=extension.critical)
        if parent:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
            )
        self.cert: x509.Certificate = builder.sign(signer, hashes.SHA256())

    @classmethod
    def from_pem(
        cls, cert_pem: bytes, private_key_pem: bytes, *, parent: CA | None = None, validate_key: bool = True
    ) -> CA:
        """A CA made earlier, from its certificate and private key (InputError if they do not match).

        ``validate_key=False`` skips cryptography's RSA key checks (about 40 ms a key): only for a key
        this user wrote, in a file only this user can change.
        """
        ca = cls.__new__(cls)
        ca.cert = x509.load_pem_x509_certificate(cert_pem)
        ca.key = serialization.load_pem_private_key(
            private_key_pem, password=None, unsafe_skip_rsa_key_validation=not validate_key
        )
        ca.name, ca.parent = ca.cert.subject, parent
        if ca.cert.public_key() != ca.key.public_key():
            raise InputError(f"the key given for {ca.name.rfc4514_string()} is not its certificate's")
        return ca

    @property
    def cert_pem(self) -> bytes:
        """This CA's certificate as PEM."""
        return _pem(self.cert)

    @property
    def private_key_pem(self) -> bytes:
        """This CA's private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)

    @property
    def chain(self) -> list[x509.Certificate]:
        """This CA's certificate and its parents', up to and including the root."""
        return [self.cert, *(self.parent.chain if self.parent else [])]

    def create_child_ca(self, name: str | x509.Name, **kwargs) -> CA:
        """An intermediate CA signed by this one (keyword arguments as for :class:`CA`)."""
        return CA(name, parent=self, **kwargs)

    def cross_sign(
        self,
        other: CA,
        *,
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
    ) -> x509.Certificate:
        """A certificate for ``other``'s name and key, issued by this CA (a cross-signature), with the
        key usage of a CA certificate (as Starfield's real cross-signatures of Amazon's roots carry)."""
        return (
            _builder(other.name, self.name, other.key.public_key(), not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    def issue_cert(
        self,
        *hostnames: str,
        common_name: str | None = None,
        organization: str | None = None,
        organizational_unit: str | None = None,
        key_type: str = "ec",
        not_before: dt.datetime = DEFAULT_NOT_BEFORE,
        not_after: dt.datetime = DEFAULT_NOT_AFTER,
    ) -> LeafCert:
        """A server certificate for ``hostnames`` (DNS names or IP addresses) signed by this CA."""
        if not hostnames:
            raise InputError("issue_cert needs at least one hostname")
        key = _new_key(key_type)
        sans = []
        for host in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        subject = make_name(
            common_name or hostnames[0], organization=organization, organizational_unit=organizational_unit
        )
        cert = (
            _builder(subject, self.name, key.public_key(), not_before, not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=isinstance(key, rsa.RSAPrivateKey),
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        return LeafCert(cert=cert, key=key, issuer_chain=self.chain)


@dataclass
class LeafCert:
    """A server certificate, its key, and the chain of CAs above it (issuer first, root last)."""

    cert: x509.Certificate
    key: PrivateKey
    issuer_chain: list[x509.Certificate] = field(default_factory=list)

    @property
    def cert_pem(self) -> bytes:
        """The leaf certificate as PEM."""
        return _pem(self.cert)

    @property
    def private_key_pem(self) -> bytes:
        """The leaf's private key as unencrypted PKCS#8 PEM."""
        return _key_pem(self.key)

    def cert_chain_pems(self, *, include_root: bool = False, intermediates: bool = True) -> list[bytes]:
        """PEMs a server presents: the leaf, then intermediates (and the root only if asked)."""
        above = self.issuer_chain if include_root else self.issuer_chain[:-1]
        return [self.cert_pem, *(_pem(c) for c in (above if intermediates else []))]

    def write_files(self, directory: str | Path, stem: str, **chain_options) -> tuple[Path, Path]:
        """Write ``<stem>.chain.pem`` and ``<stem>.key.pem`` (0600: a private key is this user's only)
        for ``SSLContext.load_cert_chain``."""
        directory = Path(directory)
        chain_path = atomic_write_bytes(
            directory / f"{stem}.chain.pem", b"".join(self.cert_chain_pems(**chain_options))
        )
        key_path = atomic_write_bytes(directory / f"{stem}.key.pem", self.private_key_pem, mode=0o600)
        return chain_path, key_path
