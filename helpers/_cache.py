"""The kit's private per-user cache: trust views boto3 is pointed at, and the lab's PKI.

Files here are trusted by TLS calls, so the folder is the user's own: created 0700, refused if it is a
symlink, not a folder, or owned by someone else; files are named by a digest of their content and
checked against it each time they are handed out (:func:`verified`); each folder is bounded by count
and size (:func:`prune` removes the least recently used files, never one this process handed out).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path

from helpers.kinds import UnusableError

KEEP_FILES = 200  # per folder: beyond these, the least recently used files are removed
KEEP_BYTES = 64 * 2**20  # per folder: beyond this size too (a trust view is 100 to 300 KB)

_handed_out: set[str] = set()  # files this process handed out: never pruned under it


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


def read_verified(path: Path, sha256: str) -> bytes | None:
    """The content of ``path`` if it is a regular file (not a link) whose SHA-256 is ``sha256``, else
    None (missing, swapped or cut short: the caller rewrites it). Marks the file as in use."""
    try:
        with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            data = handle.read()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    mark_used(path)
    return data


def verified(path: Path, sha256: str) -> bool:
    """True if ``path`` is a regular file whose content has SHA-256 ``sha256`` (see :func:`read_verified`)."""
    return read_verified(path, sha256) is not None


def mark_used(path: Path) -> None:
    """Record that this process hands ``path`` out: its mtime is bumped (what :func:`prune` orders by)
    the first time, and it is never pruned while this process runs."""
    key = os.fspath(path)
    if key not in _handed_out:
        with contextlib.suppress(OSError):
            os.utime(path)
        _handed_out.add(key)


def prune(folder: Path, *, keep: int = KEEP_FILES, keep_bytes: int = KEEP_BYTES) -> int:
    """Remove the least recently used files of ``folder`` beyond the ``keep`` newest or ``keep_bytes``
    in all, sparing files this process handed out; how many were removed."""
    entries = []
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            info = entry.stat(follow_symlinks=False)
            entries.append((info.st_mtime_ns, info.st_size, entry.path))
    entries.sort(reverse=True)  # most recently used first
    kept = kept_bytes = removed = 0
    for _, size, path in entries:
        if path in _handed_out or (kept < keep and kept_bytes + size <= keep_bytes):
            kept, kept_bytes = kept + 1, kept_bytes + size
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed += 1
    return removed
