"""What one side of an upgrade installs, as its installer would: requirements files (markers, includes,
constraints), ``pip freeze`` output, lock files (Poetry, uv, PDM, Pipenv, PEP 751) read for one target
Python and platform, and a resolver only where nothing pins the packages that matter."""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker, default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from helpers._paths import kit_path
from helpers.kinds import InputError, KitError

__all__ = [
    "PLATFORMS",
    "UNKNOWN_VERSION",
    "WATCHED",
    "Environment",
    "Requirements",
    "ResolutionError",
    "Target",
    "normalize",
    "parse_as_of",
    "parse_requirements",
    "read_freeze",
    "read_lock",
    "resolve",
    "spec_path",
]

WATCHED = ("certifi", "botocore", "boto3", "requests", "urllib3")
UNKNOWN_VERSION = "unknown"  # installed, but the file does not say which version (a URL, an editable)


class ResolutionError(KitError, ValueError):
    """A requirements or lock file that cannot be read or resolved (one line, names the file)."""


def normalize(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return canonicalize_name(name)


# --- the target: which Python and platform the side is installed for -------------------------------

# platform -> the marker variables that differ between platforms (CPython's values there)
PLATFORMS: dict[str, dict[str, str]] = {
    "linux-x86_64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64"},
    "linux-aarch64": {"sys_platform": "linux", "platform_system": "Linux", "platform_machine": "aarch64"},
    "macos-x86_64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "x86_64"},
    "macos-arm64": {"sys_platform": "darwin", "platform_system": "Darwin", "platform_machine": "arm64"},
    "windows-x86_64": {"sys_platform": "win32", "platform_system": "Windows", "platform_machine": "AMD64"},
}
_PLATFORM_ALIASES = {"linux": "linux-x86_64"}


@dataclass(frozen=True)
class Target:
    """The CPython version and platform a side is installed for (AWS Lambda: 3.12/3.13 on linux)."""

    python_version: str  # "3.12"
    platform: str  # a key of PLATFORMS

    @classmethod
    def current(cls) -> Target:
        """The running interpreter's version and platform."""
        environment = default_environment()
        here = (environment["sys_platform"], environment["platform_machine"].lower())
        known = {(v["sys_platform"], v["platform_machine"].lower()): name for name, v in PLATFORMS.items()}
        return cls(environment["python_version"], known.get(here, "-".join(here)))

    @classmethod
    def parse(cls, python_version: str | None, platform: str | None) -> Target:
        """A target from ``--python-version``/``--platform`` values (None: the running interpreter's)."""
        current = cls.current()
        return cls(
            _python_version(python_version) if python_version else current.python_version,
            _platform(platform) if platform else current.platform,
        )

    @property
    def label(self) -> str:
        """'CPython 3.12 on linux-x86_64'."""
        return f"CPython {self.python_version} on {self.platform}"

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker variables for this target (CPython)."""
        environment = default_environment()
        running = environment["python_version"] == self.python_version
        environment.update(
            python_version=self.python_version,
            python_full_version=environment["python_full_version"] if running else f"{self.python_version}.0",
            implementation_name="cpython",
            platform_python_implementation="CPython",
        )
        if self.platform in PLATFORMS:
            environment.update(PLATFORMS[self.platform])
            environment["os_name"] = "nt" if self.platform.startswith("windows") else "posix"
            if environment["sys_platform"] != sys.platform:
                environment["platform_release"] = environment["platform_version"] = ""
        return environment

    def applies(self, marker: str | Marker | None, *, extras: Iterable[str] = ("",)) -> bool:
        """True when a PEP 508 marker holds here (for any of ``extras``; no marker: True)."""
        if marker is None or marker == "":
            return True
        parsed = marker if isinstance(marker, Marker) else Marker(marker)
        environment = self.marker_environment()
        return any(parsed.evaluate({**environment, "extra": extra}) for extra in extras)


def _python_version(value: str) -> str:
    """'3.12' from a ``--python-version`` value, or a one-line error."""
    try:
        version = Version(value)
    except InvalidVersion:
        version = None
    if version is None or version.major != 3 or len(version.release) != 2 or version.pre or version.dev:
        raise ResolutionError(f"--python-version {value!r}: give a CPython 3 version like 3.12 or 3.13")
    return f"{version.major}.{version.minor}"


def _platform(value: str) -> str:
    """A PLATFORMS key from a ``--platform`` value, or a one-line error."""
    name = _PLATFORM_ALIASES.get(value.strip().lower(), value.strip().lower())
    if name not in PLATFORMS:
        raise ResolutionError(
            f"--platform {value!r}: use one of {', '.join(PLATFORMS)} (linux means linux-x86_64)"
        )
    return name


@dataclass(frozen=True)
class Environment:
    """What one side of an upgrade would install: distribution name -> version, and how we know."""

    source: str
    # "lock" (a complete lock or pinned file), "pins" (pinned in the file), "freeze" (pip freeze of an
    # installed environment), "resolved" (uv's resolution, as of a date or today)
    method: str
    packages: dict[str, str] = field(default_factory=dict)
    note: str = ""
    target: str = ""  # Target.label the file was read for
    floated: tuple[str, ...] = ()  # packages a resolver chose that the file did not pin
    as_of: str = ""  # the date a resolver read the index as of ("" when as of today, or not resolved)

    @property
    def certifi(self) -> str | None:
        """The certifi version this side installs, or None when it installs no certifi."""
        return self.packages.get("certifi")

    @property
    def botocore(self) -> str | None:
        """The botocore version this side installs, or None when botocore comes from elsewhere."""
        return self.packages.get("botocore")


# --- requirements files ----------------------------------------------------------------------------

_INCLUDE = {
    "-r": "requirement",
    "--requirement": "requirement",
    "-c": "constraint",
    "--constraint": "constraint",
}


@dataclass
class Requirements:
    """A requirements file flattened through its ``-r`` includes, read for one target."""

    pins: dict[str, str] = field(default_factory=dict)  # exact ``==`` pins of requirements that apply
    unpinned: list[str] = field(default_factory=list)  # requirement lines that are not exact pins
    constraints: dict[str, str] = field(default_factory=dict)  # ``-c`` pins: never installed by themselves
    hashed: int = 0  # requirement lines carrying --hash
    requirements: int = 0  # requirement lines that apply to the target
    skipped: list[str] = field(default_factory=list)  # requirement lines whose markers do not apply
    generated_lock: bool = False  # pip-compile / uv pip compile output

    @property
    def complete(self) -> bool:
        """True when the file pins the whole environment (hash-checking mode, or compiled output)."""
        if self.unpinned or not self.requirements:
            return False
        return self.generated_lock or self.hashed == self.requirements

    def pin(self, path: Path, name: str, version: str, *, into: str = "pins") -> None:
        """Record an exact pin; two different pins for one name are an error naming both."""
        table = getattr(self, into)
        if table.get(name, version) != version:
            raise ResolutionError(
                f"{path}: {name} is pinned twice for this target ({name}=={table[name]} and "
                f"{name}=={version}); keep one, or give the lines markers that exclude each other"
            )
        table[name] = version

    def merge(self, path: Path, other: Requirements) -> None:
        """Add an included requirements file."""
        for name, version in other.pins.items():
            self.pin(path, name, version)
        for name, version in other.constraints.items():
            self.pin(path, name, version, into="constraints")
        self.unpinned += other.unpinned
        self.skipped += other.skipped
        self.hashed += other.hashed
        self.requirements += other.requirements


def _logical_lines(text: str) -> list[str]:
    """Lines with comments removed and backslash continuations joined."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            lines.append(line)
    if pending.strip():
        lines.append(pending.strip())
    return lines


