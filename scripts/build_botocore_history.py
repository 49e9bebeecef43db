"""Build data/botocore/iot_data_default_endpoint.csv from real botocore wheels.

Downloads botocore releases with pip, runs each one in a child Python to read the default
``iot-data`` endpoint it picks, and bisects over the release list to *discover* the release where
the default host moved from ``data.iot.<region>`` to ``data-ats.iot.<region>``. For every probed
release it also records the vendored ``cacert.pem`` and whether it carries VeriSign Class 3 G5.

    .venv/bin/python scripts/build_botocore_history.py [--cache DIR] [--grid 8]

Needs PyPI (through pip) and about 15-20 wheel downloads (8-14 MB each), cached in ``--cache``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import ssl
import subprocess
import sys
import urllib.request
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from helpers import _botocore_fetch, botocore_facts, endpoints  # noqa: E402
from helpers._io import atomic_write_text  # noqa: E402

# The incident's region first (the bisection runs on it), then the others; the kit's fetch probes the same.
PRIMARY_REGION, *EXTRA_REGIONS = _botocore_fetch.REGIONS
SIMPLE_JSON = "https://pypi.org/simple/botocore/"
CSV_NAME = "iot_data_default_endpoint.csv"
PROVENANCE_NAME = "iot_data_default_endpoint.provenance.json"


def log(message: str) -> None:
    """Progress on stderr."""
    print(message, file=sys.stderr, flush=True)


def release_versions() -> list[str]:
    """Every botocore release pip can see (``pip index versions``), oldest first."""
    result = subprocess.run(
        [sys.executable, "-m", "pip", "index", "versions", "botocore"],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Available versions:\s*(.+)", result.stdout)
    if not match:
        raise RuntimeError(f"pip index versions botocore: unexpected output: {result.stdout[:200]!r}")
    versions = []
    for text in match.group(1).split(","):
        try:
            versions.append((botocore_facts.version_key(text), text.strip()))
        except ValueError:  # pre-releases and other non-plain versions are not probed
            continue
    return [text for _, text in sorted(versions)]


def index_wheels() -> dict[str, dict]:
    """version -> {filename, sha256, upload_time} of its wheel, from PyPI's PEP 691 JSON index."""
    request = urllib.request.Request(SIMPLE_JSON, headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    with urllib.request.urlopen(request, context=context, timeout=60) as response:
        index = json.load(response)
    wheels: dict[str, dict] = {}
    for entry in index["files"]:
        match = re.match(r"botocore-([^-]+)-.*\.whl$", entry["filename"])
        if match and entry.get("upload-time") and match.group(1) not in wheels:
            wheels[match.group(1)] = {
                "filename": entry["filename"],
                "sha256": entry["hashes"].get("sha256", ""),
                "upload_time": entry["upload-time"],
            }
    return wheels


class Prober:
    """Downloads, extracts and probes botocore wheels, remembering every result."""

    def __init__(self, cache: Path, regions: list[str], index: dict[str, dict] | None = None):
        self.cache = cache
        self.index = index or {}  # version -> the index's wheel filename and sha256, checked on use
        self.regions = regions
        self.results: dict[str, dict] = {}
        self._old_urllib3: Path | None = None

    def wheel(self, version: str) -> Path:
        """The cached wheel of ``version``, downloaded with pip if missing."""
        wheels = self.cache / "wheels"
        found = sorted(wheels.glob(f"botocore-{version}-*.whl"))
        if not found:
            log(f"  pip download botocore=={version}")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", f"botocore=={version}", "--no-deps",
                 "--only-binary", ":all:", "-d", str(wheels), "-q"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            found = sorted(wheels.glob(f"botocore-{version}-*.whl"))
        if not found:
            raise FileNotFoundError(f"botocore {version}: pip downloaded no wheel")
        expected = self.index.get(version, {}).get("sha256")
        if expected and hashlib.sha256(found[0].read_bytes()).hexdigest() != expected:
            raise RuntimeError(f"{found[0]}: sha256 differs from PyPI's; delete it from the cache and rerun")
        return found[0]

    def extracted(self, version: str) -> tuple[Path, Path]:
        """(wheel, folder holding the extracted wheel) for ``version``."""
        wheel = self.wheel(version)
        target = self.cache / "extracted" / version
        if not (target / "botocore" / "__init__.py").exists():
            with zipfile.ZipFile(wheel) as archive:
                archive.extractall(target)
        return wheel, target

    def old_urllib3(self) -> Path:
        """urllib3<2 extracted into the cache, for releases that do not import with urllib3 2."""
        if self._old_urllib3 is None:
            deps = self.cache / "deps"
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "urllib3<2", "--no-deps",
                 "--only-binary", ":all:", "-d", str(deps), "-q"],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            wheel = sorted(deps.glob("urllib3-1.*.whl"))[-1]
            target = self.cache / "deps-extracted" / wheel.stem
            if not (target / "urllib3").exists():
                with zipfile.ZipFile(wheel) as archive:
                    archive.extractall(target)
            self._old_urllib3 = target
        return self._old_urllib3

    def _run_child(self, wheel_dir: Path, extra: list[Path]) -> tuple[dict | None, str]:
        """The shared probe with ``wheel_dir`` (then ``extra``) first on sys.path: (result or None, error)."""
        return _botocore_fetch.run_probe(wheel_dir, self.regions, extra=extra)

    def probe(self, version: str, role: str) -> dict:
        """Default iot-data host per region and the vendored CA bundle of ``version`` (cached)."""
        if version in self.results:
            self.results[version]["roles"].add(role)
            return self.results[version]
        wheel, wheel_dir = self.extracted(version)
        result, error = self._run_child(wheel_dir, [])
        method = "client (urllib3 from the venv)"
        if result is None:
            log(f"  {version}: does not run with the venv's packages ({error}); retrying with urllib3<2")
            result, error2 = self._run_child(wheel_dir, [self.old_urllib3()])
            method = f"client (with {self.old_urllib3().name})"
            if result is None:
                log(f"  {version}: still fails ({error2}); reading endpoints.json instead")
                result = endpoints_json_hosts(wheel_dir, self.regions)
                method = f"endpoints.json (does not import on this Python: {error2})"
        hosts = {} if result.get("absent") else result["hosts"]
        record = {
            "version": version,
            "wheel": wheel.name,
            "wheel_sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "method": method,
            "hosts": {r: _botocore_fetch.host_of(u) for r, u in hosts.items()},
            "absent": bool(result.get("absent")),
            "roles": {role},
            **_botocore_fetch.vendored_cacert(wheel_dir),
        }
        log(f"  {version}: {record['hosts'].get(PRIMARY_REGION, 'no iot-data')} [{method}]")
        self.results[version] = record
        return record


