"""Kernels forked by the kernel zygote behave as kernels started from nothing, and go away with
the program that started them.

A probe notebook records what a notebook can observe of its kernel (working folder, sys.path,
argv, environment, pandas' and matplotlib's defaults, process group, signals, multiprocessing);
a cold kernel and a warm one must record the same. Each test drives the runner from a new
interpreter (``python -c``, or a main script), as ``make report`` does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest

from helpers import _warm_kernels, runner

PROBE = r"""
import json, multiprocessing, os, signal, sys
import numpy as np
import pandas as pd

def square(x):
    return x * x

with multiprocessing.Pool(2) as pool:  # a function defined in the notebook, in worker processes
    squares = pool.map(square, [1, 2, 3])
state = {
    "cwd": os.getcwd(),
    "sys_path": sys.path,
    "argv": [os.path.basename(sys.argv[0]), *sys.argv[1:2]],
    "parent_pid_env": os.environ.get("JPY_PARENT_PID"),
    "probe_env": os.environ.get("ATSKIT_PROBE"),
    "own_process_group": os.getpgid(0) == os.getpid(),
    "sigint": getattr(signal.getsignal(signal.SIGINT), "__name__", str(signal.getsignal(signal.SIGINT))),
    "pandas_display": {
        name: repr(pd.get_option("display." + name))
        for name in ("max_columns", "max_rows", "width", "max_colwidth", "expand_frame_repr")
    },
    "main_module": sys.modules["__main__"].__name__,
    "multiprocessing": [multiprocessing.current_process().name, multiprocessing.parent_process() is None,
                        multiprocessing.get_start_method(), squares],
}
import gc, weakref
class Node: pass
node = Node(); node.itself = node  # a reference cycle only the garbage collector can free
gone = weakref.ref(node)
del node
gc.collect()
state["gc"] = [gc.isenabled(), gone() is None]
state["gc_frozen"] = gc.get_freeze_count() > 0
import matplotlib, matplotlib.pyplot as plt
plt.plot([1, 2])
plt.show()
state["matplotlib_backend"] = matplotlib.get_backend()
from concurrent.futures import ThreadPoolExecutor
executor = ThreadPoolExecutor(1)  # left open: its idle worker must not keep the kernel from exiting
executor.submit(int).result()
import atexit
atexit.register(lambda: open(f"exited-{mode}-{os.getpid()}", "w").close())
print("STATE " + json.dumps(state))
print("PPID", os.getppid())
print("RANDOM", np.random.rand(), multiprocessing.current_process().authkey.hex())
"""

# A runner in a new interpreter: executes the notebooks given, prints one JSON line per notebook.
DRIVER = """
import json, os, sys
from pathlib import Path
with open(os.environ["DRIVER_RUNS"], "a") as runs:  # how many times this program ran
    runs.write("run\\n")
from helpers import runner
out, mode, *notebooks = sys.argv[1:]
for notebook in notebooks:
    run = runner.execute(Path(notebook), Path(out), html=False, parameters={"mode": mode},
                         warm_kernel=mode == "warm")
    print(json.dumps({"ok": run.ok, "error": run.error, "ipynb": str(run.output_ipynb),
                      "pid": os.getpid()}), flush=True)
