"""A botocore release the embedded table lacks, read from its own wheel: fetched through pip with the
user's index settings (hash-checked against the index), its vendored ``cacert.pem`` read, and its default
``iot-data`` host per region taken from a child Python running that release. Each answer is cached per
release in the kit's private cache (the PEM file and a small JSON), so a second ask is offline and free.

The probe and the cacert reader are shared with scripts/build_botocore_history.py, which builds the table.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cryptography.x509.oid import NameOID

from helpers import _cache, _x509
from helpers._index import PipSettings, ReleaseFile, download, fetch_index_page, pip_settings
from helpers._io import atomic_write_bytes
from helpers.incident import ROOT_AT_FAULT
from helpers.kinds import InputError, KitError

__all__ = [
    "CACERT_MEMBERS",
    "FetchError",
    "FetchedRelease",
    "G5_CN",
    "PROBE",
    "REGIONS",
    "cached",
    "check_region",
    "check_version",
    "describe_cacert",
    "host_of",
    "read_cacert",
    "release",
    "run_probe",
    "vendored_cacert",
]

PROJECT = "botocore"
CACHE_FOLDER = "botocore-releases"
# Probed on every fetch, so the cached answer serves the usual regions (the table's five) without a refetch.
REGIONS = ("ap-northeast-2", "us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1")
G5_CN = ROOT_AT_FAULT  # the root botocore's vendored bundle is probed for
CACERT_MEMBERS = ("botocore/cacert.pem", "botocore/vendored/requests/cacert.pem")  # new, old releases
_REGION_SHAPE = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_VERSION_SHAPE = re.compile(r"^\d+(\.\d+)*$")
_NO_CACERT = {"cacert_path": "", "cacert_sha256": "", "cacert_roots": 0, "has_verisign_g5": False,
              "verisign_g5_sha256": ""}  # fmt: skip
_CACHE_KEYS = ("version", "wheel", "wheel_sha256", "index_url", "fetched_at", "cacert_path", "cacert_sha256")

# Runs inside a child Python with only the extracted wheel (and, if needed, urllib3<2) in front.
PROBE = r"""
import json, sys
wheel_dir, regions = sys.argv[1], sys.argv[2].split(",")
import botocore, botocore.session
assert botocore.__file__.startswith(wheel_dir), botocore.__file__
session = botocore.session.get_session()
out = {"botocore_file": botocore.__file__, "version": botocore.__version__, "hosts": {}}
if "iot-data" not in session.get_available_services():
    out["absent"] = True
else:
    for region in regions:
        try:
            client = session.create_client(
                "iot-data", region_name=region,
                aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="not-a-secret")
            out["hosts"][region] = client.meta.endpoint_url
        except Exception as exc:
            out["hosts"][region] = "error: " + type(exc).__name__ + ": " + str(exc)[:200]
print("PROBE-RESULT " + json.dumps(out))
"""


class FetchError(KitError, RuntimeError):
    """A botocore release could not be fetched, checked or run (nothing is cached)."""


class NoSuchRelease(FetchError, InputError):
    """The index has no such botocore release: a typo in a version, not an unknown to carry on with."""


# --- shared with scripts/build_botocore_history.py ---------------------------------------------


def run_probe(
    wheel_dir: Path, regions: Sequence[str], *, extra: Sequence[Path] = (), timeout: float = 120
) -> tuple[dict | None, str]:
    """Run :data:`PROBE` with ``wheel_dir`` (then ``extra``) first on sys.path and no AWS settings.

    Returns (the probe's result, "") or (None, the child's last error line without file paths).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "PYTHONPATH"}
    env.update(
        AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true"
    )
    paths = [str(wheel_dir), *map(str, extra)]
    code = f"import sys; sys.path[:0] = {paths!r}\n" + PROBE
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, str(wheel_dir), ",".join(regions)],
            capture_output=True, text=True, env=env, timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None, f"the child Python did not finish within {timeout:g} s"
    for line in result.stdout.splitlines():
        if line.startswith("PROBE-RESULT "):
            return json.loads(line.removeprefix("PROBE-RESULT ")), ""
    tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
    return None, re.sub(r" \(/[^)]*\)", "", tail)  # drop file paths from the error


def host_of(url_or_error: str) -> str:
    """Host part of an endpoint URL (a probe's 'error: ...' passes through)."""
    if url_or_error.startswith("error:"):
        return url_or_error
    return url_or_error.split("://", 1)[-1].split("/", 1)[0]


