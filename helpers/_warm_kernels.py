"""Kernels forked from a warmed process, for running many notebooks at once (``make report``).

A notebook kernel spends about as long starting (Python, ipykernel, pandas, cryptography, boto3,
moto, the kit's data and lab PKI) as running a short notebook. :class:`WarmKernelManager` is
jupyter_client's ``AsyncKernelManager`` with one change: a local ``python -m ipykernel_launcher``
kernel of this interpreter is forked from the kernel zygote (:mod:`helpers._kernel_zygote`), a
process that has done that start-up once, instead of being started from nothing. Everything else
(connection files, messaging, interrupts, shutdown) is jupyter_client's. Any other kernel command,
and a zygote that cannot start, get jupyter_client's usual launch.

:func:`kill_kernels` ends every kernel the report's managers started (Ctrl-C: kernels run in
sessions of their own, so the terminal's interrupt does not reach them).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
import weakref
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

__all__ = ["TrackedKernelManager", "WarmKernelManager", "kill_kernels", "start_zygote"]

_ZYGOTE_START_TIMEOUT = 60.0  # seconds for the zygote's warm-up and first fork


class _Zygote:
    """This process's connection to the kernel zygote: fork requests, and the kernels' exit codes."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "helpers._kernel_zygote", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,  # kernels inherit it; their stdout and stderr are ours
        )
        theirs.close()
        self._socket = ours
        self._lock = threading.Lock()  # one fork request at a time
        self._changed = threading.Condition()
        self._started: list[int] = []
        self.exit_codes: dict[int, int] = {}
        self.connected = True
        threading.Thread(target=self._read, name="kernel-zygote", daemon=True).start()

    def _read(self) -> None:
        with self._socket.makefile("rb") as lines:
            for line in lines:
                message = json.loads(line)
                with self._changed:
                    if "started" in message:
                        self._started.append(message["started"])
                    else:
                        self.exit_codes[message["exited"]] = message["code"]
                    self._changed.notify_all()
        with self._changed:
            self.connected = False
            self._changed.notify_all()

    def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> int:
        """Fork a kernel; its pid. OSError if the zygote has gone or did not answer."""
        request = json.dumps({"argv": argv, "cwd": cwd, "env": env}).encode() + b"\n"
        with self._lock:
            if not self.connected:
                raise ConnectionError("the kernel zygote has exited")
            self._socket.sendall(request)
            with self._changed:
                if not self._changed.wait_for(
                    lambda: self._started or not self.connected, timeout=_ZYGOTE_START_TIMEOUT
                ):
                    raise TimeoutError(f"the kernel zygote did not fork within {_ZYGOTE_START_TIMEOUT:.0f} s")
                if not self._started:
                    raise ConnectionError("the kernel zygote exited (its warm-up failed?)")
                return self._started.pop(0)

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The kernel's exit code once it has ended (None if still running after ``timeout``)."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self.exit_codes or not self.connected, timeout)
            return self._exit_code(pid)

    def _exit_code(self, pid: int) -> int | None:
        if pid in self.exit_codes:
            return self.exit_codes[pid]
        if self.connected:
            return None
        try:  # the zygote is gone; its orphans are reaped by init: alive while the pid exists
            os.kill(pid, 0)
        except ProcessLookupError:
            return -signal.SIGKILL
        return None

    def poll(self, pid: int) -> int | None:
        with self._changed:
            return self._exit_code(pid)


_zygote: _Zygote | None = None
_zygote_lock = threading.Lock()


def start_zygote() -> _Zygote:
    """This process's kernel zygote, started on first use (it warms up while the caller goes on)."""
    global _zygote
    with _zygote_lock:
        if _zygote is None or _zygote.process.poll() is not None:
            _zygote = _Zygote()
        return _zygote


class _ForkedKernel:
    """The part of ``subprocess.Popen`` that jupyter_client's LocalProvisioner uses, for a kernel
    the zygote forked (its exit code comes from the zygote, which reaps it)."""

    stdin = stdout = stderr = None

    def __init__(self, zygote: _Zygote, pid: int) -> None:
        self._zygote, self.pid = zygote, pid

    @property
    def returncode(self) -> int | None:
        return self._zygote.poll(self.pid)

    def poll(self) -> int | None:
        return self._zygote.poll(self.pid)

    def wait(self, timeout: float | None = None) -> int:
        code = self._zygote.wait(self.pid, timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WarmProvisioner(LocalProvisioner):
    """LocalProvisioner that has this interpreter's ipykernel forked by the kernel zygote."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any):
        argv = _ipykernel_argv(cmd)
        if argv is None:
            return await super().launch_kernel(cmd, **kwargs)
        cwd = str(kwargs.get("cwd") or os.getcwd())
        env = dict(kwargs.get("env") or os.environ)
        if not kwargs.get("independent"):  # as jupyter_client's launcher sets it
            env["JPY_PARENT_PID"] = str(os.getpid())
        try:
            zygote = start_zygote()
            pid = zygote.fork(argv, cwd, env)
        except OSError as exc:  # the zygote could not start or warm up: launch as usual
            self.log.warning("warm kernel unavailable (%s); starting a new interpreter", exc)
            return await super().launch_kernel(cmd, **kwargs)
        self.process = _ForkedKernel(zygote, pid)
        self.pid = self.pgid = pid  # the kernel leads its own process group
        self.cwd = cwd
        return self.connection_info


def _ipykernel_argv(cmd: list[str]) -> list[str] | None:
    """The arguments after ``python -m ipykernel_launcher`` if ``cmd`` runs it with this interpreter."""
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    # jupyter_client has already replaced a kernelspec's bare "python" with sys.executable
    return cmd[3:] if os.path.realpath(cmd[0]) == os.path.realpath(sys.executable) else None


_managers: weakref.WeakSet[TrackedKernelManager] = weakref.WeakSet()


class TrackedKernelManager(AsyncKernelManager):
    """AsyncKernelManager whose kernels :func:`kill_kernels` can end."""

    async def _async_pre_start_kernel(self, **kw: Any):
        _managers.add(self)
        return await super()._async_pre_start_kernel(**kw)


class WarmKernelManager(TrackedKernelManager):
    """TrackedKernelManager launching through :class:`WarmProvisioner`."""

    async def _async_pre_start_kernel(self, **kw: Any):
        if self.provisioner is None:  # not None on restarts
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", None) or str(uuid.uuid4())
            self.provisioner = WarmProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)


def kill_kernels() -> int:
    """SIGKILL the process group of every running kernel the tracked managers started; how many."""
    killed = 0
    for manager in list(_managers):
        provisioner = manager.provisioner
        process = getattr(provisioner, "process", None)
        pgid = getattr(provisioner, "pgid", None)
        if pgid and process is not None and process.poll() is None:
            try:
                os.killpg(pgid, signal.SIGKILL)
                killed += 1
            except OSError:  # already gone
                pass
    return killed
