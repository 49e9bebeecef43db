"""The start-up every notebook kernel repeats, done once: imported by the kernel zygote behind
``make report`` (:mod:`helpers._kernel_zygote`) before any kernel is forked from it.

It imports ipykernel, the kit and the libraries behind it (matplotlib included), and builds the
kit's per-process caches (the certifi data, the lab's twin PKI, moto's server application). It
starts no thread and leaves no socket or file open: processes are forked from the state it leaves.
"""

from __future__ import annotations

import os
import sys
import threading

import ipykernel.ipkernel  # noqa: F401 - imported for the kernels forked from here
import ipykernel.kernelapp  # noqa: F401
import ipykernel.zmqshell  # noqa: F401
import IPython.core.completer  # noqa: F401
import pandas as pd

from helpers import _lab_twins, bundles, chains, endpoints, lab, report, upgrade  # noqa: F401

# ipykernel imports its debugger (debugpy) when a kernel starts; debugpy warns on import about
# frozen modules unless told not to, to a stream the kernel would have swallowed.
_quiet = "PYDEVD_DISABLE_FILE_VALIDATION" not in os.environ
if _quiet:
    os.environ["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
import ipykernel.debugger  # noqa: E402, F401

if _quiet:
    del os.environ["PYDEVD_DISABLE_FILE_VALIDATION"]

# matplotlib reads MPLBACKEND on import; a kernel has it set (ipykernel sets its inline backend
# unless MPLBACKEND names another) before any notebook imports matplotlib.
if "matplotlib" in sys.modules:  # imported above without the kernel's backend: warm-up is wrong
    raise RuntimeError("matplotlib was imported before the kernel's MPLBACKEND was set")
_inline = not os.environ.get("MPLBACKEND")
if _inline:
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
import matplotlib.pyplot  # noqa: E402, F401

if _inline:
    del os.environ["MPLBACKEND"]


# pandas sets this default on import from whether it runs in a Jupyter kernel (20) or a terminal
# (0: fit the terminal); imported here, outside any kernel, it would take the terminal's.
pd.set_option("display.max_columns", 20)

bundles.history()  # the certifi data, parsed and indexed
_lab_twins.pki().leaves(lab.DEFAULT_REGION)  # the lab's twin CAs and server certificates (RSA keys)
lab._installed_view()  # the lab's trust view of the installed certifi
lab._moto_dispatcher()  # moto's server application (imports moto's core)
lab._server_classes()  # werkzeug's server and moto's request handler

if threading.active_count() != 1:  # forking a process with other threads running is unsafe
    raise RuntimeError(f"kernel warm-up left threads running: {threading.enumerate()}")
