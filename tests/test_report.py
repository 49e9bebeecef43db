"""Redaction and postmortem export: no secret survives into anything the kit exports."""

from __future__ import annotations

import re
from dataclasses import dataclass

import nbformat
import pandas as pd
import pytest

from helpers import redaction, report, runner
from helpers._paths import ROOT
from helpers.redaction import prefix_placeholder, redact, redact_markdown, redact_notebook_file
from helpers.report import Postmortem


@dataclass(frozen=True)
class Leak:
    """A secret in context, the text that must not survive, and the placeholder that replaces it."""

    id: str
    text: str
    secret: str
    placeholder: str


LEAKS = [
    Leak("access-key-id", "key id AKIAIOSFODNN7EXAMPLE in a log", "AKIAIOSFODNN7EXAMPLE", "<access-key-id>"),
    Leak("temporary-key-id", "ASIAY34FZKBOKMUTVV7A,", "ASIAY34FZKBOKMUTVV7A", "<access-key-id>"),
    Leak(
        "secret-in-ini",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "<secret>",
    ),
    Leak(
        "secret-in-json",
        '{"SecretAccessKey": "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY"}',
        "je7MtGbClwBF/2Zp9Utk/h3yCo8nvbEXAMPLEKEY",
        "<secret>",
    ),
    Leak(
        "secret-standalone",
        "export X=9drTJvcXLB89EXAMPLELB8923FB892xMFI+ab123 done",
        "9drTJvcXLB89EXAMPLELB8923FB892xMFI+ab123",
        "<secret>",
    ),
    Leak(
        "session-token",
        "aws_session_token=IQoJb3JpZ2luX2VjEXAMPLETOKEN0123",
        "IQoJb3JpZ2luX2VjEXAMPLETOKEN",
        "<secret>",
    ),
    Leak(
        "account-in-arn",
        "arn:aws:iot:ap-northeast-2:123456789012:thing/sensor-1",
        "123456789012",
        "<account-id>",
    ),
    Leak("account-standalone", "Account: 210987654321.", "210987654321", "<account-id>"),
    Leak(
        "sts-token-standalone",
        "token IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ end",
        "IQoJb3JpZ2lu",
        "<secret>",
    ),
    Leak("old-sts-token", "FwoGZXIvYXdzEBYaDHhBTEXAMPLEEXAMPLEtoken==", "FwoGZXIvYXdzEBYa", "<secret>"),
    Leak(
        "lower-case-secret",
        "aws_secret_access_key=abcdefghijklmnopqrstuvwxyzabcdefghijklmn",
        "abcdefghijklmnop",
        "<secret>",
    ),
    Leak(
        "cli-option",
        "aws sts ... --session-token AQoDYXdzEPT//////////wEXAMPLEtc764 --x",
        "AQoDYXdzEPT",
        "<secret>",
    ),
    Leak(
        "cli-secret-option",
        "--secret-access-key wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY",
        "wJalrXUtn",
        "<secret>",
    ),
    Leak(
        "url-credentials",
        "index https://ci-bot:s3cr3t-p4ss@pypi.example.com/simple",
        "s3cr3t-p4ss",
        "<secret>@",
    ),
    Leak(
        "url-encoded-arn",
        "arn%3Aaws%3Aiot%3Aus-east-1%3A123456789012%3Athing%2Fx",
        "123456789012",
        "<account-id>",
    ),
    Leak("linux-home", "wrote /home/kim.lee/work/reports/postmortem.md", "kim.lee", "/home/<user>"),
    Leak("mac-home", "CA bundle /Users/jdoe/.aws/ca.pem", "jdoe", "/Users/<user>"),
    Leak("account-after-underscore", "role name deploy_210987654321_prod", "210987654321", "<account-id>"),
    Leak("account-after-a-dot", "bucket logs.210987654321", "210987654321", "<account-id>"),
    Leak("account-dashed", "account 1234-5678-9012 in the console", "1234-5678-9012", "<account-id>"),
    Leak(
        "ats-prefix",
        "https://a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com/things/x/shadow",
        "a1b2c3d4e5f6g7",
        prefix_placeholder("a1b2c3d4e5f6g7") + "-ats.iot.ap-northeast-2.amazonaws.com",
    ),
    Leak(
        "prefix-without-digits",
        "abcdefghijklmn-ats.iot.us-east-1.amazonaws.com",
        "abcdefghijklmn",
        prefix_placeholder("abcdefghijklmn") + "-ats.iot.us-east-1.amazonaws.com",
    ),
    Leak(
        "legacy-prefix",
        "host a3k7odshaiipe8.iot.us-east-1.amazonaws.com:8883",
        "a3k7odshaiipe8",
        prefix_placeholder("a3k7odshaiipe8") + ".iot.us-east-1.amazonaws.com",
    ),
    Leak(
        "prefix-in-a-truncated-cell",
        "https://a1b2c3d4e5f6g7-ats.iot.ap-northe...",
        "a1b2c3d4e5f6g7",
        "https://" + prefix_placeholder("a1b2c3d4e5f6g7") + "-ats.iot.ap-northe...",
    ),
    Leak(
        "secret-key-lower",
        "secret_key=abcdefghijklmnopqrstuvwxyzabcdefghijklmn",
        "abcdefghijklmnop",
        "<secret>",
    ),
    Leak(
        "aws-secret-key-env",
        "AWS_SECRET_KEY=qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf",
        "qwertyuiop",
        "<secret>",
    ),
    Leak(
        "secret-key-camel-json",
        '{"secretKey": "QWERTYUIOPASDFGHJKLZXCVBNMQWERTYUIOPASDF"}',
        "QWERTYUIOP",
        "<secret>",
    ),
    Leak(
        "cli-secret-key-equals",
        "--secret-key=abcdefghijklmnopqrstuvwxyzabcdefghijklmn",
        "abcdefghij",
        "<secret>",
    ),
    Leak("cli-password-equals", "mysql --password=hunter2 -h db", "hunter2", "--password=<secret>"),
    Leak("cli-password-option", "login --password correct-horse --user x", "correct-horse", "<secret>"),
    Leak("password-in-json", '{"db_password": "letmein"}', "letmein", "<secret>"),
    Leak("url-empty-user", "cache redis://:s3cretpw@cache.internal:6379/0", "s3cretpw", "redis://<secret>@"),
    Leak("sts-token-agoj", "token AgoJb3JpZ2luEHwaCXVzLWVhc3QtMSJHMEUCIQ end", "AgoJb3JpZ2lu", "<secret>"),
    Leak("sts-token-aqod", "token AQoDYXdzEPT//////////wEXAMPLEtc764 end", "AQoDYXdz", "<secret>"),
    Leak(
        "html-escaped-single-quotes",
        "{&#x27;aws_secret_access_key&#x27;: &#x27;qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf&#x27;}",
        "qwertyuiop",
        "<secret>",
    ),
    Leak(
        "html-escaped-double-quotes",
        "{&quot;SecretAccessKey&quot;: &quot;qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf&quot;}",
        "qwertyuiop",
        "<secret>",
    ),
    Leak("html-escaped-password", "&quot;password&quot;: &quot;hunter2&quot;", "hunter2", "<secret>"),
    Leak("account-after-a-dash", "role deploy-210987654321", "210987654321", "<account-id>"),
    Leak(
        "json-in-python-source",
        r'title = "{\"secretKey\": \"QWERTYUIOPASDFGHJKLZXCVBNMQWERTYUIOPASDF\"}"',
        "QWERTYUIOP",
        "<secret>",
    ),
    Leak(
        "html-escaped-twice",
        "&amp;quot;SecretAccessKey&amp;quot;: &amp;quot;qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf",
        "qwertyuiop",
        "<secret>",
    ),
    Leak("secret-cut-short-by-a-display", "aws_secret_access_key = zxcvbnmzxc...", "zxcvbnmzxc", "<secret>"),
    Leak(
        "credentials-prefix",
        "c2fx9abcdefg01.credentials.iot.eu-west-1.amazonaws.com",
        "c2fx9abcdefg01",
        prefix_placeholder("c2fx9abcdefg01") + ".credentials.iot.eu-west-1.amazonaws.com",
    ),
]


