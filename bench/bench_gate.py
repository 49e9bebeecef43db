"""How long the whole upgrade gate takes as a new process (cold), on the inputs teams commit.

Prints medians over --runs runs (default 7) of ``atskit upgrade-check ... --lab`` for:
- the incident's hash-pinned requirements (docs/examples; target <= 2 s on 2 cores);
- real lock files (tests/data/locks/uv-dev-*, Poetry 2: no resolver either);
- the incident's unpinned layer (``requests==2.24.0`` -> ``requests==2.26.0``) resolved with uv as of the
  layers' build dates against the partial PyPI mirror of tests/data/index on 127.0.0.1;
and, as the baseline measured in the same run, ``atskit check --lab --bundle certifi==2021.10.8`` (the
lab started and its chains checked once, no sides to read).

Usage: .venv/bin/python bench/bench_gate.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from local_index import serve_index  # noqa: E402


def median_seconds(args: list[str], runs: int, *, env: dict[str, str], expect: int) -> float:
    """Median wall seconds of ``python -m helpers ARGS`` in new processes (checking its exit code)."""
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "helpers", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        seconds.append(time.perf_counter() - started)
        assert done.returncode == expect, (args, done.returncode, done.stderr[-500:])
    return statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="runs per measurement (default 7)")
    runs = parser.parse_args().runs
    examples, locks = ROOT / "docs" / "examples", ROOT / "tests" / "data" / "locks"
    with tempfile.TemporaryDirectory() as scratch, serve_index() as index:
        env = {**os.environ, "UV_DEFAULT_INDEX": index.url, "UV_CACHE_DIR": str(Path(scratch) / "uv")}
        layer = {}
        for side, text in (("before", "requests==2.24.0\n"), ("after", "requests==2.26.0\n")):
            layer[side] = Path(scratch) / f"{side}.txt"
            layer[side].write_text(text)
        gate = ["upgrade-check", "--runtime-botocore", "1.23.1", "--lab"]
        pinned = [
            "--before",
            str(examples / "incident-before.txt"),
            "--after",
            str(examples / "incident-after.txt"),
        ]
        locked = [
            "--before",
            str(locks / "uv-dev-before" / "uv.lock"),
            "--after",
            str(locks / "uv-dev-after" / "uv.lock"),
        ]
        dated = ["--before", str(layer["before"]), "--after", str(layer["after"]),
                 "--before-as-of", "2020-07-01", "--after-as-of", "2021-12-01"]  # fmt: skip
        cases = [  # (what, arguments, the exit code it must give)
            (
                "baseline: atskit check --lab, one release",
                ["check", "--lab", "--bundle", "certifi==2021.10.8"],
                1,
            ),
            ("upgrade-check, hash-pinned requirements", [*gate, *pinned], 1),
            ("upgrade-check, uv.lock (dev group left out)", [*gate, *locked], 0),
            ("upgrade-check, unpinned layer resolved as of its builds", [*gate, *dated], 1),
        ]
        results = [(name, median_seconds(args, runs, env=env, expect=code)) for name, args, code in cases]
    base = results[0][1]
    print(f"{runs} runs each, cold processes, {os.cpu_count()} cores; median wall seconds")
    for name, seconds in results:
        print(f"  {name:58} {seconds:6.3f} s  ({seconds / base:.2f} x baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
