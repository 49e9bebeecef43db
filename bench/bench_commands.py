"""How fast the small commands are as whole processes, against OpenSSL doing the same from the shell.

Prints medians over --runs runs (default 15) of, in new processes:
- ``atskit check --chain-file F --bundle certifi==2021.10.8`` (one chain, one release; target <= 0.15 s)
  against one ``openssl verify`` of the same chain and bundle;
- ``atskit check --chain-file F --bundle certifi==all`` (one chain against every certifi release;
  target <= 0.25 s) against a shell loop of ``openssl verify`` over every release's file;
- ``python -c 'import cryptography.x509, ssl'``: the floor any such command pays before its own work.
The chain is the lab's legacy chain (captured once; its verdicts do not matter for the timing).

Usage: .venv/bin/python bench/bench_commands.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.serialization import Encoding  # noqa: E402

from helpers import bundles, chains, lab  # noqa: E402


def median_seconds(command: list[str] | str, runs: int, *, shell: bool = False) -> float:
    """Median wall seconds of a command (its exit code does not matter: verdicts differ by release)."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, shell=shell, cwd=ROOT, capture_output=True, check=False)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement (default 15)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        with lab.environment("lab") as env:
            chain = chains.fetch_chain(env.endpoints["data_legacy"])
        chain_file = chain.save(folder / "legacy.pem")
        leaf, untrusted = folder / "leaf.pem", folder / "untrusted.pem"
        leaf.write_bytes(chain.leaf.public_bytes(Encoding.PEM))
        untrusted.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in chain.intermediates))
        versions = bundles.certifi_versions()
        for version in versions:
            bundles.certifi(version).write_pem(folder / f"certifi-{version}.pem")
        atskit = [sys.executable, "-m", "helpers", "check", "--chain-file", str(chain_file)]
        openssl = f"openssl verify -untrusted {untrusted} -CAfile {{}} {leaf}"
        loop = f"for f in {folder}/certifi-*.pem; do {openssl.format('$f')} >/dev/null 2>&1; done"
        rows = [
            ("python -c 'import cryptography.x509, ssl' (the floor)",
             median_seconds([sys.executable, "-c", "import cryptography.x509, ssl"], args.runs), None),
            ("atskit check, one release (certifi==2021.10.8)",
             median_seconds([*atskit, "--bundle", "certifi==2021.10.8"], args.runs),
             median_seconds(openssl.format(folder / "certifi-2021.10.8.pem"), args.runs, shell=True)),
            (f"atskit check, every release (certifi==all, {len(versions)})",
             median_seconds([*atskit, "--bundle", "certifi==all"], args.runs),
             median_seconds(loop, max(3, args.runs // 5), shell=True)),
        ]  # fmt: skip
    print(f"median of {args.runs} runs, whole processes")
    for what, seconds, baseline in rows:
        versus = f"   openssl: {baseline:.3f} s" if baseline is not None else ""
        print(f"  {what:56} {seconds:.3f} s{versus}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
