"""Every notebook executes in lab mode (offline) with papermill, as `make report` does."""

from __future__ import annotations

import pytest

from helpers import runner


@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_in_lab_mode(path, tmp_path):
    run = runner.execute(path, tmp_path, html=False)
    assert run.ok, run.error
