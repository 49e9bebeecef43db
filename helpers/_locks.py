"""Lock files (Poetry, uv, PDM, Pipenv, PEP 751) read as their installer would for one target Python
and platform, and conda files refused with what to do instead (``requirements.resolve`` only)."""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from helpers.requirements import (
    UNKNOWN_VERSION,
    WATCHED,
    ResolutionError,
    Target,
    first_line,
    marker_holds,
    normalize,
    read_text,
)

_CONDA_NAMES = re.compile(r"(environment|.*conda-lock)([.-][^/]*)?\.ya?ml|conda-lock\.ya?ml", re.I)


def refuse_conda(path: Path) -> None:
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
    text = read_text(path, what="lock file")
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
            if not isinstance(info, dict) or not marker_holds(path, info.get("markers"), target):
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
                f"{path}: cannot evaluate marker {entry.get('marker')!r} ({first_line(exc)})"
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
        if wanted & set(entry["groups"]) and marker_holds(path, entry.get("marker"), target)
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
        return any(marker_holds(path, m, target) for group, m in markers.items() if group in wanted)
    return marker_holds(path, markers, target)


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
    if not marker_holds(path, spec.get("markers"), target):
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
                if marker_holds(self.path, edge.get("marker"), self.target):
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
                or any(marker_holds(self.path, m, self.target) for m in c["resolution-markers"])
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
            f"{path}: not a well-formed {path.name} ({exc.__class__.__name__}: {first_line(exc)})"
        ) from None
