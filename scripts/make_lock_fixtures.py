"""Make tests/data/locks/: tiny projects locked against the package index by the real tools.

Each tool gets its own temporary venv (Poetry 1.4 writes ``category``, Poetry 1.8 writes lock-version
2.0 with no groups, Poetry 2 writes ``groups`` and ``markers``; uv and pdm as released). Each case is a
folder with the project's pyproject.toml, the lock the tool wrote and a PROVENANCE.md line.

Usage: python scripts/make_lock_fixtures.py [--out DIR] [--only CASE ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "data" / "locks"

# tool name -> (pip requirements, command run in the project, the lock file it writes)
TOOLS = {
    "poetry-1.4": (["poetry==1.4.2"], ["poetry", "lock", "--no-update"], "poetry.lock"),
    "poetry-1.8": (["poetry==1.8.5"], ["poetry", "lock", "--no-update"], "poetry.lock"),
    "poetry-2": (["poetry==2.5.1"], ["poetry", "lock"], "poetry.lock"),
    "pdm": (
        ["pdm==2.29.4", "hishel<2"],  # hishel 2 dropped what pdm 2.29 uses
        ["pdm", "lock"],
        "pdm.lock",
    ),
    "uv": (["uv==0.13.9"], ["uv", "lock"], "uv.lock"),
    "pipenv": (["pipenv==2026.10.3"], ["pipenv", "lock"], "Pipfile.lock"),
}
# after locking, also export the lock as PEP 751 pylock.toml (uv cases named here)
PYLOCK_EXPORT = (["uv", "export", "--format", "pylock.toml", "--frozen", "-o", "pylock.toml"], "pylock.toml")

MAIN = "python-dateutil==2.8.2"  # pulls six: the main graph has a transitive edge and no certifi
CERTIFI_BEFORE, CERTIFI_AFTER = "2020.6.20", "2021.10.8"
BY_PYTHON = [
    f'certifi=={CERTIFI_BEFORE}; python_version < "3.12"',
    f'certifi=={CERTIFI_AFTER}; python_version >= "3.12"',
]
BY_PLATFORM = [
    f'certifi=={CERTIFI_BEFORE}; sys_platform == "darwin"',
    f'certifi=={CERTIFI_AFTER}; sys_platform != "darwin"',
]


def _pep621(dependencies: list[str], dev: list[str], *, extra: str = "") -> str:
    """A [project] with PEP 735 dependency groups (uv, pdm)."""
    lines = ['[project]\nname = "case"\nversion = "0.1.0"\nrequires-python = ">=3.9"\ndependencies = [']
    lines += [f"    {json.dumps(d)}," for d in dependencies] + ["]"]  # a JSON string is a TOML string
    if dev:
        lines += ["", "[dependency-groups]", f"dev = {json.dumps(dev)}"]
    return "\n".join(lines) + "\n" + extra


def _poetry1(dependencies: dict[str, str], dev: dict[str, str], *, source: str) -> str:
    """A [tool.poetry] project (Poetry 1.x): dependencies as Poetry constraints."""
    text = (
        '[tool.poetry]\nname = "case"\nversion = "0.1.0"\ndescription = ""\n'
        'authors = ["kit <kit@example.invalid>"]\n\n[tool.poetry.dependencies]\npython = ">=3.9,<4"\n'
    )
    text += "".join(f"{name} = {value}\n" for name, value in dependencies.items())
    if dev:
        text += "\n[tool.poetry.group.dev.dependencies]\n"
        text += "".join(f"{name} = {value}\n" for name, value in dev.items())
    return (
        text
        + source
        + '\n[build-system]\nrequires = ["poetry-core"]\nbuild-backend = "poetry.core.masonry.api"\n'
    )


# Poetry reads PyPI through its JSON API, which this network does not serve: name the simple index
POETRY_SOURCE = '\n[[tool.poetry.source]]\nname = "pypi-simple"\nurl = "https://pypi.org/simple/"\n'
POETRY2_EXTRA = "\n[tool.poetry]\npackage-mode = false\n" + POETRY_SOURCE + 'priority = "primary"\n'
POETRY18_SOURCE = POETRY_SOURCE + 'priority = "primary"\n'
POETRY14_SOURCE = POETRY_SOURCE + "default = true\n"
PDM_EXTRA = "\n[tool.pdm]\ndistribution = false\n"
POETRY1_MAIN = {"python-dateutil": '"2.8.2"'}
POETRY1_BY_PYTHON = {
    "certifi": f'[{{version = "{CERTIFI_BEFORE}", python = "<3.12"}}, '
    f'{{version = "{CERTIFI_AFTER}", python = ">=3.12"}}]'
}


PIPFILE = f"""[packages]
python-dateutil = "==2.8.2"
jmespath = {{version = "==1.0.1", markers = "sys_platform == 'darwin'"}}

