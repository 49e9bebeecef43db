"""Trust bundles: named, versioned sets of root certificates, and how they differ."""

from __future__ import annotations

import bisect
import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509

from helpers import _cache, _certifi_store, _paths, _x509
from helpers._io import atomic_write_bytes
from helpers._paths import data_file
from helpers._x509 import Problem
from helpers.incident import ROOT_AT_FAULT
from helpers.kinds import InputError, MissingFileError, UnusableError

if TYPE_CHECKING:  # pandas is imported where a table is built: loading and comparing roots need none
    import pandas as pd

__all__ = [
    "Bundle",
    "Problem",
    "added_in",
    "botocore_vendored",
    "certifi",
    "certifi_releases",
    "certifi_versions",
    "Comparison",
    "compare",
    "from_pem",
    "history",
    "installed_certifi",
    "release_changes",
    "removed_in",
    "root_presence",
    "roots_matching",
    "style_changes",
    "style_presence",
    "system",
    "timeline_plot",
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
        import pandas as pd

        rows = [_x509.describe(c) for c in self.certificates]
        frame = pd.DataFrame(rows, columns=_x509.DESCRIBE_COLUMNS)
        frame["parser_warning"] = frame["fingerprint_sha256"].map(self.warnings)
        return frame

    def problems_frame(self) -> pd.DataFrame:
        """One row per certificate of the source that could not be used, with the reason."""
        import pandas as pd

        return pd.DataFrame(
            [vars(p) for p in self.problems], columns=["position", "fingerprint_sha256", "reason"]
        )

    def not_authorities(self) -> list[str]:
        """Names of the certificates that are not CAs (a server's certificate passed as a bundle
        becomes a trust anchor all the same: usually a mistake)."""
        import warnings

        names = []
        for cert in self.certificates:
            with warnings.catch_warnings():  # what old roots warn about is recorded in ``warnings``
                warnings.simplefilter("ignore")
                try:
                    is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
                except (x509.ExtensionNotFound, ValueError):
                    is_ca = cert.subject == cert.issuer  # old roots carry no basicConstraints
            if not is_ca:
                names.append(_x509.display_name(cert.subject))
        return names

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
        """A PEM file of this bundle that boto3's ``verify=`` accepts.

        The file lives in the kit's private cache (a folder only this user can write) and is named by
        the SHA-256 of its content, so every process and every Bundle with the same roots shares one
        file. Its content is checked against that digest each time it is handed out, and rewritten if
        it differs: a file changed after its first use (a root added) is never handed out.
        """
        written = self.__dict__.get("_pem_file")
        if written is None:
            pem = self.pem()
            digest = hashlib.sha256(pem).hexdigest()
            safe = "".join(ch if ch.isalnum() or ch in ".-_" else "_" for ch in self.label)
            folder = _cache.private_dir("trust")
            written = self.__dict__["_pem_file"] = (folder / f"{safe}-{len(self)}-{digest[:16]}.pem", digest)
        path, digest = written
        if not _cache.verified(path, digest):
            _cache.private_dir("trust")  # still this user's own folder
            atomic_write_bytes(path, self.pem())
            _cache.mark_used(path)
            _cache.prune(path.parent)
        return path


def from_pem(
    path_or_bytes: str | os.PathLike | bytes, *, name: str | None = None, version: str | None = None
) -> Bundle:
    """Load a bundle from a PEM file path or PEM bytes; unusable blocks land in ``problems``."""
    if isinstance(path_or_bytes, bytes):
        data, source = path_or_bytes, "<bytes>"
    else:
        path = Path(path_or_bytes)
        if not path.is_file():
            raise MissingFileError(f"{path}: no such PEM file; pass the path of a CA bundle (.pem)")
        data, source = path.read_bytes(), str(path)
    parsed = _x509.parse_pem(data)
    if not parsed.certificates and not parsed.problems:
        raise InputError(f"{source}: no PEM CERTIFICATE blocks found; pass a CA bundle in PEM format")
    if not parsed.certificates:  # a bundle that trusts nothing would fail every check: say why instead
        first = parsed.problems[0]
        raise InputError(
            f"{source}: none of its {len(parsed.problems)} certificate blocks can be used "
            f"(block {first.position + 1}: {first.reason}); pass a CA bundle in PEM format"
        )
    return Bundle(
        name=name or (Path(source).name if source != "<bytes>" else "pem"),
        version=version,
        source=source,
        certificates=parsed.certificates,
        problems=parsed.problems,
        warnings=parsed.warnings,
    )


def installed_certifi() -> Bundle:
    """The bundle of the certifi installed in this environment (``certifi.where()``).

    The version is the distribution's (``importlib.metadata``: '2026.10.19.post1'), not
    ``certifi.__version__`` ('2026.10.19'), so it names the release that :func:`certifi` knows.
    """
    import importlib.metadata

    import certifi as certifi_package

    return from_pem(certifi_package.where(), name="certifi", version=importlib.metadata.version("certifi"))


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
    raise MissingFileError(
        "no system CA bundle found (looked at SSL_CERT_FILE, OpenSSL's default and the usual paths); "
        "set SSL_CERT_FILE to your CA bundle"
    )


COMPARE_COLUMNS = ["change", "in_a", "in_b", *_x509.DESCRIBE_COLUMNS]


@dataclass(frozen=True)
class Comparison:
    """What changed going from bundle ``a`` to bundle ``b``: one row per root found in either, removed
    first, then added, then kept (each by name); ``change`` is 'removed', 'added' or 'kept'."""

    a: str  # the bundles' labels
    b: str
    rows: list[dict]

    def count(self, change: str) -> int:
        """How many roots have this change ('removed', 'added', 'kept')."""
        return sum(row["change"] == change for row in self.rows)

    def changed(self) -> list[dict]:
        """The rows of removed and added roots."""
        return [row for row in self.rows if row["change"] != "kept"]

    @property
    def summary(self) -> str:
        """'certifi 2020.6.20 -> certifi 2021.10.8: 21 removed, 14 added, 117 kept'."""
        counts = ", ".join(f"{self.count(change)} {change}" for change in ("removed", "added", "kept"))
        return f"{self.a} -> {self.b}: {counts}"

    def frame(self) -> pd.DataFrame:
        """The rows as a DataFrame (``attrs`` holds the two labels)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows, columns=COMPARE_COLUMNS)
        frame.attrs.update({"a": self.a, "b": self.b})
        return frame


def compare(a: Bundle, b: Bundle) -> Comparison:
    """The roots removed, added and kept going from ``a`` to ``b`` (``in_a``/``in_b`` say where each is)."""
    by_fp = {_x509.fingerprint(c): c for c in a.certificates}
    by_fp.update({_x509.fingerprint(c): c for c in b.certificates})
    rows = []
    for fp, cert in by_fp.items():
        in_a, in_b = fp in a.fingerprints, fp in b.fingerprints
        change = "kept" if in_a and in_b else ("removed" if in_a else "added")
        rows.append({"change": change, "in_a": in_a, "in_b": in_b, **_x509.describe(cert)})
    order = {"removed": 0, "added": 1, "kept": 2}
    rows.sort(key=lambda row: (order[row["change"]], row["name"] or ""))
    return Comparison(a.label, b.label, rows)


# ---------------------------------------------------------------- certifi's history, from data/certifi


_ROOT_HEADER = re.compile(rb"^# sha256 ([0-9a-f]{64})$", re.M)


@dataclass(frozen=True)
class _CertifiData:
    """data/certifi as read: release rows (oldest first), and the roots and membership files, each
    part decoded on first use (loading one release parses only its own roots)."""

    releases: list[dict[str, str]]  # releases.csv rows, oldest first
    status: dict[str, str]  # version -> 'ok' or why it has no roots, oldest first
    roots_pem: bytes  # roots.pem: each block under a '# sha256 FINGERPRINT' line
    membership_csv: str  # membership.csv: version,position,fingerprint_sha256
    parsed: dict[str, _x509.ParsedPEM] = field(default_factory=dict)  # fingerprint -> parsed block
    derived: dict = field(default_factory=dict)  # what is built from this data once: bundles, tables

    @cached_property
    def offsets(self) -> dict[str, int]:
        """Fingerprint -> where its block starts in roots.pem (from the '# sha256' lines)."""
        return {m.group(1).decode(): m.end() for m in _ROOT_HEADER.finditer(self.roots_pem)}

    def members(self, version: str) -> list[str]:
        """The block fingerprints of one release, in its file's order (a first release's rows alone are
        read; from the second on, every release's at once)."""
        if not self.derived.get("members-read"):
            self.derived["members-read"] = True
            return _certifi_store.members_of(self.membership_csv, version)
        every = self.derived.get("members") or self.derived.setdefault(
            "members", _certifi_store.members_by_release(self.membership_csv)
        )
        return every.get(version, [])

    def block(self, fingerprint: str) -> _x509.ParsedPEM:
        """The parsed block of ``fingerprint`` (a certificate, or the problem that stops it).

        The block is identified by its own content, as everywhere in the kit; a block whose content
        does not match the fingerprint it is filed under is a problem, not that certificate.
        """
        found = self.parsed.get(fingerprint)
        if found is None:
            start = self.offsets.get(fingerprint)
            block = next(_x509.pem_blocks(self.roots_pem[start:]), None) if start is not None else None
            if block is None:
                found = _x509.ParsedPEM([], {}, [Problem(0, fingerprint, "missing from roots.pem")])
            elif block[0] != fingerprint:
                reason = f"roots.pem files a block with fingerprint {block[0]} under {fingerprint}"
                found = _x509.ParsedPEM([], {}, [Problem(0, fingerprint, reason)])
            else:
                found = _x509.parse_blocks([(0, block)])
            self.parsed[fingerprint] = found
        return found


@functools.cache
def _certifi_data_loaded() -> _CertifiData:
    """Read data/certifi (cached; ``_certifi_data_loaded.cache_clear()`` re-reads it on the next call,
    and with it goes everything built from the old data: see :func:`_built`)."""
    _certifi_store.recover_set_aside(_paths.DATA_DIR / "certifi")  # a refresh killed mid-swap
    folder = data_file("certifi")
    releases = sorted(
        _certifi_store.read_releases(folder), key=lambda row: _certifi_store.version_key(row["version"])
    )
    return _CertifiData(
        releases=releases,
        status={row["version"]: row["status"] for row in releases},
        roots_pem=data_file("certifi", _certifi_store.ROOTS_FILE).read_bytes(),
        membership_csv=data_file("certifi", _certifi_store.MEMBERSHIP_FILE).read_text(encoding="utf-8"),
    )


def _built(key, build):
    """What ``build(data)`` makes from the loaded data, made once per load (bundles, tables)."""
    data = _certifi_data_loaded()
    if key not in data.derived:
        data.derived[key] = build(data)
    return data.derived[key]


def certifi_versions() -> list[str]:
    """Every certifi release with roots, oldest first (what :func:`certifi` loads)."""
    return [version for version, status in _certifi_data_loaded().status.items() if status == "ok"]


def _releases_frame() -> pd.DataFrame:
    """releases.csv as a typed frame, oldest first (built once per load)."""
    return _built("releases", _make_releases_frame)


def _make_releases_frame(data: _CertifiData) -> pd.DataFrame:
    import pandas as pd

    numeric = ["blocks", "roots", "problems", "loaded_with_warning"]
    releases = (
        pd.DataFrame(data.releases, columns=_certifi_store.RELEASE_COLUMNS)
        .replace({"": None})
        .assign(
            uploaded_at=lambda f: pd.to_datetime(f["uploaded_at"], utc=True, format="ISO8601"),
            released=lambda f: f["uploaded_at"].dt.tz_localize(None).dt.normalize(),
            yanked=lambda f: f["yanked"].eq("True"),
            **{c: (lambda f, c=c: pd.to_numeric(f[c]).astype("Int64")) for c in numeric},
        )
        .reset_index(drop=True)
    )
    front = ["version", "released", "roots", "cacert_sha256", "status"]
    return releases[front + [c for c in releases.columns if c not in front]]


def _roots_frame() -> pd.DataFrame:
    """One row per distinct block of data/certifi: describe() columns, usable, problem (once per load)."""
    return _built("roots", _make_roots_frame)


def _make_roots_frame(data: _CertifiData) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for fp in data.offsets:
        parsed = data.block(fp)
        if parsed.certificates:
            cert = parsed.certificates[0]
            rows.append(
                {
                    **_x509.describe(cert),
                    "usable": True,
                    "problem": None,
                    "parser_warning": parsed.warnings.get(fp),
                }
            )
        else:
            reason = parsed.problems[0].reason if parsed.problems else "not a certificate"
            rows.append(
                {
                    "fingerprint_sha256": fp,
                    "name": "(unusable certificate)",
                    "usable": False,
                    "problem": reason,
                    "parser_warning": None,
                }
            )
    return pd.DataFrame(rows, columns=[*_x509.DESCRIBE_COLUMNS, "usable", "problem", "parser_warning"])


def certifi_releases(*, with_unusable: bool = False) -> pd.DataFrame:
    """Every certifi release with roots, oldest first: version, released, roots, cacert_sha256, ...

    ``with_unusable=True`` also lists releases without a file or without a cacert.pem (``status``
    says which).
    """
    releases = _releases_frame()
    return (releases if with_unusable else releases[releases["status"] == "ok"]).reset_index(drop=True)


def _nearest(version: str, known: list[str], *, count: int = 2) -> list[str]:
    """The known releases just before and after ``version`` in release order."""
    ordered = sorted(known, key=_certifi_store.version_key)
    keys = [_certifi_store.version_key(v) for v in ordered]
    at = bisect.bisect_left(keys, _certifi_store.version_key(version))
    return ordered[max(0, at - count) : at + count]


def certifi(version: str) -> Bundle:
    """Exactly the roots of certifi ``version``'s cacert.pem, rebuilt offline from data/certifi.

    '2020.06.20' is accepted for '2020.6.20'. Blocks that cannot be loaded are in ``problems`` at
    their position in the original file. Unknown version -> ValueError naming the nearest releases.

    The Bundle is shared: every call for one release (in any spelling) returns the same object, so
    what is built from it once (its PEM file, chains' trust stores) is reused. Treat it as read-only;
    build a new ``Bundle`` from a copy of ``certificates`` to change it.
    """
    data = _certifi_data_loaded()
    wanted = _certifi_store.normalize_version(str(version)) if str(version).strip() else ""
    status = data.status.get(wanted)
    if status == "ok":
        return _certifi_bundle(wanted)
    usable = certifi_versions()
    if status is None:
        nearest = ", ".join(_nearest(wanted, usable)) if wanted else f"{usable[0]} ... {usable[-1]}"
        raise InputError(
            f"certifi {version!r} is not a release in data/certifi; nearest releases: {nearest} "
            "(`atskit history` lists them all; `atskit refresh-certifi` adds newer ones)"
        )
    raise InputError(
        f"certifi {wanted} has no roots to load ({status}); "
        f"nearest releases with roots: {', '.join(_nearest(wanted, usable))}"
    )


def _certifi_bundle(version: str) -> Bundle:
    """The shared Bundle of one release with roots (normalized version), built once per load."""
    return _built(("bundle", version), lambda data: _make_certifi_bundle(data, version))


def _make_certifi_bundle(data: _CertifiData, version: str) -> Bundle:
    meta = next(row for row in data.releases if row["version"] == version)
    members = data.members(version)
    folder = _paths.DATA_DIR / "certifi"
    fix = (
        "restore it (git checkout -- data/certifi in the kit's repository) or run `atskit refresh-certifi` "
        "to fetch the release again"
    )
    if flaw := _certifi_store.members_mismatch(meta, members):  # never a partial or empty trust store
        raise UnusableError(f"{folder} is inconsistent: release {version} {flaw}; {fix}")
    certificates, problems, warnings = [], [], {}
    for position, fp in enumerate(members):
        parsed = data.block(fp)
        if parsed.certificates:
            certificates.append(parsed.certificates[0])
            warnings.update(parsed.warnings)
        elif fp not in data.offsets:
            raise UnusableError(f"{folder} is inconsistent: release {version} needs {fp[:16]}..., "
                                f"which roots.pem lacks; {fix}")  # fmt: skip
        else:
            reason = parsed.problems[0].reason if parsed.problems else "not a certificate"
            problems.append(Problem(position, fp, reason))
    return Bundle(
        name="certifi",
        version=version,
        source=f"data/certifi ({meta['filename']}, cacert.pem sha256 {meta['cacert_sha256'][:16]}...)",
        certificates=certificates,
        problems=problems,
        warnings=warnings,
    )


def _history() -> pd.DataFrame:
    """The history frame, built once per load."""
    return _built("history", _make_history)


def _make_history(data: _CertifiData) -> pd.DataFrame:
    import pandas as pd

    releases = certifi_releases()
    pairs = [
        (version, position, fp)
        for version in releases["version"]
        for position, fp in enumerate(data.members(version))
    ]
    order = pd.CategoricalDtype(releases["version"].tolist(), ordered=True)
    return (
        pd.DataFrame(pairs, columns=["version", "position", "fingerprint_sha256"])
        .drop_duplicates(["version", "fingerprint_sha256"])
        .merge(releases[["version", "released"]], on="version", how="left")
        .merge(_roots_frame(), on="fingerprint_sha256", how="left")
        .astype({"version": order})
        .loc[:, ["version", "released", "position", *_x509.DESCRIBE_COLUMNS, "usable", "problem"]]
        .reset_index(drop=True)
    )


def history() -> pd.DataFrame:
    """One row per (release, root) for every certifi release: version, released, position, the usual
    certificate columns, ``usable`` and ``problem``. ``version`` is ordered oldest -> newest."""
    return _history().copy()


def roots_matching(name_or_fingerprint: str) -> pd.DataFrame:
    """Distinct roots matching a fingerprint prefix, else an exact name, else a name substring."""
    roots = _roots_frame()
    needle = name_or_fingerprint.strip().lower().replace(":", "")
    if not needle:
        raise InputError("give a root's name (e.g. 'Amazon Root CA 1') or SHA-256 fingerprint, not ''")
    names = roots["name"].fillna("").str.lower()
    by_fingerprint = roots["fingerprint_sha256"].str.startswith(needle) & (len(needle) >= 8)  # 8+ hex digits
    for mask in (
        by_fingerprint,
        names.eq(needle),
        names.str.contains(needle, regex=False),
    ):
        if mask.any():
            return roots[mask]
    raise InputError(
        f"no root in any certifi release matches {name_or_fingerprint!r}; "
        "give a subject name such as 'Amazon Root CA 1' or a SHA-256 fingerprint (8+ hex digits)"
    )


def root_presence(name_or_fingerprint: str) -> pd.DataFrame:
    """For every release x matching root: version, released, fingerprint_sha256, name, present."""
    matches = roots_matching(name_or_fingerprint)[["fingerprint_sha256", "name"]]
    releases = certifi_releases()[["version", "released"]]
    present = _history()[["version", "fingerprint_sha256"]].astype({"version": str}).assign(present=True)
    return (
        releases.merge(matches, how="cross")
        .merge(present, on=["version", "fingerprint_sha256"], how="left")
        .assign(
            present=lambda f: f["present"].fillna(False).astype(bool),
            version=lambda f: f["version"].astype(_history()["version"].dtype),
        )
        .sort_values(["name", "fingerprint_sha256", "version"], kind="stable")
        .reset_index(drop=True)
    )


def _presence_by_release(name_or_fingerprint: str) -> pd.Series:
    """Per release (in order): is any matching root present?"""
    return root_presence(name_or_fingerprint).groupby("version", observed=True)["present"].any()


def removed_in(name_or_fingerprint: str) -> str | None:
    """The release that dropped the root for good (the one after its last presence); None if it is
    still in the newest release. A name matching several certificates means any of them."""
    present = _presence_by_release(name_or_fingerprint)
    if not present.any() or present.iloc[-1]:
        return None
    last = present.to_numpy().nonzero()[0][-1]
    return str(present.index[last + 1])


def added_in(name_or_fingerprint: str) -> str | None:
    """The first release that carries the root (None if none does)."""
    present = _presence_by_release(name_or_fingerprint)
    return str(present.index[present.to_numpy().argmax()]) if present.any() else None


def release_changes(version: str) -> Comparison:
    """What ``version`` changed: :func:`compare` of the release before it and ``version``."""
    bundle = certifi(version)
    ordered = certifi_releases()["version"].tolist()
    at = ordered.index(bundle.version)
    if at == 0:
        raise InputError(f"certifi {bundle.version} is the first release; there is nothing before it")
    return compare(certifi(ordered[at - 1]), bundle)


def timeline_plot(
    root: str = ROOT_AT_FAULT, *, marks: dict[str, str] | None = None, ax=None, title: str | None = None
):
    """Roots per release over release dates, with the release that removed ``root`` marked in red and
    each release of ``marks`` (version -> label, e.g. the incident's two) marked in grey.

    Returns the matplotlib Axes (``ax.figure`` is the Figure).
    """
    import matplotlib.pyplot as plt

    releases = certifi_releases()
    removal = removed_in(root)
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 4))
    ax.step(releases["released"], releases["roots"].astype(float), where="post", color="tab:blue")
    ax.plot(releases["released"], releases["roots"].astype(float), "o", ms=3, color="tab:blue")
    if removal is not None:
        row = releases[releases["version"] == removal].iloc[0]
        ax.axvline(row["released"], color="tab:red", ls="--", lw=1)
        label = f"certifi {removal} removes\n{roots_matching(root)['name'].iloc[0]}"
        ax.annotate(
            label,
            xy=(row["released"], float(row["roots"])),
            xytext=(0.40, 0.90),
            textcoords="axes fraction",
            va="top",
            bbox={"boxstyle": "round", "fc": "white", "ec": "tab:red", "alpha": 0.9},
            color="tab:red",
            fontsize=8,
            arrowprops={"arrowstyle": "->", "color": "tab:red"},
        )
    for version, label in (marks or {}).items():
        row = releases[releases["version"] == certifi(version).version].iloc[0]
        ax.axvline(row["released"], color="dimgray", ls=":", lw=1)
        ax.annotate(
            f"{label}\n{row['version']}",
            xy=(row["released"], float(row["roots"])),
            xytext=(4, -28),
            textcoords="offset points",
            fontsize=7,
            color="dimgray",
        )
    ax.set_xlabel("release date (upload to the package index)")
    ax.set_ylabel("roots in cacert.pem")
    ax.set_title(title or f"certifi: roots per release ({len(releases)} releases)")
    ax.grid(alpha=0.3)
    return ax


def style_changes(styler):
    """Colour rows of a :func:`compare` table: removed red, added green."""
    colours = {"removed": "background-color: #f8d7da", "added": "background-color: #d1e7dd"}

    def _row(row: pd.Series) -> list[str]:
        return [colours.get(row.get("change"), "")] * len(row)

    return styler.apply(_row, axis=1)


def style_presence(styler):
    """Colour a presence table (True/False cells): present green, absent red."""

    def colour(value) -> str:
        if value is True or value == "yes":
            return "background-color: #d1e7dd"
        return "background-color: #f8d7da" if value is False or value == "no" else ""

    return styler.map(colour)
