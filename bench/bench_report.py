"""How long `make report` takes (every notebook, executed and exported), and where the time goes.

Prints medians over --repeat runs (default 3), the runs of each kind interleaved, of:
- the report as `make report` runs it: ``python -m helpers run-notebooks`` in a new process (notebooks
  side by side, kernels forked by the kit's warmed kernel zygote) - the figure the target is about;
- baselines from the same run: the same with kernels started as Jupyter starts them (side by side,
  then one at a time); their ratios;
- each notebook's own time (execution + HTML export), warm and cold, from those runs;
- the CPU seconds of a report by process: the runner, the zygote, the kernels, processes notebooks
  start (read from /proc while the report runs);
- fixed costs: a kernel start with an empty notebook (cold, and forked by a warm zygote),
  the zygote's warm-up (``import helpers._kernel_warmup`` in a new interpreter), exporting one
  notebook to HTML.
Target: the whole report in at most 15 s on a 2-core machine. The machine's own speed is printed
too (a fixed pure-Python loop, before and after): on a shared virtual machine it can change by half
or more within minutes, and every figure here moves with it; compare figures from one run.

Usage: .venv/bin/python bench/bench_report.py [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 15.0

# A new interpreter running the report.
_RUN_ALL = """
import json, sys, time
started = time.perf_counter()
from helpers import runner
runs = runner.run_all(sys.argv[1], workers=int(sys.argv[2]), warm_kernels=sys.argv[3] == "warm", quiet=True)
print(json.dumps({"total": time.perf_counter() - started, "failed": [r.line() for r in runs if not r.ok],
                  "seconds": {r.notebook: r.seconds for r in runs}}))
"""

_EMPTY_KERNEL = """
import json, sys, tempfile, time
from pathlib import Path
import nbformat
from helpers import runner
from helpers._warm_kernels import start_zygote
nb = nbformat.v4.new_notebook()
nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]})]
folder = Path(tempfile.mkdtemp())
nbformat.write(nb, folder / "00-empty.ipynb")
warm = sys.argv[1] == "warm"
if warm:  # a warm zygote, as after the report's first notebook
    start_zygote()
    runner.execute(folder / "00-empty.ipynb", folder / "first", html=False, warm_kernel=True)
started = time.perf_counter()
run = runner.execute(folder / "00-empty.ipynb", folder / "out", html=False, warm_kernel=warm)
print(json.dumps({"total": time.perf_counter() - started, "failed": [] if run.ok else [run.line()]}))
"""


_WARM_UP = """
import json, time
started = time.perf_counter()
import helpers._kernel_warmup
print(json.dumps({"total": time.perf_counter() - started}))
"""


def _python(code: str, *args: str) -> dict:
    """Run ``code`` in a new interpreter from the project root; its last stdout line as JSON."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _command_seconds(*command: str) -> float:
    """Wall time of a command run from the project root (it must succeed)."""
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - started


