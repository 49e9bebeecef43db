"""Build data/certifi from the package index through pip (``atskit refresh-certifi`` only; readers use
``_certifi_store``)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import tarfile
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from helpers import _cache, _x509
from helpers._certifi_store import (
    MEMBERSHIP_FILE,
    RELEASE_COLUMNS,
    RELEASES_FILE,
    ROOTS_FILE,
    SOURCE_FILE,
    fingerprints_digest,
    members_mismatch,
    normalize_version,
    old_sets,
    read_membership,
    read_releases,
    recover_set_aside,
    version_key,
)
from helpers._index import (
    BuildError,
    PipSettings,
    ReleaseFile,
    allow_pip,
    download,
    fetch_index_page,
    pip_index_versions,
    pip_settings,
    redact_url,
    sha256_file,
    stop_pip,
)
from helpers._paths import DATA_DIR
from helpers.kinds import UnusableError

PACKAGE = "certifi"
_FILE_RE = re.compile(r"^certifi-(?P<version>.+?)(?P<kind>-py[^-]*-none-any\.whl|\.tar\.gz|\.zip)$")


@dataclass
class Release:
    """One release as built: metadata plus its PEM blocks in file order."""

    meta: dict
    block_fingerprints: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote or would write."""

    data_dir: Path
    index_url: str
    releases: int
    with_roots: int
    distinct_blocks: int
    downloaded: int
    reused: int
    without_roots: list[tuple[str, str]]  # (version, status) of releases with no usable cacert.pem
    changed: bool = True  # False when the data already said exactly this
    dropped: list[str] = field(default_factory=list)  # releases removed (only with prune)
    kept: list[str] = field(default_factory=list)  # releases the index does not list, kept as they were
    discarded: str = ""  # why the existing data, unreadable, was replaced (only with prune)

    def line(self) -> str:
        """One summary line (naming every release dropped)."""
        return (
            f"certifi: {self.releases} releases ({self.with_roots} with a cacert.pem, "
            f"{len(self.without_roots)} without), {self.distinct_blocks} distinct certificates; "
            f"{self.downloaded} downloaded from {self.index_url}, {self.reused} reused, "
            f"{len(self.kept)} kept that the index does not list; "
            + (f"data written to {self.data_dir}" if self.changed else f"{self.data_dir} already up to date")
            + (f"; dropped {len(self.dropped)} releases (--prune): {', '.join(self.dropped)}" if self.dropped
               else "")
            + (f"; replaced the existing data, which could not be read ({self.discarded})" if self.discarded
               else "")
        )  # fmt: skip

    def as_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "data_dir": str(self.data_dir),
            "index_url": self.index_url,
            "releases": self.releases,
            "with_roots": self.with_roots,
            "distinct_certificates": self.distinct_blocks,
            "downloaded": self.downloaded,
            "reused": self.reused,
            "changed": self.changed,
            "without_roots": [{"version": v, "status": s} for v, s in self.without_roots],
            "kept": self.kept,
            "dropped": self.dropped,
            "discarded": self.discarded,
        }


# ---------------------------------------------------------------- planning the build


def plan_releases(page_url: str, page: dict, pip_versions: list[str]) -> list[ReleaseFile]:
    """One ReleaseFile per version on the index (PEP 700 ``versions``; pip's list; versions of files)."""
    by_version: dict[str, list[dict]] = {}
    for entry in page.get("files", []):
        match = _FILE_RE.match(entry.get("filename", ""))
        if match:
            by_version.setdefault(match.group("version"), []).append(entry)
    versions = {normalize_version(v): v for v in pip_versions}
    versions.update({normalize_version(v): v for v in page.get("versions", [])})
    versions.update({normalize_version(v): v for v in by_version})
    plan = []
    for norm in sorted(versions, key=version_key):
        raw = versions[norm]
        entries = [e for v, files in by_version.items() if normalize_version(v) == norm for e in files]
        wheels = [e for e in entries if e["filename"].endswith(".whl")]
        chosen = (wheels or entries or [None])[0]
        if chosen is None:
            plan.append(ReleaseFile(raw, None, None, None, None))
            continue
        uploads = sorted(e.get("upload-time") for e in entries if e.get("upload-time"))
        plan.append(
            ReleaseFile(
                version_on_index=raw,
                filename=chosen["filename"],
                url=urllib.parse.urljoin(page_url, chosen["url"]),
                sha256=chosen.get("hashes", {}).get("sha256"),
                uploaded_at=uploads[0] if uploads else None,
                yanked=bool(chosen.get("yanked")),
            )
        )
    return plan