@pytest.mark.parametrize("leak", LEAKS, ids=lambda leak: leak.id)
def test_redact_masks_the_secret(leak):
    out = redact(leak.text)
    assert leak.secret not in out
    assert leak.placeholder in out


@pytest.mark.parametrize("leak", LEAKS, ids=lambda leak: leak.id)
def test_redact_is_idempotent(leak):
    once = redact(leak.text)
    assert redact(once) == once


KEPT = [
    "data.iot.ap-northeast-2.amazonaws.com",
    "data-ats.iot.ap-northeast-2.amazonaws.com",
    "iot.ap-northeast-2.amazonaws.com",
    "credentials.iot.us-east-1.amazonaws.com",
    "data.jobs.iot.us-east-1.amazonaws.com",
    "data.ats.iot.cn-north-1.amazonaws.com.cn",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709",  # 40 hex characters: not a secret's mix
    "certifi 2020.12.5 released 2020-12-05; epoch 1606780800; 13 digits 1606780800000",
    "VeriSign Class 3 Public Primary Certification Authority - G5",
    "elapsed 0.123456789012 s",
    "https://pypi.org/simple/certifi/ and http://127.0.0.1:8888/lab?token=x",
    "the session token is <secret> and the key <access-key-id>",
    "secret_access_key = <secret>",
    "/home/<user>/reports and ~/.cache/atskit",
    "SHA256 fingerprint E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:"
    "27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55",
    "sha1 DA39A3EE5E6B4B0D3255BFEF95601890AFD80709 and "
    "da:39:a3:ee:5e:6b:4b:0d:32:55:bf:ef:95:60:18:90:af:d8:07:09",
    "commit 3b18e512dba79e4c8300dd08aeb37f8e728b8dad (short 3b18e51)",
    "botocore 1.23.1, certifi 2021.10.08, python 3.11.7, version 10.0.19041.1",
    "2021-12-03T08:15:00+09:00 and 2021-12-03 08:15:00.123456",
    "epoch ms 1638519300000 and ns 1638519300000000000",
    "uuid 123e4567-e89b-12d3-a456-426614174000 and 550E8400-E29B-41D4-A716-446655440000",
    "serial 143266978916655856878034712317230054538369994 / 0a:01:41:42:00:00:01:53:85:73:6a:0b:85:ec:a7:08",
    "serial 4EB200670C035D4F",
    "<access-key-id> <secret> <account-id> <prefix-3f2a> /home/<user> <secret>@host",
    "pin-sha256 47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU= and "
    "SHA256:nThbg6kXUpJWGl7E1IGOCspRomTxdCARLviKw6E5SY8",
    "the password is set by the password policy; password_policy = strict; --password-file ~/pw.txt",
    "atskit: error: --bundle /etc/passwd: no PEM CERTIFICATE blocks found; pass a CA bundle in PEM format",
    "password: <secret> and secret_key_id = 42; the secret key rotation guide",
    "ssh://git@github.com/org/repo and http://[::1]:8888/lab",
    "token AQoD only a prefix",
    (  # a PEM body whose last line is 40 characters of mixed base64
        "-----BEGIN CERTIFICATE-----\n"
        "MIIDQTCCAimgAwIBAgITBmyfz5m/jAo54vB4ikPmljZbyjANBgkqhkiG9w0BAQsF\n"
        "ADA5MQswCQYDVQQGEwJVUzEPMA0GA1UEChMGQW1h\n"
        "-----END CERTIFICATE-----"
    ),
]


