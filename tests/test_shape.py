"""The package's shape: modules use only each other's public names, notebooks only public names, and
no module forks, freezes the collector or calls a private CPython function."""

from __future__ import annotations

import ast
import json
import re
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


def test_no_module_forks_freezes_the_collector_or_calls_private_interpreter_functions():
    pattern = re.compile(r"os\.fork\(|gc\.freeze\(|threading\._shutdown|atexit\._run_exitfuncs|sys\._\w+\(")
    offenders = [p.name for p in MODULES if pattern.search(p.read_text())]
    assert offenders == []
