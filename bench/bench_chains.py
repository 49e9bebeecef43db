"""Bench: one chain against every certifi release with helpers.chains, and with `openssl verify` per release.

Run: ``.venv/bin/python bench/bench_chains.py [--runs 7]``. Prints medians and their ratio (target: the kit
takes at most 0.1 s with stores cached and is at least 20 times faster than one `openssl verify` per
release). The chain is a look-alike of the incident's: a root with VeriSign G5's exact subject (new key)
-> "Symantec Class 3 Secure Server CA - G4" -> data.iot.ap-northeast-2.amazonaws.com. It is checked
twice: against the real releases (it fails in each: its root is not the real G5), and against "lab
views" of them in which the real G5 is swapped for the look-alike, so it verifies until G5 left certifi.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import _x509, bundles, chains, pki  # noqa: E402

G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
HOST = "data.iot.ap-northeast-2.amazonaws.com"
AT = dt.datetime(2021, 12, 3, tzinfo=dt.UTC)  # the incident's date


def incident_lookalike() -> tuple[chains.Chain, pki.CA]:
    """The look-alike chain [leaf, G4] and its G5-named root (real subject from botocore's vendored file)."""
    (real_g5,) = bundles.botocore_vendored().find(G5)
    g5 = pki.CA(real_g5.subject, key_type="rsa")
    g4 = g5.create_child_ca(
        pki.make_name(
            "Symantec Class 3 Secure Server CA - G4",
            organization="Symantec Corporation",
            organizational_unit="Symantec Trust Network",
            country="US",
        ),
        key_type="rsa",
    )
    leaf = g4.issue_cert(HOST, key_type="rsa")
    return chains.Chain([leaf.cert, g4.cert], host=HOST, port=443), g5


def lab_view(bundle: bundles.Bundle, g5: pki.CA) -> bundles.Bundle:
    """``bundle`` with the real G5 (matched by exact subject) replaced by the look-alike root."""
    certs = [g5.cert if c.subject == g5.cert.subject else c for c in bundle.certificates]
    return bundles.Bundle(
        name=f"lab view of {bundle.name}", version=bundle.version, source="bench", certificates=certs
    )


def timed(action: Callable[[], object], runs: int) -> tuple[float, object]:
    """Median wall time of ``runs`` calls and the last result."""
    times, result = [], None
    for _ in range(runs):
        start = time.perf_counter()
        result = action()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def openssl_over(pem_paths: list[Path], leaf: Path, untrusted: Path) -> list[tuple[bool, str]]:
    """`openssl verify` of leaf (+ untrusted intermediates) against each CA file: (ok, last line)."""
    outcomes = []
    for path in pem_paths:
        args = ["openssl", "verify", "-CAfile", str(path), "-untrusted", str(untrusted)]
        args += ["-attime", str(int(AT.timestamp())), "-verify_hostname", HOST, str(leaf)]
        done = subprocess.run(args, capture_output=True, text=True, check=False)
        lines = (done.stdout + done.stderr).strip().splitlines()
        outcomes.append((done.returncode == 0, lines[-1] if lines else ""))
    return outcomes


def report(title: str, kit_seconds: float, openssl_seconds: float, frame, openssl) -> None:
    """Print one scenario's figures and check that the kit and OpenSSL agree release by release."""
    agree = sum(ok == bool(o[0]) for ok, o in zip(frame["ok"], openssl, strict=True))
    print(f"\n{title}: {len(frame)} releases")
    print(f"  kit, stores cached (median): {kit_seconds * 1000:8.1f} ms  (target <= 100 ms)")
    print(f"  openssl verify per release:  {openssl_seconds * 1000:8.1f} ms")
    print(f"  ratio: {openssl_seconds / kit_seconds:6.1f}x  (target >= 20x)")
    print(f"  verdicts: {frame['reason'].value_counts().to_dict()}; agree with openssl: {agree}/{len(frame)}")
    for row in chains.transitions(frame).itertuples():
        print(f"  transition: {row.previous} -> {row.version}: {row.previous_reason} -> {row.reason}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="timed runs for the kit (median); default 7")
    parser.add_argument("--openssl-runs", type=int, default=3, help="timed runs for openssl; default 3")
    args = parser.parse_args(argv)

    versions = list(bundles.certifi_releases()["version"])
    releases = [bundles.certifi(v) for v in versions]
    chain, g5 = incident_lookalike()
    views = [lab_view(b, g5) for b in releases]
    print(
        f"chain: {' -> '.join(_x509.display_name(c.subject) for c in chain.certificates)}; at {AT:%Y-%m-%d}"
    )
    print(f"{len(versions)} certifi releases, {versions[0]} .. {versions[-1]}")

    with tempfile.TemporaryDirectory() as tmp:
        leaf_path, untrusted_path = Path(tmp, "leaf.pem"), Path(tmp, "untrusted.pem")
        leaf_path.write_bytes(_x509.to_pem([chain.leaf]))
        untrusted_path.write_bytes(_x509.to_pem(chain.intermediates))
        for title, bundle_list, run in [
            (
                "real releases (across_certifi)",
                releases,
                lambda: chains.across_certifi(chain, hostname=HOST, at=AT),
            ),
            (
                "lab views (across_bundles)",
                views,
                lambda: chains.across_bundles(chain, views, hostname=HOST, at=AT),
            ),
        ]:
            cold_start = time.perf_counter()
            run()
            cold = time.perf_counter() - cold_start
            kit_seconds, frame = timed(run, args.runs)
            pem_paths = [b.path() for b in bundle_list]
            openssl_seconds, openssl = timed(
                lambda p=pem_paths: openssl_over(p, leaf_path, untrusted_path), args.openssl_runs
            )
            report(title, kit_seconds, openssl_seconds, frame, openssl)
            print(f"  kit, first run (stores built): {cold * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
