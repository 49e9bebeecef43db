"""How long `make report` takes (every notebook, executed and exported), and where the time goes.

Prints medians over --repeat runs (default 3) of:
- the whole report as `make report` runs it (runner.run_all: parallel workers) and, as the baseline in
  the same run, one worker at a time; their ratio;
- each notebook's own time (from the sequential runs);
- fixed costs behind every notebook: a kernel start with an empty notebook executed through papermill,
  importing the kit in a fresh interpreter, starting and stopping the lab, exporting one notebook to HTML,
  importing nbformat (with and without jsonschema's rfc3987_syntax grammar).
Target: the whole report in at most 15 s on a 2-core machine.

Usage: .venv/bin/python bench/bench_report.py [--repeat N]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from helpers import runner

TARGET_SECONDS = 15.0


def _timed(function) -> float:
    """Seconds one call takes."""
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def _report(workers: int) -> tuple[float, dict[str, float], list[str]]:
    """One full report into a temp folder: total seconds, seconds per notebook, failures."""
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        started = time.perf_counter()
        runs = runner.run_all(out, workers=workers)
        total = time.perf_counter() - started
    return total, {r.notebook: r.seconds for r in runs}, [r.line() for r in runs if not r.ok]


def _empty_notebook_run() -> float:
    """papermill + kernel start + nothing: the floor under every notebook."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "00-empty.ipynb"
        nbformat.write(nb, path)
        return _timed(lambda: runner.execute(path, Path(folder) / "out", html=False))


def _subprocess_seconds(code: str) -> float:
    """Wall time of a fresh interpreter running ``code``."""
    return _timed(lambda: subprocess.run([sys.executable, "-c", code], check=True, capture_output=True))


def _html_export() -> float:
    """Exporting one executed notebook to HTML, as the runner does (nbconvert import included)."""
    code = (
        "import sys, tempfile, shutil; from pathlib import Path; from helpers import runner; "
        "d = Path(tempfile.mkdtemp()); p = d / 'x.ipynb'; shutil.copy(sys.argv[1], p); runner._export_html(p)"
    )
    source = runner.notebook_paths()[0]
    return _timed(lambda: subprocess.run([sys.executable, "-c", code, str(source)], check=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    args = parser.parse_args()
    notebooks = [p.stem for p in runner.notebook_paths()]
    print(f"{len(notebooks)} notebooks, {os.cpu_count()} cores, median of {args.repeat} runs")

    parallel, sequential, per_notebook, failures = [], [], {n: [] for n in notebooks}, []
    for _ in range(args.repeat):
        total, _, failed = _report(workers=0)  # 0 -> runner's default, as `make report`
        parallel.append(total)
        failures += failed
        total, seconds, failed = _report(workers=1)
        sequential.append(total)
        failures += failed
        for name, value in seconds.items():
            per_notebook[name].append(value)
    fixed = {
        "empty notebook through papermill (kernel start)": [
            _empty_notebook_run() for _ in range(args.repeat)
        ],
        "import helpers.{bundles,chains,lab,upgrade,report}": [
            _subprocess_seconds("from helpers import bundles, chains, lab, upgrade, report")
            for _ in range(args.repeat)
        ],
        "lab start + stop (fresh interpreter, imports included)": [
            _subprocess_seconds("from helpers import lab\nwith lab.running(): pass")
            for _ in range(args.repeat)
        ],
        "python -c pass (interpreter floor)": [_subprocess_seconds("pass") for _ in range(args.repeat)],
        "import nbformat (papermill, nbconvert and the runner all do)": [
            _subprocess_seconds("import nbformat") for _ in range(args.repeat)
        ],
        "import nbformat with rfc3987_syntax blocked (see below)": [
            _subprocess_seconds("import sys; sys.modules['rfc3987_syntax'] = None; import nbformat")
            for _ in range(args.repeat)
        ],
        "HTML export of one notebook (fresh interpreter)": [_html_export() for _ in range(args.repeat)],
    }

    med_parallel, med_sequential = statistics.median(parallel), statistics.median(sequential)
    print(
        f"\nmake report (parallel, runner default): {med_parallel:6.1f} s   "
        f"target <= {TARGET_SECONDS:.0f} s: {'met' if med_parallel <= TARGET_SECONDS else 'NOT met'}"
    )
    print(
        f"baseline, one notebook at a time:       {med_sequential:6.1f} s   "
        f"speed-up {med_sequential / med_parallel:.2f}x"
    )
    print("\nper notebook (sequential runs, execution + HTML export):")
    for name, values in per_notebook.items():
        print(f"  {statistics.median(values):6.1f} s  {name}")
    print("\nfixed costs behind each notebook:")
    for name, values in fixed.items():
        print(f"  {statistics.median(values):6.2f} s  {name}")
    print(
        "\nnbformat imports jsonschema, which imports rfc3987_syntax when it is installed (jupyter-events"
        "\nbrings it) and compiles a grammar at import; nbformat never checks IRI formats, so a process"
        "\nthat only runs/exports notebooks could set sys.modules['rfc3987_syntax'] = None first."
    )
    if failures:
        print("\nFAILED runs:", *sorted(set(failures)), sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
