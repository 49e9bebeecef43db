"""Lab twins of the real CAs behind AWS IoT's endpoints, and trust views that swap them in.

A twin has the real certificate's subject name plus one extra OU (``LAB_OU``) saying it is a lab twin,
the real root's validity, key type and extensions (key identifiers aside), and a key made here. The
real intermediates and cross-signatures are not in any bundle the kit holds (data/README.md), so their
twins carry a CA's usual extensions. ``trust_view`` takes a real bundle and
replaces each real root that has a twin (matched by the real subject name) with that twin, so the lab
is trusted exactly where the real root was.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from helpers import _cache, _x509, bundles, incident
from helpers import pki as pki_module
from helpers._io import atomic_write_bytes
from helpers.kinds import InputError, UnusableError
from helpers.pki import CA, LeafCert, make_name

LAB_OU = _x509.LAB_TWIN_OU

# Roots: the real certificate is looked up by its CN in real bundles (its full name, validity and key
# type are copied from it). Intermediates are not in any root bundle; their public subject names are
# spelled out here, and each is issued by the twin of its real issuer.
_ROOT_CNS = {
    "verisign_g5": incident.ROOT_AT_FAULT,
    "amazon_root_ca_1": "Amazon Root CA 1",
    "amazon_root_ca_3": "Amazon Root CA 3",
    "starfield_services_g2": "Starfield Services Root Certificate Authority - G2",
}
_INTERMEDIATES = {  # twin id -> (issuer twin id, C, O, OU, CN, key type)
    "symantec_g4": (
        "verisign_g5",
        "US",
        "Symantec Corporation",
        "Symantec Trust Network",
        "Symantec Class 3 Secure Server CA - G4",
        "rsa",
    ),
    "amazon_rsa_2048_m01": ("amazon_root_ca_1", "US", "Amazon", None, "Amazon RSA 2048 M01", "rsa"),
    "amazon_ecdsa_256_m01": ("amazon_root_ca_3", "US", "Amazon", None, "Amazon ECDSA 256 M01", "ec"),
}
# What each served chain is: the leaf's issuing intermediate, then what the server sends above it.
CHAINS = {
    "legacy": ("symantec_g4", None),
    "ats-rsa": ("amazon_rsa_2048_m01", "amazon_root_ca_1"),
    "ats-ecdsa": ("amazon_ecdsa_256_m01", "amazon_root_ca_3"),
}
# Where the real root is looked up when the installed botocore's vendored file lacks it.
_FALLBACK_RELEASE = incident.WORKING_CERTIFI


def lab_name(real: x509.Name) -> x509.Name:
    """The real name with the lab-twin OU added just before the CN (at the end if there is no CN)."""
    rdns = list(real.rdns)
    marker = x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, LAB_OU)])
    cn_at = [i for i, rdn in enumerate(rdns) if rdn.get_attributes_for_oid(NameOID.COMMON_NAME)]
    rdns.insert(cn_at[0] if cn_at else len(rdns), marker)
    return x509.Name(rdns)


def real_name(name: x509.Name) -> x509.Name:
    """A name without the lab-twin OU: the real certificate's name for a twin."""
    return x509.Name([rdn for rdn in name.rdns if not any(_is_lab_ou(attribute) for attribute in rdn)])


def _is_lab_ou(attribute: x509.NameAttribute) -> bool:
    """True for the OU attribute that marks a lab twin."""
    return attribute.oid == NameOID.ORGANIZATIONAL_UNIT_NAME and attribute.value == LAB_OU


def is_lab_twin(cert: x509.Certificate) -> bool:
    """True for a certificate made by the lab (its subject carries the lab-twin OU)."""
    return _x509.is_lab_twin_name(cert.subject)


def _key_type(cert: x509.Certificate) -> str:
    """The pki key type matching a real certificate's key ('rsa', 'rsa4096', 'ec', 'ec384')."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa" if key.key_size <= 2048 else "rsa4096"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec" if key.curve.name == "secp256r1" else "ec384"
    raise InputError(f"{_x509.display_name(cert.subject)}: key {type(key).__name__} has no lab twin type")


def _real_roots() -> dict[str, x509.Certificate]:
    """The real root certificates the twins copy, from botocore's vendored file (or certifi 2020.6.20)."""
    sources = [bundles.botocore_vendored, lambda: bundles.certifi(_FALLBACK_RELEASE)]
    found: dict[str, x509.Certificate] = {}
    for load in sources:
        for cert in load().certificates:
            cn = _x509.name_attr(cert.subject, NameOID.COMMON_NAME)
            for twin_id, root_cn in _ROOT_CNS.items():
                if cn == root_cn and cert.subject == cert.issuer:
                    found.setdefault(twin_id, cert)
        if len(found) == len(_ROOT_CNS):
            return found
    missing = sorted(cn for twin_id, cn in _ROOT_CNS.items() if twin_id not in found)
    raise UnusableError(
        f"real root(s) {missing} not found in botocore's cacert.pem or certifi {_FALLBACK_RELEASE}"
    )


