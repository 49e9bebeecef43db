"""The kit's private per-user cache: trust views boto3 is pointed at, and the lab's PKI.

Files here are trusted by TLS calls, so the folder is the user's own: created 0700, refused if it is a
symlink, not a folder, or owned by someone else; files are named by a digest of their content (or of
what made them) and checked before reuse; old files are removed so the folder stays bounded.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time
from pathlib import Path

from helpers.kinds import UnusableError

KEEP_FILES = 200  # per folder; older files beyond these are removed once they are a day old
_DAY = 86400.0


def cache_base() -> Path:
    """$XDG_CACHE_HOME/atskit, ~/.cache/atskit, or (without a home) a per-user folder in the temp dir."""
    if os.environ.get("ATSKIT_CACHE_DIR"):
        return Path(os.environ["ATSKIT_CACHE_DIR"])
    home = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache" if Path.home().is_dir() else None)
    if home:
        return Path(home) / "atskit"
    return Path(tempfile.gettempdir()) / f"atskit-{os.getuid()}"


def private_dir(name: str) -> Path:
    """The cache folder ``name``, created 0700 and checked to be this user's own real folder."""
    folder = cache_base()
    folder.parent.mkdir(parents=True, exist_ok=True)
    for path in (folder, folder / name):
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise UnusableError(
                f"{path}: the kit's cache must be a real folder (not a link or a file); remove it"
            )
        if info.st_uid != os.getuid():
            raise UnusableError(
                f"{path}: the kit's cache is another user's; remove it or set ATSKIT_CACHE_DIR"
            )
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.chmod(path, 0o700)
    return folder / name


def prune(folder: Path, *, keep: int = KEEP_FILES) -> int:
    """Remove files beyond the ``keep`` newest that are over a day old; how many were removed."""
    entries = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            entries.append((entry.stat(follow_symlinks=False).st_mtime, entry.path))
    entries.sort(reverse=True)
    removed = 0
    for mtime, path in entries[keep:]:
        if time.time() - mtime > _DAY:
            Path(path).unlink(missing_ok=True)
            removed += 1
    return removed
