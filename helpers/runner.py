"""Execute the kit's notebooks with papermill and export them as HTML (the ``make report`` job)."""

from __future__ import annotations

import time
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
    notebook: Path, out_dir: Path, *, parameters: dict | None = None, html: bool = True
) -> NotebookRun:
    """Execute one notebook into ``out_dir`` (ipynb, and HTML unless ``html=False``)."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output_ipynb = out_dir / notebook.name
    started = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output_ipynb),
            parameters=parameters or {},
            kernel_name="python3",
            cwd=str(notebook.parent),
            progress_bar=False,
            log_output=False,
        )
    except Exception as exc:  # papermill raises PapermillExecutionError with the cell's error
        error = _one_line(exc)
    output_html = _export_html(output_ipynb) if html and output_ipynb.exists() else None
    return NotebookRun(
        notebook.stem, error is None, time.perf_counter() - started, output_ipynb, output_html, error
    )


def _export_html(ipynb: Path) -> Path:
    """Render an executed notebook to HTML beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(nbformat.read(ipynb, as_version=4))
    return atomic_write_text(ipynb.with_suffix(".html"), body)


def _one_line(exc: BaseException) -> str:
    """The gist of an execution error on one line."""
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    cell = getattr(exc, "exec_count", None)
    where = f" (cell {cell})" if cell else ""
    return f"{ename}: {evalue}{where}".replace("\n", " ")[:300]


def run_all(out_dir: str | Path = "reports", *, notebooks_dir: Path = NOTEBOOKS_DIR) -> list[NotebookRun]:
    """Execute every numbered notebook in lab mode, printing one line per notebook."""
    runs = []
    for notebook in notebook_paths(notebooks_dir):
        run = execute(notebook, Path(out_dir))
        print(run.line(), flush=True)
        runs.append(run)
    return runs