def extract_cacert(path: Path) -> tuple[str, bytes] | None:
    """(member name, bytes) of the release's ``cacert.pem`` (the package's own, else any), or None."""
    name = path.name
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(path) as archive:
            chosen = _choose_cacert(archive.namelist())
            return (chosen, archive.read(chosen)) if chosen else None
    with tarfile.open(path) as archive:
        files = {m.name: m for m in archive.getmembers() if m.isfile()}
        chosen = _choose_cacert(list(files))
        if not chosen:
            return None
        handle = archive.extractfile(files[chosen])
        return (chosen, handle.read()) if handle else None


def _choose_cacert(names: list[str]) -> str | None:
    """The package's ``certifi/cacert.pem`` if present, else the shallowest ``cacert.pem``."""
    exact = [n for n in names if n == "certifi/cacert.pem" or n.endswith("/certifi/cacert.pem")]
    anywhere = [n for n in names if n.rsplit("/", 1)[-1] == "cacert.pem"]
    candidates = sorted(exact or anywhere, key=lambda n: (n.count("/"), n))
    return candidates[0] if candidates else None


# ---------------------------------------------------------------- PEM blocks


def split_blocks(pem: bytes) -> list[tuple[str, bytes | None, bytes]]:
    """Every CERTIFICATE block as (fingerprint, DER or None if not base64, raw body), in file order.

    Identities come from :func:`helpers._x509.pem_blocks`, as in ``parse_pem``, so a block that
    cannot be loaded keeps the same fingerprint in data/certifi and in a Bundle's ``problems``.
    """
    return [(fp, der, body) for fp, der, body, _ in _x509.pem_blocks(pem)]


def _describe_block(der: bytes | None, body: bytes) -> tuple[str, str | None, bool]:
    """(display name, problem reason or None, loaded with a parser warning) of one block, via parse_pem."""
    parsed = _x509.parse_pem(_x509.pem_block_text(der, body))
    if parsed.certificates:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # parse_pem recorded any warning; names may warn again
            return _x509.display_name(parsed.certificates[0].subject), None, bool(parsed.warnings)
    reason = parsed.problems[0].reason if parsed.problems else "not a certificate"
    return "(unusable)", reason, False


# ---------------------------------------------------------------- reading and writing data/certifi