def read_cacert(wheel_dir: Path) -> tuple[str, bytes] | None:
    """(path inside the wheel, bytes) of the release's vendored ``cacert.pem``, or None."""
    for relative in CACERT_MEMBERS:
        path = wheel_dir / relative
        if path.is_file():
            return relative, path.read_bytes()
    return None


def describe_cacert(member: str, data: bytes) -> dict:
    """Where the vendored bundle is, its SHA-256, its roots, and the VeriSign G5 root if present."""
    parsed = _x509.parse_pem(data)
    g5 = [c for c in parsed.certificates if _x509.name_attr(c.subject, NameOID.COMMON_NAME) == G5_CN]
    return {
        "cacert_path": member,
        "cacert_sha256": hashlib.sha256(data).hexdigest(),
        "cacert_roots": len(parsed.certificates),
        "has_verisign_g5": bool(g5),
        "verisign_g5_sha256": _x509.fingerprint(g5[0]) if g5 else "",
    }


def vendored_cacert(wheel_dir: Path) -> dict:
    """:func:`describe_cacert` of the extracted wheel's vendored bundle (empty fields when it has none)."""
    found = read_cacert(wheel_dir)
    return describe_cacert(*found) if found else dict(_NO_CACERT)


# --- one release, fetched or cached ---------------------------------------------------------------


@dataclass(frozen=True)
class FetchedRelease:
    """What a botocore release's own wheel says: its vendored bundle and its default iot-data hosts."""

    version: str
    wheel: str  # file name on the index
    wheel_sha256: str
    index_url: str  # without credentials
    fetched_at: str  # ISO time of the fetch
    cacert_path: str  # inside the wheel; '' when the wheel has none
    cacert_sha256: str
    pem: Path | None  # the cached copy of the vendored cacert.pem
    has_verisign_g5: bool
    hosts: dict[str, str] = field(default_factory=dict)  # region -> default host, or 'error: ...'
    absent: bool = False  # the release has no iot-data client
    from_cache: bool = False

    @property
    def basis(self) -> str:
        """How the kit knows: 'fetched botocore X's wheel from INDEX' or 'cached (...)'."""
        fetched = f"fetched botocore {self.version}'s wheel from {self.index_url}"
        return f"cached ({fetched} at {self.fetched_at})" if self.from_cache else fetched


def check_version(version: str) -> str:
    """``version`` if it is a plain release number (what may go into a pip requirement), else InputError."""
    if not isinstance(version, str) or not _VERSION_SHAPE.match(version):
        raise InputError(f"{version!r} is not a botocore release number like '1.24.30'")
    return version


def check_region(region: str) -> str:
    """``region`` if it has a region's shape (it is passed to a child Python), else InputError."""
    if not isinstance(region, str) or not _REGION_SHAPE.match(region):
        raise InputError(f"region={region!r} is not an AWS region name; use one like 'ap-northeast-2'")
    return region


