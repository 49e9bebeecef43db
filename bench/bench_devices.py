"""Bench: `atskit devices` on a 10,000-row inventory against saved lab chains, in a cold process each run.

Run: ``.venv/bin/python bench/bench_devices.py [--runs 5]``. Prints the median wall time of the command on
10,000 rows and, as a same-run baseline, on 10 rows (target: 10,000 rows in at most 2 s). The inventory
has 4 distinct endpoints (ATS and legacy, 8883 and 443), 2 real root files (Amazon Root CA 1, VeriSign
G5) and 2 client offers on ATS, so 12 verdicts are computed whatever the row count.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives import serialization  # noqa: E402

from helpers import bundles, chains, lab  # noqa: E402

ROOTS = {
    "AmazonRootCA1.pem": "Amazon Root CA 1",
    "root-CA.crt": "VeriSign Class 3 Public Primary Certification Authority - G5",
}
HOSTS = ("a1b2-ats.iot.ap-northeast-2.amazonaws.com", "a1b2.iot.ap-northeast-2.amazonaws.com")
CLIENTS = ("default", "ecdsa-only")


def prepare(folder: Path) -> list[Path]:
    """Root files and chains saved from the lab (every host x port x client); the chain files."""
    for file, cn in ROOTS.items():
        (root,) = [c for c in bundles.certifi("2020.6.20").find(cn) if c.subject == c.issuer]
        (folder / file).write_bytes(root.public_bytes(serialization.Encoding.PEM))
    saved = []
    with lab.environment("lab"):
        for host in HOSTS:
            for port in (8883, 443):
                for client in CLIENTS if "-ats." in host else CLIENTS[:1]:  # legacy: RSA only
                    path = folder / f"{host}_{port}_{client}.pem"
                    chains.fetch_chain(host, port, client_offer=client).save(path)
                    saved.append(path)
    return saved


def inventory(folder: Path, rows: int) -> Path:
    """An inventory of ``rows`` devices cycling through the endpoints, root files and clients."""
    endpoints = [f"{h}:{p}" for h in HOSTS for p in (8883, 443)]
    lines = ["device,endpoint,root_file,client"]
    for i in range(rows):
        root = list(ROOTS)[i % 2]
        endpoint = endpoints[i % 4]
        client = CLIENTS[(i // 4) % 2] if "-ats." in endpoint else "default"
        lines.append(f"dev-{i:05d},{endpoint},{root},{client}")
    path = folder / f"inventory-{rows}.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def run(path: Path, saved: list[Path], runs: int) -> float:
    """Median wall time of a cold ``python -m helpers devices PATH --lab --chain-file ...`` (exits 1)."""
    command = [sys.executable, "-m", "helpers", "devices", str(path), "--lab", "--at", "2024-06-01"]
    command += [arg for p in saved for arg in ("--chain-file", str(p))]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 1:
            raise SystemExit(f"unexpected exit {done.returncode}: {done.stderr.strip()}")
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="atskit-bench-devices-") as tmp:
        folder = Path(tmp)
        saved = prepare(folder)
        small = run(inventory(folder, 10), saved, args.runs)
        large = run(inventory(folder, 10_000), saved, args.runs)
    print(f"atskit devices, 10 rows:     median {small:.2f} s (baseline, same run)")
    print(f"atskit devices, 10,000 rows: median {large:.2f} s (target <= 2 s; {large - small:+.2f} s)")


if __name__ == "__main__":
    main()
