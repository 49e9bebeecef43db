"""Build tests/data/index: a small partial mirror of PyPI (PEP 691 JSON pages and PEP 658 metadata).

For each project below it fetches PyPI's JSON simple page and keeps the wheels of the chosen versions
(filename, url, hashes, requires-python, upload-time, yanked, core-metadata), then fetches each wheel's
``.metadata`` file. The wheels themselves are not fetched: tests/local_index.py serves the pages and the
metadata and answers 404 for the wheels, so a resolver must work from the metadata alone.

    python scripts/build_test_index.py [--index-url https://pypi.org/simple]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import ssl
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "index"
JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
KEPT_KEYS = ("filename", "url", "hashes", "requires-python", "upload-time", "yanked", "size")

# requests around the incident, the certifi releases of 2020-2022, and the versions of requests' other
# dependencies released around 2020-07-01 and 2021-12-01 (some newer than each date, so the date matters).
VERSIONS = {
    "requests": ["2.24.0", "2.25.1", "2.26.0", "2.27.1"],
    "certifi": ["2020.4.5.2", "2020.6.20", "2020.11.8", "2020.12.5", "2021.5.30", "2021.10.8", "2022.5.18.1"],
    "urllib3": ["1.25.9", "1.25.10", "1.25.11", "1.26.7", "1.26.8"],
    "idna": ["2.9", "2.10", "3.3", "3.4"],
    "chardet": ["3.0.4", "4.0.0"],
    "charset-normalizer": ["2.0.7", "2.0.8", "2.0.9", "2.1.0"],
}


def fetch(url: str, *, accept: str | None = None) -> bytes:
    """GET ``url`` (TLS verified)."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=60, context=ssl.create_default_context()) as response:
        return response.read()


def build_project(index_url: str, project: str, versions: list[str]) -> tuple[dict, dict[str, bytes]]:
    """The trimmed PEP 691 page of ``project`` and its wheels' metadata files (wheel name -> bytes)."""
    page = json.loads(fetch(f"{index_url}/{project}/", accept=JSON_ACCEPT))
    wanted = set(versions)
    files, metadata = [], {}
    for entry in page["files"]:
        name = entry["filename"]
        if not name.endswith(".whl"):
            continue
        _, version, _, _ = parse_wheel_filename(name)
        if str(version) not in wanted:
            continue
        kept = {key: entry[key] for key in KEPT_KEYS if key in entry}
        body = fetch(entry["url"] + ".metadata")  # PEP 658: the wheel's METADATA, served beside it
        digest = hashlib.sha256(body).hexdigest()
        declared = entry.get("core-metadata") or entry.get("data-dist-info-metadata")
        if isinstance(declared, dict) and declared.get("sha256") not in (None, digest):
            raise SystemExit(f"{name}.metadata: sha256 {digest} differs from the page's {declared['sha256']}")
        kept["core-metadata"] = {"sha256": digest}  # PEP 714 name; the hash of the file fetched above
        files.append(kept)
        metadata[name] = body
    found = {str(parse_wheel_filename(f["filename"])[1]) for f in files}
    if found != wanted:
        raise SystemExit(f"{project}: no wheel on {index_url} for {sorted(wanted - found)}")
    trimmed = {
        "meta": {"api-version": page["meta"]["api-version"]},
        "name": canonicalize_name(project),
        "versions": [v for v in page.get("versions", []) if v in wanted],
        "files": sorted(files, key=lambda f: f["filename"]),
    }
    return trimmed, metadata


def main(argv: list[str] | None = None) -> int:
    """Write the pages, the metadata files and PROVENANCE.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index-url", default="https://pypi.org/simple")
    args = parser.parse_args(argv)
    index_url = args.index_url.rstrip("/")
    (OUT / "metadata").mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("metadata/*.metadata"):
        old.unlink()
    rows = []
    for project, versions in VERSIONS.items():
        page, metadata = build_project(index_url, project, versions)
        (OUT / f"{page['name']}.json").write_text(json.dumps(page, indent=1, sort_keys=True) + "\n")
        for wheel, body in metadata.items():
            (OUT / "metadata" / f"{wheel}.metadata").write_bytes(body)
        rows.append(f"| {project} | {', '.join(versions)} | {len(page['files'])} |")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    (OUT / "PROVENANCE.md").write_text(
        "# Test index: a partial mirror of PyPI\n\n"
        f"Source: {index_url} (PEP 691 JSON simple API, `Accept: {JSON_ACCEPT}`), fetched {today} by\n"
        "`python scripts/build_test_index.py`.\n\n"
        "`<project>.json` is the project's JSON page trimmed to the wheels of the versions below, with the\n"
        "page's own filename, url, hashes, requires-python, upload-time (PEP 700), yanked and size.\n"
        "`metadata/<wheel>.metadata` is the wheel's METADATA as the index serves it (PEP 658, `url` +\n"
        "`.metadata`); each file entry's `core-metadata` (PEP 714) holds that file's sha256 (where the\n"
        "page already declared one, the script checks that it matches). The wheels are not included:\n"
        "`tests/local_index.py` serves this folder on 127.0.0.1 and answers 404 for them.\n\n"
        "| project | versions | wheels |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n"
    )
    size = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