@pytest.mark.parametrize("text", KEPT)
def test_redact_keeps_what_is_not_secret(text):
    assert redact(text) == text


def test_html_and_markdown_placeholders_stay_visible():
    host = "a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com"
    text = f"host `{host}` and a1b2c3d4e5f6g7.iot.ap-northeast-2.amazonaws.com"
    tag = prefix_placeholder("a1b2c3d4e5f6g7")[1:-1]  # prefix-xxxx
    assert redact(text, html=True).count(f"&lt;{tag}&gt;") == 2
    md = redact_markdown(text)
    assert f"`<{tag}>-ats.iot" in md  # inside code: literal
    assert f"&lt;{tag}&gt;.iot" in md  # outside code: an entity, so no renderer hides it as a tag


def test_masked_prefixes_stay_distinguishable_and_stable():
    """Two accounts' endpoints stay two in a report; the same prefix gets the same tag in any case."""
    one, two = "a1b2c3d4e5f6g7", "z9y8x7w6v5u4t3"
    text = f"{one}-ats.iot.us-east-1.amazonaws.com {two}-ats.iot.us-east-1.amazonaws.com"
    text += f" {one.upper()}.iot.eu-west-1.amazonaws.com"
    tags = re.findall(r"<prefix-[0-9a-f]{4}>", redact(text))
    assert len(tags) == 3 and tags[0] != tags[1] and tags[0] == tags[2]
    assert one not in redact(text) and two not in redact(text)


