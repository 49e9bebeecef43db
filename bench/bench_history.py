"""bundles.history() from the embedded data vs parsing every release's cacert.pem (same run).

Prints medians, the ratio, and the peak memory of building the history frame (tracemalloc).
Run: .venv/bin/python bench/bench_history.py [--repeat N]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers import _certifi_build, _x509, bundles  # noqa: E402


def history_cold() -> pd.DataFrame:
    """history() with every cache cleared: read data/certifi, parse each distinct root once, build."""
    bundles._certifi_data_loaded.cache_clear()
    return bundles.history()


def _frame_from_pems(pems: dict[str, bytes]) -> pd.DataFrame:
    """The naive history: parse and describe every certificate of every release's PEM."""
    rows = []
    for version, pem in pems.items():
        parsed = _x509.parse_pem(pem)
        rows += [{"version": version, **_x509.describe(c)} for c in parsed.certificates]
    return pd.DataFrame(rows)


def baseline_from_files(files: dict[str, Path]) -> pd.DataFrame:
    """Open every downloaded release file, extract cacert.pem, parse everything."""
    return _frame_from_pems({v: _certifi_build.extract_cacert(p)[1] for v, p in files.items()})


def baseline_from_pem_text(pems: dict[str, bytes]) -> pd.DataFrame:
    """Parse every release's (reconstructed) PEM text."""
    return _frame_from_pems(pems)


def median_seconds(func, *args, repeat: int) -> float:
    """Median wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    repeat = parser.parse_args().repeat

    frame = history_cold()
    releases = bundles.certifi_releases()
    print(
        f"history(): {len(frame):,} rows, {len(releases)} releases, "
        f"{frame['fingerprint_sha256'].nunique()} roots"
    )

    cold = median_seconds(history_cold, repeat=repeat)
    warm = median_seconds(bundles.history, repeat=repeat)
    print(
        f"history() cold (read data/certifi, parse each root once): median {cold * 1000:7.1f} ms "
        "(limit 500 ms)"
    )
    print(f"history() warm (cached frame, copy):                      median {warm * 1000:7.1f} ms")

    files = _certifi_build.cached_files()
    if len(files) == len(releases):
        base = median_seconds(baseline_from_files, files, repeat=max(3, repeat // 2))
        print(
            f"baseline: parse every release's downloaded file ({len(files)}):  median {base * 1000:7.1f} ms"
            f"  -> history() cold is {base / cold:.1f}x faster"
        )
    else:
        print(
            f"baseline from downloaded files skipped: {len(files)}/{len(releases)} files in the cache "
            "(run `python -m helpers refresh-certifi --full` to fill it)"
        )
    pems = {v: bundles.certifi(v).pem() for v in releases["version"]}
    text = median_seconds(baseline_from_pem_text, pems, repeat=max(3, repeat // 2))
    print(
        f"baseline: parse every release's PEM text ({len(pems)}):       median {text * 1000:7.1f} ms"
        f"  -> history() cold is {text / cold:.1f}x faster"
    )

    bundles._certifi_data_loaded.cache_clear()
    gc.collect()
    tracemalloc.start()
    frame = bundles.history()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    deep = frame.memory_usage(deep=True).sum()
    print(
        f"memory: peak {peak / 2**20:.1f} MiB while building history() (tracemalloc); "
        f"the frame itself {deep / 2**20:.1f} MiB (memory_usage(deep=True))"
    )


if __name__ == "__main__":
    main()