def read_roots_text(data_dir: Path) -> dict[str, bytes]:
    """fingerprint -> PEM block text of data/certifi/roots.pem."""
    pem = (data_dir / ROOTS_FILE).read_bytes()
    return {fp: _x509.pem_block_text(der, body) for fp, der, body in split_blocks(pem)}


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    """Rows as CSV text with a header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_data(data_dir: Path, releases: list[Release], blocks: dict[str, bytes], source: dict) -> bool:
    """Write roots.pem, membership.csv, source.json, releases.csv atomically; False if nothing changed."""
    roots_lines = [
        "# Every distinct certificate of every certifi release's cacert.pem, by SHA-256 fingerprint.\n"
        "# Built by scripts/build_certifi_data.py; see data/README.md. Licence: MPL-2.0 (certifi).\n"
    ]
    for fp in sorted(blocks):
        der_list = split_blocks(blocks[fp])
        name, reason, _ = _describe_block(der_list[0][1], der_list[0][2])
        roots_lines.append(
            f"\n# sha256 {fp}\n# {name}" + (f" -- unusable: {reason}" if reason else "") + "\n"
        )
        roots_lines.append(blocks[fp].decode("ascii", "replace"))
    membership = [
        {"version": r.meta["version"], "position": i, "fingerprint_sha256": fp}
        for r in releases
        for i, fp in enumerate(r.block_fingerprints)
    ]
    texts = {
        ROOTS_FILE: "".join(roots_lines),
        MEMBERSHIP_FILE: _csv_text(membership, ["version", "position", "fingerprint_sha256"]),
        RELEASES_FILE: _csv_text([r.meta for r in releases], RELEASE_COLUMNS),
    }
    changed = [name for name, text in texts.items() if not _same_text(data_dir / name, text)]
    if not changed and (data_dir / SOURCE_FILE).is_file():
        return False  # nothing new: leave every file (and its build time) as it is
    texts[SOURCE_FILE] = json.dumps(source, indent=2) + "\n"
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=data_dir.parent, prefix=f".{data_dir.name}-staging-"))
    try:
        for name, text in texts.items():
            (staging / name).write_text(text, encoding="utf-8")
        _check_staged(staging, releases)
        _swap_in(staging, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _check_staged(staging: Path, releases: list[Release]) -> None:
    """Re-read the staged set: every release with roots has its members, each in roots.pem, and the
    digest recorded from its downloaded file (BuildError otherwise: nothing is swapped in)."""
    roots = read_roots_text(staging)
    members = read_membership(staging)
    for row in read_releases(staging):
        if not row["blocks"]:
            continue  # no cacert.pem (or no file): nothing to rebuild
        fps = members.get(row["version"], [])
        if members_mismatch(row, fps) or any(fp not in roots for fp in fps):
            raise BuildError(f"certifi {row['version']}: the staged data does not rebuild its cacert.pem")
    if len(read_releases(staging)) != len(releases):
        raise BuildError("the staged releases.csv does not list every release")


def _swap_in(staging: Path, data_dir: Path) -> None:
    """Put the staged folder in ``data_dir``'s place: two renames, with SIGINT and SIGTERM held off
    between them (main thread), and the old set put back if anything interrupts them anyway."""
    old = data_dir.with_name(f".{data_dir.name}-old-{os.getpid()}")
    if data_dir.exists():
        for extra in data_dir.iterdir():  # anything the build does not write stays
            if not (staging / extra.name).exists():
                shutil.copy2(extra, staging / extra.name)
    with _signals_held():
        set_aside = False
        try:
            if data_dir.exists():
                os.replace(data_dir, old)
                set_aside = True
            os.replace(staging, data_dir)
        except BaseException:
            if set_aside and not data_dir.exists():
                os.replace(old, data_dir)
            raise
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends (on the main thread; a held one arrives after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _same_text(path: Path, text: str) -> bool:
    """Does ``path`` already hold exactly ``text``?"""
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False


# ---------------------------------------------------------------- the build


def default_cache_dir() -> Path:
    """Where downloaded release files are kept: certifi-files in the kit's cache (see helpers._cache)."""
    return _cache.cache_base() / "certifi-files"


def _release_from_file(plan: ReleaseFile, path: Path, how: str, blocks: dict[str, bytes]) -> Release:
    """Read one downloaded file's cacert.pem into a Release (and its blocks into ``blocks``)."""
    meta = _base_meta(plan) | {"file_sha256": plan.sha256, "fetched_with": how}
    found = extract_cacert(path)
    if found is None:
        return Release(meta | {"status": "no cacert.pem in the file"})
    member, pem = found
    parsed_blocks = split_blocks(pem)
    reasons: dict[str, int] = {}
    roots = warned = 0
    for fp, der, body in parsed_blocks:
        blocks.setdefault(fp, _x509.pem_block_text(der, body))
        _, reason, warning = _describe_block(der, body)
        warned += warning
        if reason is None:
            roots += 1
        else:
            reasons[reason] = reasons.get(reason, 0) + 1
    fps = [fp for fp, _, _ in parsed_blocks]
    status = "ok" if roots else "cacert.pem has no usable certificate"
    meta |= {
        "status": status,
        "cacert_member": member,
        "cacert_sha256": hashlib.sha256(pem).hexdigest(),
        "blocks": len(fps),
        "roots": roots,
        "problems": len(fps) - roots,
        "problem_reasons": "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items())),
        "loaded_with_warning": warned,
        "fingerprints_digest": fingerprints_digest(fps),
    }
    return Release(meta, fps)


def _base_meta(plan: ReleaseFile) -> dict:
    """Metadata every release row has, file or not."""
    return {
        "version": normalize_version(plan.version_on_index),
        "version_on_index": plan.version_on_index,
        "status": "no file on the index",
        "uploaded_at": plan.uploaded_at or "",
        "yanked": plan.yanked,
        "filename": plan.filename or "",
    }


