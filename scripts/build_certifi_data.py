"""Rebuild data/certifi from the package index through pip (same as ``python -m helpers refresh-certifi``).

Usage: python scripts/build_certifi_build.py [--full] [--cache-dir DIR] [--data-dir DIR] [--json]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from helpers.cli import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main(["refresh-certifi", *sys.argv[1:]]))
