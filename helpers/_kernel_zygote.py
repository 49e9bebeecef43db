"""The kernel zygote: one process does a notebook kernel's start-up once, then forks kernels.

Started by :mod:`helpers._warm_kernels` as ``python -m helpers._kernel_zygote FD``, the way
jupyter_client starts ``python -m ipykernel_launcher`` (no interpreter flags, the runner's
environment). It imports :mod:`helpers._kernel_warmup`, then serves requests on the socket ``FD``,
one JSON object per line:

- runner -> zygote: ``{"argv": [...], "cwd": "...", "env": {...}}``: fork a kernel, which becomes
  what ``python -m ipykernel_launcher ARGV`` started in ``cwd`` with ``env`` would be;
- zygote -> runner: ``{"started": PID}``, and once that kernel has ended ``{"exited": PID,
  "code": N}`` (``-SIGNAL`` if a signal ended it, as ``subprocess`` reports it).

The zygote exits when the runner closes the socket or dies; a kernel whose zygote has gone exits
too (ipykernel's parent poller watches the zygote).
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib.util
import json
import os
import selectors
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import NoReturn

_QUIET_BEFORE_LATER = 0.3  # seconds without a request before the second part of the warm-up


def main(argv: list[str]) -> NoReturn:
    # As ipykernel_launcher: no working-folder entry on sys.path (IPython adds '' back later).
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    environ_before = dict(os.environ)
    from helpers import _kernel_warmup  # the start-up every kernel would repeat

    # The warm heap goes to the collector's permanent generation (as Python's docs advise before
    # fork()): a kernel's collections, and IPython's at exit, then skip it instead of walking it and
    # so copying every page of it (about 0.6 s of CPU per kernel). The one difference a notebook can
    # see: gc's introspection (get_freeze_count, get_objects, get_referrers) leaves out, and the
    # collector never frees, what the warm-up made.
    gc.freeze()
    # variables the warm-up's imports set (debugpy sets some): a kernel would have set them too
    set_by_imports = _set_since(environ_before)
    control = socket.socket(fileno=int(argv[0]))
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD writes to wake_w
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    reader = control.makefile("rb")
    warm_later = True  # the rest of the warm-up, once requests pause (the first come together)
    while True:
        events = selector.select(timeout=_QUIET_BEFORE_LATER if warm_later else None)
        if not events and warm_later:
            _kernel_warmup.later()
            gc.freeze()
            set_by_imports = _set_since(environ_before)
            warm_later = False
            continue
        for key, _ in events:
            if key.fileobj is wake_r:
                os.read(wake_r, 4096)
                _report_exits(control)
                continue
            line = reader.readline()
            if not line:  # the runner has gone: so does the zygote
                _exit(0)
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                for fd in (wake_r, wake_w):
                    os.close(fd)
                reader.close()
                control.close()
                _become_kernel(request, set_by_imports)  # does not return
            _send(control, {"started": pid})


def _set_since(environ_before: dict[str, str]) -> dict[str, str]:
    """Environment variables set or changed since ``environ_before`` was taken."""
    return {k: v for k, v in os.environ.items() if environ_before.get(k) != v}


def _report_exits(control: socket.socket) -> None:
    """Reap every ended kernel and tell the runner how each ended."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(control, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(control: socket.socket, message: dict) -> None:
    control.sendall(json.dumps(message).encode() + b"\n")


def _become_kernel(request: dict, set_by_imports: dict[str, str]) -> NoReturn:
    """In the forked process: become the requested kernel, run it, and exit as a kernel exits."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()  # a process group of its own, as jupyter_client gives the kernels it launches
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update({**set_by_imports, **request["env"]})
    if "numpy.random" in sys.modules:  # numpy's global generator was seeded once, in the zygote
        sys.modules["numpy.random"].seed()
    if "multiprocessing" in sys.modules:  # its authentication key too (Python's own RNGs reseed)
        sys.modules["multiprocessing"].current_process().authkey = os.urandom(32)
    argv = list(request["argv"])
    sys.argv = [importlib.util.find_spec("ipykernel_launcher").origin, *argv]
    # ipykernel read JPY_PARENT_PID when the zygote imported it; it watches its parent process
    # (this zygote) and ends if it goes, as a kernel started by jupyter_client watches the runner
    from ipykernel import kernelapp

    try:
        kernelapp.launch_new_instance(argv=[*argv, f"--IPKernelApp.parent_handle={os.getppid()}"])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit(code)


def _exit(code: int) -> NoReturn:
    """End as the interpreter would: threading's exit hooks (``concurrent.futures`` stops its
    workers there) and a wait for non-daemon threads, the exit handlers (atexit, weakref finalizers),
    a flush; then skip tearing down, module by module, the warm-up's large heap (it takes a second
    or more, and nothing a notebook registered runs in it). Kernels and the zygote end this way."""
    # what the interpreter calls first on its way out (private, and called so by CPython 3.9-3.14)
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):  # a closed or detached stream: nothing to flush
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    main(sys.argv[1:])