@dataclass
class _Existing:
    """The data set a refresh extends, as read from its folder (empty for a first build)."""

    meta: dict[str, dict] = field(default_factory=dict)  # version -> releases.csv row
    members: dict[str, list[str]] = field(default_factory=dict)
    blocks: dict[str, bytes] = field(default_factory=dict)
    unreadable: str = ""  # why the folder's data cannot be read ('' when it can, or there is none)
    listed: list[str] = field(default_factory=list)  # versions releases.csv names, even when unreadable

    def flaw(self, version: str) -> str | None:
        """Why this release's stored members do not rebuild its file (None when they do)."""
        row, fps = self.meta[version], self.members.get(version, [])
        if not row.get("blocks"):  # no file, or no cacert.pem in it
            return "has members but no recorded certificate count" if fps else None
        lacking = next((fp for fp in fps if fp not in self.blocks), None)
        return members_mismatch(row, fps) or (lacking and f"needs {lacking[:16]}..., which roots.pem lacks")

    def release(self, version: str, *, updates: dict | None = None) -> Release:
        """The stored release as it is (``updates`` overwrite columns)."""
        row = {k: self.meta[version].get(k, "") for k in RELEASE_COLUMNS} | (updates or {})
        return Release(row, self.members.get(version, []))


_REQUIRED_COLUMNS = ("version", "status", "filename", "file_sha256", "blocks", "fingerprints_digest")


def _read_existing(data_dir: Path) -> _Existing:
    """The data set in ``data_dir``: none (a new or empty folder), readable, or unreadable (and why)."""
    if not data_dir.exists():
        return _Existing()
    names = (RELEASES_FILE, MEMBERSHIP_FILE, ROOTS_FILE)
    missing = [name for name in names if not (data_dir / name).is_file()]
    if len(missing) == len(names):
        return _Existing()  # a folder that holds no data set yet
    listed: list[str] = []
    try:
        header = (data_dir / RELEASES_FILE).read_text(encoding="utf-8").partition("\n")[0].strip().split(",")
        if absent := [c for c in _REQUIRED_COLUMNS if c not in header]:
            raise ValueError(f"releases.csv has no {', '.join(absent)} column")
        rows = read_releases(data_dir)
        listed = [row["version"] for row in rows]
        if missing:
            raise FileNotFoundError(f"{', '.join(missing)} missing")
        meta = {row["version"]: row for row in rows}
        return _Existing(meta, read_membership(data_dir), read_roots_text(data_dir))
    except (OSError, ValueError, KeyError, IndexError, csv.Error) as exc:  # a UnicodeDecodeError too
        return _Existing(unreadable=str(exc) or type(exc).__name__, listed=listed)


