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