"""


def _notebook(folder, name: str, *sources: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('mode = "cold"', metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
    path = folder / name
    nbformat.write(nb, path)
    return path


def _drive(out, mode, *notebooks, script=None) -> list[dict]:
    """Run the driver (``python -c``, or ``script`` as a main script without a main guard)."""
    if script is None:
        command = [sys.executable, "-c", DRIVER]
    else:
        script.write_text(DRIVER)
        command = [sys.executable, str(script)]
    proc = subprocess.run(
        [*command, str(out), mode, *map(str, notebooks)], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    for result in results:
        if result["ok"]:
            nb = nbformat.read(result["ipynb"], as_version=4)
            text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
            result["figures"] = sum("image/png" in o.get("data", {}) for o in nb.cells[-1].outputs)
            result["state"] = json.loads(text.split("STATE ", 1)[1].splitlines()[0])
            result["kernel_ppid"] = int(text.split("PPID ", 1)[1].split()[0])
            result["random"] = text.split("RANDOM ", 1)[1].split()
    return results


@pytest.fixture()
def folder(tmp_path, monkeypatch):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    monkeypatch.setenv("ATSKIT_PROBE", "passed through")
    monkeypatch.setenv("DRIVER_RUNS", str(tmp_path / "driver-runs.txt"))
    return notebooks


def test_a_warm_kernel_observes_what_a_cold_one_does(folder, tmp_path):
    notebook = _notebook(folder, "98-probe.ipynb", PROBE)
    [cold] = _drive(tmp_path / "cold", "cold", notebook)
    # the second is forked after the zygote's later warm-up (matplotlib imported)
    warm, warm_later = _drive(tmp_path / "warm", "warm", notebook, _notebook(folder, "99-probe.ipynb", PROBE))
    assert cold["ok"] and warm["ok"] and warm_later["ok"], (cold["error"], warm["error"], warm_later["error"])
    assert warm["kernel_ppid"] != warm["pid"]  # forked by the zygote the driver started
    assert cold["kernel_ppid"] == cold["pid"]  # started by the driver, as jupyter_client does
    # the same kernel as far as a notebook can tell (the driver's pid aside)
    for result in (cold, warm, warm_later):
        assert result["state"].pop("parent_pid_env") == str(result["pid"])
    # the one difference: the warm-up's objects are frozen (out of the collector's reach)
    assert [r["state"].pop("gc_frozen") for r in (cold, warm, warm_later)] == [False, True, True]
    assert warm["state"] == cold["state"]
    assert warm_later["state"] == cold["state"]
    assert warm_later["figures"] == 1
    assert cold["state"]["cwd"] == str(folder)  # the kernel starts in the notebook's folder
    assert cold["state"]["probe_env"] == "passed through" and cold["state"]["own_process_group"]
    assert cold["state"]["pandas_display"]["max_columns"] == "20"  # pandas' default in a kernel
    assert cold["state"]["multiprocessing"] == ["MainProcess", True, "fork", [1, 4, 9]]
    assert cold["state"]["gc"] == [True, True]  # a notebook's garbage is collected (the warm-up's frozen)
    assert "inline" in cold["state"]["matplotlib_backend"]
    assert cold["figures"] == warm["figures"] == 1  # the plot shows inline in both
    # every kernel ran the exit handlers its notebook registered, when it shut down
    assert len(list(folder.glob("exited-cold-*"))) == 1 and len(list(folder.glob("exited-warm-*"))) == 2


def test_kernels_forked_by_one_zygote_do_not_share_random_state(folder, tmp_path):
    first = _notebook(folder, "01-probe.ipynb", PROBE)
    second = _notebook(folder, "02-probe.ipynb", PROBE)
    results = _drive(tmp_path / "out", "warm", first, second)
    assert [r["ok"] for r in results] == [True, True], [r["error"] for r in results]
    assert results[0]["kernel_ppid"] == results[1]["kernel_ppid"]  # the same zygote forked both
    numpy_values, authkeys = zip(*(r["random"] for r in results), strict=True)
    assert numpy_values[0] != numpy_values[1]  # numpy's global generator is reseeded
    assert authkeys[0] != authkeys[1]  # so is multiprocessing's key


def test_a_main_script_without_a_guard_gets_warm_kernels_and_runs_once(folder, tmp_path):
    notebook = _notebook(folder, "99-probe.ipynb", PROBE)
    [result] = _drive(tmp_path / "out", "warm", notebook, script=tmp_path / "driver.py")
    assert result["ok"], result["error"]
    assert result["kernel_ppid"] != result["pid"]
    assert (tmp_path / "driver-runs.txt").read_text() == "run\n"  # the kernel did not re-run it


def test_warm_kernels_report_expected_and_unexpected_errors(folder, tmp_path):
    notebook = _notebook(
        folder,
        "98-errors.ipynb",
        "1 / 0",
        "raise KeyError('not tagged')",
    )
    nb = nbformat.read(notebook, as_version=4)
    nb.cells[1].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, notebook)
    [result] = _drive(tmp_path / "out", "warm", notebook)
    assert not result["ok"]
    assert result["error"] == "KeyError: 'not tagged' (cell 4)"  # after papermill's injected cell


def test_a_zygote_that_cannot_fork_falls_back_to_starting_the_kernel(folder, tmp_path, monkeypatch):
    def broken():
        raise ConnectionError("the kernel zygote has exited")

    monkeypatch.setattr(_warm_kernels, "start_zygote", broken)
    notebook = _notebook(folder, "99-probe.ipynb", "import os; print('PPID', os.getppid())")
    run = runner.execute(notebook, tmp_path / "out", html=False, warm_kernel=True)
    assert run.ok, run.error
    nb = nbformat.read(run.output_ipynb, as_version=4)
    assert f"PPID {os.getpid()}" in nb.cells[-1].outputs[0]["text"]  # started here, as usual


SLEEPER = """
import os, pathlib, time
pathlib.Path("pids").write_text(f"{os.getpid()} {os.getppid()}")
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie has ended
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
@pytest.mark.parametrize("how", ["finish", "interrupt", "kill"])
def test_kernels_and_zygote_end_with_the_runner(folder, tmp_path, how):
    """Finished: the zygote exits. Ctrl-C: the runner ends its kernels and exits 130. SIGKILL:
    zygote and kernels follow it."""
    sleeper = SLEEPER.replace("time.sleep(120)", "") if how == "finish" else SLEEPER
    _notebook(folder, "01-sleeps.ipynb", sleeper)
    _notebook(folder, "02-queued.ipynb", "print('queued: runs only if the runner is not stopped')")
    code = (
        "import sys\nfrom helpers import runner\n"
        "try:\n    runner.run_all(sys.argv[1], notebooks_dir=__import__('pathlib').Path(sys.argv[2]),"
        " workers=1, quiet=True)\nexcept KeyboardInterrupt:\n    sys.exit(130)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out"), str(folder)])
    try:
        assert _wait_for(lambda: (folder / "pids").exists(), 60), "the notebook did not start"
        kernel, zygote = map(int, (folder / "pids").read_text().split())
        if how != "finish":
            proc.send_signal(signal.SIGINT if how == "interrupt" else signal.SIGKILL)
        code = proc.wait(timeout=60)
        assert code == {"finish": 0, "interrupt": 130, "kill": -signal.SIGKILL}[how]
        assert _wait_for(lambda: not _alive(kernel), 15), "the kernel outlived the runner"
        assert _wait_for(lambda: not _alive(zygote), 15), "the zygote outlived the runner"
        # queued notebooks are dropped when interrupted
        assert (tmp_path / "out" / "02-queued.ipynb").exists() == (how == "finish")
    finally:
        proc.kill()


@pytest.mark.parametrize(
    ("cmd", "argv"),
    [
        ([sys.executable, "-m", "ipykernel_launcher", "-f", "c.json"], ["-f", "c.json"]),
        (["/opt/other/python", "-m", "ipykernel_launcher", "-f", "c.json"], None),
        ([sys.executable, "-m", "some_other_kernel", "-f", "c.json"], None),
        (["R", "--slave"], None),
    ],
)
def test_only_this_interpreters_ipykernel_is_forked(cmd, argv):
    assert _warm_kernels._ipykernel_argv(cmd) == argv
