"""Where the kit's embedded data lives."""

from __future__ import annotations

import os
from pathlib import Path

from helpers.kinds import MissingFileError

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("ATSKIT_DATA", ROOT / "data"))


def data_file(*parts: str) -> Path:
    """Return a path under ``data/``; raise a clear error if the kit's data is not there."""
    path = DATA_DIR.joinpath(*parts)
    if not path.exists():
        raise MissingFileError(
            f"{path}: the kit's embedded data is missing; install the kit editable from its "
            "repository (pip install -e .) or set ATSKIT_DATA to the repository's data/ folder"
        )
    return path
