"""The start-up every notebook kernel repeats, done once: imported by the kernel zygote behind
``make report`` (:mod:`helpers._kernel_zygote`) before any kernel is forked from it.

Importing it imports ipykernel, the kit and the libraries behind it, and builds the kit's
per-process caches (the certifi data, the lab's twin PKI, moto's server application); :func:`later`
imports what only some notebooks use. Neither leaves a thread running or a socket or file open:
processes are forked from the state they leave.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import ipykernel.ipkernel  # noqa: F401 - imported for the kernels forked from here
import ipykernel.kernelapp  # noqa: F401
import ipykernel.zmqshell  # noqa: F401
import IPython.core.completer  # noqa: F401
import pandas as pd

from helpers import _lab_twins, bundles, chains, endpoints, lab, report, upgrade  # noqa: F401


def _check_no_threads() -> None:
    if threading.active_count() != 1:  # forking a process with other threads running is unsafe
        raise RuntimeError(f"kernel warm-up left threads running: {threading.enumerate()}")


def later() -> None:
    """The second part of the warm-up, for the zygote to do once it has forked the first kernels:
    what only some notebooks use (matplotlib: notebook 02), off the report's start-up path."""
    # matplotlib reads MPLBACKEND on import; a kernel has it set (ipykernel sets its inline
    # backend unless MPLBACKEND names another) before any notebook imports matplotlib.
    if "matplotlib" in sys.modules:
        return
    inline = not os.environ.get("MPLBACKEND")
    if inline:
        os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        import matplotlib.pyplot  # noqa: F401
    finally:
        if inline:
            del os.environ["MPLBACKEND"]
    _check_no_threads()


# ipykernel imports its debugger (debugpy) when a kernel starts; debugpy warns on import about
# frozen modules unless told not to, to a stream the kernel would have swallowed.
_quiet = "PYDEVD_DISABLE_FILE_VALIDATION" not in os.environ
if _quiet:
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
import ipykernel.debugger  # noqa: E402, F401

if _quiet:
    del os.environ["PYDEVD_DISABLE_FILE_VALIDATION"]

# pandas sets this default on import from whether it runs in a Jupyter kernel (20) or a terminal
# (0: fit the terminal); imported here, outside any kernel, it would take the terminal's.
pd.set_option("display.max_columns", 20)


def _warm_up_the_lab() -> None:
    """moto's application and the lab's twin PKI, side by side: the PKI's RSA keys are made without
    holding the GIL, on a core that importing moto leaves idle."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="warm-up") as pool:
        # the twin CAs and server certificates (the certifi data they may read is loaded already)
        leaves = pool.submit(lambda: _lab_twins.pki().leaves(lab.DEFAULT_REGION))
        lab._moto_dispatcher()  # moto's server application (imports moto's core), its routes built
        lab._server_classes()  # werkzeug's server and moto's request handler
        leaves.result()  # re-raises what went wrong there
    lab._installed_view()  # the lab's trust view of the installed certifi


bundles.history()  # the certifi data, parsed and indexed
_warm_up_the_lab()
_check_no_threads()