[dev-packages]
certifi = "=={CERTIFI_BEFORE}"

[requires]
python_version = "3.11"
"""


@dataclass(frozen=True)
class Case:
    """One folder of tests/data/locks: a tool and the project it locks."""

    name: str
    tool: str
    pyproject: str
    project_file: str = "pyproject.toml"
    export_pylock: bool = False


def _cases() -> list[Case]:
    cases = []
    for side, certifi in (("before", CERTIFI_BEFORE), ("after", CERTIFI_AFTER)):
        dev = [f"certifi=={certifi}"]
        cases += [
            Case(f"uv-dev-{side}", "uv", _pep621([MAIN], dev)),
            Case(f"pdm-dev-{side}", "pdm", _pep621([MAIN], dev, extra=PDM_EXTRA)),
            Case(
                f"poetry2-dev-{side}",
                "poetry-2",
                _pep621([MAIN], [], extra=POETRY2_EXTRA)
                + f'\n[tool.poetry.group.dev.dependencies]\ncertifi = "{certifi}"\n',
            ),
            Case(
                f"poetry18-dev-{side}",
                "poetry-1.8",
                _poetry1(POETRY1_MAIN, {"certifi": f'"{certifi}"'}, source=POETRY18_SOURCE),
            ),
            Case(
                f"poetry14-dev-{side}",
                "poetry-1.4",
                _poetry1(POETRY1_MAIN, {"certifi": f'"{certifi}"'}, source=POETRY14_SOURCE),
            ),
        ]
    cases += [
        Case("uv-markers", "uv", _pep621([MAIN, *BY_PYTHON], []), export_pylock=True),
        Case("uv-platform", "uv", _pep621([MAIN, *BY_PLATFORM], []), export_pylock=True),
        Case("pipenv-dev-markers", "pipenv", PIPFILE, project_file="Pipfile"),
        Case("poetry2-markers", "poetry-2", _pep621([MAIN, *BY_PYTHON], [], extra=POETRY2_EXTRA)),
        Case(
            "poetry18-markers",
            "poetry-1.8",
            _poetry1({**POETRY1_MAIN, **POETRY1_BY_PYTHON}, {}, source=POETRY18_SOURCE),
        ),
    ]
    return cases


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run a command; on failure print its output and stop."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")


def _tool_venv(tool: str, base: Path) -> tuple[Path, str]:
    """A venv with the tool installed; its bin folder and the tool's installed version."""
    venv = base / f"venv-{tool}"
    if not venv.exists():
        _run([sys.executable, "-m", "venv", str(venv)], cwd=base)
        _run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *TOOLS[tool][0]], cwd=base)
    distribution = TOOLS[tool][0][0].split("==")[0]
    version = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({distribution!r}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return venv / "bin", version


def make(case: Case, *, base: Path, out: Path) -> Path:
    """Lock one case with its tool; write pyproject.toml, the lock and PROVENANCE.md to out/case."""
    bin_dir, version = _tool_venv(case.tool, base)
    project = base / case.name
    shutil.rmtree(project, ignore_errors=True)
    project.mkdir()
    (project / case.project_file).write_text(case.pyproject)
    command, lock_name = TOOLS[case.tool][1], TOOLS[case.tool][2]
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "POETRY_VIRTUALENVS_CREATE": "false",
        "PDM_CHECK_UPDATE": "false",
        "PDM_IGNORE_ACTIVE_VENV": "1",
    }
    env.pop("VIRTUAL_ENV", None)
    _run(command, cwd=project, env=env)
    outputs = [case.project_file, lock_name]
    if case.export_pylock:
        _run(PYLOCK_EXPORT[0], cwd=project, env=env)
        outputs.append(PYLOCK_EXPORT[1])
        command = [*command, "&&", *PYLOCK_EXPORT[0]]
    target = out / case.name
    staged = out / f".{case.name}.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    for output in outputs:
        shutil.copy(project / output, staged / output)
    distribution = TOOLS[case.tool][0][0].split("==")[0]
    (staged / "PROVENANCE.md").write_text(
        f"{distribution} {version}, `{' '.join(command)}` against PyPI, {dt.date.today().isoformat()}, "
        "by scripts/make_lock_fixtures.py\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    staged.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    args = parser.parse_args(argv)
    cases = [c for c in _cases() if args.only is None or c.name in args.only]
    with tempfile.TemporaryDirectory(prefix="atskit-locks-") as tmp:
        for case in cases:
            print(f"{case.name}: {make(case, base=Path(tmp), out=args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