def _leaky_postmortem() -> Postmortem:
    """A postmortem with every leak in its title, metadata, prose, code and a table."""
    pm = Postmortem.skeleton(
        "Outage in account 123456789012", account="123456789012", key="AKIAIOSFODNN7EXAMPLE"
    )
    pm.section("Summary").add("\n".join(f"- {leak.text}" for leak in LEAKS))
    pm.section("Root cause").add("```\n" + "\n".join(leak.text for leak in LEAKS) + "\n```")
    frame = pd.DataFrame({"endpoint": [leak.text for leak in LEAKS], "ok": [True] * len(LEAKS)})
    pm.section("Evidence").add("The endpoints:", frame)
    return pm


def test_postmortem_exports_carry_no_secret(tmp_path):
    paths = _leaky_postmortem().export(tmp_path, "postmortem")
    for kind in ("markdown", "html"):
        text = paths[kind].read_text()
        for leak in LEAKS:
            assert leak.secret not in text, (kind, leak.id)
    html = paths["html"].read_text()
    tag = prefix_placeholder("a1b2c3d4e5f6g7")[1:-1]
    assert f"&lt;{tag}&gt;-ats.iot.ap-northeast-2.amazonaws.com" in html
    assert "<prefix" not in html  # a raw <prefix> would be an unknown tag, invisible in a browser
    md = paths["markdown"].read_text()
    assert md.startswith("# Outage in account &lt;account-id&gt;")
    assert "| endpoint | ok |" in md
    assert sorted(p.name for p in tmp_path.iterdir()) == ["postmortem.html", "postmortem.md"]


def test_postmortem_skeleton_has_the_usual_sections():
    md = Postmortem.skeleton("t").to_markdown()
    for title in ("Summary", "Impact", "Timeline", "Root cause", "Fix", "Prevention"):
        assert f"## {title}" in md
    assert "_To be written._" in md


def test_export_writes_nothing_when_rendering_fails(tmp_path, monkeypatch):
    def broken(self):
        raise RuntimeError("render failed")

    monkeypatch.setattr(Postmortem, "to_html", broken)
    with pytest.raises(RuntimeError):
        _leaky_postmortem().export(tmp_path, "postmortem")
    assert list(tmp_path.iterdir()) == []


def _leaky_notebook() -> nbformat.NotebookNode:
    """A notebook whose sources and every kind of output hold the leaks."""
    text = "\n".join(leak.text for leak in LEAKS)
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"parameters": {"title": text, "endpoints": text.splitlines()}}
    nb.cells = [
        nbformat.v4.new_markdown_cell(text),
        nbformat.v4.new_code_cell(
            "x = 1",
            outputs=[
                nbformat.v4.new_output("stream", name="stdout", text=text),
                nbformat.v4.new_output(
                    "execute_result",
                    data={"text/plain": text, "text/html": f"<pre>{text}</pre>", "image/png": "iVBORw0KGgo="},
                    execution_count=1,
                ),
                nbformat.v4.new_output("error", ename="ValueError", evalue=text, traceback=text.splitlines()),
            ],
        ),
    ]
    return nb


