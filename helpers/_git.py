"""A file as it was at a git ref, materialised with its name and folder (for ``upgrade-check --before-ref``).

Lock formats are recognised by file name and ``-r``/``-c`` includes are relative to the including file,
so the ref's version is written at the same relative path under a temporary folder, together with the
files next to it and every include it names (recursively), as they all were at the ref.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from helpers.kinds import KitError

__all__ = ["GitError", "file_at_ref"]

_INCLUDE = re.compile(r"^\s*(?:-r|--requirements?|-c|--constraints?)(?:\s*=\s*|\s+)(\S+)", re.M)


# the files next to it that can matter to what it installs (not a whole folder of data)
_NEIGHBOUR = re.compile(r".*\.(txt|in|toml|lock|cfg|json)|Pipfile|setup\.py")


class GitError(KitError):
    """Not a git repository, an unknown ref, or git failing (one line)."""


def _git(*args: str, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    """Run git in ``cwd``; GitError with git's first error line when ``check`` and it fails."""
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=120)
    except FileNotFoundError:
        raise GitError("git is not installed; --before-ref needs it") from None
    if check and done.returncode != 0:
        message = done.stderr.decode(errors="replace").strip().splitlines()
        raise GitError(f"git {args[0]}: {message[0] if message else f'exit {done.returncode}'}")
    return done


def _blob_exists(ref: str, path: PurePosixPath, *, top: Path) -> bool:
    """Whether ``path`` (relative to the top of the repository) is a file at ``ref``."""
    done = _git("cat-file", "-t", f"{ref}:{path}", cwd=top, check=False)
    return done.returncode == 0 and done.stdout.strip() == b"blob"


def _needed_paths(ref: str, path: PurePosixPath, *, top: Path) -> list[PurePosixPath]:
    """The file, the files next to it, and (recursively) its ``-r``/``-c`` includes, all as at ``ref``."""
    folder = [] if path.parent == PurePosixPath(".") else ["--", f"{path.parent}/"]
    listing = _git("ls-tree", "-z", "--full-name", ref, *folder, cwd=top).stdout.decode()
    entries = [entry.split("\t", 1) for entry in listing.split("\0") if "\t" in entry]
    needed = {
        PurePosixPath(name)
        for meta, name in entries
        if meta.split(" ")[1] == "blob" and _NEIGHBOUR.fullmatch(PurePosixPath(name).name)
    }
    queue, seen = [path], set()
    while queue:
        current = queue.pop()
        if current in seen or not _blob_exists(ref, current, top=top):
            continue
        seen.add(current)
        text = _git("show", f"{ref}:{current}", cwd=top).stdout.decode("utf-8", errors="replace")
        for target in _INCLUDE.findall(text):
            if "://" in target:
                continue  # a URL: pip fetches it, nothing to materialise
            joined = os.path.normpath(str(current.parent / target))
            if not joined.startswith(".."):
                queue.append(PurePosixPath(joined))
    return sorted(needed | seen)


@contextmanager
def file_at_ref(path: str | os.PathLike, ref: str) -> Iterator[Path | None]:
    """Yield the path of ``path``'s version at git ``ref``, written at its own relative path (same name and
    folder) in a temporary folder with its neighbours and includes; None when the file is new (absent at
    ``ref``, or ``ref`` is the unborn HEAD of a repository with no commits yet).

    GitError (one line) when ``path`` is not in a git repository or ``ref`` is unknown.
    """
    file = Path(path).resolve()
    where = file.parent if file.parent.is_dir() else Path.cwd()
    inside = _git("rev-parse", "--show-toplevel", cwd=where, check=False)
    if inside.returncode != 0:
        raise GitError(f"{path}: not in a git repository; --before-ref reads the file's history from git")
    top = Path(inside.stdout.decode().strip()).resolve()
    if _git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", cwd=top, check=False).returncode != 0:
        if ref == "HEAD" and not _git("rev-list", "-n1", "--all", cwd=top, check=False).stdout.strip():
            yield None  # before the first commit (a pre-commit hook): every file is new
            return
        raise GitError(
            f"--before-ref {ref}: no such commit, branch or tag in {top} (for a base branch, fetch it "
            f"first: git fetch origin BRANCH)"
        )
    if not file.is_relative_to(top):
        raise GitError(f"{path}: outside the git repository at {top}")
    relative = PurePosixPath(file.relative_to(top).as_posix())
    if not _blob_exists(ref, relative, top=top):
        yield None
        return
    needed = [str(p) for p in _needed_paths(ref, relative, top=top)]
    archive = _git("archive", "--format=tar", ref, "--", *needed, cwd=top)
    with tempfile.TemporaryDirectory(prefix="atskit-ref-") as tmp:
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp) / relative
