"""Execute the kit's notebooks with papermill and export them as HTML (the ``make report`` job)."""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from helpers._io import atomic_write_text
from helpers._paths import ROOT

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


def execute(
    notebook: Path,
    out_dir: Path,
    *,
    parameters: dict | None = None,
    html: bool = True,
    warm_kernel: bool = False,
) -> NotebookRun:
    """Execute one notebook into ``out_dir`` (ipynb, and HTML unless ``html=False``).

    ``warm_kernel``: have the kit's kernel zygote fork the kernel (see :mod:`helpers._warm_kernels`;
    worth it when several notebooks run) instead of starting one.
    """
    run, executed = _execute(notebook, out_dir, parameters=parameters, warm_kernel=warm_kernel)
    return _with_html(run, executed) if html and executed is not None else run


def _with_html(run: NotebookRun, executed) -> NotebookRun:
    """``run`` with its notebook exported to HTML (and the export's time added)."""
    started = time.perf_counter()
    output_html = _export_html(run.output_ipynb, executed)
    return dataclasses.replace(
        run, output_html=output_html, seconds=run.seconds + time.perf_counter() - started
    )


def _execute(
    notebook: Path, out_dir: Path, *, parameters: dict | None = None, warm_kernel: bool = False
) -> tuple[NotebookRun, object | None]:
    """Execute and redact one notebook: how it went, and the executed notebook (None if none)."""
    import nbformat
    import papermill
    from traitlets.config import Config

    out_dir.mkdir(parents=True, exist_ok=True)
    output_ipynb = out_dir / notebook.name
    # papermill writes as it goes: work on a hidden temp file, publish it only once it is redacted
    partial_ipynb = out_dir / f".{notebook.stem}.partial.ipynb"
    started = time.perf_counter()
    error = None
    parameters = dict(parameters or {})
    if "report_dir" in papermill.inspect_notebook(str(notebook)):  # its own exports go beside it
        parameters.setdefault("report_dir", str(out_dir.resolve()))
    kernel_dir = tempfile.mkdtemp(prefix="atskit-kernel-")  # this kernel's own Unix sockets
    from helpers._warm_kernels import TrackedKernelManager, WarmKernelManager

    manager_class = WarmKernelManager if warm_kernel else TrackedKernelManager
    partial_ipynb.unlink(missing_ok=True)  # an interrupted earlier run's is not this run's
    executed = None  # the executed notebook
    try:
        executed = papermill.execute_notebook(
            str(notebook),
            str(partial_ipynb),
            parameters=parameters,
            kernel_name="python3",
            # the kernel starts in the notebook's folder; papermill's own ``cwd=`` would chdir this
            # whole process, which the notebooks running beside it in other threads share
            resources={"metadata": {"path": str(notebook.parent)}},
            progress_bar=False,
            request_save_on_cell_execute=False,
            log_output=False,
            # a local kernel talks over Unix sockets in a folder of its own, not unencrypted TCP ports
            config=Config({"KernelManager": {"transport": "ipc", "ip": str(Path(kernel_dir) / "kernel")}}),
            kernel_manager_class=manager_class,
        )
    except papermill.PapermillExecutionError as exc:  # papermill saved the notebook before raising
        executed = nbformat.read(partial_ipynb, as_version=4) if partial_ipynb.exists() else None
        error = _unexpected_error(executed) if executed is not None else _one_line(exc)
    except Exception as exc:  # the kernel died, a parameter was refused, ...
        error = _one_line(exc)
    finally:
        shutil.rmtree(kernel_dir, ignore_errors=True)
    if executed is not None:  # reports never carry secrets: mask them before anything is exported
        from helpers.redaction import redact, redact_notebook

        redact_notebook(executed)
        error = redact(error) if error else error
        atomic_write_text(output_ipynb, nbformat.writes(executed))
    partial_ipynb.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    return NotebookRun(notebook.stem, error is None, seconds, output_ipynb, None, error), executed


def _skip_unused_iri_grammar() -> None:
    """Keep jsonschema from building rfc3987_syntax's IRI grammar (about 2.5 s) when nbformat loads.

    nbformat's notebook schema uses no ``iri`` format, so the grammar is never consulted; jsonschema
    imports it only if it can (an ImportError just leaves that one format unchecked). Called when
    this module loads, before any of its paths (executing, exporting) imports nbformat.
    """
    if "jsonschema" not in sys.modules:
        sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[assignment]


_skip_unused_iri_grammar()


