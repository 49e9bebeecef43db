"""Bench: lab start -> the incident's failure reproduced, against botocore's 2021 retry behaviour.

Run: ``.venv/bin/python bench/bench_lab.py [--runs 5] [--legacy-runs 3] [--cold-runs 3]``.
Each run starts a lab (``lab.running``), runs the incident's snippet under certifi 2021.10.8's trust view
and the legacy endpoint, and stops when botocore raises the SSLError. Printed, all from this one run:

- lab as the notebook uses it: botocore's standard retry mode (the installed botocore's default, pinned
  by the lab: 3 attempts, backoff of at most 50/100 ms) - target: median at most 2 s;
- the same with AWS_MAX_ATTEMPTS=1 (one handshake);
- baseline: botocore's ``legacy`` retry mode, the default of the incident's botocore (1.23.x): 5 attempts,
  sleeps of rand(0,1) x 1, 2, 4, 8 s - what a lab that does not pin the retry mode took in 2021 terms;
- cold: a fresh Python process doing imports, the lab PKI (RSA keys), the lab and the failure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
import botocore.exceptions  # noqa: E402

from helpers import lab  # noqa: E402

REGION = "ap-northeast-2"
FAILING_CERTIFI = "2021.10.8"


def start_to_failure(**botocore_env) -> tuple[float, float, int]:
    """Seconds from lab start to the SSLError, seconds of the failing call alone, and handshakes made."""
    started = time.perf_counter()
    with lab.environment("lab", region=REGION) as env:
        before = len(env.connections())
        with env.botocore_env(certifi=FAILING_CERTIFI, iot_data_endpoint="legacy", **botocore_env):
            call_started = time.perf_counter()
            try:
                client_iot = boto3.client("iot-data")
                client_iot.update_thing_shadow(thingName=env.thing_name, payload=json.dumps({"state": {}}))
            except botocore.exceptions.SSLError:
                ended = time.perf_counter()
            else:
                raise SystemExit("the lab did not reproduce the failure; run tests/test_lab.py")
        handshakes = len(env.connections()) - before
    return ended - started, ended - call_started, handshakes


def series(runs: int, **botocore_env) -> dict:
    """Median start->failure and call-only seconds over ``runs`` runs, and the handshakes per run."""
    results = [start_to_failure(**botocore_env) for _ in range(runs)]
    return {
        "total": statistics.median(r[0] for r in results),
        "call": statistics.median(r[1] for r in results),
        "handshakes": sorted({r[2] for r in results}),
        "runs": runs,
    }


_COLD = """
import boto3, botocore.exceptions
from helpers import lab
with lab.environment("lab", region="ap-northeast-2") as env:
    try:
        with env.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy"):
            boto3.client("iot-data").update_thing_shadow(thingName=env.thing_name, payload="{}")
    except botocore.exceptions.SSLError:
        pass
"""


def cold(runs: int) -> float:
    """Median wall seconds of a fresh interpreter: imports, PKI, lab start and the failure."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _COLD], cwd=ROOT, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per lab variant (default 5)")
    parser.add_argument(
        "--legacy-runs", type=int, default=3, help="runs of the legacy-mode baseline (~8 s each)"
    )
    parser.add_argument("--cold-runs", type=int, default=3, help="fresh-process runs (default 3)")
    args = parser.parse_args()

    start_to_failure()  # warm-up: the process's lab PKI is made once; the runs below reuse it
    default = series(args.runs)
    single = series(args.runs, max_attempts=1)
    legacy = series(args.legacy_runs, retry_mode="legacy")
    cold_total = cold(args.cold_runs) if args.cold_runs else float("nan")

    def line(label: str, s: dict) -> str:
        return (
            f"{label:<58} median {s['total']:6.2f} s  (failing call {s['call']:5.2f} s, "
            f"{'/'.join(map(str, s['handshakes']))} handshakes, {s['runs']} runs)"
        )

    print(line("lab start -> failure, botocore default (standard mode)", default))
    print(line("lab start -> failure, AWS_MAX_ATTEMPTS=1", single))
    print(line("baseline: botocore legacy retry mode (2021 default)", legacy))
    cold_label = "cold: fresh process, imports + PKI + lab + failure"
    print(f"{cold_label:<58} median {cold_total:6.2f} s  ({args.cold_runs} runs)")
    print(
        f"ratio baseline / lab default: {legacy['total'] / default['total']:.1f}x; target lab <= 2 s: "
        f"{'met' if default['total'] <= 2 else 'NOT met'} ({default['total']:.2f} s)"
    )


if __name__ == "__main__":
    main()
