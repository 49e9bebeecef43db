"""Rewrite the committed notebooks in the form a save from `make lab` writes them.

Each notebook in notebooks/ is saved through jupyter_server's FileContentsManager with `make lab`'s
pre-save hook (nbformat.writes: indent 1, sorted keys, a trailing newline; no outputs, the committed
kernel metadata), so saving from JupyterLab after a run changes no byte. Run it after merging branches
that edited notebooks, then commit the result on its own.

    .venv/bin/python scripts/canonical_notebooks.py
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
from jupyter_server.services.contents.filemanager import FileContentsManager

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    hook = re.search(r"--FileContentsManager\.pre_save_hook=(\S+)", (ROOT / "Makefile").read_text()).group(1)
    manager = FileContentsManager(root_dir=str(ROOT), pre_save_hook=hook)
    checkpoints = ROOT / "notebooks" / ".ipynb_checkpoints"
    had_checkpoints = checkpoints.exists()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb")):
        before = path.read_bytes()
        nb = nbformat.read(path, as_version=4)
        manager.save({"type": "notebook", "format": "json", "content": nb}, f"notebooks/{path.name}")
        if not had_checkpoints:  # the save made a checkpoint, as JupyterLab's does: none was asked for
            shutil.rmtree(checkpoints, ignore_errors=True)
        print(f"{path.name}: {'rewritten' if path.read_bytes() != before else 'already canonical'}")


if __name__ == "__main__":
    main()
