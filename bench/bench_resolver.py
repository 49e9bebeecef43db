"""Bench: resolve the incident's unpinned "after" side (requests==2.26.0, certifi from requests) as of
2021-12-01 with helpers._resolver against the partial PyPI mirror of tests/data/index on 127.0.0.1.

Run: ``.venv/bin/python bench/bench_resolver.py [--runs 9]``. Prints the first call (pip's settings read,
uv's cache empty) and the median of the rest: wall time of the whole call, time in uv (its subprocess),
and uv's share; the rest is reading pip's settings (cached once read) and the upload-time check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from local_index import serve_index  # noqa: E402

from helpers import _resolver  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Time ``runs`` resolutions and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch, serve_index() as index:
        os.environ["UV_CACHE_DIR"] = str(Path(scratch) / "uv-cache")
        os.environ["UV_DEFAULT_INDEX"] = index.url
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text("requests==2.26.0\n")
        walls, in_uv = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            resolution = _resolver.resolve(requirements, as_of=date(2021, 12, 1))
            walls.append(time.perf_counter() - started)
            in_uv.append(resolution.seconds)
            assert resolution.packages["certifi"] == "2021.10.8", resolution.packages
    print(f"{resolution.resolver}, {args.runs} runs, requests==2.26.0 as of 2021-12-01 -> certifi 2021.10.8")
    print(f"first call: {walls[0]:.3f} s wall, {in_uv[0]:.3f} s in uv ({in_uv[0] / walls[0]:.0%})")
    wall, uv = statistics.median(walls[1:]), statistics.median(in_uv[1:])
    rest = f"{args.runs - 1}: {wall:.3f} s wall, {uv:.3f} s in uv ({uv / wall:.0%} of the call)"
    print(f"median of the next {rest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
