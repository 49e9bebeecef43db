"""Shared test helpers."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def write_notebook():
    """A function writing a small notebook: the python3 kernel, a parameters cell, then code cells."""
    import nbformat

    def write(path: Path, *sources: str, parameters: str = "x = 1") -> Path:
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
        nb.cells += [nbformat.v4.new_code_cell(source) for source in sources]
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, path)
        return path

    return write


@pytest.fixture
def local_index(monkeypatch, tmp_path_factory):
    """tests/data/index served on 127.0.0.1 and made the index uv resolves against (UV_DEFAULT_INDEX),
    with a uv cache of the test session's own."""
    from local_index import serve_index

    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "uv-cache"))
    with serve_index() as index:
        monkeypatch.setenv("UV_DEFAULT_INDEX", index.url)
        yield index
