"""What one side of an upgrade installs, as its installer would: requirements files (markers, includes,
constraints), ``pip freeze`` output, lock files (Poetry, uv, PDM, Pipenv, PEP 751, read by ``_locks``)
for one target Python and platform, and a resolver only where nothing pins the packages that matter."""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker, default_environment
from packaging.requirements import InvalidRequirement, Requirement
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


def read_text(path: Path, *, what: str) -> str:
    """A file's text, or a one-line error naming it (requirements, freeze and lock files)."""
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
    text = read_text(path, what="requirements file")
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
    if not marker_holds(path, requirement.marker, target):
        result.skipped.append(line)
        return
    result.requirements += 1
    result.hashed += "--hash" in line
    version = _exact(requirement)
    if version is None:
        result.unpinned.append(line)
    else:
        result.pin(path, normalize(requirement.name), version)


def marker_holds(path: Path, marker: str | Marker | None, target: Target, **extras: Any) -> bool:
    """Target.applies, with a bad marker reported as a one-line error naming the file."""
    try:
        return target.applies(marker, **extras)
    except (InvalidMarker, ValueError, KeyError) as exc:
        raise ResolutionError(f"{path}: cannot evaluate marker {str(marker)!r} ({first_line(exc)})") from None


def first_line(exc: Exception) -> str:
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
    for line in _logical_lines(read_text(path, what="pip freeze file")):
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
            if not marker_holds(path, requirement.marker, target):
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
        from helpers import _locks  # imported here: it imports this module

        _locks.refuse_conda(path)
        if freeze:
            packages = read_freeze(path, target=target)
            return Environment(
                label, "freeze", packages, note="pip freeze: the whole environment", target=target.label
            )
        locked = _locks.read_lock(path, target=target, groups=groups)
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
