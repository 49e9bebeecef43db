"""Resolve a requirements file with uv as the index stood at a date (``--exclude-newer``), for a target
Python and platform (``requirements.resolve`` only)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    parse_sdist_filename,
    parse_wheel_filename,
)

from helpers._index import PipSettings, open_url, pip_settings
from helpers.kinds import KitError
from helpers.requirements import ResolutionError, normalize

# The kit's platform names -> uv's --python-platform targets.
PLATFORMS = {
    "linux-x86_64": "x86_64-unknown-linux-gnu",
    "linux-aarch64": "aarch64-unknown-linux-gnu",
    "macos-x86_64": "x86_64-apple-darwin",
    "macos-arm64": "aarch64-apple-darwin",
    "windows-x86_64": "x86_64-pc-windows-msvc",
}
# uv settings from the caller's environment that change how uv fetches, never what it resolves.
_KEPT_UV_VARIABLES = {
    "UV_CACHE_DIR",
    "UV_NO_CACHE",
    "UV_NATIVE_TLS",
    "UV_HTTP_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_CONCURRENT_DOWNLOADS",
    "UV_KEYRING_PROVIDER",
}
_COLOUR_VARIABLES = ("FORCE_COLOR", "CLICOLOR_FORCE")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
_MISSING_UPLOAD_DATE = re.compile(r"`([^`]+)` is missing an upload date")


@dataclass(frozen=True)
class Resolution:
    """What uv resolved a requirements file to, and against what."""

    packages: dict[str, str]  # PEP 503 normalised name -> version
    as_of: datetime | None  # UTC; only files uploaded before it were considered
    index: str  # the index URL, credentials masked
    resolver: str  # "uv 0.x.y"
    seconds: float  # wall time spent in uv


def resolve(
    requirements_path: str | os.PathLike,
    *,
    as_of: datetime | date | None = None,
    python_version: str | None = None,
    platform: str | None = None,
    timeout: float = 300.0,
) -> Resolution:
    """What ``pip install -r FILE`` would install from the user's index, as of ``as_of``.

    A ``date`` means the whole of that day (UTC) and a naive ``datetime`` is taken as UTC. With a date,
    the index must give PEP 700 upload times for certifi and the packages the file does not pin;
    otherwise ResolutionError. ``python_version`` ("3.11") and ``platform`` (a key of PLATFORMS)
    default to this interpreter and this machine.
    """
    path = Path(requirements_path)
    if not path.is_file():
        raise ResolutionError(f"{path}: no such requirements file")
    cutoff = _cutoff(as_of)
    shown_date = as_of.isoformat() if isinstance(as_of, date) and not isinstance(as_of, datetime) else None
    shown_date = shown_date or (_rfc3339(cutoff) if cutoff else None)
    settings = _index_settings(path)
    command = [
        _uv_bin(),
        "pip",
        "compile",
        str(path),
        "--no-config",
        "--no-header",
        "--no-annotate",
        "--color",
        "never",
        "--python",
        sys.executable,
        "--python-version",
        _checked_python_version(python_version, path),
        "--default-index",
        settings.index_url,
    ]
    command += [arg for host in _trusted_hosts(settings) for arg in ("--allow-insecure-host", host)]
    if platform is not None:
        command += ["--python-platform", _checked_platform(platform, path)]
    if cutoff is not None:
        command += ["--exclude-newer", _rfc3339(cutoff)]
    started = time.perf_counter()
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env=_child_env(settings), check=False
        )
    except subprocess.TimeoutExpired:
        raise ResolutionError(f"{path}: uv did not finish resolving within {timeout:g} s") from None
    seconds = time.perf_counter() - started
    stderr = _ANSI.sub("", done.stderr)
    if cutoff is not None and (missing := _MISSING_UPLOAD_DATE.search(stderr)):
        raise _no_upload_times(path, settings, _project_of(missing.group(1)), shown_date)
    if done.returncode != 0:
        raise ResolutionError(f"{path}: uv could not resolve it: {_uv_reason(stderr)}")
    packages = _parse_compiled(done.stdout, path)
    if cutoff is not None:
        _check_upload_times(path, settings, packages, shown_date)
    return Resolution(
        packages=packages,
        as_of=cutoff,
        index=settings.display_index_url,
        resolver=_uv_version(command[0]),
        seconds=seconds,
    )


# ---------------------------------------------------------------- inputs


def _cutoff(as_of: datetime | date | None) -> datetime | None:
    """The UTC instant before which files count: a date's following midnight, as uv reads a date."""
    if as_of is None:
        return None
    if isinstance(as_of, datetime):
        return as_of.replace(tzinfo=UTC) if as_of.tzinfo is None else as_of.astimezone(UTC)
    if isinstance(as_of, date):
        return datetime(as_of.year, as_of.month, as_of.day, tzinfo=UTC) + timedelta(days=1)
    raise ResolutionError(f"as_of {as_of!r}: give a date or a datetime")