def _unexpected_error(executed) -> str | None:
    """The first error in a cell not tagged ``raises-exception``, or None if every error was expected.

    papermill reports any error output, even from cells tagged to fail (nbclient runs past those);
    a notebook whose only errors are in tagged cells succeeded. Its error-marker cells are removed
    from ``executed`` (in place).
    """
    executed.cells = [
        c for c in executed.cells if _ERROR_MARKER_TAG not in c.get("metadata", {}).get("tags", [])
    ]
    for cell in executed.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        failed = errors or cell.get("metadata", {}).get("papermill", {}).get("exception")
        if failed and "raises-exception" not in tags:
            ename, evalue = (errors[0]["ename"], errors[0]["evalue"]) if errors else ("Error", "")
            return _error_line(ename, evalue, cell.get("execution_count"))
    for cell in executed.cells:  # an expected failure is not a failed cell in the report
        cell.get("metadata", {}).get("papermill", {})["exception"] = False
    return None


_ERROR_MARKER_TAG = "papermill-error-cell-tag"


_html_lock = threading.Lock()


@functools.cache
def _html_exporter():
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter()
    # a first, tiny export compiles the templates and the parsers' patterns, once
    cells = [nbformat.v4.new_markdown_cell("*warm-up*"), nbformat.v4.new_code_cell("x = 1")]
    exporter.from_notebook_node(nbformat.v4.new_notebook(cells=cells))
    return exporter


def _prepare_html_exporter() -> None:
    with _html_lock:
        _html_exporter()


def _export_html(ipynb: Path, executed=None) -> Path:
    """Render an executed notebook (``executed``, or read from ``ipynb``) to HTML beside ``ipynb``.

    One exporter for the process, its compiled templates reused; one export at a time (an exporter
    registers filters on itself while converting, and the work holds the GIL anyway).
    """
    import nbformat

    if executed is None:
        executed = nbformat.read(ipynb, as_version=4)
    with _html_lock:
        body, _ = _html_exporter().from_notebook_node(executed)
    return atomic_write_text(ipynb.with_suffix(".html"), body)


def _one_line(exc: BaseException) -> str:
    """The gist of an execution error on one line."""
    ename = getattr(exc, "ename", type(exc).__name__)
    return _error_line(ename, getattr(exc, "evalue", str(exc)), getattr(exc, "exec_count", None))


def _error_line(ename: str, evalue: str, cell: int | None) -> str:
    """'ValueError: bad region (cell 3)', on one line and at most 300 characters."""
    where = f" (cell {cell})" if cell else ""
    return f"{ename}: {evalue}{where}".replace("\n", " ")[:300]


def run_all(
    out_dir: str | Path = "reports",
    *,
    notebooks_dir: Path = NOTEBOOKS_DIR,
    workers: int | None = None,
    warm_kernels: bool = True,
    quiet: bool = False,
) -> list[NotebookRun]:
    """Execute every numbered notebook in lab mode, ``workers`` at a time, printing a line for each
    (unless ``quiet``).

    Notebooks are independent (each has its own kernel process, and its lab its own ephemeral
    port), so they run side by side: one thread each drives its kernel. The default is one per
    core and one more (a kernel starting, stopping or waiting on its lab leaves a core idle), at most
    the number of notebooks. ``warm_kernels``: kernels are forked by the kit's kernel zygote
    (:mod:`helpers._warm_kernels`), which starts warming up here while this process goes on.
    Interrupted (Ctrl-C), it ends the running kernels, drops the queued notebooks and re-raises.
    """
    from helpers._warm_kernels import kill_kernels, start_zygote

    paths = notebook_paths(notebooks_dir)
    workers = workers or min((os.cpu_count() or 1) + 1, max(1, len(paths)))
    if warm_kernels:
        start_zygote()
    # longest first (a notebook's size is a fair proxy for its work): the cores finish together
    by_size = sorted(paths, key=lambda path: path.stat().st_size, reverse=True) if workers > 1 else paths
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="notebook")
    # HTML exports run on a thread of their own: a notebook's thread goes on to the next notebook
    exports = ThreadPoolExecutor(max_workers=1, thread_name_prefix="html")
    exports.submit(_prepare_html_exporter)  # while the kernels warm up, a core is idle
    try:
        pending = {
            pool.submit(_execute, path, Path(out_dir), warm_kernel=warm_kernels): path for path in by_size
        }
        runs: dict[Path, NotebookRun] = {}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                path, result = pending.pop(future), future.result()
                if isinstance(result, tuple):  # executed: export it, unless nothing was executed
                    run, executed = result
                    if executed is not None:
                        pending[exports.submit(_with_html, run, executed)] = path
                        continue
                    result = run
                runs[path] = result
                if not quiet:
                    print(result.line(), flush=True)
        return [runs[path] for path in paths]
    except KeyboardInterrupt:  # kernels run in sessions of their own: Ctrl-C does not reach them
        for executor in (pool, exports):
            executor.shutdown(wait=False, cancel_futures=True)
        kill_kernels()
        raise
    finally:
        for executor in (pool, exports):
            executor.shutdown(wait=True, cancel_futures=True)
