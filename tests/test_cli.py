"""The atskit command end to end, in subprocesses: output, exit codes (0 ok, 1 check failed, 2 bad input)."""

from __future__ import annotations

import json
import os
import re
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from helpers import bundles, chains, cli, lab
from helpers._paths import ROOT

EXAMPLES = ROOT / "docs" / "examples"
G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
ATSKIT = Path(sys.executable).with_name("atskit")  # the console script `pip install -e .` made


def atskit(
    *args: str, script: bool = False, env: dict | None = None, unset: tuple = (), timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``python -m helpers ARGS`` (or the ``atskit`` console script) and capture its output."""
    command = [str(ATSKIT)] if script else [sys.executable, "-m", "helpers"]
    environ = {k: v for k, v in os.environ.items() if k not in unset} | (env or {})
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=environ, check=False
    )


def atskit_here(capsys, *args: str) -> subprocess.CompletedProcess:
    """The same command run in this process (``cli.main``): quicker, for the many input cases."""
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed run (asserting there is no traceback)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("atskit: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Chains captured from the lab and saved as evidence, and lab trust views as PEM files."""
    folder = tmp_path_factory.mktemp("saved")
    with lab.environment("lab") as env:
        for name in ("data_legacy", "data_ats"):
            chains.fetch_chain(env.endpoints[name]).save(folder / f"{name}.pem")
    for version in ("2020.6.20", "2021.10.8"):
        lab.trust_view(version).write_pem(folder / f"view-{version}.pem")
    return folder


# --- help and usage --------------------------------------------------------------------------------

SUBCOMMANDS = [
    ["check"],
    ["diff-bundles"],
    ["history"],
    ["which-bundle"],
    ["lab", "serve"],
    ["upgrade-check"],
    ["run-notebooks"],
    ["refresh-certifi"],
    ["redact"],
]


@pytest.mark.parametrize("subcommand", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help_and_json(subcommand):
    done = atskit(*subcommand, "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: atskit" in done.stdout
    assert "--json" in done.stdout


def test_the_console_script_is_installed_and_runs():
    done = atskit("history", "--json", script=True)
    assert done.returncode == 0, done.stderr
    releases = json.loads(done.stdout)["releases"]
    assert [r["version"] for r in releases] == bundles.certifi_releases()["version"].tolist()


# --- bad input: exit 2, one line naming the input ---------------------------------------------------

BAD_INPUT = [
    (["check", "--lab", "--bundle", "certifi-2020"], "bad --bundle 'certifi-2020'"),
    (["check", "--lab", "--bundle", "certifi==2020.6.21"], "nearest releases"),
    (
        ["check", "--chain-file", "/nonexistent/chain.pem"],
        "--chain-file /nonexistent/chain.pem: no such file",
    ),
    (["check", "example.com:http"], "bad endpoint 'example.com:http'"),
    (["check", "example.com:70000"], "bad endpoint 'example.com:70000'"),
    (["check", "bad host name"], "bad endpoint 'bad host name'"),
    (["check", "--lab", "--at", "2021-13-45"], "bad --at '2021-13-45'"),
    (
        ["check", "--endpoints-file", "/nonexistent/hosts.txt"],
        "--endpoints-file /nonexistent/hosts.txt: no such file",
    ),
    (["check"], "no endpoints"),
    (["diff-bundles", "certifi==2020.6.20", "/nonexistent.pem"], "bad B '/nonexistent.pem'"),
    (["history", "--root", "No Such Root CA"], "no root in any certifi release matches"),
    (
        ["upgrade-check", "--before", "/nonexistent/req.txt", "--after", "certifi==2021.10.8"],
        "no such requirements",
    ),
    (["check", "--lab", "--bundle", str(EXAMPLES)], f"--bundle {EXAMPLES}: is a directory"),
    (["check", "--chain-file", str(EXAMPLES)], f"--chain-file {EXAMPLES}: is a directory"),
    (["check", "--endpoints-file", str(EXAMPLES)], f"--endpoints-file {EXAMPLES}: is a directory"),
    (
        ["upgrade-check", "--before", str(EXAMPLES), "--after", "certifi==2021.10.8"],
        f"{EXAMPLES}: is a directory",
    ),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_exits_2_with_one_line(capsys, args, message):
    done = atskit_here(capsys, *args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in one_line_error(done)


@pytest.mark.parametrize("case", [0, 3, 6, 11], ids=lambda i: " ".join(BAD_INPUT[i][0]))
def test_bad_input_in_a_real_process(case):
    args, message = BAD_INPUT[case]
    done = atskit(*args, script=case == 0)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert message in one_line_error(done)


def test_unparseable_requirements_exit_2(tmp_path, capsys):
    path = tmp_path / "requirements.txt"
    path.write_text("requests==2.26.0\n!!! not a requirement\n")
    done = atskit_here(
        capsys, "upgrade-check", "--before", str(path), "--after", str(path), "--no-pip", "--lab"
    )
    assert done.returncode == 2
    assert "cannot parse requirement line '!!! not a requirement'" in one_line_error(done)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-command"], "invalid choice: 'no-such-command'"),
        (["upgrade-check", "--before", "x"], "required: --after (see 'atskit upgrade-check --help')"),
        (["check", "--timeout", "soon"], "argument --timeout: 'soon' is not a number of seconds"),
        ([], "required: command (see 'atskit --help')"),
    ],
    ids=["unknown subcommand", "missing option", "bad option value", "no subcommand"],
)
def test_argparse_usage_errors_exit_2_with_one_line(args, message):
    done = atskit(*args)
    assert done.returncode == 2
    assert message in one_line_error(done)


def test_an_endpoints_file_with_no_endpoints_is_named(tmp_path, capsys):
    path = tmp_path / "hosts.txt"
    path.write_text("# every endpoint commented out\n\n# data.iot.ap-northeast-2.amazonaws.com\n")
    done = atskit_here(capsys, "check", "--endpoints-file", str(path))
    assert done.returncode == 2
    assert f"--endpoints-file {path}: no endpoints in it" in one_line_error(done)


def test_a_broken_aws_config_is_one_line_not_unexpected(tmp_path):
    config = tmp_path / "config"
    config.write_text("[default]\nregion = ap-northeast-2\n")
    done = atskit(
        "which-bundle",
        env={"AWS_CONFIG_FILE": str(config), "AWS_PROFILE": "no-such-profile"},
        unset=("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"),
    )
    assert done.returncode == 2
    line = one_line_error(done)
    assert "no-such-profile" in line and "unexpected" not in line


def test_a_chain_file_that_is_not_pem_exits_2(tmp_path, capsys):
    path = tmp_path / "chain.pem"
    path.write_text("hello\n")
    done = atskit_here(capsys, "check", "--chain-file", str(path))
    assert done.returncode == 2
    assert str(path) in one_line_error(done)


def test_an_unreachable_host_is_one_line(capsys):
    done = atskit_here(
        capsys, "check", "127.0.0.1:9", "--timeout", "2"
    )  # nothing listens on the discard port
    assert done.returncode == 2
    assert "127.0.0.1:9" in one_line_error(done)


# --- check -----------------------------------------------------------------------------------------


def test_check_saved_chains_exit_1_when_a_bundle_lacks_the_root(saved):
    done = atskit(
        "check",
        "--chain-file", str(saved / "data_legacy.pem"),
        "--chain-file", str(saved / "data_ats.pem"),
        "--bundle", str(saved / "view-2020.6.20.pem"),
        "--bundle", str(saved / "view-2021.10.8.pem"),
        "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    results = json.loads(done.stdout)["results"]
    failing = [(r["host"], r["bundle"], r["reason"]) for r in results if not r["ok"]]
    assert failing == [("data.iot.ap-northeast-2.amazonaws.com", "view-2021.10.8.pem", "missing-root")]
    assert G5 in next(r["message"] for r in results if not r["ok"])


def test_check_lab_with_a_chain_file_checks_that_file_alone_against_lab_views(saved, capsys):
    done = atskit_here(capsys,
        "check", "--lab", "--chain-file", str(saved / "data_legacy.pem"),
        "--bundle", "certifi==2020.6.20", "--bundle", "certifi==2021.10.8", "--json",
    )  # fmt: skip
    results = json.loads(done.stdout)["results"]
    assert [(r["endpoint"].endswith("(data_legacy.pem)"), r["ok"]) for r in results] == [
        (True, True),
        (True, False),
    ]
    assert done.returncode == 1


def test_check_saved_chains_exit_0_when_every_bundle_has_the_roots(saved, capsys):
    done = atskit_here(capsys,
        "check",
        "--chain-file", str(saved / "data_legacy.pem"),
        "--chain-file", str(saved / "data_ats.pem"),
        "--bundle", str(saved / "view-2020.6.20.pem"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2/2 endpoint x bundle checks pass" in done.stdout


def test_check_at_a_date_before_the_lab_certificates_exist(saved, capsys):
    done = atskit_here(capsys,
        "check", "--chain-file", str(saved / "data_ats.pem"), "--bundle", str(saved / "view-2020.6.20.pem"),
        "--at", "2019-06-01", "--json",
    )  # fmt: skip
    assert done.returncode == 1
    assert json.loads(done.stdout)["results"][0]["reason"] == "not-yet-valid"


def test_check_endpoints_file_against_the_lab_saving_the_chains(tmp_path):
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# the incident's endpoint, then the fix\ndata.iot.ap-northeast-2.amazonaws.com\n\n"
                     "data-ats.iot.ap-northeast-2.amazonaws.com:443  # ATS\n")  # fmt: skip
    done = atskit(
        "check", "--lab", "--endpoints-file", str(hosts), "--bundle", "certifi==2021.10.8",
        "--save-chains", str(tmp_path / "evidence"), script=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "missing-root" in done.stdout and G5 in done.stdout
    assert "1/2 endpoint x bundle checks pass" in done.stdout
    saved = chains.load_chain(tmp_path / "evidence" / "data.iot.ap-northeast-2.amazonaws.com_443.pem")
    assert saved.hostname == "data.iot.ap-northeast-2.amazonaws.com"
    assert saved.certificates[-1].issuer.rfc4514_string().startswith(f"CN={G5}")


def test_check_the_labs_own_endpoints_masks_the_account_prefix(capsys):
    done = atskit_here(capsys, "check", "--lab", "--bundle", "certifi==2020.6.20", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema"] == 1  # as upgrade-check's and devices' JSON
    hosts = [r["host"] for r in json.loads(done.stdout)["results"]]
    assert any(
        re.fullmatch(r"<prefix-[0-9a-f]{4}>-ats\.iot\.ap-northeast-2\.amazonaws\.com", h) for h in hosts
    )


def _root_file(tmp_path: Path, cn: str) -> Path:
    """The real root named ``cn`` (certifi 2020.6.20's copy) alone in a PEM file, as a device ships it."""
    (root,) = [c for c in bundles.certifi("2020.6.20").find(cn) if c.subject == c.issuer]
    path = tmp_path / f"{cn.replace(' ', '')}.pem"
    path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return path


def test_check_with_the_real_amazon_root_ca_1_file_passes_ats_and_fails_legacy(capsys, tmp_path):
    root_file = _root_file(tmp_path, "Amazon Root CA 1")
    done = atskit_here(capsys, "check", "--lab", "--bundle", str(root_file), "--at", "2024-06-01", "--json")
    assert done.returncode == 1, done.stderr  # the legacy endpoint fails, as it does with this file
    verdicts = {r["endpoint"]: (r["ok"], r["reason"]) for r in json.loads(done.stdout)["results"]}
    legacy = [e for e in verdicts if "-ats." not in e]  # data.iot:443, the account's legacy host on 8883/443
    assert {verdicts.pop(e)[0] for e in legacy} == {False} and len(legacy) == 3
    assert len(verdicts) == 4 and set(verdicts.values()) == {(True, "ok")}, verdicts
    assert sum(e.endswith(":8883") for e in verdicts) == 1  # the ATS device (MQTT) endpoint on 8883 ...
    assert sum(e.endswith("(ALPN x-amzn-mqtt-ca)") for e in verdicts) == 1  # ... and on 443 with ALPN


def test_check_all_chains_checks_the_rsa_and_ecdsa_chains_of_an_ats_endpoint(capsys, tmp_path):
    root_file = _root_file(tmp_path, "Amazon Root CA 3")
    ats, legacy = "data-ats.iot.ap-northeast-2.amazonaws.com", "data.iot.ap-northeast-2.amazonaws.com"
    done = atskit_here(
        capsys, "check", "--lab", ats, legacy, "--all-chains", "--bundle", str(root_file),
        "--at", "2024-06-01", "--save-chains", str(tmp_path), "--json",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    verdicts = {r["endpoint"]: r["ok"] for r in json.loads(done.stdout)["results"]}
    assert verdicts == {
        f"{ats}:443 (rsa-only)": False,
        f"{ats}:443 (ecdsa-only)": True,
        f"{legacy}:443 (rsa-only)": False,
    }
    assert sorted(p.name for p in tmp_path.glob("*_443_*.pem")) == [
        f"{ats}_443_ecdsa-only.pem",
        f"{ats}_443_rsa-only.pem",
        f"{legacy}_443_rsa-only.pem",
    ]


# --- upgrade-check ---------------------------------------------------------------------------------


def test_upgrade_check_flags_the_incident():
    done = atskit(
        "upgrade-check",
        "--before", str(EXAMPLES / "incident-before.txt"),
        "--after", str(EXAMPLES / "incident-after.txt"),
        "--runtime-botocore", "1.23.1",
        "--lab", "--json",
        script=True,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    result = json.loads(done.stdout)
    assert result["broken"] == ["data.iot.ap-northeast-2.amazonaws.com:443", "iot-data default host"]
    sides = result["sides"]
    certifi = (sides["before"]["packages"]["certifi"], sides["after"]["packages"]["certifi"])
    assert certifi == ("2020.6.20", "2021.10.8")
    assert sides["after"]["iot_data_default_host"]["host"] == "data.iot.ap-northeast-2.amazonaws.com"
    changes = {e["endpoint"]: e["change"] for e in result["endpoints"]}
    assert changes["data-ats.iot.ap-northeast-2.amazonaws.com:443"] == "still-ok"


def test_upgrade_check_botocore_upgrade_moves_the_default_host_to_ats(capsys):
    # Same certifi without VeriSign G5 on both sides; botocore 1.24.30 switched iot-data's default host.
    done = atskit_here(capsys,
        "upgrade-check",
        "--before", "certifi==2021.10.8 botocore==1.24.29",
        "--after", "certifi==2021.10.8 botocore==1.24.30",
        "--lab", "data-ats.iot.ap-northeast-2.amazonaws.com", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    default = next(e for e in result["endpoints"] if e["endpoint"] == "iot-data default host")
    assert default["change"] == "fixed"
    assert (default["before"]["host"], default["after"]["host"]) == (
        "data.iot.ap-northeast-2.amazonaws.com",
        "data-ats.iot.ap-northeast-2.amazonaws.com",
    )


def test_upgrade_check_the_reverse_botocore_move_fails(capsys):
    done = atskit_here(
        capsys,
        "upgrade-check",
        "--before", "certifi==2021.10.8 botocore==1.24.30",
        "--after", "certifi==2021.10.8 botocore==1.24.29",
        "--lab", "data-ats.iot.ap-northeast-2.amazonaws.com",
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last == (
        "FAIL: the upgrade (certifi 2021.10.8 -> 2021.10.8, botocore 1.24.30 -> 1.24.29) "
        "breaks TLS to iot-data default host"
    )


# --- diff-bundles, history, which-bundle, lab serve --------------------------------------------------


def test_diff_bundles_lists_g5_among_the_removed(capsys):
    done = atskit_here(capsys, "diff-bundles", "certifi==2020.6.20", "certifi==2021.10.8", "--json")
    assert done.returncode == 0, done.stderr
    changes = json.loads(done.stdout)["changes"]
    expected = bundles.compare(bundles.certifi("2020.6.20"), bundles.certifi("2021.10.8")).frame()
    removed = {c["fingerprint_sha256"] for c in changes if c["change"] == "removed"}
    assert removed == set(expected.loc[expected["change"] == "removed", "fingerprint_sha256"])
    assert any(c["name"] == G5 for c in changes if c["change"] == "removed")


def test_history_root_says_which_release_removed_it(capsys):
    done = atskit_here(capsys, "history", "--root", G5, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["removed_in"] == "2020.12.5"
    text = atskit_here(capsys, "history", "--root", G5).stdout
    assert text.strip().endswith("removed in 2020.12.5")


def test_history_of_a_name_matching_several_roots_spans_releases_in_order(capsys):
    # 'TÜRKTRUST' names several roots; the one that sorts first by name is not the one carried last.
    root = "TÜRKTRUST"
    fingerprints = bundles.root_presence(root)["fingerprint_sha256"].nunique()
    assert fingerprints > 1
    last_line = atskit_here(capsys, "history", "--root", root).stdout.strip().splitlines()[-1]
    assert last_line.startswith(f"{root} ({fingerprints} roots match; any of them): in certifi ")
    last_carried = last_line.split(" .. ")[1].split(";")[0]
    releases = [str(v) for v in bundles.certifi_releases()["version"]]
    removed = bundles.removed_in(root)
    assert last_line.endswith(f"removed in {removed}")
    assert releases[releases.index(last_carried) + 1] == removed  # the range ends where removal begins


@pytest.mark.parametrize("rule", ["AWS_CA_BUNDLE", "certifi"])
def test_which_bundle_follows_botocores_precedence(rule, tmp_path):
    pem = tmp_path / "corporate.pem"
    bundles.certifi("2021.10.8").write_pem(pem)
    env = {"AWS_CA_BUNDLE": str(pem)} if rule == "AWS_CA_BUNDLE" else {}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "none")
    done = atskit("which-bundle", "--json", env=env, unset=("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE"))
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["rule"] == rule
    if rule == "AWS_CA_BUNDLE":
        assert result["path"] == str(pem)


def test_lab_serve_prints_where_it_listens_and_stops():
    done = atskit("lab", "serve", "--duration", "0.5", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    details = json.loads(done.stdout)
    assert details["port"] > 0
    assert details["endpoints"]["data_legacy"] == "data.iot.ap-northeast-2.amazonaws.com"
    assert Path(details["ca_bundle"]).is_file()


def test_the_docs_workflow_runs_a_command_atskit_accepts():
    import shlex

    import yaml

    workflow = yaml.safe_load((ROOT / "docs" / "upgrade-check-workflow.yml").read_text())
    steps = workflow["jobs"]["upgrade-check"]["steps"]
    runs = [step["run"] for step in steps if "atskit " in step.get("run", "")]
    command = runs[0].split("atskit ", 1)[1].split("|")[0].replace("\\\n", " ")
    command = command.replace('"${options[@]}"', "")  # empty unless BEFORE_AS_OF / TARGET_* are set
    args = cli.build_parser().parse_args(shlex.split(command))
    assert args.func is cli._upgrade_check_files  # calls _upgrade_check once per FILE
    assert (args.before_ref, args.lab, args.endpoints) == ("origin/${GITHUB_BASE_REF}", True, ["${files[@]}"])


@pytest.mark.slow
def test_run_notebooks_json_reports_each_notebook_in_order(tmp_path, monkeypatch, capsys, write_notebook):
    """A notebook that raises fails the run (as it fails plain papermill), and is still written and
    exported, with the error on one line; the others are unaffected; the order is the notebooks'."""

    from helpers import cli, runner

    paths = [
        write_notebook(tmp_path / "01-fails.ipynb", "1 / 0", parameters='mode: str = "lab"'),
        write_notebook(tmp_path / "02-works.ipynb", "print('done')", parameters='mode: str = "lab"'),
    ]
    monkeypatch.setattr(runner, "notebook_paths", lambda *_: paths)
    out = tmp_path / "out"
    assert cli.main(["run-notebooks", "--json", "--out", str(out)]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] is False
    failed, worked = result["notebooks"]
    assert (failed["notebook"], failed["ok"]) == ("01-fails", False)
    assert failed["error"].startswith("ZeroDivisionError: division by zero (cell 2)")
    assert (worked["notebook"], worked["ok"], worked["error"]) == ("02-works", True, None)
    for stem in ("01-fails", "02-works"):
        assert (out / f"{stem}.ipynb").exists() and (out / f"{stem}.html").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []  # nothing half-written


@pytest.mark.parametrize(
    "args",
    [
        ["check", "--chain-file", "{saved}/data_legacy.pem", "--bundle", "certifi==all"],
        ["check", "--chain-file", "{saved}/data_legacy.pem", "--bundle", "certifi==2021.10.8", "--json"],
        ["diff-bundles", "certifi==2020.6.20", "certifi==2021.10.8", "--json"],
    ],
    ids=["check-all", "check-json", "diff-bundles"],
)
def test_small_commands_need_no_pandas_boto3_moto_or_pyopenssl(saved, args):
    """Verifying, comparing and printing text or JSON cost little more than Python and cryptography; a
    chain file needs no capture, so not pyOpenSSL (the capture's handshake before Python 3.13) either."""
    code = (
        "import sys; from helpers import cli; code = cli.main(sys.argv[1:]); "
        "heavy = sorted(m for m in ('pandas', 'boto3', 'moto', 'matplotlib', 'nbformat', 'OpenSSL') "
        "if m in sys.modules); "
        "print('HEAVY', heavy, file=sys.stderr); sys.exit(code)"
    )
    command = [sys.executable, "-c", code, *(a.format(saved=saved) for a in args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode in (0, 1), done.stderr
    assert "HEAVY []" in done.stderr, done.stderr


def test_redact_cleans_text_markdown_html_and_notebooks_before_sharing(tmp_path, capsys):
    import nbformat

    key, home = "AKIAIOSFODNN7EXAMPLE", "/home/alice/evidence"
    note = tmp_path / "notes.md"
    note.write_text(f"key {key} in `{home}`\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(f"print('{key}')")])
    notebook = tmp_path / "run.ipynb"
    nbformat.write(nb, notebook)
    done = atskit_here(capsys, "redact", str(note))
    assert done.returncode == 0 and key not in done.stdout and "&lt;access-key-id&gt;" in done.stdout
    assert "`/home/<user>/evidence`" in done.stdout and note.read_text().count(key) == 1  # untouched
    done = atskit_here(capsys, "redact", str(note), str(notebook), "--in-place", "--json")
    assert [f["changed"] for f in json.loads(done.stdout)["files"]] == [True, True]
    assert key not in note.read_text() + notebook.read_text()
    assert key in (tmp_path / "notes.md.bak").read_text() and (tmp_path / "run.ipynb.bak").exists()
    again = atskit_here(capsys, "redact", str(note), "--in-place")
    assert again.stdout.strip() == f"unchanged {note}"  # nothing changed: no word of backups
    (tmp_path / "second.md").write_text(f"key {key}\n")
    told = atskit_here(capsys, "redact", str(tmp_path / "second.md"), "--in-place")
    assert told.stdout.splitlines()[-1].endswith("secrets and all: delete it before sharing")


def test_redact_in_place_checks_every_file_before_writing_any_and_keeps_permissions(tmp_path, capsys):
    key = "AKIAIOSFODNN7EXAMPLE"
    note, fifo = tmp_path / "a.md", tmp_path / "pipe"
    note.write_text(f"key {key}\n")
    os.mkfifo(fifo)
    done = atskit_here(capsys, "redact", str(note), str(fifo), "--in-place")
    assert done.returncode == 2 and "not a regular file" in one_line_error(done)
    assert key in note.read_text() and not (tmp_path / "a.md.bak").exists()  # nothing written
    os.chmod(note, 0o600)
    done = atskit_here(capsys, "redact", str(note), "--in-place")
    assert done.returncode == 0 and key not in note.read_text()
    assert stat.S_IMODE(note.stat().st_mode) == 0o600
    backup = tmp_path / "a.md.bak"
    assert key in backup.read_text() and stat.S_IMODE(backup.stat().st_mode) == 0o600


@pytest.fixture
def odd_files(tmp_path, saved):
    """Inputs users really hand over by mistake: a pipe, a device, a bundle nothing in can be used, a
    chain file saved with a byte-order mark, and a bundle in OpenSSL's TRUSTED CERTIFICATE format."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n")
    bom = tmp_path / "bom.pem"
    bom.write_bytes(b"\xef\xbb\xbf" + (saved / "data_legacy.pem").read_bytes())
    trusted = tmp_path / "trusted.pem"
    view = saved / "view-2020.6.20.pem"
    done = subprocess.run(
        ["openssl", "x509", "-in", str(view), "-addtrust", "serverAuth", "-out", str(trusted)],
        capture_output=True,
        text=True,
        check=False,
    )
    trusted = trusted if done.returncode == 0 else None
    # every root of the view, each as `openssl x509 -addtrust serverAuth` writes one
    trusted_view = tmp_path / "trusted-view.pem"
    server_auth = bytes.fromhex("300c300a06082b06010505070301")  # X509_CERT_AUX: trust serverAuth
    trusted_view.write_text(
        "".join(
            ssl.DER_cert_to_PEM_cert(cert.public_bytes(serialization.Encoding.DER) + server_auth).replace(
                "CERTIFICATE-----", "TRUSTED CERTIFICATE-----"
            )
            for cert in bundles.from_pem(view).certificates
        )
    )
    includes_pipe = tmp_path / "requirements.txt"
    includes_pipe.write_text(f"requests==2.26.0\n-r {fifo}\n")
    conda = tmp_path / "environment.yml"
    conda.write_text("name: layer\ndependencies:\n  - python=3.9\n  - requests=2.26.0\n")
    (tmp_path / "layer.yml").write_text("# a conda environment under another name\n" + conda.read_text())
    not_a_freeze = tmp_path / "freeze.txt"
    not_a_freeze.write_text("requests>=2.24\ncertifi==2021.10.8\n")
    inventory_no_root = tmp_path / "fleet-no-root.csv"
    inventory_no_root.write_text("device,endpoint\nd1,a1b2-ats.iot.eu-west-1.amazonaws.com\n")
    inventory_bad_sha = tmp_path / "fleet-bad-sha.csv"
    inventory_bad_sha.write_text(
        f"device,endpoint,root_sha256\nd1,a1b2-ats.iot.eu-west-1.amazonaws.com,{'0' * 64}\n"
    )
    files = {"fifo": fifo, "garbage": garbage, "bom": bom, "trusted": trusted, "saved": saved}
    files |= {"trusted_view": trusted_view}
    files |= {"inventory_no_root": inventory_no_root, "inventory_bad_sha": inventory_bad_sha}
    extra = {"conda": conda, "conda_named_otherwise": tmp_path / "layer.yml", "not_a_freeze": not_a_freeze}
    return files | {"includes_pipe": includes_pipe} | extra


CATALOGUE = [  # the catalogue of bad input: (arguments, the one line's text, exit code[, environment]);
    # {name}: odd_files. Exit 2: one error line; exit 0 or 1: read as it is (any stderr a warning line)
    (["check", "--endpoints-file", "{fifo}"], "not a regular file (a pipe or device)", 2),
    (["check", "--chain-file", "{fifo}"], "not a regular file (a pipe or device)", 2),
    (["check", "--lab", "--bundle", "{fifo}"], "not a regular file (a pipe or device)", 2),
    (["check", "--chain-file", "/dev/zero"], "not a regular file (a pipe or device)", 2),
    (["upgrade-check", "--before", "{fifo}", "--after", "certifi==2021.10.8"], "not a regular file", 2),
    (["check", "--chain-file", ""], "the path is empty", 2),
    (
        ["check", "--chain-file", "{saved}/data_legacy.pem", "--bundle", "{garbage}"],
        "none of its 1 certificate blocks can be used",
        2,
    ),
    (["check", "--lab", "--timeout", "0"], "give seconds above 0", 2),
    (["check", "--lab", "--timeout", "nan"], "give seconds above 0", 2),
    (["check", "--lab", "--timeout", "inf"], "give seconds above 0", 2),
    (["lab", "serve", "--duration", "-1"], "give seconds above 0", 2),
    (["check", "--lab", "--at", "9999-12-31T23:59:59-05:00"], "out of range once converted to UTC", 2),
    (["redact", "{fifo}"], "not a regular file", 2),
    (["redact", "/nonexistent/notes.md"], "no such file", 2),
    (["check", "--lab", "--bundle", "/dev/zero"], "not a regular file (a pipe or device)", 2),
    (["check", "--endpoints-file", ""], "the path is empty", 2),
    (
        ["upgrade-check", "--before", "{includes_pipe}", "--after", "requests==2.26.0", "--no-pip"],
        "not a regular",
        2,
    ),
    (["check", "--lab", "--at", "2021-13-45"], "not a date", 2),
    (["check", "--lab", "--region", "eu-west-9"], "has no AWS IoT", 2),
    (["check", "--lab", "host:8883{{10.0.0}}"], "is not an IP address", 2),
    (["check", "--lab", "host{{10.0.0.5}}:8883"], "HOST:PORT{IP}", 2),
    (["devices", "{fifo}"], "not a regular file (a pipe or device)", 2),
    (["devices", "{inventory_no_root}"], "no root_file or root_sha256 column", 2),
    (["devices", "{inventory_bad_sha}", "--lab"], "no root with this fingerprint", 2),
    (["check", "--lab", "--region", "cn-north-1"], "aws-cn partition", 2),
    (["check", "--lab", "--bundle", "certifi==1999.1.1"], "nearest releases", 2),
    (["refresh-certifi", "--workers", "0"], "give a number from 1 to 32", 2),
    (["refresh-certifi", "--workers", "100000"], "give a number from 1 to 32", 2),
    (["refresh-certifi", "--data-dir", ""], "--data-dir: the path is empty", 2),
    (["refresh-certifi", "--data-dir", "{garbage}"], "is not a folder", 2),
    (["upgrade-check", "--before", "{conda}", "--after", "requests==2.26.0", "--lab"], "pip freeze > ", 2),
    (
        [
            "upgrade-check",
            "--before",
            "{not_a_freeze}",
            "--after",
            "requests==2.26.0",
            "--lab",
            "--freeze",
            "before",
        ],
        "not a pip freeze output",
        2,
    ),  # fmt: skip
    (
        ["upgrade-check", "--before", "requests==2.24.0", "--after", "x==1", "--as-of", "2021-13-45"],
        "bad --as-of",
        2,
    ),
    (
        ["upgrade-check", "--before", "requests==2.24.0", "--after", "x==1", "--platform", "amiga"],
        "--platform",
        2,
    ),
    (
        ["upgrade-check", "--before", "requests==2.24.0", "--after", "x==1", "--python-version", "three"],
        "--python-version",
        2,
    ),  # fmt: skip
    (
        ["upgrade-check", "--before", "x==1", "--after", "x==2", "--lab", "--ca-bundle", "verify"],
        "RULE=PATH",
        2,
    ),
    (["upgrade-check", "--before", "x==1", "--after", "x==2", "--as-of", "2099-01-01"], "in the future", 2),
    (["upgrade-check", "--before", "{conda_named_otherwise}", "--after", "x==1"], "conda files", 2),
    (["upgrade-check", "--before", "", "--after", "certifi==2021.10.8"], "--before: the path is empty", 2),
    (
        ["upgrade-check", "--before", "requests==2.24.0", "--after", "x==1", "--as-of", "0001-01-01"],
        "before 2000",
        2,
    ),
    (["check", "--lab", "--at", "0001-01-01T00:00:00+05:00"], "use a date after 0001-01-01", 2),
    (["check", "--lab", "--timeout", "-1"], "give seconds above 0", 2),
    (["check", "--lab", "--timeout", "1e-300"], "(0.01 or more)", 2),
    (["check", "--lab", "--save-chains", ""], "--save-chains: the path is empty", 2),
    (["check", "--lab", "--save-chains", "/dev/null"], "--save-chains /dev/null: it is not a folder", 2),
    (["run-notebooks", "--out", "/dev/null"], "--out /dev/null: it is not a folder", 2),
    (["check", "--lab", "--region", ""], "argument --region: empty; give an AWS region", 2),
    (["check", "--lab", "--alpn", ""], "argument --alpn: empty; give an ALPN protocol", 2),
    (["which-bundle"], "is not a CA certificate", 0, {"AWS_CA_BUNDLE": "{saved}/data_legacy.pem"}),
    (
        ["check", "--chain-file", "{saved}/data_legacy.pem", "--bundle", "{saved}/data_legacy.pem"],
        "is not a CA certificate, yet becomes a trust anchor",
        0,
    ),
    (
        ["check", "--chain-file", "{bom}", "--bundle", "{saved}/view-2020.6.20.pem"],
        "1/1 endpoint x bundle",
        0,
    ),
    (["check", "--chain-file", "{saved}/data_legacy.pem", "--bundle", "{trusted_view}"], "1/1 endpoint", 0),
]


@pytest.mark.parametrize("case", CATALOGUE, ids=lambda case: " ".join(case[0]) or "(none)")
def test_odd_input_is_one_line_and_never_hangs(odd_files, case):
    args, text, code, *environment = case
    env = {name: value.format(**odd_files) for name, value in (environment[0] if environment else {}).items()}
    done = atskit(*(a.format(**odd_files) for a in args), env=env, timeout=60)
    assert done.returncode == code, done.stderr
    if code == 2:
        assert text in one_line_error(done)
    else:  # read, not refused: any stderr is warning lines, and the text is in what it printed
        assert "Traceback" not in done.stderr
        assert all(line.startswith("atskit: warning: ") for line in done.stderr.splitlines()), done.stderr
        assert text in done.stdout + done.stderr


def test_a_bom_and_a_trusted_certificate_bundle_are_read(odd_files):
    done = atskit(
        "check",
        "--chain-file",
        str(odd_files["bom"]),
        "--bundle",
        str(odd_files["saved"] / "view-2020.6.20.pem"),
    )
    assert done.returncode == 0, done.stderr  # the '# host:' header under the BOM was read
    if odd_files["trusted"] is None:
        pytest.skip("this openssl cannot write TRUSTED CERTIFICATE")  # listed by name, as cryptography does
    trusted = bundles.from_pem(odd_files["trusted"])
    plain = bundles.from_pem(odd_files["saved"] / "view-2020.6.20.pem")
    from cryptography.hazmat.primitives import hashes

    first = plain.certificates[0].fingerprint(hashes.SHA256()).hex()  # openssl x509 reads the first
    assert trusted.fingerprints == {first} and not trusted.problems


def test_a_captured_chain_given_as_a_bundle_is_warned_about(saved):
    chain_file = str(saved / "data_legacy.pem")
    done = atskit("check", "--chain-file", chain_file, "--bundle", chain_file)
    assert "is not a CA certificate, yet becomes a trust anchor" in done.stderr


def test_the_readme_states_how_many_inputs_the_catalogue_holds():
    readme = (ROOT / "README.md").read_text()
    stated = re.search(r"catalogue in `tests/test_cli.py` feeds the command (\d+) bad inputs", readme)
    assert stated and int(stated.group(1)) == len(CATALOGUE)


def test_which_bundle_fails_when_its_bundle_cannot_work():
    done = atskit("which-bundle", env={"AWS_CA_BUNDLE": "/nonexistent/ca.pem"})
    assert done.returncode == 1 and "botocore will fail every TLS connection" in done.stdout


def test_an_error_under_json_prints_a_json_error_object_and_exits_2(capsys):
    import jsonschema

    done = atskit_here(
        capsys, "upgrade-check", "--before", "no-such-file.txt", "--after", "x", "--lab", "--json"
    )
    assert done.returncode == 2
    data = json.loads(done.stdout)
    jsonschema.validate(data, json.loads((ROOT / "docs" / "upgrade-check.schema.json").read_text()))
    assert data["error"]["message"].startswith("no-such-file.txt: no such requirements or lock file")
    assert one_line_error(done) == f"atskit: error: {data['error']['message']}"


def test_a_usage_error_under_json_is_a_json_error_object_too(capsys):
    done = atskit_here(capsys, "upgrade-check", "--before", "x==1", "--after", "y==1", "--bogus", "--json")
    assert done.returncode == 2
    assert json.loads(done.stdout)["error"] == {
        "kind": "UsageError",
        "message": "unrecognized arguments: --bogus (see 'atskit --help')",
    }


def test_upgrade_check_takes_ca_bundle_declarations_per_side(capsys, tmp_path):
    from helpers import bundles

    g5 = tmp_path / "g5.pem"
    g5.write_bytes(bundles.certifi("2020.6.20").pem())  # the after side's runtime still points at old roots
    args = ["upgrade-check", "--before", "docs/examples/incident-before.txt", "--runtime-botocore", "1.23.1",
            "--after", "docs/examples/incident-after.txt", "--lab", "--json"]  # fmt: skip
    done = atskit_here(capsys, *args, "--after-ca-bundle", f"AWS_CA_BUNDLE={g5}")
    assert done.returncode == 0, done.stdout
    sides = json.loads(done.stdout)["sides"]
    assert (
        sides["after"]["bundle"]["rule"] == "AWS_CA_BUNDLE" and sides["before"]["bundle"]["rule"] == "certifi"
    )
    bad = atskit_here(capsys, *args, "--ca-bundle", "PIP_CERT=x.pem")
    assert bad.returncode == 2 and "RULE=PATH" in one_line_error(bad)


@pytest.mark.parametrize(
    "args", [["history", "--json"], ["history"], ["diff-bundles", "certifi==2020.6.20", "certifi==2021.10.8"]]
)
def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(args):
    """`atskit ... | head -1`: no traceback and no error line, exit 141 (128 + SIGPIPE, as a shell says)."""
    script = (
        "import os, sys\n"
        "read, write = os.pipe(); os.close(read); os.dup2(write, 1)  # a reader that has already left\n"
        f"from helpers import cli; sys.exit(cli.main({args!r}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (done.returncode, done.stderr) == (141, "")