def test_redact_notebook_file_masks_sources_and_outputs(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_leaky_notebook(), path)
    assert redact_notebook_file(path) == 2
    text = path.read_text()
    for leak in LEAKS:
        assert leak.secret not in text, leak.id
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].outputs[1].data["image/png"] == "iVBORw0KGgo="
    assert re.search(r"&lt;prefix-[0-9a-f]{4}&gt;", nb.cells[1].outputs[1].data["text/html"])


def test_runner_redacts_executed_notebooks_and_their_html(tmp_path, write_notebook):
    lines = "\n".join(leak.text for leak in LEAKS)
    source = write_notebook(
        tmp_path / "src" / "99-leaky.ipynb",
        f"import pandas as pd\nprint({lines!r})\npd.DataFrame({{'x': {lines!r}.splitlines()}})",
        parameters="parameters_ok = True",
    )
    run = runner.execute(source, tmp_path / "out", html=True, parameters={"title": lines})
    assert run.ok, run.error
    for path in (run.output_ipynb, run.output_html):
        text = path.read_text()
        for leak in LEAKS:
            assert leak.secret not in text, (path.name, leak.id)
    assert "&lt;account-id&gt;" in run.output_html.read_text()


def test_redact_frame_masks_cells_columns_and_index():
    frame = pd.DataFrame(
        {"AKIAIOSFODNN7EXAMPLE": ["arn:aws:iam::123456789012:role/x"]}, index=["210987654321"]
    )
    out = redaction.redact_frame(frame)
    assert list(out.columns) == ["<access-key-id>"]
    assert out.iloc[0, 0] == "arn:aws:iam::<account-id>:role/x"
    assert list(out.index) == ["<account-id>"]
    assert frame.iloc[0, 0].endswith("123456789012:role/x")  # the original is untouched


@pytest.fixture(scope="module")
def incident_check():
    """The incident's upgrade, checked against the lab (what notebook 05 gathers its evidence from)."""
    from helpers import incident, upgrade

    return upgrade.run_check(
        ROOT / incident.EXAMPLE_BEFORE, ROOT / incident.EXAMPLE_AFTER, mode="lab", runtime_botocore="1.23.1"
    )


def test_a_lab_postmortem_labels_every_certificate_table_and_opens_with_a_banner(incident_check, tmp_path):
    import datetime as dt

    from helpers import postmortem

    evidence = postmortem.gather(incident_check, mode="lab", region="ap-northeast-2")
    pm = postmortem.write(
        evidence, title="t", incident_start=dt.date(2021, 12, 3), resolved=None, environment=pd.DataFrame()
    )
    tables = [b for s in pm.sections for b in s.blocks if isinstance(b, pd.DataFrame)]
    certificate_tables = [t for t in tables if "fingerprint_sha256" in t]
    assert len(certificate_tables) >= 3  # the roots removed, the chain, every fingerprint whole
    assert all("lab_twin" in t for t in certificate_tables)
    assert any(t["lab_twin"].any() for t in certificate_tables)  # the chain is the lab's
    shown = [t for t in certificate_tables if t["fingerprint_sha256"].str.endswith("…").all()]
    assert shown and all(t["fingerprint_sha256"].str.len().max() == 17 for t in shown)  # short in tables
    paths = pm.export(tmp_path, "pm")
    markdown, page = paths["markdown"].read_text(), paths["html"].read_text()
    assert markdown.splitlines()[2].startswith("> **LAB MODE.**")
    assert "LAB MODE." in page and "lab_twin" in page
    assert "failed for none" not in markdown