def endpoints_json_hosts(wheel_dir: Path, regions: list[str]) -> dict:
    """Fallback: iot-data's host per region from the wheel's endpoints.json and service model.

    Returns the probe's shape: ``{"hosts": {region: host or "error: ..."}}`` or ``{"absent": True}``.
    """
    import gzip

    def load(path: Path):
        for candidate in (path, path.with_name(path.name + ".gz")):
            if candidate.exists():
                opener = gzip.open if candidate.suffix == ".gz" else open
                with opener(candidate, "rt") as handle:
                    return json.load(handle)
        raise FileNotFoundError(path)

    data = wheel_dir / "botocore" / "data"
    if not (data / "iot-data").is_dir():
        return {"absent": True}
    try:
        model_dirs = sorted(p for p in (data / "iot-data").iterdir() if p.is_dir())
        prefix = load(model_dirs[-1] / "service-2.json")["metadata"]["endpointPrefix"]
        partitions = load(data / "endpoints.json")["partitions"]
    except (OSError, KeyError, IndexError, ValueError) as exc:
        return {"hosts": {r: f"error: endpoints.json unreadable: {exc!r}" for r in regions}}
    hosts = {}
    for region in regions:
        part = next((p for p in partitions if region in p["regions"]), None)
        if part is None:
            part = next((p for p in partitions if re.match(p["regionRegex"], region)), None)
        service = (part or {}).get("services", {}).get(prefix)
        if part is None or service is None:
            hosts[region] = f"error: {prefix} not in endpoints.json for {region}"
            continue
        entry = service.get("endpoints", {}).get(region, {})
        template = (
            entry.get("hostname")
            or service.get("defaults", {}).get("hostname")
            or part["defaults"]["hostname"]
        )
        hosts[region] = template.format(service=prefix, region=region, dnsSuffix=part["dnsSuffix"])
    return {"hosts": hosts}