def _rfc3339(moment: datetime) -> str:
    """``2021-12-01T00:00:00Z`` (fractions of a second kept when there are any)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if moment.microsecond else "%Y-%m-%dT%H:%M:%SZ")


def _checked_python_version(python_version: str | None, path: Path) -> str:
    """The target Python as uv takes it ("3.11"); this interpreter's when None."""
    if python_version is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    if not re.fullmatch(r"3\.\d{1,2}(\.\d{1,3})?", python_version.strip()):
        raise ResolutionError(f"{path}: python version {python_version!r} is not like '3.11' or '3.11.4'")
    return python_version.strip()


def _checked_platform(platform: str, path: Path) -> str:
    """uv's target triple for one of the kit's platform names."""
    try:
        return PLATFORMS[platform]
    except KeyError:
        raise ResolutionError(
            f"{path}: unknown platform {platform!r}; use one of {', '.join(PLATFORMS)}"
        ) from None


# ---------------------------------------------------------------- index and uv


def _index_settings(path: Path) -> PipSettings:
    """pip's index, CA file, proxy and timeout; UV_DEFAULT_INDEX or UV_INDEX_URL, when set, name the index."""
    try:
        settings = _pip_settings(_pip_config_key())
    except KitError as exc:
        raise ResolutionError(f"{path}: {exc}") from None
    chosen = os.environ.get("UV_DEFAULT_INDEX") or os.environ.get("UV_INDEX_URL")
    return dataclasses.replace(settings, index_url=chosen.rstrip("/")) if chosen else settings


def _pip_config_key() -> tuple:
    """What pip's settings depend on: PIP_* variables and the state of pip's configuration files."""
    home = Path.home()
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    config_dirs = (os.environ.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(os.pathsep)
    files = [Path(d) / "pip" / "pip.conf" for d in config_dirs] + [Path("/etc/pip.conf")]
    files += [config_home / "pip" / "pip.conf", home / ".pip" / "pip.conf", Path(sys.prefix) / "pip.conf"]

    def state(file: Path) -> int | None:
        try:
            return file.stat().st_mtime_ns
        except OSError:
            return None

    variables = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("PIP_")))
    return variables, tuple((str(file), state(file)) for file in files)


@lru_cache(maxsize=8)
def _pip_settings(key: tuple) -> PipSettings:
    """pip_settings() (it runs ``pip config list``, about 0.7 s) for one state of pip's configuration."""
    return pip_settings()


def _options(settings: PipSettings) -> list[tuple[str, str]]:
    """pip's ``--name value`` options as pairs."""
    return list(zip(settings.options[::2], settings.options[1::2], strict=False))


def _trusted_hosts(settings: PipSettings) -> list[str]:
    """pip's trusted hosts (uv's --allow-insecure-host)."""
    return [value for name, value in _options(settings) if name == "--trusted-host"]


def _child_env(settings: PipSettings) -> dict[str, str]:
    """This environment without colour forcing or uv settings that change the result, plus pip's TLS,
    proxy, timeout and retries in uv's terms (where the environment does not already say)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _COLOUR_VARIABLES and (not key.startswith("UV_") or key in _KEPT_UV_VARIABLES)
    }
    env["NO_COLOR"] = "1"
    env["UV_PYTHON_DOWNLOADS"] = "never"
    options = dict(_options(settings))
    wanted = {
        "SSL_CERT_FILE": settings.cert,
        "SSL_CLIENT_CERT": options.get("--client-cert"),
        "HTTPS_PROXY": settings.proxy,
        "HTTP_PROXY": settings.proxy,
        "UV_HTTP_TIMEOUT": f"{settings.timeout:g}" if "--timeout" in options else None,
        "UV_HTTP_RETRIES": options.get("--retries"),
    }
    for key, value in wanted.items():
        if value and key not in env:
            env[key] = value
    return env


def _uv_bin() -> str:
    """The uv binary that the ``uv`` package installed."""
    import uv

    try:
        return uv.find_uv_bin()
    except FileNotFoundError:
        raise KitError("the uv binary is missing: reinstall the kit (pip install -e .)") from None


@cache
def _uv_version(binary: str) -> str:
    """'uv 0.x.y' of ``binary``."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return " ".join(done.stdout.split()[:2]) or "uv (unknown version)"


