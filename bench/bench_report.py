"""How long `make report` takes, against Jupyter's own way of running the same notebooks.

Prints medians over --repeat runs (default 3), the kinds interleaved so the machine's changing speed
hits them alike:
- the report as `make report` runs it: ``python -m helpers run-notebooks`` in a new process
  (notebooks side by side on standard kernels, each executed and exported to HTML);
- baseline from the same run: ``jupyter nbconvert --execute --to html`` over the same five notebooks,
  one after another in one command (copies in a temporary folder, so nothing lands in notebooks/);
- each notebook's "Run All" in an already started kernel, as a trainee in JupyterLab waits for it
  (the kernel's start is not counted; each notebook gets a fresh kernel, as when it is opened).
Targets (issue "One simple house"): the report at most half the baseline and at most 10 s on this
2-core machine; each notebook's Run All at most 3 s. The machine's speed is printed too (a fixed
pure-Python loop, before and after): on a shared virtual machine it can change within minutes, so
compare the ratios of one run.

Usage: .venv/bin/python bench/bench_report.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))
BIN = Path(sys.executable).parent


def _report() -> float:
    """Seconds of ``python -m helpers run-notebooks`` (what `make report` runs) in a new process."""
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "helpers", "run-notebooks", "--out", out], cwd=ROOT, check=True,
                       capture_output=True)  # fmt: skip
        return time.perf_counter() - started


def _nbconvert_one_by_one() -> float:
    """Seconds of ``jupyter nbconvert --execute --to html`` over copies of the notebooks, in order."""
    with tempfile.TemporaryDirectory() as folder:
        copies = [shutil.copy(path, folder) for path in NOTEBOOKS]
        started = time.perf_counter()
        subprocess.run([str(BIN / "jupyter"), "nbconvert", "--execute", "--to", "html", *copies], cwd=folder,
                       check=True, capture_output=True)  # fmt: skip
        return time.perf_counter() - started


_RUN_ALL = """
import json, sys, time
from pathlib import Path
import nbformat
from jupyter_client.manager import KernelManager

nb = nbformat.read(sys.argv[1], as_version=4)
km = KernelManager(kernel_name="python3")
km.start_kernel(cwd=sys.argv[2])
kc = km.client()
kc.start_channels()
kc.wait_for_ready(timeout=60)
failed = []
started = time.perf_counter()
for cell in nb.cells:
    if cell.cell_type == "code":
        reply = kc.execute_interactive(cell.source, timeout=120, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            failed.append(reply["content"].get("ename"))
seconds = time.perf_counter() - started
kc.stop_channels()
km.shutdown_kernel(now=True)
print(json.dumps({"seconds": seconds, "failed": failed}))
"""


def _run_all(notebook: Path) -> float:
    """Seconds of one notebook's Run All in a kernel that has already started (JupyterLab's wait)."""
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.run([sys.executable, "-c", _RUN_ALL, str(notebook), folder], cwd=ROOT, check=True,
                              capture_output=True, text=True)  # fmt: skip
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["failed"]:
        raise SystemExit(f"{notebook.stem}: cells failed in Run All: {result['failed']}")
    return result["seconds"]


def _speed_reference() -> float:
    """Seconds a fixed pure-Python loop takes: this machine's speed at the moment."""
    started = time.perf_counter()
    sum(i * i for i in range(10**7))
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; median of {args.repeat} runs each, the kinds interleaved")
    speed_before = _speed_reference()
    report, baseline = [], []
    run_all: dict[str, list[float]] = {path.stem: [] for path in NOTEBOOKS}
    for _ in range(args.repeat):
        report.append(_report())
        baseline.append(_nbconvert_one_by_one())
        for path in NOTEBOOKS:
            run_all[path.stem].append(_run_all(path))
    speed_after = _speed_reference()
    r, b = statistics.median(report), statistics.median(baseline)
    print(f"make report (run-notebooks, side by side):       median {r:5.1f} s  (runs: "
          f"{', '.join(f'{x:.1f}' for x in report)})")  # fmt: skip
    print(f"jupyter nbconvert --execute, one by one:          median {b:5.1f} s")
    print(f"ratio report / baseline: {r / b:.2f} (target <= 0.50); report target <= 10 s: "
          f"{'met' if r <= 10 else 'NOT met'}")  # fmt: skip
    print("Run All in an already started kernel (target <= 3 s each):")
    for stem, seconds in run_all.items():
        median = statistics.median(seconds)
        print(f"  {stem:32} median {median:4.1f} s  {'ok' if median <= 3 else 'over'}")
    print(f"speed reference (fixed loop): {speed_before:.2f} s before, {speed_after:.2f} s after")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