def _read_text(path: Path, *, what: str) -> str:
    """A file's text, or a one-line error naming it."""
    if path.exists() and not path.is_file():  # a folder, a pipe or a device: would hang or mislead
        raise ResolutionError(f"{path}: not a regular file; pass a {what}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ResolutionError(f"{path}: no such {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ResolutionError(f"{path}: cannot read it ({exc.__class__.__name__})") from None


def _include(line: str) -> tuple[str, str] | None:
    """('requirement' | 'constraint', file) for a ``-r``/``-c`` line, else None."""
    head, _, tail = line.partition(" ")
    if head in _INCLUDE:
        return _INCLUDE[head], tail.strip()
    for option, kind in _INCLUDE.items():
        joined = option + "=" if option.startswith("--") else option
        if head.startswith(joined):
            return kind, line[len(joined) :].strip()
    return None


def _requirement(path: Path, line: str) -> Requirement:
    """The PEP 508 requirement of a line (per-requirement options like --hash cut off)."""
    text = re.split(r"\s--(?=[a-z])", line, maxsplit=1)[0].strip()
    try:
        return Requirement(text)
    except InvalidRequirement:
        raise ResolutionError(f"{path}: cannot parse requirement line {line!r}") from None


def _exact(requirement: Requirement) -> str | None:
    """The version an ``==``/``===`` requirement pins (no wildcard, no URL), else None."""
    specifiers = list(requirement.specifier)
    if requirement.url or len(specifiers) != 1 or specifiers[0].operator not in ("==", "==="):
        return None
    return None if "*" in specifiers[0].version else specifiers[0].version


def parse_requirements(
    path: str | os.PathLike, *, target: Target | None = None, _seen: set[Path] | None = None
) -> Requirements:
    """Read a requirements file for a target: pins, hashes, markers, ``-r``/``-c`` includes.

    Lines whose markers do not hold for ``target`` (default: the running interpreter) are skipped;
    ``-c`` pins go to ``constraints`` and never count as installed.
    """
    path = Path(path)
    target = target or Target.current()
    seen = _seen if _seen is not None else set()
    if path.resolve() in seen:
        return Requirements()
    seen.add(path.resolve())
    text = _read_text(path, what="requirements file")
    result = Requirements(generated_lock=bool(re.search(r"autogenerated by (pip-compile|uv)", text, re.I)))
    for line in _logical_lines(text):
        include = _include(line)
        if include is not None:
            kind, name = include
            included = parse_requirements(path.parent / name, target=target, _seen=seen)
            if kind == "constraint":
                included = Requirements(constraints={**included.constraints, **included.pins})
            result.merge(path, included)
        elif line.startswith(("-e", "--editable")):
            result.unpinned.append(line)
            result.requirements += 1
        elif line.startswith("-"):
            continue  # --index-url, --pre, ...: they do not change what is pinned
        elif "://" in line.split(";")[0].split(" @ ")[0] or line.startswith((".", "/")):
            result.unpinned.append(line)  # a URL or local path: only a resolver can tell what it is
            result.requirements += 1
        else:
            _add_requirement(result, path, line, target)
    return result


def _add_requirement(result: Requirements, path: Path, line: str, target: Target) -> None:
    """Count one requirement line that applies to the target (pinned or not)."""
    requirement = _requirement(path, line)
    if not _marker_holds(path, requirement.marker, target):
        result.skipped.append(line)
        return
    result.requirements += 1
    result.hashed += "--hash" in line
    version = _exact(requirement)
    if version is None:
        result.unpinned.append(line)
    else:
        result.pin(path, normalize(requirement.name), version)


def _marker_holds(path: Path, marker: str | Marker | None, target: Target, **extras: Any) -> bool:
    """Target.applies, with a bad marker reported as a one-line error naming the file."""
    try:
        return target.applies(marker, **extras)
    except (InvalidMarker, ValueError, KeyError) as exc:
        raise ResolutionError(
            f"{path}: cannot evaluate marker {str(marker)!r} ({_first_line(exc)})"
        ) from None


def _first_line(exc: Exception) -> str:
    """An exception's message, first line only (packaging's parse errors draw a caret below)."""
    return (str(exc).splitlines() or [exc.__class__.__name__])[0].strip()


# --- pip freeze ------------------------------------------------------------------------------------


def read_freeze(path: str | os.PathLike, *, target: Target | None = None) -> dict[str, str]:
    """name -> version from ``pip freeze`` output: everything installed is listed.

    ``name @ URL`` and ``-e`` lines are listed with the version a wheel or sdist file name gives, else
    UNKNOWN_VERSION; a range or an unpinned line means the file is not freeze output.
    """
    path = Path(path)
    target = target or Target.current()
    packages: dict[str, str] = {}
    for line in _logical_lines(_read_text(path, what="pip freeze file")):
        if line.startswith(("-e", "--editable")):
            name, version = _editable(path, line)
        elif line.startswith("-"):
            if _include(line):
                raise ResolutionError(
                    f"{path}: not a pip freeze output: {line!r} (pip freeze writes no includes)"
                )
            continue
        else:
            requirement = _requirement(path, line)
            if not _marker_holds(path, requirement.marker, target):
                continue
            name = normalize(requirement.name)
            version = _exact(requirement) or (_url_version(requirement.url) if requirement.url else None)
            if version is None:
                raise ResolutionError(f"{path}: not a pip freeze output: {line!r} (freeze pins every line)")
        if packages.get(name, version) != version:
            raise ResolutionError(f"{path}: lists {name} twice ({packages[name]} and {version})")
        packages[name] = version
    return packages


def _editable(path: Path, line: str) -> tuple[str, str]:
    """(name, UNKNOWN_VERSION) of an ``-e`` line: the ``#egg=`` name, else the folder's name."""
    location = re.sub(r"^(-e|--editable)[\s=]*", "", line).strip()
    egg = re.search(r"[#&]egg=([^&\s]+)", location)
    name = egg.group(1) if egg else Path(location.split("#")[0].rstrip("/")).name
    if not name:
        raise ResolutionError(f"{path}: cannot tell which package {line!r} installs")
    return normalize(name), UNKNOWN_VERSION


def _url_version(url: str) -> str:
    """The version in a wheel or sdist URL's file name, else UNKNOWN_VERSION."""
    filename = url.split("#")[0].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    try:
        if filename.endswith(".whl"):
            return str(parse_wheel_filename(filename)[1])
        return str(parse_sdist_filename(filename)[1])
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return UNKNOWN_VERSION


# --- lock files ------------------------------------------------------------------------------------

_CONDA_NAMES = re.compile(r"(environment|.*conda-lock)([.-][^/]*)?\.ya?ml|conda-lock\.ya?ml", re.I)


def _refuse_conda(path: Path) -> None:
    """A one-line, actionable error for conda environment and lock files."""
    conda = bool(_CONDA_NAMES.fullmatch(path.name))
    if not conda:
        try:
            with path.open(encoding="utf-8", errors="replace") as handle:
                head = [line.strip() for _, line in zip(range(200), handle, strict=False)]
        except OSError:
            return
        content = [line for line in head if line and not line.startswith("#")]
        yaml_dependencies = any(line.startswith("dependencies:") for line in content)  # any file name
        conda = content[:1] == ["@EXPLICIT"] or yaml_dependencies
    if conda:
        raise ResolutionError(
            f"{path}: conda files are not supported: inside that environment run "
            "`python -m pip freeze > freeze.txt` and pass freeze.txt with --freeze"
        )


def _load(path: Path, *, kind: str) -> dict:
    """A TOML or JSON lock file's data, or a one-line error naming the file."""
    text = _read_text(path, what="lock file")
    try:
        data = json.loads(text) if kind == "json" else tomllib.loads(text)
    except json.JSONDecodeError as exc:
        raise ResolutionError(f"{path}: not a valid {path.name} ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ResolutionError(f"{path}: not a valid TOML lock file ({exc})") from None
    if not isinstance(data, dict):
        raise ResolutionError(f"{path}: not a valid {path.name} (not a table)")
    return data


def _tables(path: Path, data: dict, key: str) -> list[dict]:
    """The ``[[key]]`` tables of a lock, each with a name."""
    tables = data.get(key, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) and "name" in t for t in tables):
        raise ResolutionError(f"{path}: every [[{key}]] needs a name; is this a {path.name}?")
    return tables


def _single_versions(path: Path, packages: dict[str, set[str]], target: Target) -> dict[str, str]:
    """Collapse name -> {versions}; a watched package at several versions for one target is an error."""
    out = {}
    for name, versions in packages.items():
        if len(versions) > 1 and name in WATCHED:
            raise ResolutionError(
                f"{path}: locks {name} at several versions ({', '.join(sorted(versions))}) for "
                f"{target.label}; pass a lock for one environment"
            )
        out[name] = max(versions, key=_version_key)
    return out


def _version_key(version: str) -> tuple[int, Version | str]:
    """Sort key: real versions in order, unparsable ones first."""
    try:
        return 1, Version(version)
    except InvalidVersion:
        return 0, version


def _collect(entries: Iterable[dict]) -> dict[str, set[str]]:
    """name -> {versions} of lock entries."""
    packages: dict[str, set[str]] = {}
    for entry in entries:
        packages.setdefault(normalize(entry["name"]), set()).add(str(entry.get("version", UNKNOWN_VERSION)))
    return packages


# Pipfile.lock


def _from_pipfile_lock(path: Path, target: Target, groups: Sequence[str]) -> dict[str, str]:
    """name -> version from Pipfile.lock's ``default`` (and ``develop`` when 'dev' is named)."""
    data = _load(path, kind="json")
    sections = ["default", *(["develop"] if "dev" in groups else [])]
    if not isinstance(data.get("default"), dict):
        raise ResolutionError(f"{path}: no 'default' section; is this a Pipfile.lock?")
    packages: dict[str, set[str]] = {}
    for section in sections:
        for name, info in (data.get(section) or {}).items():
            if not isinstance(info, dict) or not _marker_holds(path, info.get("markers"), target):
                continue
            version = str(info["version"]).removeprefix("==") if "version" in info else UNKNOWN_VERSION
            packages.setdefault(normalize(name), set()).add(version)
    return _single_versions(path, packages, target)


# pylock.toml (PEP 751)


def _from_pylock(path: Path, target: Target, groups: Sequence[str]) -> dict[str, str]:
    """name -> version of the pylock.toml packages whose markers hold (named groups and extras only)."""
    data = _load(path, kind="toml")
    named = set(groups)
    environment: dict[str, Any] = {
        **target.marker_environment(),
        "extras": named & set(data.get("extras", [])),
        "dependency_groups": set(data.get("default-groups", []))
        | (named & set(data.get("dependency-groups", []))),
    }
    chosen = []
    for entry in _tables(path, data, "packages"):
        try:
            holds = "marker" not in entry or Marker(entry["marker"]).evaluate(environment, "lock_file")
        except (InvalidMarker, ValueError, KeyError, TypeError) as exc:
            raise ResolutionError(
                f"{path}: cannot evaluate marker {entry.get('marker')!r} ({_first_line(exc)})"
            ) from None
        if holds:
            chosen.append(entry)
    return _single_versions(path, _collect(chosen), target)


# pdm.lock


def _from_pdm_lock(path: Path, target: Target, groups: Sequence[str]) -> dict[str, str]:
    """name -> version of pdm.lock's default group (plus named groups), markers evaluated."""
    data = _load(path, kind="toml")
    entries = _tables(path, data, "package")
    if any("groups" not in entry for entry in entries):
        raise ResolutionError(
            f"{path}: records no groups per package (locked without inherit_metadata); "
            "relock with `pdm lock --strategy inherit_metadata`"
        )
    wanted = {"default", *groups}
    chosen = [
        entry
        for entry in entries
        if wanted & set(entry["groups"]) and _marker_holds(path, entry.get("marker"), target)
    ]
    return _single_versions(path, _collect(chosen), target)


# poetry.lock


def _from_poetry_lock(path: Path, target: Target, groups: Sequence[str]) -> dict[str, str]:
    """name -> version Poetry installs from poetry.lock for the target (main group plus named groups).

    lock-version 1.x (and Poetry 1.3-1.4) records ``category``; 2.1 (Poetry 2) records ``groups`` and
    ``markers``; 2.0 from Poetry 1.5-1.8 records neither, so the walk starts at pyproject.toml's
    dependencies and follows the lock's ``[package.dependencies]``.
    """
    data = _load(path, kind="toml")
    entries = _tables(path, data, "package")
    wanted = {"main", *groups}
    if any("category" in entry for entry in entries):
        chosen = [entry for entry in entries if entry.get("category", "main") in wanted]
        chosen = [entry for entry in chosen if _poetry_holds(path, entry.get("markers"), target, wanted)]
    elif any("groups" in entry for entry in entries) or _lock_version(data) >= Version("2.1"):
        chosen = [
            entry
            for entry in entries
            if wanted & set(entry.get("groups", ["main"]))
            and _poetry_holds(path, entry.get("markers"), target, wanted)
        ]
    else:
        chosen = _PoetryWalk(path, entries, target).run(_poetry_roots(path, _lock_version(data), groups))
    return _single_versions(path, _collect(chosen), target)


def _lock_version(data: dict) -> Version:
    """The ``[metadata] lock-version`` of a poetry.lock (1.0 when absent)."""
    try:
        return Version(str(data.get("metadata", {}).get("lock-version", "1.0")))
    except InvalidVersion:
        return Version("1.0")


def _poetry_holds(path: Path, markers: str | dict | None, target: Target, wanted: set[str]) -> bool:
    """Poetry 2's package ``markers``: one marker, or a marker per group (any named group's holds)."""
    if isinstance(markers, dict):
        return any(_marker_holds(path, m, target) for group, m in markers.items() if group in wanted)
    return _marker_holds(path, markers, target)


def _poetry_specifier(constraint: str) -> SpecifierSet | None:
    """A Poetry version constraint ('2.8.2', '^1.2', '~1.2', '>=1,<2', '*') as a SpecifierSet; None if
    it uses a form this cannot express ('||')."""
    text = constraint.strip()
    if text in ("", "*") or "||" in text or "|" in text:
        return SpecifierSet() if text in ("", "*") else None
    parts = []
    for piece in (p.strip() for p in re.split(r",|\s+(?=[<>=!~^])", text) if p.strip()):
        operator = re.match(r"^(\^|~=|~|===|==|!=|<=|>=|<|>|=)?\s*", piece)
        op, version = operator.group(1) or "", piece[operator.end() :]
        try:
            release = Version(version.rstrip(".*")).release
        except InvalidVersion:
            return None
        if op in ("^", "~"):
            bump = (
                next((i for i, n in enumerate(release) if n), len(release) - 1)
                if op == "^"
                else min(1, len(release) - 1)
            )
            upper = ".".join(map(str, [*release[:bump], release[bump] + 1]))
            parts += [f">={version}", f"<{upper}"]
        else:
            parts.append(("==" if op in ("", "=") else op) + version)
    try:
        return SpecifierSet(",".join(parts))
    except InvalidSpecifier:
        return None


def _poetry_edge_holds(path: Path, spec: dict, target: Target) -> bool:
    """A Poetry dependency table's ``markers``, ``python`` and ``platform`` for the target."""
    if not _marker_holds(path, spec.get("markers"), target):
        return False
    python = spec.get("python")
    if python is not None:
        specifier = _poetry_specifier(str(python))
        if specifier is None:
            raise ResolutionError(f"{path}: cannot read python constraint {python!r}")
        if not specifier.contains(f"{target.python_version}.0", prereleases=True):
            return False
    platform = spec.get("platform")
    return platform is None or target.marker_environment()["sys_platform"] == platform


def _poetry_edges(path: Path, name: str, value: Any, target: Target) -> list[tuple[str, dict]]:
    """(name, table) for each alternative of a Poetry dependency that holds for the target."""
    alternatives = value if isinstance(value, list) else [value]
    tables = [{"version": a} if isinstance(a, str) else a for a in alternatives]
    return [
        (normalize(name), t) for t in tables if isinstance(t, dict) and _poetry_edge_holds(path, t, target)
    ]


def _poetry_roots(lock: Path, lock_version: Version, groups: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, Poetry dependency value) of pyproject.toml's main dependencies and named groups."""
    pyproject = lock.parent / "pyproject.toml"
    if not pyproject.is_file():
        raise ResolutionError(
            f"{lock}: poetry.lock (lock-version {lock_version}) records no groups; "
            "keep pyproject.toml beside it"
        )
    data = _load(pyproject, kind="toml")
    poetry = data.get("tool", {}).get("poetry", {})
    roots: list[tuple[str, Any]] = []
    for line in data.get("project", {}).get("dependencies", []):
        requirement = Requirement(line)
        roots.append(
            (
                requirement.name,
                {
                    "version": str(requirement.specifier),
                    "markers": requirement.marker and str(requirement.marker),
                    "extras": sorted(requirement.extras),
                },
            )
        )
    roots += [(n, v) for n, v in poetry.get("dependencies", {}).items() if n.lower() != "python"]
    for group in groups:
        roots += poetry.get("group", {}).get(group, {}).get("dependencies", {}).items()
        if group == "dev":
            roots += poetry.get("dev-dependencies", {}).items()
    return roots


class _PoetryWalk:
    """From pyproject's dependencies through poetry.lock's ``[package.dependencies]`` for one target."""

    def __init__(self, path: Path, entries: list[dict], target: Target) -> None:
        self.path, self.target = path, target
        self.by_name: dict[str, list[dict]] = {}
        for entry in entries:
            self.by_name.setdefault(normalize(entry["name"]), []).append(entry)
        self.reached: dict[tuple[str, str], set[str]] = {}  # (name, version) -> extras followed

    def run(self, roots: list[tuple[str, Any]]) -> list[dict]:
        """The lock entries installed, reached from ``roots``."""
        chosen: dict[tuple[str, str], dict] = {}
        stack = [edge for name, value in roots for edge in _poetry_edges(self.path, name, value, self.target)]
        while stack:
            name, spec = stack.pop()
            if spec.get("optional") and not spec.get("_requested"):
                continue
            entry = self._choose(name, spec)
            key = (name, str(entry["version"]))
            extras = set(spec.get("extras", []))
            if key in chosen and extras <= self.reached[key]:
                continue
            chosen[key] = entry
            self.reached[key] = self.reached.get(key, set()) | extras
            stack += self._dependencies(entry, extras)
        return list(chosen.values())

    def _choose(self, name: str, spec: dict) -> dict:
        """The lock entry a dependency resolves to (by its version constraint when several are locked)."""
        candidates = self.by_name.get(name, [])
        if len(candidates) > 1:
            specifier = _poetry_specifier(str(spec.get("version", "*")))
            if specifier is not None:
                candidates = [
                    c for c in candidates if specifier.contains(str(c["version"]), prereleases=True)
                ]
        if len(candidates) != 1:
            found = "is not in it" if not candidates else "matches several versions"
            raise ResolutionError(
                f"{self.path}: {name} {spec.get('version', '')} {found}; relock with Poetry"
            )
        return candidates[0]

    def _dependencies(self, entry: dict, extras: set[str]) -> list[tuple[str, dict]]:
        """The entry's dependency edges that hold for the target, optional ones only for its extras."""
        extra_names = {
            normalize(re.split(r"[\s(\[;<>=!~]", item.strip(), maxsplit=1)[0])
            for extra in extras
            for item in entry.get("extras", {}).get(extra, [])
        }
        edges = []
        for name, value in entry.get("dependencies", {}).items():
            for dep_name, spec in _poetry_edges(self.path, name, value, self.target):
                edges.append((dep_name, {**spec, "_requested": dep_name in extra_names}))
        return edges


# uv.lock


def _source_key(source: Any) -> str:
    """A uv package source as a comparable string."""
    return json.dumps(source, sort_keys=True) if source is not None else ""


class _UvWalk:
    """uv's install set for one target: from the workspace root package(s) through the lock's edges."""

    def __init__(self, path: Path, entries: list[dict], target: Target) -> None:
        self.path, self.target = path, target
        self.by_name: dict[str, list[dict]] = {}
        for entry in entries:
            self.by_name.setdefault(normalize(entry["name"]), []).append(entry)

    def run(self, roots: list[dict], groups: Sequence[str]) -> list[dict]:
        """The entries installed from ``roots`` with their dependency groups and extras in ``groups``."""
        chosen: dict[tuple[str, str, str], dict] = {}
        followed: dict[tuple[str, str, str], set[str]] = {}
        stack: list[tuple[dict, set[str], list[dict]]] = []
        for root in roots:
            named = [e for g in groups for e in root.get("dev-dependencies", {}).get(g, [])]
            stack.append((root, set(groups), named))
        while stack:
            entry, extras, more = stack.pop()
            key = (normalize(entry["name"]), str(entry.get("version", "")), _source_key(entry.get("source")))
            if key in chosen and extras <= followed[key] and not more:
                continue
            chosen[key] = entry
            followed[key] = followed.get(key, set()) | extras
            edges = list(entry.get("dependencies", [])) + more
            edges += [e for extra in extras for e in entry.get("optional-dependencies", {}).get(extra, [])]
            for edge in edges:
                if _marker_holds(self.path, edge.get("marker"), self.target):
                    stack.append((self._choose(edge), set(edge.get("extra", [])), []))
        return list(chosen.values())

    def _choose(self, edge: dict) -> dict:
        """The package an edge points at: by version/source when several are locked, else by fork marker."""
        candidates = self.by_name.get(normalize(edge["name"]), [])
        if "version" in edge:
            candidates = [c for c in candidates if str(c.get("version")) == str(edge["version"])]
        if "source" in edge:
            candidates = [
                c for c in candidates if _source_key(c.get("source")) == _source_key(edge["source"])
            ]
        if len(candidates) > 1:
            candidates = [
                c
                for c in candidates
                if not c.get("resolution-markers")
                or any(_marker_holds(self.path, m, self.target) for m in c["resolution-markers"])
            ]
        if len(candidates) != 1:
            found = "is not locked" if not candidates else "is locked at several versions for this target"
            raise ResolutionError(f"{self.path}: {edge['name']} {found}; relock with `uv lock`")
        return candidates[0]


def _uv_roots(data: dict, entries: list[dict]) -> list[dict]:
    """The workspace's root packages: the project itself (virtual or editable '.') and workspace members."""
    members = {normalize(m) for m in data.get("manifest", {}).get("members", [])}
    return [
        entry
        for entry in entries
        if (
            isinstance(entry.get("source"), dict)
            and (entry["source"].get("virtual") == "." or entry["source"].get("editable") == ".")
        )
        or (normalize(entry["name"]) in members and {"virtual", "editable"} & set(entry.get("source", {})))
    ]


def _from_uv_lock(path: Path, target: Target, groups: Sequence[str]) -> dict[str, str]:
    """name -> version ``uv sync --no-dev`` installs for the target (plus named groups and extras)."""
    data = _load(path, kind="toml")
    entries = _tables(path, data, "package")
    roots = _uv_roots(data, entries)
    if not roots:  # a lock with no project in it (hand-made): every package, as before
        return _single_versions(path, _collect(entries), target)
    installed = [
        entry
        for entry in _UvWalk(path, entries, target).run(roots, groups)
        if not (isinstance(entry.get("source"), dict) and "virtual" in entry["source"])  # not installed
    ]
    return _single_versions(path, _collect(installed), target)


_LOCK_READERS = {
    "pipfile.lock": _from_pipfile_lock,
    "poetry.lock": _from_poetry_lock,
    "uv.lock": _from_uv_lock,
    "pdm.lock": _from_pdm_lock,
}


def read_lock(
    path: str | os.PathLike, *, target: Target | None = None, groups: Sequence[str] = ()
) -> dict[str, str] | None:
    """name -> version a lock file installs for a target (default groups, plus ``groups``); None if
    the file is not a lock (poetry.lock, uv.lock, pdm.lock, Pipfile.lock, pylock.toml)."""
    path = Path(path)
    name = path.name.lower()
    reader = _LOCK_READERS.get(name)
    if reader is None and re.fullmatch(r"pylock(\.[^.]+)?\.toml", name):
        reader = _from_pylock
    if reader is None:
        return None
    try:
        return reader(path, target or Target.current(), tuple(groups))
    except ResolutionError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ResolutionError(
            f"{path}: not a well-formed {path.name} ({exc.__class__.__name__}: {_first_line(exc)})"
        ) from None


# --- resolution ------------------------------------------------------------------------------------


def _inline_requirements(text: str) -> Path:
    """Write inline requirement specifiers ('requests==2.26.0 certifi==2021.10.8') to a temp file."""
    specs = [s for s in re.split(r"[\s,]+", text.strip()) if s]
    fd, name = tempfile.mkstemp(suffix=".txt", prefix="atskit-req-")
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(specs) + "\n")
    return Path(name)


def _looks_inline(spec: str) -> bool:
    """True for 'name==1.2 other==3' style text rather than a path."""
    return bool(re.fullmatch(r"[\sA-Za-z0-9._\-\[\],=<>!~*]+", spec)) and bool(re.search(r"[=<>~]", spec))


def spec_path(path_or_pins: str, *, name: str = "spec") -> str:
    """A requirements/lock path given relative to the kit's root, made absolute; inline pins as given.

    Notebooks run in ``notebooks/`` but their defaults name files from the kit's root
    (``docs/examples/incident-before.txt``); an empty value raises a ValueError naming ``name``.
    """
    from helpers._paths import ROOT

    if not isinstance(path_or_pins, str) or not path_or_pins.strip():
        raise InputError(
            f"{name} is empty: give a requirements/lock file or inline pins like 'certifi==2021.10.8'"
        )
    candidate = ROOT / path_or_pins
    return str(candidate) if not Path(path_or_pins).exists() and candidate.exists() else path_or_pins


def _check_path(text: str, path: Path, *, inline: bool) -> None:
    """One-line errors for a spec that is not a readable file (or inline pins)."""
    if not text.strip():  # Path('') is the current folder: not what anyone means
        raise ResolutionError("the spec is empty; pass a requirements or lock file, or inline pins")
    if path.is_dir():
        raise ResolutionError(f"{text}: is a directory; pass a requirements or lock file")
    if path.exists() and not path.is_file():
        raise ResolutionError(
            f"{text}: not a regular file (a pipe or device); pass a requirements or lock file"
        )
    if not inline and not path.is_file():
        raise ResolutionError(
            f"{text}: no such requirements or lock file "
            "(pass a path, or inline pins like 'certifi==2021.10.8')"
        )


def resolve(
    spec: str | os.PathLike,
    *,
    use_pip: bool = True,
    target: Target | None = None,
    groups: Sequence[str] = (),
    freeze: bool = False,
    as_of: Any = None,
) -> Environment:
    """What a requirements file, lock file, pip freeze or inline specifier list installs for a target.

    Lock files are read as their installer would for ``target`` (default: the running interpreter),
    default groups plus ``groups``; ``freeze=True`` reads ``pip freeze`` output as the whole
    environment; complete pinned requirements (every line hashed, or compiled output) are read as
    they are, and so is a file that pins both certifi and botocore. Anything else goes to a resolver
    (``use_pip=False`` makes that an error instead).
    """
    target = target or Target.current()
    _check_as_of(as_of)
    text = os.fspath(spec)
    path = Path(text)
    inline = not path.exists() and _looks_inline(text)
    _check_path(text, path, inline=inline)
    label = f"'{text.strip()}'" if inline else kit_path(path)
    if not inline:
        _refuse_conda(path)
        if freeze:
            packages = read_freeze(path, target=target)
            return Environment(
                label, "freeze", packages, note="pip freeze: the whole environment", target=target.label
            )
        locked = read_lock(path, target=target, groups=groups)
        if locked is not None:
            return Environment(label, "lock", locked, note=f"read from {path.name}", target=target.label)
    req_path = _inline_requirements(text) if inline else path
    try:
        return _from_requirements(req_path, label, target=target, use_pip=use_pip, as_of=as_of)
    except ResolutionError as exc:
        if inline:
            raise ResolutionError(str(exc).replace(str(req_path), label)) from None
        raise
    finally:
        if inline:
            req_path.unlink(missing_ok=True)


def _from_requirements(
    req_path: Path, label: str, *, target: Target, use_pip: bool, as_of: Any
) -> Environment:
    """resolve() for a requirements file: its pins when they settle it, else a resolver."""
    requirements = parse_requirements(req_path, target=target)
    where = target.label
    if not requirements.requirements:
        why = "only constraints" if requirements.constraints else "no requirement that applies"
        return Environment(label, "lock", {}, note=f"installs nothing: {why} for {where}", target=where)
    if requirements.complete:
        return Environment(
            label, "lock", requirements.pins, note="complete pinned requirements", target=where
        )
    if "certifi" in requirements.pins and "botocore" in requirements.pins:
        return Environment(
            label, "pins", requirements.pins, note="certifi and botocore are pinned", target=where
        )
    if not use_pip:
        raise ResolutionError(
            f"{label}: certifi/botocore are not both pinned and resolving is off (--no-pip); "
            "pin them, use a lock file, or let the gate resolve"
        )
    from helpers import _resolver  # imported here: it imports this module

    resolution = _resolver.resolve(
        req_path, as_of=as_of, python_version=target.python_version, platform=target.platform
    )
    floated = tuple(sorted(name for name in resolution.packages if name not in requirements.pins))
    watched_first = sorted(floated, key=lambda name: name not in WATCHED)  # certifi, botocore, ... first
    chose = ", ".join(f"{name} {resolution.packages[name]}" for name in watched_first) or "nothing"
    when = f"as of {_shown_date(as_of)}" if as_of is not None else f"as of today ({_today()}: no date given)"
    return Environment(
        label,
        "resolved",
        resolution.packages,
        note=f"resolved with {resolution.resolver} from {resolution.index} {when}; it chose {chose}",
        target=where,
        floated=floated,
        as_of=_shown_date(as_of) if as_of is not None else "",
    )


def parse_as_of(text: str):
    """'YYYY-MM-DD' -> a date (the whole day, UTC, as uv reads it); an ISO 8601 time -> a datetime
    (naive = UTC); ValueError otherwise. What --as-of and the notebooks' *_as_of parameters take."""
    import datetime as dt

    text = text.strip()
    return dt.date.fromisoformat(text) if len(text) == 10 else dt.datetime.fromisoformat(text)


EARLIEST_AS_OF_YEAR = 2000  # no package index is older (PyPI's first uploads are from 2005)


def _check_as_of(as_of: Any) -> None:
    """A date after today would resolve as of today under another name, and one before 2000 asks an
    index for a time it never had: both refused, never passed on to the resolver."""
    import datetime as dt

    if as_of is None:
        return
    now = dt.datetime.now(dt.UTC)
    if isinstance(as_of, dt.datetime):
        late = (as_of if as_of.tzinfo else as_of.replace(tzinfo=dt.UTC)) > now
    elif isinstance(as_of, dt.date):
        late = as_of > now.date()
    else:
        raise ResolutionError(f"as of {as_of!r}: give a date (YYYY-MM-DD) or a time")
    if as_of.year < EARLIEST_AS_OF_YEAR:
        raise ResolutionError(
            f"as of {_shown_date(as_of)}: before {EARLIEST_AS_OF_YEAR}, older than any package index "
            "(PyPI's first uploads are from 2005); give the date the side was built"
        )
    if late:
        raise ResolutionError(
            f"as of {_shown_date(as_of)}: that is in the future; give the date the side was built, "
            "or no date for today's index"
        )


def _shown_date(value) -> str:
    """A date or time as the user gave it, in ISO 8601."""
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _today() -> str:
    """Today's date (UTC), ISO 8601."""
    import datetime as dt

    return dt.datetime.now(dt.UTC).date().isoformat()
