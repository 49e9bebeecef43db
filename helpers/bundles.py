"""Trust bundles: named, versioned sets of root certificates, and how they differ."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import pandas as pd
from cryptography import x509

from helpers import _x509
from helpers._io import atomic_write_bytes
from helpers._x509 import Problem

__all__ = [
    "Bundle",
    "Problem",
    "botocore_vendored",
    "compare",
    "from_pem",
    "installed_certifi",
    "system",
]


@dataclass(eq=False)
class Bundle:
    """A named, versioned set of trust anchors, as loaded from one PEM source."""

    name: str
    version: str | None
    source: str
    certificates: list[x509.Certificate]
    problems: list[Problem] = field(default_factory=list)
    warnings: dict[str, str] = field(default_factory=dict)  # fingerprint -> parser warning

    @property
    def label(self) -> str:
        """'certifi 2021.10.8', or the name alone when there is no version."""
        return f"{self.name} {self.version}" if self.version else self.name

    def __len__(self) -> int:
        return len(self.certificates)

    def __repr__(self) -> str:
        extra = f", {len(self.problems)} problems" if self.problems else ""
        return f"<Bundle {self.label}: {len(self.certificates)} roots{extra}>"

    @cached_property
    def fingerprints(self) -> frozenset[str]:
        """SHA-256 fingerprints of the usable certificates."""
        return frozenset(_x509.fingerprint(c) for c in self.certificates)

    def frame(self) -> pd.DataFrame:
        """One row per root: fingerprint, subject CN/O, validity, key, signature hash, ..."""
        rows = [_x509.describe(c) for c in self.certificates]
        frame = pd.DataFrame(rows, columns=_x509.DESCRIBE_COLUMNS)
        frame["parser_warning"] = frame["fingerprint_sha256"].map(self.warnings)
        return frame

    def problems_frame(self) -> pd.DataFrame:
        """One row per certificate of the source that could not be used, with the reason."""
        return pd.DataFrame(
            [vars(p) for p in self.problems], columns=["position", "fingerprint_sha256", "reason"]
        )

    def find(self, name_or_fingerprint: str) -> list[x509.Certificate]:
        """Certificates whose fingerprint starts with, or whose subject contains, the given text."""
        needle = name_or_fingerprint.lower().replace(":", "")
        return [
            c
            for c in self.certificates
            if _x509.fingerprint(c).startswith(needle) or needle in c.subject.rfc4514_string().lower()
        ]

    def pem(self) -> bytes:
        """The usable certificates as one PEM bundle."""
        return _x509.to_pem(self.certificates)

    def write_pem(self, path: str | os.PathLike) -> Path:
        """Write the bundle as PEM to ``path`` (atomically) and return the path."""
        return atomic_write_bytes(path, self.pem())

    def path(self) -> Path:
        """A PEM file of this bundle that boto3's ``verify=`` accepts (written once, then reused)."""
        cached = self.__dict__.get("_pem_path")
        if cached is None or not cached.exists():
            safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in self.label)
            cached = self.write_pem(Path(_cache_dir()) / f"{safe}-{len(self)}-{id(self):x}.pem")
            self.__dict__["_pem_path"] = cached
        return cached


def _cache_dir() -> str:
    """Per-user temp folder for bundle PEM files."""
    path = Path(tempfile.gettempdir()) / f"atskit-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def from_pem(
    path_or_bytes: str | os.PathLike | bytes, *, name: str | None = None, version: str | None = None
) -> Bundle:
    """Load a bundle from a PEM file path or PEM bytes; unusable blocks land in ``problems``."""
    if isinstance(path_or_bytes, bytes):
        data, source = path_or_bytes, "<bytes>"
    else:
        path = Path(path_or_bytes)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such PEM file; pass the path of a CA bundle (.pem)")
        data, source = path.read_bytes(), str(path)
    parsed = _x509.parse_pem(data)
    if not parsed.certificates and not parsed.problems:
        raise ValueError(f"{source}: no PEM CERTIFICATE blocks found; pass a CA bundle in PEM format")
    return Bundle(
        name=name or (Path(source).name if source != "<bytes>" else "pem"),
        version=version,
        source=source,
        certificates=parsed.certificates,
        problems=parsed.problems,
        warnings=parsed.warnings,
    )


def installed_certifi() -> Bundle:
    """The bundle of the certifi installed in this environment (``certifi.where()``)."""
    import certifi

    return from_pem(certifi.where(), name="certifi", version=certifi.__version__)


def botocore_vendored() -> Bundle:
    """The ``cacert.pem`` shipped inside the installed botocore (its fallback when certifi is absent)."""
    import botocore

    path = Path(botocore.__file__).with_name("cacert.pem")
    return from_pem(path, name="botocore-vendored", version=botocore.__version__)


def system() -> Bundle:
    """The operating system's CA bundle (OpenSSL's default file or the first common location)."""
    import ssl

    candidates = [os.environ.get("SSL_CERT_FILE"), ssl.get_default_verify_paths().cafile]
    candidates += [
        "/etc/ssl/certs/ca-certificates.crt",  # Debian, Ubuntu, Alpine
        "/etc/pki/tls/certs/ca-bundle.crt",  # Fedora, RHEL, Amazon Linux
        "/etc/ssl/cert.pem",  # macOS, BSD
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return from_pem(candidate, name="system")
    raise FileNotFoundError(
        "no system CA bundle found (looked at SSL_CERT_FILE, OpenSSL's default and the usual paths); "
        "set SSL_CERT_FILE to your CA bundle"
    )


def compare(a: Bundle, b: Bundle) -> pd.DataFrame:
    """One row per root found in either bundle, ``change`` in {added, removed, kept} going a -> b.

    ``in_a``/``in_b`` say where each root is; ``frame.attrs`` holds the two bundles' labels.
    """
    by_fp = {_x509.fingerprint(c): c for c in a.certificates}
    by_fp.update({_x509.fingerprint(c): c for c in b.certificates})
    rows = []
    for fp, cert in by_fp.items():
        in_a, in_b = fp in a.fingerprints, fp in b.fingerprints
        change = "kept" if in_a and in_b else ("removed" if in_a else "added")
        rows.append({"change": change, "in_a": in_a, "in_b": in_b, **_x509.describe(cert)})
    order = {"removed": 0, "added": 1, "kept": 2}
    attrs = {"a": a.label, "b": b.label}
    columns = ["change", "in_a", "in_b", *_x509.DESCRIBE_COLUMNS]
    frame = pd.DataFrame(rows, columns=columns)
    frame = (
        frame.assign(_order=frame["change"].map(order))
        .sort_values(["_order", "name"], kind="stable")
        .drop(columns="_order")
        .reset_index(drop=True)
    )
    frame.attrs.update(attrs)
    return frame