def cached(version: str, *, regions: Iterable[str] = ()) -> FetchedRelease | None:
    """The cached answer for ``version`` if it is whole, matches its PEM file and holds every region."""
    folder = _cache.cache_base() / CACHE_FOLDER
    if not folder.is_dir():
        return None
    folder = _cache.private_dir(CACHE_FOLDER)  # refuses a link or someone else's folder
    try:
        meta = json.loads(_read_regular(folder / f"botocore-{version}.json"))
        if meta.get("version") != version or not all(isinstance(meta.get(k), str) for k in _CACHE_KEYS):
            return None
        pem = None
        if meta["cacert_path"]:
            pem = folder / f"botocore-{version}.pem"
            if hashlib.sha256(_read_regular(pem)).hexdigest() != meta["cacert_sha256"]:
                return None
        hosts = {str(r): str(h) for r, h in dict(meta.get("hosts", {})).items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    if not meta.get("absent") and any(region not in hosts for region in regions):
        return None
    return FetchedRelease(
        version=version,
        wheel=meta["wheel"],
        wheel_sha256=meta["wheel_sha256"],
        index_url=meta["index_url"],
        fetched_at=meta["fetched_at"],
        cacert_path=meta["cacert_path"],
        cacert_sha256=meta["cacert_sha256"],
        pem=pem,
        has_verisign_g5=bool(meta.get("has_verisign_g5")),
        hosts=hosts,
        absent=bool(meta.get("absent")),
        from_cache=True,
    )


def release(
    version: str, *, regions: Iterable[str] = (), settings: PipSettings | None = None
) -> FetchedRelease:
    """botocore ``version``'s vendored bundle and default iot-data host for ``regions`` (and :data:`REGIONS`).

    From the cache when it holds them; otherwise the wheel is fetched with pip from the user's index
    (``settings``, default :func:`~helpers._index.pip_settings`), checked against the index's
    sha256, and run in a child Python. Raises a one-line KitError (FetchError, IndexUnreachable,
    BuildError, UnusableError) when that is impossible; nothing is cached then.
    """
    check_version(version)
    asked = [check_region(r) for r in regions]
    hit = cached(version, regions=asked)
    if hit is not None:
        return hit
    earlier = cached(version)  # regions asked before stay in the new entry
    wanted = list(dict.fromkeys([*asked, *REGIONS, *(earlier.hosts if earlier else ())]))
    settings = settings or pip_settings()
    index = settings.display_index_url
    page_url, page = fetch_index_page(settings, project=PROJECT)
    wanted_file = _wheel_entry(page, version, index)
    plan = ReleaseFile(
        version_on_index=version,
        filename=wanted_file["filename"],
        url=None,
        sha256=wanted_file.get("hashes", {}).get("sha256"),
        uploaded_at=wanted_file.get("upload-time"),
        yanked=bool(wanted_file.get("yanked")),
    )
    with tempfile.TemporaryDirectory(prefix="atskit-botocore-") as tmp:
        wheel, _ = download(plan, settings, Path(tmp) / "wheel", project=PROJECT)
        wheel_dir = Path(tmp) / "extracted"
        try:
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(wheel_dir)
        except (zipfile.BadZipFile, OSError) as exc:
            raise FetchError(f"{plan.filename} from {index} is not a readable wheel: {exc}") from None
        if not (wheel_dir / "botocore" / "__init__.py").is_file():
            raise FetchError(f"{plan.filename} from {index} holds no botocore package")
        found = read_cacert(wheel_dir)
        result, error = run_probe(wheel_dir, wanted)
    if result is None:
        raise FetchError(f"botocore {version} from {index} does not run on this Python: {error}")
    if result.get("version") != version:
        raise FetchError(f"{plan.filename} from {index} says it is botocore {result.get('version')}")
    facts = describe_cacert(*found) if found else dict(_NO_CACERT)
    meta = {
        "version": version,
        "wheel": plan.filename,
        "wheel_sha256": plan.sha256,
        "index_url": index,
        "fetched_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cacert_path": facts["cacert_path"],
        "cacert_sha256": facts["cacert_sha256"],
        "cacert_roots": facts["cacert_roots"],
        "has_verisign_g5": facts["has_verisign_g5"],
        "absent": bool(result.get("absent")),
        "hosts": {r: host_of(u) for r, u in result.get("hosts", {}).items()},
    }
    folder = _cache.private_dir(CACHE_FOLDER)
    pem = None
    if found:  # the PEM first: the JSON, written last, is what makes the entry count
        pem = atomic_write_bytes(folder / f"botocore-{version}.pem", found[1], mode=0o600)
    atomic_write_bytes(
        folder / f"botocore-{version}.json", (json.dumps(meta, indent=2) + "\n").encode(), mode=0o600
    )
    _cache.prune(folder)
    return FetchedRelease(
        version=version,
        wheel=meta["wheel"],
        wheel_sha256=meta["wheel_sha256"],
        index_url=index,
        fetched_at=meta["fetched_at"],
        cacert_path=meta["cacert_path"],
        cacert_sha256=meta["cacert_sha256"],
        pem=pem,
        has_verisign_g5=meta["has_verisign_g5"],
        hosts=meta["hosts"],
        absent=meta["absent"],
    )


def _wheel_entry(page: dict, version: str, index: str) -> dict:
    """The index page's entry for botocore ``version``'s wheel (FetchError when it has none)."""
    prefix = f"botocore-{version}-"
    files = [e for e in page.get("files", []) if str(e.get("filename", "")).startswith(prefix)]
    wheels = [e for e in files if e["filename"].endswith(".whl")]
    if not wheels:
        if not files:
            raise NoSuchRelease(f"botocore {version}: {index} has no such release; check the version")
        raise FetchError(f"botocore {version}: {index} has no wheel (only an sdist)")
    if not wheels[0].get("hashes", {}).get("sha256"):
        raise FetchError(f"{wheels[0]['filename']}: {index} gives no sha256 for it; cannot verify a download")
    return wheels[0]


def _read_regular(path: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file (a link is refused: OSError)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as handle:
        return handle.read()