@dataclass
class LabPKI:
    """Twin CAs (by twin id), the real roots they stand for, cross-signatures and per-region leaves."""

    cas: dict[str, CA]
    real_roots: dict[str, x509.Certificate]
    cross_signed: dict[str, x509.Certificate]  # twin id -> that twin's name and key, issued by Starfield G2
    _leaves: dict[str, dict[str, LeafCert]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def roots(self) -> list[x509.Certificate]:
        """The twin roots (self-signed)."""
        return [self.cas[t].cert for t in _ROOT_CNS]

    def twin_for(self, cert: x509.Certificate) -> x509.Certificate | None:
        """The twin of a real root (same subject name, self-issued), or None if it has none."""
        if cert.subject == cert.issuer:
            for twin_id, real in self.real_roots.items():
                if real.subject == cert.subject:
                    return self.cas[twin_id].cert
        return None

    def leaves(self, region: str) -> dict[str, LeafCert]:
        """Server certificates for one region, one per served chain (made once, then reused)."""
        with self._lock:
            if region not in self._leaves:
                names = (f"*.iot.{region}.amazonaws.com", f"iot.{region}.amazonaws.com")
                legacy_names = (f"*.iot.{region}.amazonaws.com", f"data.iot.{region}.amazonaws.com")
                made = {}
                for chain_id, (issuer_id, _) in CHAINS.items():
                    made[chain_id] = self.cas[issuer_id].issue_cert(
                        *(legacy_names if chain_id == "legacy" else names),
                        organization="Amazon.com, Inc.",
                        organizational_unit=LAB_OU,
                        key_type="ec" if chain_id == "ats-ecdsa" else "rsa",
                    )
                self._leaves[region] = made
            return self._leaves[region]

    def served_chain_pems(self, chain_id: str, region: str) -> list[bytes]:
        """What the lab server sends for a chain: leaf, intermediate, then any cross-signed root."""
        leaf = self.leaves(region)[chain_id]
        pems = leaf.cert_chain_pems()  # leaf + intermediate (the root is not sent)
        cross_id = CHAINS[chain_id][1]
        if cross_id:
            pems.append(_x509.to_pem([self.cross_signed[cross_id]]))
        return pems

    def frame(self):
        """One row per twin CA (a DataFrame): twin id, role, name, issuer, key, real root's fingerprint."""
        import pandas as pd

        rows = []
        for twin_id, ca in self.cas.items():
            real = self.real_roots.get(twin_id)
            rows.append(
                {
                    "twin_id": twin_id,
                    "role": "root" if ca.parent is None else "intermediate",
                    **_x509.describe(ca.cert),
                    "real_fingerprint_sha256": _x509.fingerprint(real) if real is not None else None,
                }
            )
        for twin_id, cert in self.cross_signed.items():
            rows.append(
                {"twin_id": f"{twin_id}_by_starfield", "role": "cross-signed", **_x509.describe(cert)}
            )
        columns = ["twin_id", "role", *_x509.DESCRIBE_COLUMNS, "real_fingerprint_sha256"]
        return pd.DataFrame(rows, columns=columns)


_pki_lock = threading.Lock()


def pki() -> LabPKI:
    """The process's lab PKI: twins of the real roots and intermediates (made once per process)."""
    with _pki_lock:
        return _make_pki()


@functools.cache
def _make_pki() -> LabPKI:
    """The twin CAs and cross-signatures: as saved in the kit's private cache by an earlier process
    with the same code and real roots, else made now (RSA key generation takes a moment) and saved.

    A saved PKI is ``pki-<what made it>-<SHA-256 of its content>.json``; one whose content does not
    match its name is removed and never loaded."""
    real_roots = _real_roots()
    folder = _cache.private_dir("lab")
    made_by = _pki_digest(real_roots)[:32]
    for path in sorted(folder.glob(f"pki-{made_by}-*.json")):
        data = _cache.read_verified(path, path.stem.rsplit("-", 1)[-1])
        try:
            if data is not None:
                return _load_pki(data, real_roots)
        except (ValueError, KeyError, TypeError):  # not what this code makes
            pass
        path.unlink(missing_ok=True)  # changed since it was written, or not whole: made again below
    made = _new_pki(real_roots)
    saved = {
        "cas": {t: [ca.cert_pem.decode(), ca.private_key_pem.decode()] for t, ca in made.cas.items()},
        "cross_signed": {t: _x509.to_pem([c]).decode() for t, c in made.cross_signed.items()},
    }
    data = json.dumps(saved).encode()
    path = folder / f"pki-{made_by}-{hashlib.sha256(data).hexdigest()}.json"
    atomic_write_bytes(path, data, mode=0o600)  # private keys: this user's only
    _cache.mark_used(path)
    _cache.prune(folder)
    return made


def _pki_digest(real_roots: dict[str, x509.Certificate]) -> str:
    """What decides the lab PKI: the code that makes it and the real roots it copies."""
    digest = hashlib.sha256(Path(__file__).read_bytes() + Path(pki_module.__file__).read_bytes())
    for twin_id, real in sorted(real_roots.items()):
        digest.update(f"{twin_id}={_x509.fingerprint(real)}".encode())
    return digest.hexdigest()


def _load_pki(data: bytes, real_roots: dict[str, x509.Certificate]) -> LabPKI:
    """A lab PKI saved by :func:`_make_pki` (ValueError and friends if it is not a whole one)."""
    saved = json.loads(data)
    cas: dict[str, CA] = {}
    for twin_id in [*_ROOT_CNS, *_INTERMEDIATES]:
        parent = cas[_INTERMEDIATES[twin_id][0]] if twin_id in _INTERMEDIATES else None
        cert_pem, key_pem = saved["cas"][twin_id]
        # keys this process's user wrote into a 0600 file in their own 0700 folder: not re-validated
        cas[twin_id] = CA.from_pem(cert_pem.encode(), key_pem.encode(), parent=parent, validate_key=False)
    cross_signed = {
        t: x509.load_pem_x509_certificate(pem.encode()) for t, pem in saved["cross_signed"].items()
    }
    return LabPKI(cas=cas, real_roots=real_roots, cross_signed=cross_signed)


def _new_pki(real_roots: dict[str, x509.Certificate]) -> LabPKI:
    """Make the twin CAs (keys of the real roots' types and validity) and Starfield's cross-signatures."""
    cas: dict[str, CA] = {}
    for twin_id, real in real_roots.items():
        cas[twin_id] = CA(
            lab_name(real.subject),
            key_type=_key_type(real),
            not_before=real.not_valid_before_utc,
            not_after=real.not_valid_after_utc,
            extensions=list(real.extensions),  # every one, as the real root carries it
        )
    for twin_id, (issuer_id, country, org, unit, cn, key_type) in _INTERMEDIATES.items():
        name = lab_name(make_name(cn, organization=org, organizational_unit=unit, country=country))
        cas[twin_id] = cas[issuer_id].create_child_ca(name, key_type=key_type, path_length=0)
    starfield = cas["starfield_services_g2"]
    cross_signed = {t: starfield.cross_sign(cas[t]) for t in ("amazon_root_ca_1", "amazon_root_ca_3")}
    return LabPKI(cas=cas, real_roots=real_roots, cross_signed=cross_signed)


_bundle_views: weakref.WeakKeyDictionary[bundles.Bundle, bundles.Bundle] = weakref.WeakKeyDictionary()


def trust_view(release: str | bundles.Bundle) -> bundles.Bundle:
    """A real bundle (a certifi release, or any Bundle) with each real root that has a twin replaced.

    ``trust_view("2021.10.8").path()`` is a PEM file for boto3's ``verify=`` or ``AWS_CA_BUNDLE``.
    """
    if isinstance(release, str):
        release = bundles.certifi(release)  # one shared Bundle per release: its view is made once
    view = _bundle_views.get(release)
    if view is None:
        view = _bundle_views[release] = _swap_twins(release)
    return view


def _swap_twins(release: bundles.Bundle) -> bundles.Bundle:
    """A copy of ``release`` with each real root that has a twin replaced by the twin."""
    lab = pki()
    pairs = [(c, lab.twin_for(c)) for c in release.certificates]
    certs = [twin or real for real, twin in pairs]
    twins = {_x509.fingerprint(twin) for _, twin in pairs if twin is not None}
    return bundles.Bundle(
        name=f"lab view of {release.name}",
        version=release.version,
        source=f"{release.source} ({len(twins)} real roots replaced by lab twins)",
        certificates=certs,
        problems=list(release.problems),
        warnings={fp: w for fp, w in release.warnings.items() if fp not in twins},
    )


def twin_roots() -> bundles.Bundle:
    """A bundle of the twin roots only (what the lab's own setup calls trust)."""
    return bundles.Bundle(name="lab twin roots", version=None, source="helpers.lab", certificates=pki().roots)
