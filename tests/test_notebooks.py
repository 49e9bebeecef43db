"""Every notebook executes in lab mode (offline) with papermill: one by one, and all together as
`make report` runs them."""

from __future__ import annotations

import pytest

from helpers import runner


@pytest.mark.slow
@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_in_lab_mode(path, tmp_path):
    run = runner.execute(path, tmp_path, html=False)
    assert run.ok, run.error


@pytest.mark.slow
def test_every_notebook_runs_and_exports_as_make_report_runs_them(tmp_path):
    """run_all: notebooks side by side on standard kernels, each exported to HTML; status lines come
    in notebook order; kernels log to files of their own, kept only when a run fails."""
    seen = []
    runs = runner.run_all(tmp_path, on_done=seen.append)
    assert seen == runs
    assert [run.notebook for run in runs] == [path.stem for path in runner.notebook_paths()]
    assert all(run.ok for run in runs), [run.line() for run in runs if not run.ok]
    assert all(run.output_html is not None and run.output_html.exists() for run in runs)
    assert not list(tmp_path.glob("*.kernel.log"))
    assert (tmp_path / "postmortem.md").exists()  # notebook 05 writes beside its executed copy
