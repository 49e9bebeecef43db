"""The package index as pip sees it: pip's settings (index, proxy, TLS), the index's PEP 691 pages, and
hash-checked downloads through pip (the certifi and botocore builders and the resolver's checks)."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from helpers._io import atomic_write_text
from helpers.kinds import InputError, KitError

DEFAULT_INDEX_URL = "https://pypi.org/simple"
_JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"


class IndexUnreachable(KitError, OSError):
    """The package index could not be reached (the embedded data is left as it is)."""


class BuildError(KitError, RuntimeError):
    """The index answered but a release could not be fetched or checked (nothing is written)."""


@dataclass(frozen=True)
class PipSettings:
    """The pip options that decide where and how packages are fetched (index, proxy, TLS)."""

    index_url: str
    options: tuple[str, ...] = ()  # --cert, --proxy, --timeout, --retries, --trusted-host, ...
    cert: str | None = None
    proxy: str | None = None
    timeout: float = 60.0

    @property
    def display_index_url(self) -> str:
        """The index URL without any user:password part."""
        return redact_url(self.index_url)


@dataclass(frozen=True)
class ReleaseFile:
    """The one file of a release the build uses: the wheel where there is one, else the sdist."""

    version_on_index: str
    filename: str | None
    url: str | None
    sha256: str | None
    uploaded_at: str | None
    yanked: bool = False


def redact_url(url: str) -> str:
    """Drop credentials from a URL."""
    parts = urllib.parse.urlsplit(url)
    if parts.username or parts.password:
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        parts = parts._replace(netloc=netloc)
    return urllib.parse.urlunsplit(parts)


def pip_settings(*, env: dict[str, str] | None = None) -> PipSettings:
    """Read pip's effective index URL, certificate, proxy, timeout and retries (``pip config list``).

    Environment variables (PIP_INDEX_URL, ...) win over the ``[download]`` section, which wins over
    ``[global]``, as in pip. Extra indexes and find-links are deliberately not used: the build wants
    the index's own file, checked against the index's own hash. A setting pip cannot read (a malformed
    pip.conf, PIP_DEFAULT_TIMEOUT=abc) is an InputError with pip's complaint: pip would fail on it too.
    """
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, env=env, check=False
    )
    if proc.returncode != 0 and importlib.util.find_spec("pip") is not None:  # pip would fail too: say why
        complaint = " ".join((proc.stderr or proc.stdout).replace("ERROR:", " ").split()) or "no output"
        raise InputError(
            f"pip cannot read its configuration (`pip config list` exited {proc.returncode}): {complaint}; "
            "fix that setting (PIP_* variables, pip.conf) and run again"
        )
    ranked: dict[str, tuple[int, str]] = {}
    rank_of = {"global": 1, "download": 2, ":env:": 3}
    for line in proc.stdout.splitlines():
        key, sep, raw = line.partition("=")
        if not sep:
            continue
        section, _, name = key.rpartition(".")
        rank = rank_of.get(section)
        if rank is None:
            continue
        try:
            value = str(ast.literal_eval(raw))
        except (ValueError, SyntaxError):
            value = raw.strip("'\"")
        name = {"default-timeout": "timeout"}.get(name, name)
        if name not in ranked or rank >= ranked[name][0]:
            ranked[name] = (rank, value)
    values = {name: value for name, (_, value) in ranked.items()}
    options: list[str] = []
    for name in ("cert", "client-cert", "proxy", "timeout", "retries"):
        if values.get(name):
            options += [f"--{name}", values[name]]
    for host in values.get("trusted-host", "").split():
        options += ["--trusted-host", host]
    try:
        timeout = float(values.get("timeout", 60))
    except ValueError:
        timeout = 60.0
    if str(values.get("no-index", "")).lower() in ("1", "true", "yes", "on"):
        raise IndexUnreachable("pip is set to use no package index (PIP_NO_INDEX or no-index in pip.conf)")
    return PipSettings(
        index_url=(values.get("index-url") or DEFAULT_INDEX_URL).rstrip("/"),
        options=tuple(options),
        cert=values.get("cert"),
        proxy=values.get("proxy"),
        timeout=timeout,
    )


_children: set[subprocess.Popen] = set()  # pip processes running now (ended if the build is interrupted)
_children_lock = threading.Lock()
_stopping = threading.Event()  # set when the build is interrupted: no new pip process starts


def _pip(settings: PipSettings, *args: str) -> subprocess.CompletedProcess:
    """Run pip isolated from extra indexes/find-links/constraints, with the user's index and TLS settings."""
    command = [sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input"]
    command += [*args, "--index-url", settings.index_url, *settings.options]
    with _children_lock:
        if _stopping.is_set():
            raise BuildError("interrupted")
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _children.add(child)
    try:
        stdout, stderr = child.communicate()
    finally:
        with _children_lock:
            _children.discard(child)
    return subprocess.CompletedProcess(command, child.returncode, stdout, stderr)


def allow_pip() -> None:
    """Let pip processes start again (a build after an interrupted one)."""
    _stopping.clear()


def stop_pip() -> None:
    """Stop starting pip processes and end the running ones (an interrupted build)."""
    with _children_lock:
        _stopping.set()
        children = list(_children)
    for child in children:
        child.terminate()
    for child in children:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()


def _last_error_line(text: str) -> str:
    """The most telling line of pip's stderr."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for line in lines:
        if "Expected sha256" in line or line.startswith("Got"):
            found = " ".join(ln for ln in lines if ln.startswith(("Expected", "Got")))
            return "hash mismatch: " + " ".join(found.split())
    for line in reversed(lines):
        if line.startswith("ERROR:"):
            return line.removeprefix("ERROR:").strip()
    return lines[-1] if lines else "no output"


def open_url(url: str, settings: PipSettings, *, accept: str | None = None):
    """Open ``url`` with pip's CA file and proxy (TLS is always verified); ``user:password@`` in the URL
    (a private index in PIP_INDEX_URL) is sent as HTTP Basic authentication, as pip sends it."""
    import base64
    import ssl

    handlers: list = []
    if url.startswith("https:"):
        context = ssl.create_default_context(cafile=settings.cert if settings.cert else None)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    if settings.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": settings.proxy, "https": settings.proxy}))
    opener = urllib.request.build_opener(*handlers)
    headers = {"Accept": accept} if accept else {}
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:  # urllib would put the credentials in the host name: send them instead
        user, password = urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        url = urllib.parse.urlunsplit(
            parts._replace(netloc=parts.hostname + (f":{parts.port}" if parts.port else ""))
        )
    return opener.open(urllib.request.Request(url, headers=headers), timeout=settings.timeout)


def fetch_index_page(settings: PipSettings, *, project: str) -> tuple[str, dict]:
    """The index's PEP 691 JSON page for ``project`` (files, hashes, PEP 700 upload-time, versions)."""
    page_url = f"{settings.index_url}/{project}/"
    shown = redact_url(page_url)
    try:
        with open_url(page_url, settings, accept=f"{_JSON_ACCEPT}, text/html;q=0.01") as response:
            content_type = response.headers.get("Content-Type", "")
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise IndexUnreachable(f"the package index answered {exc.code} for {shown}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise IndexUnreachable(f"cannot reach the package index at {shown}: {reason}") from None
    if "json" not in content_type:
        raise BuildError(
            f"{shown} does not serve the PEP 691 JSON API (got {content_type or 'no content type'}); "
            "point PIP_INDEX_URL at an index that does, such as PyPI or a mirror that proxies it"
        )
    try:
        return page_url, json.loads(body)
    except ValueError as exc:
        raise BuildError(f"{shown}: the JSON page is not valid JSON ({exc})") from None


def pip_index_versions(settings: PipSettings, *, project: str) -> list[str]:
    """Versions pip itself sees on the index (``pip index versions``; yanked ones are not listed)."""
    proc = _pip(settings, "index", "versions", project)
    if proc.returncode != 0:
        raise IndexUnreachable(
            f"pip could not list {project} on {settings.display_index_url}: {_last_error_line(proc.stderr)}"
        )
    match = re.search(r"Available versions:\s*(.+)", proc.stdout)
    return [v.strip() for v in match.group(1).split(",")] if match else []


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    release: ReleaseFile, settings: PipSettings, cache_dir: Path, *, project: str
) -> tuple[Path, str]:
    """Fetch ``project``'s release file with pip (hash-checked) into ``cache_dir``; return (path, how)."""
    if not release.sha256:
        raise BuildError(f"{release.filename}: the index gives no sha256 for it; cannot verify a download")
    target = cache_dir / release.filename
    how_file = cache_dir / f"{release.filename}.how"
    if target.is_file() and sha256_file(target) == release.sha256:
        how = how_file.read_text().strip() if how_file.is_file() else "pip download"
        return target, how
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{project}=={release.version_on_index} --hash=sha256:{release.sha256}\n")
        kind = ["--only-binary", ":all:"] if release.filename.endswith(".whl") else ["--no-binary", ":all:"]
        out = Path(tmp) / "out"
        proc = _pip(
            settings, "download", "-r", str(requirements), "--no-deps", "--no-build-isolation",
            "--ignore-requires-python", *kind, "-d", str(out),
        )  # fmt: skip
        how = "pip download"
        fetched = out / release.filename
        # interrupted while pip ran (Ctrl-C reaches pip too, maybe before this build sees it): no fallback
        if _stopping.is_set() or proc.returncode < 0 or "Operation cancelled by user" in proc.stderr:
            raise BuildError("interrupted")
        if proc.returncode != 0 or not fetched.is_file():
            pip_error = _last_error_line(proc.stderr)
            if release.filename.endswith(".whl") or not release.url:
                raise BuildError(f"pip could not download {release.filename}: {pip_error}")
            # pip prepares an sdist's metadata before saving it; sdists from 2011-2014 no longer build
            # on current Python, so fetch the same index file directly (same hash check).
            out.mkdir(parents=True, exist_ok=True)
            try:
                with open_url(release.url, settings) as response:
                    fetched.write_bytes(response.read())
            except (urllib.error.URLError, OSError) as exc:
                raise BuildError(f"could not fetch {release.filename} from the index: {exc}") from None
            how = "index file URL (pip could not prepare this old sdist's metadata)"
        actual = sha256_file(fetched)
        if actual != release.sha256:
            raise BuildError(
                f"{release.filename}: sha256 {actual} does not match the index's {release.sha256}; "
                "not using it (check your index mirror)"
            )
        os.replace(fetched, target)
        atomic_write_text(how_file, how + "\n")
    return target, how
