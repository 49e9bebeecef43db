"""Kernels forked from the warmed fork server behave as kernels started from nothing.

A probe notebook records what a notebook can observe of its kernel (working folder, sys.path,
argv, environment, pandas' display options, process group, signal handling); a cold kernel and a
warm one must record the same. Whether the kernel really was forked is checked too (its parent
is the fork server, not this process).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat
import pytest

from helpers import _warm_kernels, runner

PROBE = r"""
import json, os, signal, sys
import pandas as pd
state = {
    "cwd": os.getcwd(),
    "sys_path": sys.path,
    "argv0": os.path.basename(sys.argv[0]),
    "parent_pid_env": os.environ.get("JPY_PARENT_PID"),
    "probe_env": os.environ.get("ATSKIT_PROBE"),
    "own_process_group": os.getpgid(0) == os.getpid(),
    "sigint": getattr(signal.getsignal(signal.SIGINT), "__name__", str(signal.getsignal(signal.SIGINT))),
    "pandas_display": {
        name: repr(pd.get_option("display." + name))
        for name in ("max_columns", "max_rows", "width", "max_colwidth", "expand_frame_repr")
    },
    "main_module": sys.modules["__main__"].__name__,
    "stdin_is_tty": sys.stdin.isatty() if sys.stdin else None,
}
import atexit
atexit.register(lambda: open("exited-" + mode, "w").close())
print("STATE " + json.dumps(state))
print("PPID", os.getppid())
"""


def _probe_notebook(folder):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('mode = "cold"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(PROBE),
    ]
    path = folder / "99-probe.ipynb"
    nbformat.write(nb, path)
    return path


# Runs one notebook from a new interpreter and prints what happened: the kernel path chosen
# depends on how the program was started, so each test starts its own.
DRIVER = """
import json, os, sys
from pathlib import Path
from helpers import runner
notebook, out, mode = sys.argv[1:4]
run = runner.execute(Path(notebook), Path(out), html=False, parameters={"mode": mode},
                     warm_kernel=mode == "warm")
print(json.dumps({"ok": run.ok, "error": run.error, "ipynb": str(run.output_ipynb), "pid": os.getpid()}))
"""


def _drive(notebook, out, mode, *, as_script=None) -> dict:
    """Execute ``notebook`` from a new ``python -c`` (or, given ``as_script``, a main script)."""
    if as_script is None:
        command = [sys.executable, "-c", DRIVER]
    else:
        as_script.write_text(DRIVER)  # no ``if __name__ == "__main__"`` guard, as in many scripts
        command = [sys.executable, str(as_script)]
    proc = subprocess.run(
        [*command, str(notebook), str(out), mode], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if result["ok"]:
        nb = nbformat.read(result["ipynb"], as_version=4)
        text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
        result["state"] = json.loads(text.split("STATE ", 1)[1].splitlines()[0])
        result["kernel_ppid"] = int(text.split("PPID ", 1)[1].split()[0])
    return result


@pytest.fixture()
def probe_folder(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setenv("ATSKIT_PROBE", "passed through")
    return folder


def test_a_warm_kernel_observes_what_a_cold_one_does(probe_folder, tmp_path):
    notebook = _probe_notebook(probe_folder)
    cold = _drive(notebook, tmp_path / "cold", "cold")
    warm = _drive(notebook, tmp_path / "warm", "warm")
    assert cold["ok"] and warm["ok"], (cold["error"], warm["error"])
    assert warm["kernel_ppid"] != warm["pid"]  # forked by the fork server the driver started
    assert cold["kernel_ppid"] == cold["pid"]  # started by the driver, as jupyter_client does
    # the same kernel as far as a notebook can tell (the driver's pid aside)
    assert warm["state"]["parent_pid_env"] == str(warm["pid"])
    assert cold["state"]["parent_pid_env"] == str(cold["pid"])
    for result in (cold, warm):
        del result["state"]["parent_pid_env"]
    assert warm["state"] == cold["state"]
    assert cold["state"]["cwd"] == str(probe_folder)  # the kernel starts in the notebook's folder
    assert cold["state"]["probe_env"] == "passed through" and cold["state"]["own_process_group"]
    assert cold["state"]["pandas_display"]["max_columns"] == "20"  # pandas' default in a kernel
    # both ran the exit handlers the notebook registered, when their kernel shut down
    assert (probe_folder / "exited-cold").exists() and (probe_folder / "exited-warm").exists()


def test_a_main_script_gets_kernels_started_as_usual(probe_folder, tmp_path):
    """multiprocessing would re-run the (unguarded) script in a forked kernel: none is forked."""
    notebook = _probe_notebook(probe_folder)
    result = _drive(notebook, tmp_path / "out", "warm", as_script=tmp_path / "driver.py")
    assert result["ok"], result["error"]
    assert result["kernel_ppid"] == result["pid"]


def test_warm_kernels_report_expected_and_unexpected_errors(probe_folder, tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('mode = "cold"', metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("1 / 0", metadata={"tags": ["raises-exception"]}),
        nbformat.v4.new_code_cell("raise KeyError('not tagged')"),
    ]
    path = probe_folder / "98-errors.ipynb"
    nbformat.write(nb, path)
    result = _drive(path, tmp_path / "out", "warm")
    assert not result["ok"]
    assert result["error"] == "KeyError: 'not tagged' (cell 4)"  # after papermill's injected cell


def test_a_failed_fork_server_falls_back_to_starting_the_kernel(probe_folder, tmp_path, monkeypatch):
    class Broken:
        def Process(self, **_):  # noqa: N802 - multiprocessing's name
            raise ConnectionRefusedError("fork server gone")

    monkeypatch.setattr(_warm_kernels, "_fork_context", lambda: Broken())
    monkeypatch.setattr(_warm_kernels, "_main_script_reruns", lambda: False)
    notebook = _probe_notebook(probe_folder)
    run = runner.execute(notebook, tmp_path / "out", html=False, warm_kernel=True)
    assert run.ok, run.error
    nb = nbformat.read(run.output_ipynb, as_version=4)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs)
    assert f"PPID {os.getpid()}" in text  # started by this process, as jupyter_client does


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
