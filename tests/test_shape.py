"""The package's shape: modules use only each other's public names, notebooks only public names, and
no module forks, freezes the collector or calls a private CPython function."""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

from helpers._paths import ROOT

MODULES = sorted((ROOT / "helpers").glob("*.py"))
# A private module serves the public module named here (or, for shared internals, the package).
PRIVATE_MODULE_USERS = {
    "_aws": {"botocore_facts", "endpoints", "lab"},
    "_botocore_fetch": {"botocore_facts"},  # and scripts/build_botocore_history.py (not covered here)
    "_certifi_build": {"cli"},
    "_certifi_store": {"bundles", "_certifi_build"},
    "_capture": {"chains"},
    "_cli_gate": {"cli"},
    "_cli_parser": {"cli", "_cli_gate"},
    "_git": {"_cli_gate"},
    "_index": {"cli", "_botocore_fetch", "_certifi_build", "_resolver"},
    "_cache": {"bundles", "_botocore_fetch", "_certifi_build", "_lab_server", "_lab_twins"},
    "_io": None,  # shared: atomic writes
    "_lab_mqtt": {"_lab_server"},
    "_lab_routing": {"lab", "_lab_server"},
    "_lab_server": {"lab"},
    "_lab_twins": {"lab", "_lab_server"},
    "_locks": {"requirements"},
    "_paths": None,  # shared: where the data is
    "_resolver": {"requirements"},
    "_x509": None,  # shared: certificate parsing
}


def _uses(tree: ast.AST) -> list[tuple[str, str]]:
    """(module, name) for every ``from helpers.module import name`` and ``module.name`` of helpers modules."""
    found, aliases = [], {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("helpers"):
            if node.module == "helpers":
                for alias in node.names:
                    aliases[alias.asname or alias.name] = alias.name
                    found.append((alias.name, ""))
            else:
                module = node.module.split(".", 1)[1]
                found += [(module, alias.name) for alias in node.names]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            found.append((aliases[node.value.id], node.attr))
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_a_module_uses_only_public_names_of_the_others(path: Path):
    me = path.stem
    for module, name in _uses(ast.parse(path.read_text())):
        if module == me:
            continue
        private = name.startswith("_") and not (name.startswith("__") and name.endswith("__"))
        assert not private, f"{me} uses {module}.{name}"
        users = PRIVATE_MODULE_USERS.get(module, "public") if module.startswith("_") else "public"
        assert users is None or users == "public" or me in users, f"{me} imports {module}, private to {users}"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_a_notebook_uses_only_public_names_and_defines_no_helpers(path: Path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    code = "\n".join("".join(c["source"]) for c in cells)
    code = "\n".join(line for line in code.splitlines() if not line.startswith("%"))  # IPython magics
    assert not re.search(
        r"\bhelpers\._|\bfrom helpers\.\w+ import|\b(bundles|chains|lab|endpoints|report|upgrade|"
        r"botocore_facts|notebook|incident)\._\w",
        code,
    ), path.name
    tree = ast.parse(code)
    assert not [
        n.name
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.ClassDef)
        if n.name != "get_ATS_endpoint"
    ], f"{path.name} defines helpers"  # the incident's own code may


# Every Python file of the kit: the package, its tests, benches and scripts.
KIT_PYTHON_FILES = sorted(
    p for folder in ("helpers", "tests", "bench", "scripts") for p in (ROOT / folder).rglob("*.py")
)


def test_no_file_forks_freezes_the_collector_or_calls_private_interpreter_functions():
    pattern = re.compile(r"os\.fork\(|gc\.freeze\(|threading\._shutdown|atexit\._run_exitfuncs|sys\._\w+\(")
    offenders = [
        p.name for p in KIT_PYTHON_FILES if p.name != "test_shape.py" if pattern.search(p.read_text())
    ]
    assert offenders == []


# The one private CPython module the kit may import, and why: the lab's name routing must replace the C
# socket type and lookups that `socket` re-exports (issue 13), so it imports `_socket` by design.
# Its test imports it too, to show every lookup through it is routed.
PRIVATE_CPYTHON_ALLOWED = {("_lab_routing.py", "_socket"), ("test_lab.py", "_socket")}


def _private_cpython_uses(path: Path) -> list[str]:
    """Imports of CPython's private modules (``_ssl``, ``_socket``, ...) and their private objects
    (``._sslobj``, ``ssl._ssl``) in a file, as text."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module.split(".")[0]]
        else:
            modules = []
        found += [
            f"import {m}"
            for m in modules
            if m.startswith("_") and m in sys.stdlib_module_names and m != "__future__"
            if (path.name, m) not in PRIVATE_CPYTHON_ALLOWED
        ]
        if isinstance(node, ast.Attribute) and (
            node.attr == "_sslobj"
            or (
                isinstance(node.value, ast.Name)
                and node.value.id in ("ssl", "socket")
                and node.attr == f"_{node.value.id}"
            )
        ):
            found.append(f".{node.attr}")
    return found


@pytest.mark.parametrize("path", KIT_PYTHON_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_uses_a_private_cpython_module_or_object(path: Path):
    """No ``import _ssl``, ``from _ssl``, ``._sslobj`` (Python's ssl internals): the kit reads a
    presented chain through public APIs only (issue 11)."""
    assert _private_cpython_uses(path) == [], path.relative_to(ROOT)


def test_the_private_cpython_check_catches_what_chains_did_before_issue_11(tmp_path: Path):
    before = tmp_path / "chains.py"
    before.write_text(
        "import _ssl\nfrom _ssl import ENCODING_DER\nimport ssl\n"
        "def f(tls):\n    return tls._sslobj.get_unverified_chain(), ssl._ssl.ENCODING_DER\n"
    )
    assert sorted(_private_cpython_uses(before)) == ["._ssl", "._sslobj", "import _ssl", "import _ssl"]
    routing = tmp_path / "_lab_routing.py"
    routing.write_text("import _socket\n")
    assert _private_cpython_uses(routing) == []  # the documented exception, in that file only
    (tmp_path / "lab.py").write_text("import _socket\n")
    assert _private_cpython_uses(tmp_path / "lab.py") == ["import _socket"]