def build(
    *,
    data_dir: Path | None = None,
    cache_dir: Path | None = None,
    full: bool = False,
    progress: bool = True,
    workers: int = 4,
    settings: PipSettings | None = None,
    log: Callable[[str], None] | None = None,
    prune: bool = False,
) -> BuildResult:
    """Extend data/certifi from the configured index (through pip); nothing written on error.

    Releases whose file (same name, same index sha256) is already in the data are reused unless
    ``full`` (which re-downloads, and still keeps what the index does not list); every other release
    is downloaded with pip and checked against the index's sha256. Releases the index does not list
    are kept unless ``prune`` (then the result names them). Existing data that cannot be read is
    refused (UnusableError) unless ``prune``. The new data set is written to a staging folder,
    checked, and swapped in whole.
    """
    from tqdm.auto import tqdm

    allow_pip()  # a build after an interrupted one starts pip again
    data_dir = Path(data_dir) if data_dir else DATA_DIR / "certifi"
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    recover_set_aside(data_dir)  # a swap interrupted hard (SIGKILL) left the old set beside the folder
    existing = _read_existing(data_dir)
    if existing.unreadable and not prune:
        raise UnusableError(
            f"{data_dir}: the certifi data there cannot be read ({existing.unreadable}), so a refresh could "
            "not keep the releases the index does not list; restore it (for the kit's own data: "
            "git checkout -- data/certifi) or give --prune to rebuild it from the index alone"
        )
    settings = settings or pip_settings()
    page_url, page = fetch_index_page(settings, project=PACKAGE)
    plan = plan_releases(page_url, page, pip_index_versions(settings, project=PACKAGE))
    if not plan:
        raise BuildError(f"{settings.display_index_url} lists no {PACKAGE} release")

    blocks: dict[str, bytes] = {}
    releases: dict[str, Release] = {}
    to_fetch: list[ReleaseFile] = []
    file_gone: dict[str, ReleaseFile] = {}  # stored with a file, listed by the index without one now
    for item in plan:
        version = normalize_version(item.version_on_index)
        old = existing.meta.get(version)
        if item.filename is None:
            if old and old["filename"]:
                file_gone[version] = item
            else:
                releases[version] = Release(_base_meta(item))
        elif (
            not full
            and old
            and (old["filename"], old["file_sha256"]) == (item.filename, item.sha256)
            and existing.flaw(version) is None
        ):
            releases[version] = existing.release(
                version, updates=_base_meta(item) | {"status": old["status"]}
            )
        else:
            to_fetch.append(item)
    fetching = {normalize_version(item.version_on_index) for item in to_fetch}
    unlisted = sorted((v for v in existing.meta if v not in releases and v not in fetching), key=version_key)
    dropped = unlisted if prune else []
    if existing.unreadable:  # --prune over data that cannot be read: name what it listed, if anything
        listed = {normalize_version(item.version_on_index) for item in plan}
        dropped = [v for v in existing.listed if v not in listed]
    for version in unlisted if not prune else []:  # not on the index (a partial mirror, a yanked file): kept
        if flaw := existing.flaw(version):
            raise UnusableError(
                f"certifi {version} in {data_dir} {flaw}, and {settings.display_index_url} does not list its "
                "file, so it can be neither kept nor fetched again; restore the data (for the kit's own "
                "data: git checkout -- data/certifi) or give --prune to drop it"
            )
        releases[version] = existing.release(version)
    for version, item in file_gone.items() if prune else []:
        releases[version] = Release(_base_meta(item))
    for release in releases.values():
        for fp in release.block_fingerprints:
            blocks[fp] = existing.blocks[fp]

    bar = tqdm(total=len(to_fetch), desc="certifi releases", unit="release", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    try:
        futures = {
            pool.submit(download, item, settings, cache_dir, project=PACKAGE): item for item in to_fetch
        }
        pending = set(futures)
        while pending:  # a short timeout: Ctrl-C or SIGTERM taken by a worker thread still reaches this one
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for future in done:
                item = futures[future]
                path, how = future.result()
                version = normalize_version(item.version_on_index)
                releases[version] = _release_from_file(item, path, how, blocks)
                bar.update(1)
    except BaseException:  # an error, Ctrl-C or SIGTERM: no new download, pip ended, the data untouched
        pool.shutdown(wait=False, cancel_futures=True)
        stop_pip()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()

    ordered = sorted(releases.values(), key=lambda r: version_key(r.meta["version"]))
    import importlib.metadata as md

    source = {
        "package": PACKAGE,
        "index_url": settings.display_index_url,
        "index_page": redact_url(page_url),
        "built_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pip": md.version("pip"),
        "cryptography": md.version("cryptography"),
        "releases": len(ordered),
        "distinct_certificates": len(blocks),
    }
    written = write_data(data_dir, ordered, blocks, source)
    for old in old_sets(data_dir):  # sets earlier swaps left aside: the data in place is whole now
        shutil.rmtree(old, ignore_errors=True)
    without = [(r.meta["version"], r.meta["status"]) for r in ordered if r.meta["status"] != "ok"]
    return BuildResult(
        data_dir=data_dir,
        index_url=settings.display_index_url,
        releases=len(ordered),
        with_roots=len(ordered) - len(without),
        distinct_blocks=len(blocks),
        downloaded=len(to_fetch),
        reused=sum(1 for p in plan if p.filename) - len(to_fetch),
        without_roots=without,
        changed=written,
        dropped=dropped,
        kept=[] if prune else unlisted,
        discarded=existing.unreadable,
    )


def cached_files(cache_dir: Path | None = None, *, data_dir: Path | None = None) -> dict[str, Path]:
    """version -> downloaded file in the cache whose sha256 matches releases.csv (for benchmarks)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    data_dir = Path(data_dir) if data_dir else DATA_DIR / "certifi"
    found = {}
    for row in read_releases(data_dir):
        path = cache_dir / row["filename"] if row["filename"] else None
        if path and path.is_file() and sha256_file(path) == row["file_sha256"]:
            found[row["version"]] = path
    return found


def clear_cache(cache_dir: Path | None = None) -> None:
    """Delete the download cache."""
    shutil.rmtree(Path(cache_dir) if cache_dir else default_cache_dir(), ignore_errors=True)