def test_a_postmortem_of_an_upgrade_that_breaks_nothing_says_so(tmp_path):
    import datetime as dt

    from helpers import incident, postmortem, upgrade

    same = ROOT / incident.EXAMPLE_BEFORE
    result = upgrade.run_check(same, same, mode="lab", runtime_botocore="1.23.1")
    evidence = postmortem.gather(result, mode="lab", region="ap-northeast-2")
    markdown = postmortem.write(
        evidence, title="t", incident_start=dt.date(2021, 12, 3), resolved=None, environment=pd.DataFrame()
    ).to_markdown()
    assert "broke no endpoint that worked before" in markdown
    assert "certifi unchanged at 2020.6.20" in markdown
    assert "failed for" not in markdown and "→ 2020.6.20" not in markdown
    assert not re.search(r"from (certifi \S+) to \1\b", markdown)  # no "changed ... from X to X"
    assert "left the trust store botocore loads at certifi 2020.6.20" in markdown
    fix = markdown.split("## Fix")[1].split("## ")[0]
    assert "Nothing to fix" in fix and "describe_endpoint" not in fix  # the ATS fix is not prescribed
    timeline = markdown.split("## Timeline")[1].split("## ")[0]
    assert "fix deployed" not in timeline and "failure starts" not in timeline
    assert "no endpoint broke" in timeline
    assert "Every certificate above" not in markdown  # no appendix of no certificates
    for table in re.findall(r"(?:^\|.*\|\n)+", markdown, re.M):  # every table has rows under its rule
        assert len(table.splitlines()) > 2, table


def test_a_table_without_rows_renders_as_no_rows_not_an_empty_table():
    pm = Postmortem("t")
    pm.section("Evidence").add(pd.DataFrame(columns=["name", "fingerprint_sha256"]))
    assert "| name |" not in pm.to_markdown() and "(no rows)" in pm.to_markdown()
    assert "<table" not in pm.to_html() and "(no rows)" in pm.to_html()


def test_a_notebook_run_from_the_kits_folders_reports_to_reports_interactive(tmp_path, monkeypatch):
    """JupyterLab (kernel in notebooks/) and papermill run from the kit's root write the postmortem to
    reports/interactive/, never into the kit's tracked folders nor over make report's own; elsewhere,
    beside the run."""
    for folder in (ROOT, ROOT / "notebooks"):
        monkeypatch.chdir(folder)
        assert report.report_folder()[0] == ROOT / "reports" / "interactive"
    monkeypatch.chdir(tmp_path)
    assert report.report_folder()[0] == tmp_path.resolve()


def test_redact_notebook_reaches_json_outputs_metadata_and_attachments():
    key, account = "AKIAIOSFODNN7EXAMPLE", "123456789012"
    nb = nbformat.v4.new_notebook(
        metadata={"papermill": {"parameters": {"arn": f"arn:aws:iot:r:{account}:x"}}}
    )
    cell = nbformat.v4.new_markdown_cell(
        "see attachment", attachments={"notes.txt": {"text/plain": f"key {key}"}}
    )
    code = nbformat.v4.new_code_cell("x")
    code.outputs = [
        nbformat.v4.new_output(
            "display_data",
            {
                "application/json": {"Credentials": {"AccessKeyId": key}, "Account": account},
                "application/vnd.dataresource+json": {"data": [{"key": key}]},
                "image/png": "iVBORw0KGgo=",
            },
            metadata={"source": f"account {account}"},
        )
    ]
    nb.cells = [cell, code]
    redaction.redact_notebook(nb)
    text = nbformat.writes(nb)
    assert key not in text and account not in text
    assert "iVBORw0KGgo=" in text  # images are not text


