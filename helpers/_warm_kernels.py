"""Kernels forked from a warmed process, for running many notebooks at once (``make report``).

A notebook kernel spends about as long starting (Python, ipykernel, pandas, cryptography, boto3,
moto, the kit's data and lab PKI) as running a short notebook. :class:`WarmKernelManager` is
jupyter_client's ``AsyncKernelManager`` with one change: a local ``python -m ipykernel_launcher``
kernel of this interpreter is forked from a :mod:`multiprocessing` fork server that has imported
:mod:`helpers._kernel_warmup` once, instead of being started from nothing. Everything else
(connection files, messaging, interrupts, shutdown) is jupyter_client's.

jupyter_client's usual launch is kept for any other kernel command, when the fork server cannot
start, and when this program's main module is a script (``python script.py``): multiprocessing
re-runs a main script in every process it forks, which a kernel must not do. ``python -m package``,
``python -c`` and interactive sessions fork.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import multiprocessing
import os
import signal
import subprocess
import sys
import uuid
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

__all__ = ["WarmKernelManager", "start_fork_server"]

_WARMUP_MODULE = "helpers._kernel_warmup"


@functools.cache
def _fork_context() -> multiprocessing.context.ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([_WARMUP_MODULE])
    return context


def start_fork_server() -> None:
    """Start the fork server now: it warms up in the background while the caller goes on."""
    from multiprocessing import forkserver

    _fork_context()
    forkserver.ensure_running()


class _ForkedKernel:
    """The part of ``subprocess.Popen`` that jupyter_client's LocalProvisioner uses, for a kernel
    forked from the fork server (not a child of this process: it is polled through
    :mod:`multiprocessing`)."""

    stdin = stdout = stderr = None

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _kernel_main(argv: list[str], cwd: str, env: dict[str, str]) -> None:
    """In the forked process: become what ``python -m ipykernel_launcher ARGV`` would be, then run.

    multiprocessing has given this process its parent's sys.path, argv and working folder (it
    assumes a continuation of the parent program); a kernel gets a new interpreter's instead.
    """
    os.setsid()  # a process group of its own, as jupyter_client gives the kernels it launches
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    warmup = sys.modules.get(_WARMUP_MODULE)
    fresh_path = warmup.FRESH_SYS_PATH if warmup else sys.path
    sys.path[:] = [p for p in fresh_path if p != ""]  # ipykernel_launcher drops the '' entry
    # IPKernelApp read JPY_PARENT_PID when the fork server imported it: give it this kernel's
    if os.environ.get("JPY_PARENT_PID"):
        argv = [*argv, f"--IPKernelApp.parent_handle={os.environ['JPY_PARENT_PID']}"]
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *argv]
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance(argv=argv)
    finally:  # multiprocessing ends its processes with os._exit: run what the kernel registered
        atexit._run_exitfuncs()


class WarmProvisioner(LocalProvisioner):
    """LocalProvisioner that forks this interpreter's ipykernel from the warmed fork server."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        argv = _ipykernel_argv(cmd)
        if argv is None or _main_script_reruns():
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = dict(kwargs.get("env") or os.environ)
        if not kwargs.get("independent"):  # as jupyter_client's launcher: the kernel watches us
            env["JPY_PARENT_PID"] = str(os.getpid())
        try:
            process = _fork_context().Process(target=_kernel_main, args=(argv, cwd, env), name="ipykernel")
            process.start()
        except Exception as exc:  # the fork server failed (its warm-up raised, ...): launch as usual
            self.log.warning("warm kernel unavailable (%s); starting a new interpreter", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = _ForkedKernel(process)
        self.pid = self.pgid = process.pid
        self.cwd = cwd
        return self.connection_info


def _main_script_reruns() -> bool:
    """Whether multiprocessing would re-run this program's main module in a forked process.

    It does (``spawn.prepare``) for a main script, and for ``python -m module`` unless the module
    is a package's ``__main__``; it does not for ``-c``, an interactive session, or a main named
    ``ipython``.
    """
    main = sys.modules.get("__main__")
    spec_name = getattr(getattr(main, "__spec__", None), "name", None)
    if spec_name is not None:
        return not (spec_name == "__main__" or spec_name.endswith(".__main__"))
    main_path = getattr(main, "__file__", None)
    if main_path is None:
        return False
    return os.path.splitext(os.path.basename(main_path))[0] != "ipython"


def _ipykernel_argv(cmd: list[str]) -> list[str] | None:
    """The arguments after ``python -m ipykernel_launcher`` if ``cmd`` runs it with this interpreter."""
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    # jupyter_client has already replaced a kernelspec's bare "python" with sys.executable
    return cmd[3:] if os.path.realpath(cmd[0]) == os.path.realpath(sys.executable) else None


class WarmKernelManager(AsyncKernelManager):
    """jupyter_client's AsyncKernelManager, launching through :class:`WarmProvisioner`."""

    async def _async_pre_start_kernel(self, **kw: Any):
        if self.provisioner is None:  # not None on restarts
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            self.provisioner = WarmProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)
