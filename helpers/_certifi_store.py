"""Reading data/certifi: every certifi release's roots, each stored once (built by ``_certifi_build``)."""

from __future__ import annotations

import csv
import hashlib
import os
import re
from pathlib import Path

ROOTS_FILE = "roots.pem"
MEMBERSHIP_FILE = "membership.csv"
RELEASES_FILE = "releases.csv"
SOURCE_FILE = "source.json"
RELEASE_COLUMNS = [
    "version",
    "version_on_index",
    "status",
    "uploaded_at",
    "yanked",
    "filename",
    "file_sha256",
    "fetched_with",
    "cacert_member",
    "cacert_sha256",
    "blocks",
    "roots",
    "problems",
    "problem_reasons",
    "loaded_with_warning",
    "fingerprints_digest",
]


def normalize_version(version: str) -> str:
    """PEP 440 normal form of a certifi version: '2020.06.20' -> '2020.6.20'."""
    parts = str(version).strip().lower().lstrip("v").replace("-", ".").replace("_", ".").split(".")
    return ".".join(str(int(p)) if p.isdigit() else p for p in parts if p != "")


def version_key(version: str) -> tuple:
    """Sort key for certifi versions (numeric parts numerically; '.post1' after the plain release)."""
    key: list = []
    for part in normalize_version(version).split("."):
        match = re.fullmatch(r"([a-z]*)(\d*)", part)
        if part.isdigit():
            key.append((1, int(part), ""))
        elif match:
            key.append((0 if match.group(1) != "post" else 2, int(match.group(2) or 0), match.group(1)))
        else:
            key.append((0, 0, part))
    return tuple(key)


def read_membership(data_dir: Path) -> dict[str, list[str]]:
    """version -> block fingerprints in file order."""
    return members_by_release((data_dir / MEMBERSHIP_FILE).read_text(encoding="utf-8"))


def members_by_release(membership_csv: str) -> dict[str, list[str]]:
    """version -> block fingerprints in file order, from membership.csv's text."""
    lines = membership_csv.splitlines()
    header = lines[0].split(",")
    at_version, at_position, at_fp = (header.index(c) for c in ("version", "position", "fingerprint_sha256"))
    members: dict[str, list[tuple[int, str]]] = {}
    for line in lines[1:]:
        row = line.split(",")  # versions, positions and hex fingerprints hold no commas or quotes
        if len(row) > at_fp:
            members.setdefault(row[at_version], []).append((int(row[at_position]), row[at_fp]))
    return {v: [fp for _, fp in sorted(rows)] for v, rows in members.items()}


def members_of(membership_csv: str, version: str) -> list[str]:
    """One release's block fingerprints in file order, from membership.csv's text (a row starts with
    its release's version; only that release's rows are split)."""
    prefix = f"\n{version},"
    start = membership_csv.find(prefix)
    rows = []
    while start != -1:
        end = membership_csv.find("\n", start + 1)
        _, position, fingerprint = membership_csv[start + 1 : end if end != -1 else None].split(",")
        rows.append((int(position), fingerprint.strip()))
        start = membership_csv.find(prefix, end) if end != -1 else -1
    return [fp for _, fp in sorted(rows)]


def read_releases(data_dir: Path) -> list[dict]:
    """Rows of data/certifi/releases.csv as dicts of strings."""
    with open(data_dir / RELEASES_FILE, newline="") as handle:
        return list(csv.DictReader(handle))


def fingerprints_digest(fingerprints: list[str] | set[str] | frozenset[str]) -> str:
    """SHA-256 of the sorted set of fingerprints, one per line (what reconstruction must reproduce)."""
    return hashlib.sha256("\n".join(sorted(set(fingerprints))).encode()).hexdigest()


def members_mismatch(row: dict, members: list[str]) -> str | None:
    """Why a release's membership rows are not the certificates releases.csv recorded from its file
    (the block count and ``fingerprints_digest``), or None when they are."""
    if not members:
        return "lists no certificates"
    recorded = row.get("blocks") or ""
    if not recorded.isdigit() or int(recorded) != len(members):
        return f"has {len(members)} of the {recorded or 'unrecorded number of'} certificates its file held"
    if fingerprints_digest(members) != row.get("fingerprints_digest"):
        return "does not list the certificates its file held (its fingerprints digest differs)"
    return None


def old_sets(data_dir: Path) -> list[Path]:
    """Folders a swap set aside (``.certifi-old-PID``) whose refresh is no longer running, newest first."""
    found = []
    for path in data_dir.parent.glob(f".{data_dir.name}-old-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if path.is_dir() and not path.is_symlink() and pid.isdigit() and not _running(int(pid)):
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def recover_set_aside(data_dir: Path) -> Path | None:
    """Put back the data set an interrupted swap left aside when ``data_dir`` is missing; the folder
    put back, or None (there was nothing to do)."""
    if data_dir.exists() or data_dir.is_symlink():
        return None
    for old in old_sets(data_dir):
        try:
            os.rename(old, data_dir)
        except OSError:  # another process put a set back first
            continue
        return old
    return None


def _running(pid: int) -> bool:
    """Is process ``pid`` alive (a refresh in the middle of its swap)?"""
    if pid == os.getpid():
        return False  # this process is not swapping while it recovers
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
