"""Execute the kit's notebooks with papermill and export them as HTML (the ``make report`` job).

Each notebook runs on an ordinary Jupyter kernel, started and stopped by jupyter_client as papermill
starts it: the kernels of a report are the kernels of ``papermill`` and of JupyterLab. Notebooks run
side by side, one thread each; each kernel works in the output folder, so what a notebook writes
(notebook 05's postmortem) lands beside its executed copy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from helpers._io import atomic_write_text
from helpers._paths import ROOT, kit_path

NOTEBOOKS_DIR = ROOT / "notebooks"


@dataclass(frozen=True)
class NotebookRun:
    """How one notebook's execution went."""

    notebook: str
    ok: bool
    seconds: float
    output_ipynb: Path
    output_html: Path | None
    error: str | None = None

    def line(self) -> str:
        """One status line: 'ok     3.1 s  01-reproduce-the-failure'."""
        status = "ok" if self.ok else "FAILED"
        tail = f"  {self.error}" if self.error else ""
        return f"{status:<7}{self.seconds:6.1f} s  {self.notebook}{tail}"


def notebook_paths(notebooks_dir: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The numbered notebooks, in order."""
    return sorted(p for p in Path(notebooks_dir).glob("[0-9][0-9]-*.ipynb"))


def _import_machinery() -> None:
    """Import, on the calling thread, everything the notebook threads use (papermill, nbclient,
    jupyter_client's kernel specs), so no two threads ever race to import a module. The HTML export
    (nbconvert, which no notebook thread imports) runs on the main thread as the notebooks finish."""
    import nbformat  # noqa: F401
    import papermill  # noqa: F401
    from jupyter_client.kernelspec import KernelSpecManager

    KernelSpecManager().get_kernel_spec("python3")  # loads the provisioner entry points, once
    _KernelManager.make()  # builds (and caches) the manager class, with its jupyter_client import


class _KernelManager:
    """The kernel manager papermill is given: jupyter_client's AsyncKernelManager, with the kernel's
    stdout and stderr written to a log file of its own (five kernels side by side would otherwise
    interleave their logs on the terminal; a failed run keeps its log), and its running kernels
    remembered so an interrupted report can end them (kernels run in sessions of their own: the
    terminal's Ctrl-C does not reach them)."""

    _live: weakref.WeakSet = weakref.WeakSet()

    @classmethod
    @functools.cache
    def make(cls):
        """The manager class (made on first use: jupyter_client is imported only when notebooks run)."""
        from jupyter_client.manager import AsyncKernelManager
        from traitlets import Unicode

        class LoggedKernelManager(AsyncKernelManager):
            """AsyncKernelManager whose kernel writes its output to ``kernel_log``."""

            kernel_log = Unicode("", config=True, help="file for the kernel's stdout and stderr")

            async def start_kernel(self, **kw):
                cls._live.add(self)
                if not self.kernel_log:
                    return await super().start_kernel(**kw)
                with open(self.kernel_log, "ab") as log:
                    return await super().start_kernel(**kw, stdout=log, stderr=log)

        return LoggedKernelManager

    @classmethod
    def kill_all(cls) -> None:
        """SIGKILL every running kernel's process group (what jupyter_client's own kill does)."""
        for manager in list(cls._live):
            pgid = getattr(manager.provisioner, "pgid", None)
            if pgid:
                with contextlib.suppress(OSError):  # already gone
                    os.killpg(pgid, signal.SIGKILL)


def execute(
    notebook: Path,
    out_dir: Path,
    *,
    parameters: dict | None = None,
    html: bool = True,
    kernel_manager_class=None,
) -> NotebookRun:
    """Execute one notebook into ``out_dir`` (ipynb, and HTML unless ``html=False``), redacted."""
    run, executed = _execute(
        notebook, out_dir, parameters=parameters, kernel_manager_class=kernel_manager_class
    )
    return _with_html(run, executed) if html else run


def _with_html(run: NotebookRun, executed) -> NotebookRun:
    """``run`` with its executed notebook exported to HTML beside its .ipynb (and the export's time)."""
    if executed is None:
        return run
    started = time.perf_counter()
    html = _export_html(run.output_ipynb, executed)
    return dataclasses.replace(run, output_html=html, seconds=run.seconds + time.perf_counter() - started)


def _execute(
    notebook: Path, out_dir: Path, *, parameters: dict | None = None, kernel_manager_class=None
) -> tuple[NotebookRun, object]:
    """Execute and redact one notebook into ``out_dir``: how it went, and the executed notebook."""
    import shutil

    import nbformat
    import papermill

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output_ipynb = out_dir / notebook.name
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="atskit-run-"))  # the kernel's sockets, papermill's output
    partial_ipynb = scratch / notebook.name  # published to out_dir only once redacted
    kernel_log = scratch / "kernel.log"
    error, executed = None, None
    try:
        executed = papermill.execute_notebook(
            str(notebook),
            str(partial_ipynb),
            parameters=dict(parameters or {}),
            kernel_name="python3",
            # the kernel's working folder; papermill's own ``cwd=`` would chdir this whole process,
            # which the notebooks running beside it in other threads share
            resources={"metadata": {"path": str(out_dir.resolve())}},
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            config=_kernel_config(scratch, kernel_log),
            kernel_manager_class=kernel_manager_class or _KernelManager.make(),
        )
    except papermill.PapermillExecutionError as exc:  # papermill saved the notebook before raising
        executed = nbformat.read(partial_ipynb, as_version=4)
        error = _error_line(exc.ename, exc.evalue, exc.exec_count)
    except Exception as exc:  # the kernel died, a parameter was refused, ...
        error = _error_line(type(exc).__name__, str(exc), None)
    finally:
        log_text = kernel_log.read_text("utf-8", "replace") if kernel_log.exists() else ""
        shutil.rmtree(scratch, ignore_errors=True)
    from helpers.redaction import redact

    if error is not None and log_text.strip():  # a failed run keeps its kernel's log, redacted
        kept = atomic_write_text(out_dir / f"{notebook.stem}.kernel.log", redact(log_text))
        error = f"{error} (kernel log: {kept})"
    if executed is not None:
        from helpers.redaction import redact_notebook

        record = executed.metadata.get("papermill", {})  # where it ran: the kit's names, not this machine's
        record.update(input_path=kit_path(notebook), output_path=output_ipynb.name)
        redact_notebook(executed)  # reports never carry secrets: masked before anything is written
        error = redact(error) if error else None
        atomic_write_text(output_ipynb, nbformat.writes(executed))
    seconds = time.perf_counter() - started
    return NotebookRun(notebook.stem, error is None, seconds, output_ipynb, None, error), executed


def _kernel_config(folder: Path, kernel_log: Path):
    """The kernel talks over Unix sockets in a folder of its own (not TCP ports), and logs to a file."""
    from traitlets.config import Config

    return Config(
        {
            "KernelManager": {"transport": "ipc", "ip": str(folder / "kernel")},
            "LoggedKernelManager": {"kernel_log": str(kernel_log)},
        }
    )


_html_lock = threading.Lock()
_exporter = None


def _export_html(ipynb: Path, executed=None) -> Path:
    """Render an executed notebook (``executed``, or read from ``ipynb``) to HTML beside ``ipynb``.

    JupyterLab's template without the scripts it loads from a CDN (``helpers/templates/atskit``), so a
    report opens offline. One exporter for the process, one export at a time: an exporter registers
    filters on itself while converting (and the work holds the GIL anyway).
    """
    global _exporter
    import nbformat
    from nbconvert import HTMLExporter

    if executed is None:
        executed = nbformat.read(ipynb, as_version=4)
    with _html_lock:
        _exporter = _exporter or HTMLExporter(
            template_name="atskit", extra_template_basedirs=[str(Path(__file__).with_name("templates"))]
        )
        body, _ = _exporter.from_notebook_node(executed)
    return atomic_write_text(ipynb.with_suffix(".html"), body)


def _error_line(ename: str, evalue: str, cell: int | None) -> str:
    """'ValueError: bad region (cell 3)', on one line and at most 300 characters."""
    where = f" (cell {cell})" if cell else ""
    return " ".join(f"{ename}: {evalue}{where}".split())[:300]


def run_all(
    out_dir: str | Path = "reports",
    *,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    workers: int | None = None,
    on_done: Callable[[NotebookRun], None] | None = None,
) -> list[NotebookRun]:
    """Execute every numbered notebook in lab mode into ``out_dir``, ``workers`` at a time.

    Notebooks are independent (a kernel each, and each lab on its own port), so they run side by
    side, one thread each: by default one per core and one more (a kernel starting or waiting on its
    lab leaves a core idle). ``on_done`` is called with each notebook's run in notebook order, as soon
    as it and every notebook before it have finished. Interrupted (Ctrl-C), the running kernels are
    ended, the queued notebooks dropped, and KeyboardInterrupt re-raised.
    """
    paths = notebook_paths(notebooks_dir)
    workers = workers or min((os.cpu_count() or 1) + 1, max(1, len(paths)))
    _import_machinery()
    # longest first (a notebook's size is a fair proxy for its work): the cores finish together
    by_size = sorted(paths, key=lambda path: path.stat().st_size, reverse=True)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notebook")
    try:
        futures = {path: pool.submit(_execute, path, Path(out_dir)) for path in by_size}
        runs = []
        for path in paths:  # in notebook order, each as soon as it and those before it are done
            runs.append(_with_html(*futures[path].result()))  # exported here, while the others run
            if on_done is not None:
                on_done(runs[-1])
        return runs
    except KeyboardInterrupt:
        pool.shutdown(wait=False, cancel_futures=True)
        import logging

        for name in ("papermill", "nbclient", "traitlets"):  # the killed kernels' "Kernel died" lines
            logging.getLogger(name).setLevel(logging.CRITICAL)
        _KernelManager.kill_all()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
