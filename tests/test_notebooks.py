"""Every notebook executes in lab mode (offline) with papermill: one by one, and all together as
`make report` runs them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import runner


@pytest.mark.slow
@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda p: p.stem)
def test_notebook_executes_in_lab_mode(path, tmp_path):
    run = runner.execute(path, tmp_path, html=False)
    assert run.ok, run.error


@pytest.mark.slow
def test_every_notebook_runs_and_exports_as_make_report_runs_them(tmp_path):
    """run_all: notebooks side by side on standard kernels, each exported to HTML; status lines come
    in notebook order; kernels log to files of their own, kept only when a run fails."""
    seen = []
    runs = runner.run_all(tmp_path, on_done=seen.append)
    assert seen == runs
    assert [run.notebook for run in runs] == [path.stem for path in runner.notebook_paths()]
    assert all(run.ok for run in runs), [run.line() for run in runs if not run.ok]
    assert all(run.output_html is not None and run.output_html.exists() for run in runs)
    assert not list(tmp_path.glob("*.kernel.log"))
    for run in runs:  # reports open offline: nothing is loaded from the network
        page = run.output_html.read_text()
        remote = r"""src=["']https?://|<link[^>]+href=["']https?://|import\s*\(?\s*["']https?://|from\s+["']https?://"""
        assert not re.search(remote, page), run.notebook
        assert "No description has been provided for this image" not in page  # figures carry alt text
    assert (tmp_path / "postmortem.md").exists()  # notebook 05 writes beside its executed copy


INTERRUPTED = """
import sys
from pathlib import Path
from helpers import runner
try:
    runner.run_all(sys.argv[2], notebooks_dir=Path(sys.argv[1]))
except KeyboardInterrupt:
    sys.exit(130)
"""


