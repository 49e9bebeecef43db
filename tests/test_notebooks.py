"""Every notebook executes in lab mode (offline) with papermill: one by one on kernels started as
Jupyter starts them, and all together as `make report` runs them."""

from __future__ import annotations

import pytest

from helpers import runner


@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_in_lab_mode(path, tmp_path):
    run = runner.execute(path, tmp_path, html=False)
    assert run.ok, run.error


def test_every_notebook_runs_and_exports_as_make_report_runs_them(tmp_path):
    """run_all: notebooks side by side on warm (forked) kernels, each exported to HTML."""
    runs = runner.run_all(tmp_path, quiet=True)
    assert [run.notebook for run in runs] == [path.stem for path in runner.notebook_paths()]
    assert all(run.ok for run in runs), [run.line() for run in runs if not run.ok]
    assert all(run.output_html is not None and run.output_html.exists() for run in runs)


@pytest.mark.parametrize(
    "export",
    ["runner._export_html(Path(sys.argv[1]))", "runner._prepare_html_exporter()"],
    ids=["export", "exporter-prepared"],
)
def test_exporting_html_alone_does_not_build_the_unused_iri_grammar(tmp_path, export):
    """An export, or the exporter made ahead (run_all does it on a thread of its own), first thing
    in a process loads nbformat without jsonschema's rfc3987 IRI grammar, as executing does: it costs
    seconds and nbformat never uses it."""
    import subprocess
    import sys

    import nbformat

    ipynb = tmp_path / "one.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")]), ipynb)
    code = (
        f"import sys; from pathlib import Path; from helpers import runner; {export}; "
        "print(sys.modules.get('rfc3987_syntax', 'not imported'))"
    )
    command = [sys.executable, "-c", code, str(ipynb)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["None"]  # set aside before nbformat loaded, never imported
    assert "_export_html" not in export or ipynb.with_suffix(".html").exists()
