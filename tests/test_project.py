"""The project's own promises: matching dependency lists, notebooks committed clean."""

from __future__ import annotations

import json
import re
import tomllib

import pytest
import yaml

from helpers import runner
from helpers._paths import ROOT

NOTEBOOKS = runner.notebook_paths()


def _name(requirement: str) -> str:
    """Distribution name of a requirement string, normalised (PEP 503)."""
    name = re.split(r"[\s<>=!~;\[]", requirement.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pyproject_and_environment_name_the_same_dependencies():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip_side = {_name(r) for r in project["dependencies"] + extras["notebooks"] + extras["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda_side = {_name(d) for d in env["dependencies"] if isinstance(d, str)} - {"python", "pip"}
    assert pip_side == conda_side


def test_there_are_notebooks():
    assert NOTEBOOKS, "no numbered notebooks in notebooks/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs"), f"{path.name}: a cell has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: a cell has an execution count"
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"


def _make_lab_contents_manager(root_dir):
    """jupyter_server's FileContentsManager as `make lab` configures it (the Makefile's pre-save hook)."""
    from jupyter_server.services.contents.filemanager import FileContentsManager

    hook = re.search(r"--FileContentsManager\.pre_save_hook=(\S+)", (ROOT / "Makefile").read_text()).group(1)
    return FileContentsManager(root_dir=str(root_dir), pre_save_hook=hook)


def _as_a_kernel_leaves_it(nb) -> None:
    """What Run All in JupyterLab adds to a notebook: outputs, counts, the kernel's metadata."""
    import nbformat

    nb.metadata["kernelspec"]["display_name"] = "Python 3 (ipykernel)"
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7", "mimetype": "text/x-python",
                                    "file_extension": ".py", "pygments_lexer": "ipython3"}  # fmt: skip
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    for count, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        cell.execution_count = count + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
        cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
        cell.metadata["scrolled"] = True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_saving_from_make_lab_after_a_run_writes_the_committed_bytes(path, tmp_path):
    """A notebook run in JupyterLab (outputs, counts, the kernel's metadata) and saved through
    jupyter_server's contents manager with `make lab`'s pre-save hook is byte for byte the committed
    file: only outputs changed, so nothing shows in git."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    _as_a_kernel_leaves_it(nb)
    manager = _make_lab_contents_manager(tmp_path)
    (tmp_path / "notebooks").mkdir()
    manager.save({"type": "notebook", "format": "json", "content": nb}, f"notebooks/{path.name}")
    assert (tmp_path / "notebooks" / path.name).read_bytes() == path.read_bytes()


@pytest.mark.slow
def test_a_notebook_executed_in_a_kernel_saves_back_to_the_committed_bytes(tmp_path):
    """The same with a real kernel's run (nbclient, as JupyterLab's Run All)."""
    import nbformat
    from nbclient import NotebookClient

    path = NOTEBOOKS[1]
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert nb.metadata["language_info"].get("version") and any(c.get("outputs") for c in nb.cells)
    (tmp_path / "notebooks").mkdir()
    _make_lab_contents_manager(tmp_path).save(
        {"type": "notebook", "format": "json", "content": nb}, f"notebooks/{path.name}"
    )
    assert (tmp_path / "notebooks" / path.name).read_bytes() == path.read_bytes()


def test_make_lab_saves_only_notebooks_in_notebooks_clean_and_other_files_as_they_are(tmp_path):
    """`make lab` serves the kit (so docs/ opens); the hook strips only notebooks in notebooks/: an
    executed copy elsewhere keeps its outputs, and a Markdown file is saved as written."""
    import nbformat

    manager = _make_lab_contents_manager(tmp_path)
    for folder in ("notebooks", "reports", "docs"):
        (tmp_path / folder).mkdir()
    for where in ("notebooks", "reports"):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
        nb.cells[0].outputs = [
            nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)
        ]
        nb.cells[0].execution_count = 1
        manager.save({"type": "notebook", "format": "json", "content": nb}, f"{where}/run.ipynb")
    clean = nbformat.read(tmp_path / "notebooks" / "run.ipynb", as_version=4)
    assert clean.cells[0].outputs == [] and clean.cells[0].execution_count is None
    kept = nbformat.read(tmp_path / "reports" / "run.ipynb", as_version=4)
    assert kept.cells[0].outputs and kept.cells[0].execution_count == 1
    text = "# Glossary\n\n```mermaid\nflowchart LR\n```\n"
    manager.save({"type": "file", "format": "text", "content": text}, "docs/glossary.md")
    assert (tmp_path / "docs" / "glossary.md").read_text() == text
    makefile = (ROOT / "Makefile").read_text()
    assert "--allow-root" in makefile and "--ServerApp.root_dir=. " in makefile
    assert "--LabApp.default_url=/lab/tree/notebooks" in makefile


def test_the_glossarys_chain_diagram_is_the_labs_chains():
    """docs/glossary.md draws the legacy and ATS chains in Mermaid; every arrow must be an 'issued by'
    step of a chain the lab serves, and every step of those chains must be drawn."""
    import re

    from cryptography import x509

    from helpers import lab
    from helpers._x509 import display_name

    text = (ROOT / "docs" / "glossary.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", text, re.S).group(1)
    labels = {
        node: label.replace("&lt;region&gt;", "REGION")
        for node, label in re.findall(r'(\w+)\["([^"]+)"\]', block)
    }
    drawn = {
        (labels[a], labels[b])
        for a, b in re.findall(r"(\w+)(?:\[[^\]]*\])?\s*(?:-->|-\.[^.]*\.->)\s*(\w+)", block)
    }
    served = set()
    pki = lab.pki()
    for chain_id in ("legacy", "ats-rsa", "ats-ecdsa"):
        for pem in pki.served_chain_pems(chain_id, "ap-northeast-2"):
            cert = x509.load_pem_x509_certificate(pem)
            served.add(
                tuple(
                    display_name(n).replace("ap-northeast-2", "REGION") for n in (cert.subject, cert.issuer)
                )
            )
    assert drawn == served


@pytest.mark.slow
def test_a_wheel_carries_the_data_and_its_command_works_from_anywhere(tmp_path):
    """A non-editable install (what a CI job does with `pip install ats-kit @ git+...`) carries data/
    inside the package: the command diffs certifi releases and runs the incident's upgrade check from
    a folder far from the kit's checkout."""
    import os
    import subprocess
    import sys
    import sysconfig

    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "-q", "-w", str(wheels)]
    built = subprocess.run(build, capture_output=True, text=True, timeout=600)
    if (
        built.returncode != 0
        and "Could not find a version that satisfies the requirement setuptools" in built.stderr
    ):
        pytest.skip("no package index to fetch setuptools from for the build")  # offline without setuptools
    assert built.returncode == 0, built.stderr[-2000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "kit-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # this venv's deps
    python = venv / "bin" / "python"
    wheel = next(wheels.glob("ats_kit-*.whl"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True, timeout=300
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ATSKIT_DATA"}

    def atskit(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(venv / "bin" / "atskit"), *args], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip

    where = subprocess.run([str(python), "-c", "import helpers._paths as p; print(p.DATA_DIR)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert where.stdout.strip().startswith(str(site)), where.stdout
    diff = atskit("diff-bundles", "certifi==2020.6.20", "certifi==2021.10.8")
    assert diff.returncode == 0 and "21 removed, 14 added, 117 kept" in diff.stdout, diff.stderr
    gate = atskit("upgrade-check", "--before", "certifi==2020.6.20 botocore==1.23.1",
                  "--after", "certifi==2021.10.8 botocore==1.23.1", "--lab")  # fmt: skip
    assert gate.returncode == 1 and "FAIL: the upgrade" in gate.stdout, gate.stderr
    lean = subprocess.run([str(python), "-c", LEAN_PROBE], cwd=elsewhere, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert lean.returncode == 0, lean.stderr[-2000:]
    probe = json.loads(lean.stdout.strip().splitlines()[-1])
    assert probe["codes"] == [0, 1, 1], lean.stdout[-2000:]
    assert probe["outside"] == [], "the command imports packages the lean install does not bring"
    assert {"jupyterlab", "matplotlib", "papermill"} <= set(probe["notebooks_extra"]) and not (
        {"jupyterlab", "matplotlib", "papermill", "nbconvert"} & set(probe["lean"])
    )


# Run in the wheel's venv: the lean commands in-process, then every distribution they imported must be in
# the closure of ats-kit's requirements without extras (what `pip install ats-kit` installs).
LEAN_PROBE = """
import importlib.metadata as md, json, re, sys
from packaging.requirements import Requirement
from helpers import cli
codes = [cli.main(a) for a in (["diff-bundles", "certifi==2020.6.20", "certifi==2021.10.8"],
         ["check", "--lab", "--bundle", "certifi==2021.10.8"],
         ["upgrade-check", "--before", "certifi==2020.6.20", "--after", "certifi==2021.10.8",
          "--runtime-botocore", "1.23.1", "--lab", "--summary-md", "summary.md"])]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
def closure(name, seen, extra=""):
    if norm(name) in seen and not extra:
        return seen
    seen.add(norm(name))
    for text in md.requires(name) or []:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate({"extra": extra}):
            closure(req.name, seen)
    return seen
lean = closure("ats-kit", set())
notebooks = closure("ats-kit", set(), extra="notebooks") - lean
owners = md.packages_distributions()
used = {norm(d) for m in list(sys.modules) for d in owners.get(m.split(".")[0], [])}
optional = {"pip", "setuptools", "typing-extensions", "pysocks"}  # imported when present (responses, urllib3)
outside = sorted(used - lean - optional)
print(json.dumps({"codes": codes, "outside": outside, "lean": sorted(lean),
                  "notebooks_extra": sorted(notebooks)}))
"""


def test_notebook_01_links_the_glossary_and_documents_commands_that_leave_the_kit_clean():
    """01's introduction links docs/glossary.md by a path that works from notebooks/ (GitHub, and
    JupyterLab from `make lab`, which serves the kit); every notebook's papermill command names the
    notebook from the kit's folder and writes its executed copy outside notebooks/ and the kit."""
    intro = "".join(json.loads(NOTEBOOKS[0].read_text())["cells"][0]["source"])
    links = re.findall(r"\]\(([^)]+glossary\.md)\)", intro)
    assert links and all(
        (NOTEBOOKS[0].parent / link).resolve() == ROOT / "docs" / "glossary.md" for link in links
    )
    for path in NOTEBOOKS:
        text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
        for source, output in re.findall(r"`papermill (?:--\S+ )*(\S+\.ipynb) (\S+\.ipynb)", text):
            assert source == f"notebooks/{path.name}", (path.name, source)
            assert output.startswith("/"), (path.name, output)  # not out.ipynb in the kit's folder