def _run_sampling_cpu(command: list[str]) -> tuple[float, str, dict[str, float]]:
    """Run ``command`` from the project root (it must succeed): wall seconds, stdout, and the CPU
    seconds of its processes by role (runner, zygote, kernels, other), read from /proc every 0.1 s
    (a process's last 0.1 s can be missed; empty where there is no /proc)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    seen: dict[int, tuple[int, float, str]] = {}  # pid -> (parent pid, CPU seconds, command line)
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as stdout:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=subprocess.DEVNULL, text=True)
        while proc.poll() is None:
            for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text() if entry.isdigit() else ""
                    cmdline = Path(f"/proc/{entry}/cmdline").read_text() if stat else ""
                except OSError:  # it has just ended
                    continue
                if stat:
                    fields = stat.rsplit(")", 1)[1].split()
                    seen[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks, cmdline)
            time.sleep(0.1)
        seconds_taken = time.perf_counter() - started
        stdout.seek(0)
        output = stdout.read()
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, command, output)
    cpu: dict[str, float] = {}
    roles = {proc.pid: "runner"}
    for pid, (parent, seconds, cmdline) in sorted(seen.items(), key=lambda item: item[0]):
        if pid in roles:
            role = roles[pid]
        elif roles.get(parent) == "runner" and "_kernel_zygote" in cmdline:
            role = "zygote (warm-up, forks)"
        elif roles.get(parent, "").startswith("zygote"):
            role = "kernels"
        elif parent in roles:
            role = "other (processes notebooks start)"
        else:
            continue
        roles[pid] = role
        cpu[role] = cpu.get(role, 0.0) + seconds
    return seconds_taken, output, cpu


def _html_export(executed_ipynb: Path) -> float:
    """Exporting one executed notebook to HTML in a new interpreter, as the runner does (nbconvert
    import included; the interpreter's start and exit are not)."""
    code = (
        "import json, sys, tempfile, shutil, time; from pathlib import Path; started = time.perf_counter(); "
        "from helpers import runner; d = Path(tempfile.mkdtemp()); p = d / 'x.ipynb'; "
        "shutil.copy(sys.argv[1], p); runner._export_html(p); "
        "print(json.dumps({'total': time.perf_counter() - started}))"
    )
    return _python(code, str(executed_ipynb))["total"]


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

    kinds = {
        "make report (python -m helpers run-notebooks)": None,
        "cold kernels, side by side": ("cold", 0),  # 0: the runner's default number at a time
        "cold kernels, one at a time": ("cold", 1),
    }
    totals = {kind: [] for kind in kinds}
    per_notebook: dict[str, dict[str, list[float]]] = {"warm": {}, "cold": {}}
    failures: list[str] = []
    html_timings: list[float] = []
    cpu_by_role: dict[str, list[float]] = {}
    html_name = ""
    for _ in range(args.repeat):
        for kind, how in kinds.items():
            with tempfile.TemporaryDirectory() as out:
                executed = Path(out)
                if how is None:
                    command = [sys.executable, "-m", "helpers", "run-notebooks", "--json", "--out", out]
                    seconds_taken, stdout, cpu = _run_sampling_cpu(command)
                    totals[kind].append(seconds_taken)
                    for role, value in cpu.items():
                        cpu_by_role.setdefault(role, []).append(value)
                    result = json.loads(stdout)
                    failures += [n["notebook"] for n in result["notebooks"] if not n["ok"]]
                    seconds = {n["notebook"]: n["seconds"] for n in result["notebooks"]}
                    mode = "warm"
                else:
                    mode, at_once = how
                    result = _python(_RUN_ALL, out, str(at_once), mode)
                    totals[kind].append(result["total"])
                    failures += result["failed"]
                    seconds = result["seconds"]
                for name, value in seconds.items():
                    per_notebook[mode].setdefault(name, []).append(value)
                if not html_timings and how is None:  # the largest executed notebook, exported again
                    largest = max(executed.glob("*.ipynb"), key=lambda path: path.stat().st_size)
                    html_timings += [_html_export(largest) for _ in range(args.repeat)]
                    html_name = largest.stem

    fixed = {
        "empty notebook, kernel started (cold)": [
            _python(_EMPTY_KERNEL, "cold")["total"] for _ in range(args.repeat)
        ],
        "empty notebook, kernel forked by the warm zygote": [
            _python(_EMPTY_KERNEL, "warm")["total"] for _ in range(args.repeat)
        ],
        "zygote warm-up: import helpers._kernel_warmup (in a new interpreter)": [
            _python(_WARM_UP)["total"] for _ in range(args.repeat)
        ],
        "python -c pass (interpreter floor)": [
            _command_seconds(sys.executable, "-c", "pass") for _ in range(args.repeat)
        ],
        f"HTML export of the executed {html_name} (in a new interpreter)": html_timings,
    }

    speed_after = _speed_reference()
    medians = {kind: statistics.median(values) for kind, values in totals.items()}
    report = medians["make report (python -m helpers run-notebooks)"]
    print()
    for kind, value in medians.items():
        ratio = "" if value == report else f"   {value / report:.2f}x the report's time"
        print(f"{value:6.1f} s  {kind}{ratio}")
    verdict = "met" if report <= TARGET_SECONDS else "NOT met"
    print(f"target: make report <= {TARGET_SECONDS:.0f} s: {verdict}")
    print("\nper notebook (execution + HTML export; warm = make report, cold = kernels started):")
    for name in sorted(per_notebook["warm"]):
        warm, cold = (statistics.median(per_notebook[m][name]) for m in ("warm", "cold"))
        print(f"  {warm:5.1f} s warm  {cold:5.1f} s cold  {name}")
    if cpu_by_role:
        print("\nCPU of make report, by process (sampled from /proc every 0.1 s):")
        for role, values in cpu_by_role.items():
            print(f"  {statistics.median(values):5.1f} s  {role}")
    print(f"\nmachine speed reference (fixed loop): {speed_before:.2f} s before, {speed_after:.2f} s after")
    print("\nfixed costs:")
    for name, values in fixed.items():
        print(f"  {statistics.median(values):6.2f} s  {name}")
    if failures:
        print("\nFAILED runs:", *sorted(set(failures)), sep="\n  ")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
