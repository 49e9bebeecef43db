"""Where the kit's embedded data lives: ``data/`` in a checkout, ``helpers/data`` inside a wheel."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.kinds import MissingFileError

ROOT = Path(__file__).resolve().parent.parent  # the kit's folder, in a checkout (an editable install)
_PACKAGED = Path(__file__).resolve().parent / "data"  # where a wheel puts data/ (see pyproject.toml)
DATA_DIR = Path(os.environ.get("ATSKIT_DATA") or (_PACKAGED if _PACKAGED.is_dir() else ROOT / "data"))


def data_file(*parts: str) -> Path:
    """Return a path under the kit's data; raise a clear error if it is not there."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise MissingFileError(
            f"{path}: the kit's embedded data is missing; reinstall the kit (pip install ats-kit, or "
            "pip install -e . in its repository) or set ATSKIT_DATA to a folder holding its data/"
        )
    return path


def kit_path(path: str | os.PathLike) -> str:
    """A path as reports show it: relative to the kit's folder when inside it, else the file's name."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else Path(path).name