def _uv_reason(stderr: str) -> str:
    """uv's error and its innermost cause, on one line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    causes = [
        re.sub(r"^(cause:|╰─▶|Caused by:)\s*", "", line)
        for line in lines
        if line.startswith(("cause:", "╰─▶", "Caused by:"))
    ]
    reason = errors[0] if errors else (lines[-1] if lines else "no output")
    if causes and causes[-1] not in reason:
        reason = f"{reason}: {causes[-1]}"
    return reason[:400]


def _parse_compiled(stdout: str, path: Path) -> dict[str, str]:
    """name -> version from uv's ``name==version`` lines."""
    packages = {}
    for line in stdout.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            raise ResolutionError(f"{path}: uv printed a line the kit cannot read: {line!r}") from None
        pins = [spec.version for spec in requirement.specifier if spec.operator in ("==", "===")]
        if requirement.url or len(pins) != 1:
            raise ResolutionError(f"{path}: uv gives no version for {requirement.name} ({line!r})")
        packages[normalize(requirement.name)] = pins[0]
    return packages


# ---------------------------------------------------------------- upload times


def _project_of(filename: str) -> str:
    """The project a distribution file belongs to."""
    try:
        return str(parse_wheel_filename(filename)[0])
    except InvalidWheelFilename:
        pass
    try:
        return str(parse_sdist_filename(filename)[0])
    except InvalidSdistFilename:
        return filename


def _no_upload_times(
    path: Path, settings: PipSettings, project: str, shown_date: str | None
) -> ResolutionError:
    """The error for an index that cannot say what was there at a date."""
    return ResolutionError(
        f"{path}: {settings.display_index_url} gives no upload times for {project}; cannot resolve as of "
        f"{shown_date} (use a mirror that serves PEP 700 upload-time, or pin the side)"
    )


def _pinned_names(path: Path, *, _seen: frozenset[Path] = frozenset()) -> set[str]:
    """Names the file (and files it includes with -r/-c) pins to one version with ``==``."""
    path = path.resolve()
    if path in _seen or not path.is_file():
        return set()
    names: set[str] = set()
    text = re.sub(r"\\\n", " ", path.read_text(errors="replace"))
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*", "", raw).strip()
        if match := re.match(r"(-r|-c|--requirement|--constraint)(=|\s+)(\S+)", line):
            names |= _pinned_names(path.parent / match.group(3), _seen=_seen | {path})
            continue
        try:
            requirement = Requirement(line.split(" --", 1)[0])
        except InvalidRequirement:
            continue
        specs = list(requirement.specifier)
        if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
            names.add(normalize(requirement.name))
    return names


def _check_upload_times(path: Path, settings: PipSettings, packages: dict[str, str], shown_date: str | None):
    """Raise unless the index's JSON page gives upload-time for every file of certifi and of each
    resolved package the file does not pin."""
    unpinned = set(packages) - _pinned_names(path)
    checked = sorted(unpinned | ({"certifi"} & set(packages)))

    def lacks_upload_times(project: str) -> bool:
        page = _json_page(settings, project, path)
        files = page.get("files", []) if page is not None else []
        return not files or any(not entry.get("upload-time") for entry in files)

    with ThreadPoolExecutor(max_workers=8) as pool:
        verdicts = list(pool.map(lacks_upload_times, checked))
    for project, lacking in zip(checked, verdicts, strict=True):
        if lacking:
            raise _no_upload_times(path, settings, project, shown_date)


def _json_page(settings: PipSettings, project: str, path: Path) -> dict | None:
    """The index's PEP 691 JSON page for ``project``, or None when the index serves no JSON page."""
    accept = f"{_JSON_ACCEPT}, text/html;q=0.01"
    try:
        with open_url(f"{settings.index_url}/{project}/", settings, accept=accept) as response:
            kind, body = response.headers.get("Content-Type", ""), response.read()
    except (urllib.error.URLError, OSError) as exc:
        shown = f"{settings.display_index_url}/{project}/"
        reason = (
            f"it answered {exc.code}"
            if isinstance(exc, urllib.error.HTTPError)
            else getattr(exc, "reason", exc)
        )
        raise ResolutionError(
            f"{path}: cannot check upload times of {project} on {shown}: {reason}"
        ) from None
    if "json" not in kind:
        return None  # PEP 503 HTML carries no upload times
    try:
        return json.loads(body)
    except ValueError:
        return None