@pytest.mark.slow
def test_ctrl_c_ends_the_running_kernels(tmp_path, write_notebook):
    """Kernels run in sessions of their own, so the terminal's Ctrl-C does not reach them: the runner
    ends them itself, and no kernel outlives it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pid_file = tmp_path / "kernel.pid"
    write_notebook(
        tmp_path / "notebooks" / "01-sleeps.ipynb",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(120)",
    )
    runner_process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTED, str(tmp_path / "notebooks"), str(tmp_path / "out")]
    )
    deadline = time.monotonic() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    kernel_pid = int(pid_file.read_text())
    runner_process.send_signal(signal.SIGINT)
    assert runner_process.wait(timeout=30) == 130

    def ended(pid: int) -> bool:  # gone, or a zombie no one has reaped yet (a container's init may not)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        stat = Path(f"/proc/{pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"

    for _ in range(50):  # the kernel's process group was killed
        if ended(kernel_pid):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"kernel {kernel_pid} outlived the interrupted runner")


EXERCISE_ANSWERS = {  # docs/exercises.md: right answer, a wrong one
    "01-reproduce-the-failure": ("works", "fails"),
    "02-compare-certifi-releases": ("2020.12.5", "2021.10.8"),
    "03-the-ats-fix": ("fails", "works"),
    "04-upgrade-check": ("ats", "legacy-verisign"),
    "05-postmortem": ("certifi", "botocore-vendored"),
    "06-devices": ("fails now", "fine"),
}


@pytest.fixture(scope="module")
def incident_check():
    """What notebook 05's check cell reads: the incident's upgrade, checked against the lab."""
    from helpers import incident, upgrade
    from helpers._paths import ROOT

    before, after = (ROOT / incident.EXAMPLE_BEFORE, ROOT / incident.EXAMPLE_AFTER)
    return upgrade.run_check(before, after, mode="lab", runtime_botocore="1.23.1")


@pytest.mark.parametrize("path", runner.notebook_paths(), ids=lambda p: p.stem)
def test_each_exercise_check_says_right_wrong_or_unanswered(path, incident_check, capsys):
    """Every notebook has an exercise whose check cell tells a right answer from a wrong one (with a
    hint), and asks for a prediction when there is none; the answers match docs/exercises.md."""
    import json
    from contextlib import redirect_stdout
    from io import StringIO

    from helpers._paths import ROOT

    right, wrong = EXERCISE_ANSWERS[path.stem]
    assert f"`{right}`" in (ROOT / "docs" / "exercises.md").read_text()
    cells = [
        c for c in json.loads(path.read_text())["cells"] if "exercise-check" in c["metadata"].get("tags", [])
    ]
    assert len(cells) == 1, f"{path.stem}: one exercise-check cell"
    source = "".join(cells[0]["source"])
    variable = re.search(r"^(my_\w+) = ", source, re.M).group(1)
    for answer, expected in ((right, "right"), (wrong, "not quite"), ("", "write your prediction")):
        namespace = {"result": incident_check}
        exec("from helpers import bundles, incident, notebook", namespace)
        out = StringIO()
        with redirect_stdout(out):
            exec(source.replace(f'{variable} = ""', f"{variable} = {answer!r}", 1), namespace)
        assert expected in out.getvalue(), (path.stem, answer, out.getvalue())
        assert (expected != "not quite") or "hint:" in out.getvalue()


@pytest.mark.slow
def test_the_readmes_papermill_command_exits_0_in_lab_mode_and_leaves_the_kit_clean(tmp_path):
    """The README's papermill command (lab mode), run from the kit's root as a reader would: plain
    papermill counts any error output as a failure, so this shows no cell leaves one."""
    import subprocess
    import sys

    from helpers._paths import ROOT

    def status() -> str:
        command = ["git", "status", "--porcelain", "--untracked-files=all", "--", ".", ":!reports"]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True).stdout

    before = status()
    command = [str(Path(sys.executable).with_name("papermill")), "notebooks/01-reproduce-the-failure.ipynb",
               str(tmp_path / "out.ipynb"), "-p", "mode", "lab", "-p", "region", "eu-west-1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert status() == before


@pytest.mark.slow
def test_notebook_01_says_what_happened_for_other_releases(tmp_path):
    """With a 'failing' release that still carries VeriSign G5, nothing fails and the generated text
    says so: the narrative follows the parameters."""
    import nbformat

    run = runner.execute(
        runner.notebook_paths()[0], tmp_path, parameters={"failing_certifi": "2020.11.8"}, html=False
    )
    assert run.ok, run.error
    text = nbformat.writes(nbformat.read(run.output_ipynb, as_version=4))
    assert "with **2020.11.8** it **worked**" in text and "certifi 2020.11.8: no error" in text


PARAMETER_SECRETS = ("210987654321", "AKIAZ7QX4PLM2NRT5VWY", "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf")


def _papermill_05(out_dir: Path, engine: str | None):
    """Notebook 05 run by papermill itself (not the kit's runner), with secrets among its parameters
    (as ``-p title "..." -p account 210987654321`` passes them: the account as a number)."""
    import papermill

    from helpers._paths import ROOT

    title = "acct 210987654321 AKIAZ7QX4PLM2NRT5VWY secret_key=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"
    parameters = {"title": title, "account": 210987654321, "report_dir": str(out_dir), "report_name": "pm"}
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "05-postmortem.ipynb"),
        str(out_dir / "out.ipynb"),
        parameters=parameters,
        engine_name=engine,
        kernel_name="python3",
        progress_bar=False,
    )
    return [out_dir / name for name in ("out.ipynb", "pm.md", "pm.html")]


@pytest.mark.slow
def test_papermill_with_the_kits_engine_writes_no_secret_anywhere(tmp_path):
    """`papermill --engine atskit`: the executed notebook (parameters cell and papermill's parameters
    record included) and the exported report hold none of the secrets passed as parameters."""
    import nbformat

    files = _papermill_05(tmp_path, "atskit")
    for path in files:
        text = path.read_text()
        assert not [s for s in PARAMETER_SECRETS if s in text], path.name
    nb = nbformat.read(files[0], as_version=4)
    assert nb.metadata.papermill.parameters["account"] == "<account-id>"


@pytest.mark.slow
def test_plain_papermill_keeps_only_its_own_record_of_the_parameters_and_the_notebook_warns(tmp_path):
    """Plain papermill writes the parameters as given into its executed copy (the injected cell and
    metadata.papermill.parameters), and no notebook can change that: the report is clean, no output
    holds a secret, the notebook says so on stderr, and `atskit redact --in-place` cleans the copy."""
    import json

    import nbformat

    from helpers import cli

    out_ipynb, *report = _papermill_05(tmp_path, None)
    for path in report:
        text = path.read_text()
        assert not [s for s in PARAMETER_SECRETS if s in text], path.name
    nb = nbformat.read(out_ipynb, as_version=4)
    outputs = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert not [s for s in PARAMETER_SECRETS if s in outputs]
    assert "title holds a key, token, account id or endpoint prefix" in outputs
    assert "papermill --engine atskit" in outputs and "atskit redact OUT.ipynb --in-place" in outputs
    assert cli.main(["redact", str(out_ipynb), "--in-place"]) == 0
    text = out_ipynb.read_text()
    assert not [s for s in PARAMETER_SECRETS if s in text]


NETWORK_AUDIT = """
import sys, threading
_atskit_network = []  # (thread, event, host): every name resolved and address connected, from now on
def _atskit_audit(event, args):
    if event == "socket.getaddrinfo" or (event == "socket.connect" and isinstance(args[1], tuple)):
        host = args[0] if event == "socket.getaddrinfo" else args[1][0]
        main = threading.current_thread() is threading.main_thread()
        _atskit_network.append((main, event, str(host, "ascii") if isinstance(host, bytes) else str(host)))
sys.addaudithook(_atskit_audit)
"""


def _is_loopback(host: str) -> bool:
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@pytest.mark.slow
@pytest.mark.parametrize(
    "path",
    [p for p in runner.notebook_paths() if "notebook.close_environment()" in p.read_text()],
    ids=lambda p: p.stem,
)
def test_after_the_closing_cell_every_network_cell_refuses_in_one_line(path, tmp_path):
    """Run the whole notebook in one kernel (nbclient, as JupyterLab's Run All), noting which cells
    between the start and the closing cell reached the network; then re-run each of them: each stops
    with a one-line LabError and nothing resolves or connects to anything but this machine (a socket
    audit hook in the kernel sees every lookup and connect)."""
    import json

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    opening = next(i for i in code if "notebook.open_environment(" in nb.cells[i].source)
    closing = next(i for i in code if "notebook.close_environment()" in nb.cells[i].source)
    nb.cells.append(nbformat.v4.new_code_cell(NETWORK_AUDIT))  # the test's own cell, at the end
    scratch = len(nb.cells) - 1

    def network_events() -> list:
        nb.cells[scratch].source = "import json; print(json.dumps(_atskit_network))"
        client.execute_cell(nb.cells[scratch], scratch)
        return json.loads(nb.cells[scratch].outputs[0]["text"])

    with client.setup_kernel():
        client.execute_cell(nb.cells[scratch], scratch)
        network_cells = []
        for i in code:
            seen = len(network_events())
            client.execute_cell(nb.cells[i], i)  # the first run: any error fails the test
            if opening < i < closing and any(main for main, _, _ in network_events()[seen:]):
                network_cells.append(i)
        assert len(network_cells) >= 3, network_cells
        seen = len(network_events())
        client.allow_errors = True
        for i in network_cells:
            nb.cells[i].outputs = []
            client.execute_cell(nb.cells[i], i)
            errors = [o for o in nb.cells[i].outputs if o["output_type"] == "error"]
            assert len(errors) == 1, (i, nb.cells[i].source, nb.cells[i].outputs)
            assert errors[0]["ename"] == "LabError" and "is stopped" in errors[0]["evalue"], (i, errors)
            assert "\n" not in errors[0]["evalue"]
        reached = [(event, host) for _, event, host in network_events()[seen:] if not _is_loopback(host)]
        assert reached == [], reached  # no real name resolved, nothing outside this machine reached


@pytest.mark.slow
def test_notebook_02_with_another_root_still_singles_out_the_root_at_fault(tmp_path):
    """With root = "Amazon Root CA 1" (the exercise's suggestion), the diff still puts VeriSign G5
    first and in bold, and the caption and the figure's alt text say what is shown: Amazon Root CA 1
    did not change, and no red line marks a removal of it."""
    import nbformat

    from helpers import incident

    run = runner.execute(
        runner.notebook_paths()[1], tmp_path, parameters={"root": "Amazon Root CA 1"}, html=False
    )
    assert run.ok, run.error
    nb = nbformat.read(run.output_ipynb, as_version=4)
    diff = next(c for c in nb.cells if "singled_out" in c.source and c.outputs)
    page = diff.outputs[0]["data"]["text/html"]
    caption = re.search(r"<caption>(.*?)</caption>", page, re.S).group(1)
    assert f"the incident's root at fault ({incident.ROOT_AT_FAULT}) first, in bold" in caption
    assert "the chosen root (Amazon Root CA 1) did not change" in caption
    rows = re.findall(r"<tr>(.*?)</tr>", page, re.S)[1:]
    assert incident.ROOT_AT_FAULT in rows[0] and "root at fault" in rows[0]
    assert re.search(r"#T_\w+_row0_col0[^{]*\{[^}]*font-weight: bold", page)  # bold, as the caption says
    assert not any(re.search(r"[0-9a-f]{64}", row) for row in rows)
    alt = next(o["data"]["text/plain"] for c in nb.cells for o in c.get("outputs", [])
               if o.get("data", {}).get("text/plain", "").startswith("Step plot"))  # fmt: skip
    assert "no release" not in alt and "no red line: Amazon Root CA 1 is still in the newest release" in alt
    between = next(c for c in nb.cells if "cacert_sha256" in c.source)
    assert not re.search(r"[0-9a-f]{64}", between.outputs[0]["data"]["text/html"])  # short, like fingerprints


def test_a_live_run_without_what_it_needs_is_refused_up_front_in_one_line(tmp_path):
    """Notebook 06's live mode needs a device certificate, its key and root files: named, not guessed."""
    from helpers import notebook, pki
    from helpers.kinds import InputError

    cert = tmp_path / "device.pem"
    cert.write_bytes(pki.CA("Device Test CA").cert_pem)
    needs = ("device_cert", "device_key", "root_files")
    empty = {"device_key": "", "root_files": [], "live_needs": needs}
    assert notebook.check_parameters(mode="lab", device_cert="", **empty).mode == "lab"
    with pytest.raises(InputError) as refused:
        notebook.check_parameters(mode="live", device_cert=str(cert), **empty)
    assert str(refused.value).startswith("mode='live' needs device_key and root_files")
    assert "\n" not in str(refused.value)