def test_redact_notebook_masks_numbers_keys_and_values_under_secret_names():
    """JSON trees: a 12-digit number is an account id (papermill records `-p account 210987654321` as
    one), keys are redacted like values (two masked alike stay two), and a value under a secret's name
    is masked whatever it looks like; what is not secret stays, numbers and all."""
    secret, token = "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdf", "AQoDxyzxyzxyzxyzxyz"
    parameters = {"account": 210987654321, "aws_secret_access_key": secret, "session_token": "short", "n": 12}
    nb = nbformat.v4.new_notebook(metadata={"papermill": {"parameters": parameters}})
    code = nbformat.v4.new_code_cell("x")
    table = {"data": [{"n": 210987654321, "210987654321": 1, "123456789012": 2, "ms": 1638519300000}]}
    code.outputs = [
        nbformat.v4.new_output(
            "display_data",
            {
                "application/vnd.dataresource+json": table,
                "application/json": {"SecretAccessKey": secret, "SessionToken": token, "password": 1234},
                "text/html": f"<pre>{{&#x27;aws_secret_access_key&#x27;: &#x27;{secret}&#x27;}}</pre>",
            },
            metadata={"AKIAIOSFODNN7EXAMPLE": {"tokens": 3, "ok": True}},
        )
    ]
    nb.cells = [code]
    redaction.redact_notebook(nb)
    text = nbformat.writes(nb)
    for gone in (secret, token, "210987654321", "123456789012", "AKIAIOSFODNN7EXAMPLE", "short", "1234"):
        assert gone not in text, gone
    assert nb.metadata.papermill.parameters == {
        "account": "<account-id>", "aws_secret_access_key": "<secret>", "session_token": "<secret>", "n": 12
    }  # fmt: skip
    data = nb.cells[0].outputs[0].data
    row = data["application/vnd.dataresource+json"]["data"][0]
    assert row == {"n": "<account-id>", "<account-id>": 1, "<account-id> (2)": 2, "ms": 1638519300000}
    assert data["application/json"] == {
        "SecretAccessKey": "<secret>",
        "SessionToken": "<secret>",
        "password": "<secret>",
    }
    assert nb.cells[0].outputs[0].metadata == {"<access-key-id>": {"tokens": 3, "ok": True}}
    assert redaction.redact_notebook(nb) == 0  # idempotent


def test_holds_secret_counts_secrets_not_home_folders():
    assert redaction.holds_secret("acct 210987654321") and redaction.holds_secret(210987654321)
    assert redaction.holds_secret(["a1b2c3d4e5f6g7-ats.iot.us-east-1.amazonaws.com"])
    assert not redaction.holds_secret("/home/kim/locks/before.txt")
    assert not redaction.holds_secret("Shadow updates failed TLS on 2021-12-03")


def test_report_folder_follows_report_dir_then_papermills_output_path_then_the_working_folder(
    tmp_path, monkeypatch
):
    """Notebook 05's rule: report_dir; else beside the executed copy when papermill names it
    (--inject-output-path); else the kernel's working folder; never the kit's tracked folders."""
    interactive = ROOT / "reports" / "interactive"
    monkeypatch.chdir(tmp_path)
    assert report.report_folder(str(tmp_path / "a")) == (tmp_path / "a", "report_dir")
    folder, why = report.report_folder(output_path=str(tmp_path / "b" / "out.ipynb"))
    assert folder == tmp_path / "b" and "beside the executed notebook" in why
    assert report.report_folder(output_path="out.ipynb")[0] == tmp_path  # relative to papermill's folder
    assert report.report_folder()[0] == tmp_path and "working folder" in report.report_folder()[1]
    for folder in (ROOT, ROOT / "notebooks"):
        assert report.report_folder(output_path=str(folder / "out.ipynb"))[0] == interactive
        monkeypatch.chdir(folder)
        assert report.report_folder()[0] == interactive


@pytest.mark.slow
def test_papermill_with_inject_output_path_puts_the_postmortem_beside_the_executed_copy(tmp_path):
    """The command in 05's introduction, run from another folder: the report lands beside the
    executed copy, not in the working folder, and the notebook says which rule applied."""
    import subprocess
    import sys
    from pathlib import Path

    work, out = tmp_path / "q1", tmp_path / "q2"
    work.mkdir(), out.mkdir()
    papermill = str(Path(sys.executable).with_name("papermill"))
    command = [papermill, "--inject-output-path", str(ROOT / "notebooks" / "05-postmortem.ipynb"),
               str(out / "out.ipynb"), "-p", "before", str(ROOT / "docs/examples/incident-before.txt"),
               "-p", "after", str(ROOT / "docs/examples/incident-after.txt")]  # fmt: skip
    done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "unknown parameter" not in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["out.ipynb", "postmortem.html", "postmortem.md"]
    assert list(work.iterdir()) == []
    assert "written to beside the executed notebook" in (out / "out.ipynb").read_text()