def is_ats(record: dict) -> bool | None:
    """True/False for the primary region's default host; None when the release has no usable answer."""
    host = record["hosts"].get(PRIMARY_REGION)
    if not host or host.startswith("error"):
        return None
    return endpoints.classify(host) == "ats"


def discover(prober: Prober, versions: list[str], *, grid: int, installed: str) -> dict:
    """Probe a coarse grid, then bisect between the last legacy and the first ATS release."""
    picks = {round(i * (len(versions) - 1) / (grid - 1)) for i in range(grid)}
    for index in sorted(picks):
        prober.probe(versions[index], "grid")
    if installed in versions:
        prober.probe(installed, "installed")
    prober.probe(versions[-1], "newest")

    def known() -> list[tuple[int, bool]]:
        """(index, is_ats) of every probed release with an answer, in release order."""
        rows = [(versions.index(v), is_ats(r)) for v, r in prober.results.items() if v in versions]
        return sorted((i, a) for i, a in rows if a is not None)

    answers = known()
    legacy = [i for i, a in answers if not a]
    ats = [i for i, a in answers if a]
    if not legacy or not ats:
        raise RuntimeError("the grid found no legacy/ATS pair to bisect; raise --grid")
    lo = max(legacy)
    hi = min(i for i in ats if i > lo) if any(i > lo for i in ats) else None
    if hi is None or any(i < lo for i in ats):
        raise RuntimeError(f"default host is not monotonic over the grid: {answers}; inspect by hand")
    trace = []
    while hi - lo > 1:
        mid = (lo + hi) // 2
        record = prober.probe(versions[mid], "bisect")
        answer = is_ats(record)
        trace.append({"version": versions[mid], "default_host": record["hosts"].get(PRIMARY_REGION)})
        if answer is None:
            raise RuntimeError(f"botocore {versions[mid]} gave no answer during bisection: {record}")
        lo, hi = (lo, mid) if answer else (mid, hi)
    prober.results[versions[lo]]["roles"].add("last-legacy")
    prober.results[versions[hi]]["roles"].add("first-ats")
    for neighbour in (lo - 1, hi + 1):  # one more on each side of the boundary
        if 0 <= neighbour < len(versions):
            prober.probe(versions[neighbour], "boundary-neighbour")
    return {"last_legacy": versions[lo], "first_ats": versions[hi], "bisection": trace}


