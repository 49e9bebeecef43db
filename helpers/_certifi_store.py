"""Reading data/certifi: every certifi release's roots, each stored once (built by ``_certifi_build``)."""

from __future__ import annotations

import csv
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