def table(prober: Prober, times: dict[str, str]) -> pd.DataFrame:
    """One row per probed release x region (``times``: version -> upload time)."""
    rows = []
    for record in prober.results.values():
        for region in prober.regions:
            host = record["hosts"].get(region, "" if record["absent"] else "error: not probed")
            uploaded = times.get(record["version"], "")
            rows.append({
                "version": record["version"],
                "released": uploaded[:10],
                "upload_time": uploaded,
                "region": region,
                "default_host": host,
                "host_class": "absent" if record["absent"] else (
                    "error" if host.startswith("error") else endpoints.classify(host)),
                "method": record["method"],
                "probe_role": ";".join(sorted(record["roles"])),
                "cacert_path": record["cacert_path"],
                "cacert_sha256": record["cacert_sha256"],
                "cacert_roots": record["cacert_roots"],
                "has_verisign_g5": record["has_verisign_g5"],
                "verisign_g5_sha256": record["verisign_g5_sha256"],
                "wheel": record["wheel"],
                "wheel_sha256": record["wheel_sha256"],
            })  # fmt: skip
    frame = pd.DataFrame(rows)
    return (
        frame.assign(_v=frame["version"].map(botocore_facts.version_key))
        .sort_values(["_v", "region"])
        .drop(columns="_v")
        .reset_index(drop=True)
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, probe, bisect and write the table and its provenance."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "atskit" / "botocore")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "botocore")
    parser.add_argument("--grid", type=int, default=8, help="evenly spaced releases probed before bisecting")
    args = parser.parse_args(argv)
    if args.grid < 2:
        parser.error("--grid must be at least 2")
    import botocore

    listed = release_versions()
    wheels = index_wheels()
    times = {version: wheel["upload_time"] for version, wheel in wheels.items()}
    versions = [v for v in listed if v in times]  # --only-binary: releases without a wheel cannot be probed
    log(
        f"{len(listed)} botocore releases listed, {len(versions)} with a wheel "
        f"({versions[0]} .. {versions[-1]}); probing a grid of {args.grid}"
    )
    prober = Prober(args.cache, [PRIMARY_REGION, *EXTRA_REGIONS], wheels)
    boundary = discover(prober, versions, grid=args.grid, installed=botocore.__version__)
    frame = table(prober, times)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / CSV_NAME, frame.to_csv(index=False, lineterminator="\n"))
    provenance = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "script": "scripts/build_botocore_history.py",
        "source": "botocore wheels from PyPI (pip download --no-deps --only-binary :all:); release list "
        "from `pip index versions botocore`; upload times and wheel sha256 from PyPI's PEP 691 JSON index "
        "(every wheel used is checked against that sha256)",
        "how_the_host_was_read": "each wheel extracted and imported in a child Python; "
        "botocore.session.get_session().create_client('iot-data', region_name=R, fake keys)"
        ".meta.endpoint_url; releases that do not import with the venv's urllib3 retried with urllib3<2; "
        "only if that fails too, resolved from the wheel's endpoints.json (see the method column)",
        "bisected_region": PRIMARY_REGION,
        "regions": prober.regions,
        "releases_listed": len(listed),
        "releases_with_wheel": len(versions),
        "releases_probed": len(prober.results),
        "oldest_with_wheel": versions[0],
        "newest_listed": versions[-1],
        "boundary": {
            **boundary,
            "first_ats_released": times.get(boundary["first_ats"], "")[:10],
        },
        "g5_match": f"subject CN == {_botocore_fetch.G5_CN!r}",
        "python": platform.python_version(),
        "pip": subprocess.run(
            [sys.executable, "-m", "pip", "--version"], capture_output=True, text=True
        ).stdout.split(" from ")[0],
    }
    atomic_write_text(args.out / PROVENANCE_NAME, json.dumps(provenance, indent=2) + "\n")
    log(f"boundary: {boundary['last_legacy']} (legacy) -> {boundary['first_ats']} (ATS); wrote {args.out}")
    return 0


def _cli() -> int:
    """main() with one-line errors (nothing is written when a step fails)."""
    try:
        return main()
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or "").strip().splitlines()[-1:] or [str(exc)]
        print(
            f"build_botocore_history: {' '.join(map(str, exc.cmd[2:5]))} failed: {detail[0]}", file=sys.stderr
        )
    except (OSError, RuntimeError, ValueError) as exc:  # network, cache and consistency problems
        print(f"build_botocore_history: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    raise SystemExit(_cli())
