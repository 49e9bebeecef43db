"""helpers.endpoints: host classes, botocore's CA-bundle precedence (real botocore), the default-endpoint
table (against the installed botocore) and the ATS client (against the lab, over real TLS)."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

import boto3
import botocore
import botocore.session
import certifi
import pandas as pd
import pytest
from botocore.exceptions import SSLError
from botocore.httpsession import get_cert_path

from helpers import _aws, _botocore_fetch, _paths, botocore_facts, bundles, endpoints, incident, lab, pki
from helpers._paths import ROOT

# --- classify: the host classes as data ---------------------------------------------------------


@dataclass(frozen=True)
class HostCase:
    """One host name and the class it must get."""

    host: str
    expected: str
    why: str


HOST_CASES = [
    HostCase("data.iot.ap-northeast-2.amazonaws.com", "legacy-verisign", "the incident's default host"),
    HostCase("a1b2c3d4e5f6g7.iot.ap-northeast-2.amazonaws.com", "legacy-verisign", "account iot:Data"),
    HostCase("a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com", "ats", "account iot:Data-ATS"),
    HostCase("data-ats.iot.ap-northeast-2.amazonaws.com", "ats", "botocore's default since the change"),
    HostCase("iot.ap-northeast-2.amazonaws.com", "control-plane", "describe_endpoint lives here"),
    HostCase(
        "a1b2c3d4e5f6g7.credentials.iot.us-east-1.amazonaws.com", "credentials", "iot:CredentialProvider"
    ),
    HostCase("a1b2c3d4e5f6g7.jobs.iot.eu-west-1.amazonaws.com", "jobs", "iot:Jobs"),
    HostCase("data.jobs.iot.eu-west-1.amazonaws.com", "jobs", "iot-jobs-data default host"),
    HostCase("data.iot.cn-north-1.amazonaws.com.cn", "legacy-verisign", "China, legacy"),
    HostCase("data.ats.iot.cn-north-1.amazonaws.com.cn", "ats", "China, botocore's ATS host"),
    HostCase("a1b2c3d4e5f6g7.ats.iot.cn-north-1.amazonaws.com.cn", "ats", "China, account ATS"),
    HostCase("data-ats.iot.cn-north-1.amazonaws.com.cn", "ats", "China, as botocore 1.24.30-1.27 named it"),
    HostCase("iot.cn-northwest-1.amazonaws.com.cn", "control-plane", "China control plane"),
    HostCase("iot-fips.us-east-1.amazonaws.com", "control-plane", "FIPS control plane"),
    HostCase("data.iot-fips.us-gov-west-1.amazonaws.com", "ats", "FIPS data: what data-ats.iot resolves to"),
    HostCase("data.jobs.iot-fips.ca-central-1.amazonaws.com", "jobs", "FIPS jobs"),
    HostCase("https://data.iot.ap-northeast-2.amazonaws.com:443/things/x/shadow", "legacy-verisign", "a URL"),
    HostCase("DATA-ATS.IOT.AP-NORTHEAST-2.AMAZONAWS.COM.", "ats", "case and trailing dot"),
    HostCase("s3.ap-northeast-2.amazonaws.com", "unknown", "another service"),
    HostCase("data.iot.ap-northeast-2.example.com", "unknown", "not AWS"),
    HostCase("data.iot.amazonaws.com", "unknown", "no region"),
    HostCase("x.y.iot.ap-northeast-2.amazonaws.com", "unknown", "unknown shape"),
    HostCase("127.0.0.1", "unknown", "an address"),
]


@pytest.mark.parametrize("case", HOST_CASES, ids=lambda c: c.why)
def test_classify(case):
    assert endpoints.classify(case.host) == case.expected


def test_classify_rejects_non_strings():
    with pytest.raises(TypeError, match="host name string"):
        endpoints.classify(None)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (
            "a1b2c3d4e5f6g7-ats.iot.ap-northeast-2.amazonaws.com",
            "<prefix-7324>-ats.iot.ap-northeast-2.amazonaws.com",  # the tag: sha256("a1b2c3d4e5f6g7")[:4]
        ),
        (
            "a1b2c3d4e5f6g7.credentials.iot.us-east-1.amazonaws.com",
            "<prefix-7324>.credentials.iot.us-east-1.amazonaws.com",
        ),
        ("data-ats.iot.ap-northeast-2.amazonaws.com", "data-ats.iot.ap-northeast-2.amazonaws.com"),
        ("iot.ap-northeast-2.amazonaws.com", "iot.ap-northeast-2.amazonaws.com"),
    ],
)
def test_redact_host_hides_account_prefixes_only(host, expected):
    assert endpoints.redact_host(host) == expected


# --- effective_ca_bundle: each precedence rule, checked against what botocore really loads ---------


@pytest.fixture
def clean_aws(monkeypatch, tmp_path):
    """No AWS_* / REQUESTS_CA_BUNDLE settings, an empty config file; returns a writer for that file."""
    for name in list(os.environ):
        if name.startswith("AWS_") or name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            monkeypatch.delenv(name)
    config = tmp_path / "config"
    config.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)

    def write_config(**values: str) -> None:
        config.write_text("[default]\n" + "".join(f"{k} = {v}\n" for k, v in values.items()))

    return write_config


@pytest.fixture(scope="module")
def ca_files(tmp_path_factory) -> dict[str, str]:
    """Four distinct one-root PEM files, one per precedence step."""
    folder = tmp_path_factory.mktemp("cas")
    files = {}
    for name in ("verify", "session", "aws_env", "config", "requests_env"):
        path = folder / f"{name}.pem"
        path.write_bytes(pki.CA(f"Test CA for {name}").cert_pem)
        files[name] = str(path)
    return files


def _loaded_by_botocore(session: botocore.session.Session, **client_kwargs) -> str | None:
    """The CA file a real client of ``session`` hands to urllib3 (None when verification is off)."""
    client = session.create_client(
        "iot-data", region_name="ap-northeast-2", aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="not-a-secret", **client_kwargs,
    )  # fmt: skip
    verify = client._endpoint.http_session._verify
    return get_cert_path(verify) if verify else None


@dataclass(frozen=True)
class Setup:
    """A precedence scenario: which settings are present, and which rule must win."""

    name: str
    present: tuple[str, ...]  # of verify, session, aws_env, config, requests_env
    rule: str


SETUPS = [
    Setup("nothing set: certifi", (), "certifi"),
    Setup("REQUESTS_CA_BUNDLE alone", ("requests_env",), "REQUESTS_CA_BUNDLE"),
    Setup("config file beats REQUESTS_CA_BUNDLE", ("config", "requests_env"), "config-file"),
    Setup("AWS_CA_BUNDLE beats the config file", ("aws_env", "config", "requests_env"), "AWS_CA_BUNDLE"),
    Setup("session ca_bundle beats AWS_CA_BUNDLE", ("session", "aws_env", "config"), "session-ca_bundle"),
    Setup(
        "verify= beats everything",
        ("verify", "session", "aws_env", "config", "requests_env"),
        "verify-argument",
    ),
]


@pytest.mark.parametrize("setup", SETUPS, ids=lambda s: s.name)
def test_effective_ca_bundle_follows_botocores_precedence(setup, clean_aws, ca_files, monkeypatch):
    if "config" in setup.present:
        clean_aws(ca_bundle=ca_files["config"])
    if "aws_env" in setup.present:
        monkeypatch.setenv("AWS_CA_BUNDLE", ca_files["aws_env"])
    if "requests_env" in setup.present:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_files["requests_env"])
    session = botocore.session.Session()
    if "session" in setup.present:
        session.set_config_variable("ca_bundle", ca_files["session"])
    client_kwargs = {"verify": ca_files["verify"]} if "verify" in setup.present else {}
    actual = _loaded_by_botocore(session, **client_kwargs)

    if client_kwargs:
        client = session.create_client("iot-data", region_name="ap-northeast-2", **client_kwargs)
        choice = botocore_facts.effective_ca_bundle(client, session=session)
    else:
        choice = botocore_facts.effective_ca_bundle(session=session)

    assert choice.rule == setup.rule
    assert choice.path == actual  # what we report is the file botocore hands to urllib3
    expected_file = {"certifi": certifi.where()} | {
        r: ca_files[k] for r, k in [("REQUESTS_CA_BUNDLE", "requests_env"), ("config-file", "config"),
                                    ("AWS_CA_BUNDLE", "aws_env"), ("session-ca_bundle", "session"),
                                    ("verify-argument", "verify")]
    }  # fmt: skip
    assert choice.path == expected_file[setup.rule]
    if setup.rule == "certifi":
        assert choice.bundle.fingerprints == bundles.installed_certifi().fingerprints
    else:
        assert choice.bundle.pem() == Path(choice.path).read_bytes()


def test_effective_ca_bundle_of_an_existing_client_is_that_clients_file(clean_aws, ca_files, monkeypatch):
    session = botocore.session.Session()
    client = session.create_client("iot-data", region_name="ap-northeast-2")  # created with certifi
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_files["aws_env"])  # set afterwards: the client keeps certifi
    assert botocore_facts.effective_ca_bundle(client, session=session).path == certifi.where()
    assert botocore_facts.effective_ca_bundle(session=session).path == ca_files["aws_env"]


def test_verify_false_is_reported_as_verification_off(clean_aws):
    session = botocore.session.Session()
    client = session.create_client("iot-data", region_name="ap-northeast-2", verify=False)
    choice = botocore_facts.effective_ca_bundle(client, session=session)
    assert (choice.rule, choice.path, choice.bundle) == ("verification-off", None, None)
    assert _loaded_by_botocore(session, verify=False) is None


def test_a_missing_bundle_file_is_reported_not_loaded(clean_aws, monkeypatch, tmp_path):
    missing = tmp_path / "nowhere.pem"
    monkeypatch.setenv("AWS_CA_BUNDLE", str(missing))
    choice = botocore_facts.effective_ca_bundle(session=botocore.session.Session())
    assert (choice.rule, choice.path, choice.bundle) == ("AWS_CA_BUNDLE", str(missing), None)
    assert "will fail" in choice.explanation


def test_an_empty_bundle_setting_is_rejected_like_botocore_does(clean_aws, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", " ")
    with pytest.raises(ValueError, match="empty"):
        botocore_facts.effective_ca_bundle(session=botocore.session.Session())


def test_effective_ca_bundle_rejects_non_clients():
    with pytest.raises(TypeError, match="not a botocore client"):
        botocore_facts.effective_ca_bundle(object())


def test_without_certifi_botocore_falls_back_to_its_vendored_bundle(clean_aws):
    choice = botocore_facts.ca_bundle_without_certifi()  # a child Python; checked there against a real client
    assert choice.rule == "botocore-vendored"
    assert choice.path == botocore.httpsession.DEFAULT_CA_BUNDLE
    assert choice.bundle.fingerprints == bundles.botocore_vendored().fingerprints
    # its G5 status, cross-checked with what the build script recorded for this release's wheel
    row = botocore_facts.default_endpoint_table(region="ap-northeast-2").query(
        "version == @botocore.__version__"
    )
    if row.empty:
        pytest.skip(f"botocore {botocore.__version__} is not in the table; rerun the build script")
    assert bool(choice.bundle.find(incident.ROOT_AT_FAULT)) == bool(row["has_verisign_g5"].iloc[0])


def test_without_certifi_an_aws_ca_bundle_still_wins(clean_aws, ca_files):
    environ = dict(os.environ, AWS_CA_BUNDLE=ca_files["aws_env"])
    choice = botocore_facts.ca_bundle_without_certifi(environ=environ)
    assert (choice.rule, choice.path) == ("AWS_CA_BUNDLE", ca_files["aws_env"])


def test_choices_frame_has_one_row_per_setup(clean_aws):
    frame = botocore_facts.choices_frame(
        {"here": botocore_facts.effective_ca_bundle(session=botocore.session.Session())}
    )
    assert frame.loc[0, "rule"] == "certifi" and frame.loc[0, "roots"] == len(bundles.installed_certifi())
    assert frame.loc[0, "carries_verisign_g5"] == bool(
        bundles.installed_certifi().find(incident.ROOT_AT_FAULT)
    )


# --- the default-endpoint table ----------------------------------------------------------------------


def _real_default_host(region: str) -> str:
    """The host the installed botocore picks for iot-data in ``region``."""
    session = botocore.session.Session()
    session.set_config_variable("config_file", os.devnull)
    client = session.create_client(
        "iot-data", region_name=region, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x"
    )
    return endpoints._host_of(client.meta.endpoint_url)


@pytest.mark.parametrize("region", sorted(botocore_facts.default_endpoint_table()["region"].unique()))
def test_table_agrees_with_the_installed_botocore(region, clean_aws):
    answer = botocore_facts.default_data_endpoint(region=region)
    real = _real_default_host(region)
    if answer.covered:
        assert answer.host == real
    else:  # a botocore newer than the table: its newest fact must still hold
        assert "newer than the newest probed" in answer.basis
        assert botocore_facts.default_endpoint_table(region=region)["default_host"].iloc[-1] == real


def test_the_boundary_is_a_legacy_then_ats_pair_of_consecutive_releases():
    boundary = botocore_facts.ats_boundary(region="ap-northeast-2")
    assert boundary.exact
    before = botocore_facts.default_data_endpoint(boundary.last_legacy)
    after = botocore_facts.default_data_endpoint(boundary.first_ats)
    assert (before.host_class, after.host_class) == ("legacy-verisign", "ats")
    assert before.host == "data.iot.ap-northeast-2.amazonaws.com"
    assert after.host == "data-ats.iot.ap-northeast-2.amazonaws.com"
    assert botocore_facts.provenance()["boundary"]["first_ats"] == boundary.first_ats


def _unprobed_between_agreeing_rows(region: str) -> tuple[str, str, str]:
    """(low, candidate, high): a release number strictly between two probed releases that agree."""
    rows = botocore_facts.default_endpoint_table(region=region)
    probed = set(rows["version"])
    for low, high in zip(rows.itertuples(), rows.iloc[1:].itertuples(), strict=False):
        if low.default_host == high.default_host and low.host_class in ("ats", "legacy-verisign"):
            major, minor, patch = botocore_facts.version_key(low.version)
            candidate = f"{major}.{minor}.{patch + 1}"
            if candidate not in probed and botocore_facts.version_key(candidate) < botocore_facts.version_key(
                high.version
            ):
                return low.version, candidate, high.version
    raise AssertionError("no gap between agreeing probed releases")


def test_between_agreeing_probed_releases_the_answer_is_bracketed():
    low, candidate, high = _unprobed_between_agreeing_rows("ap-northeast-2")
    answer = botocore_facts.default_data_endpoint(candidate)
    assert answer.covered and answer.basis == f"between probed {low} and {high}, which agree"
    assert answer.host == botocore_facts.default_data_endpoint(low).host
    assert answer.vendored_has_verisign_g5 is None  # not probed: unknown, not guessed


@pytest.mark.parametrize(
    ("version", "reason"),
    [("0.1.0", "older than the oldest probed"), ("99.0.0", "newer than the newest probed")],
)
def test_outside_the_table_is_not_covered(version, reason):
    answer = botocore_facts.default_data_endpoint(version)
    assert not answer.covered and answer.host is None and reason in answer.basis


def test_disagreeing_brackets_are_not_covered(tmp_path, monkeypatch):
    table = botocore_facts.default_endpoint_table()
    boundary = botocore_facts.ats_boundary()
    classes = table.query("region == 'ap-northeast-2'").set_index("version")["host_class"]
    oldest_legacy = classes[classes == "legacy-verisign"].index[0]
    newest_ats = classes[classes == "ats"].index[-1]
    (tmp_path / "botocore").mkdir()  # a table holding only two far-apart releases that disagree
    table[table["version"].isin([oldest_legacy, newest_ats])].to_csv(
        tmp_path / "botocore" / "iot_data_default_endpoint.csv", index=False
    )
    monkeypatch.setattr(_paths, "DATA_DIR", tmp_path)
    botocore_facts._history.cache_clear()
    try:
        answer = botocore_facts.default_data_endpoint(boundary.first_ats)
        assert not answer.covered and answer.host is None
        assert answer.basis.startswith(f"between probed {oldest_legacy}") and "which disagree" in answer.basis
    finally:
        botocore_facts._history.cache_clear()


@pytest.mark.parametrize(("version", "region"), [("1.24", "nowhere-1"), ("latest", "ap-northeast-2")])
def test_bad_inputs_raise_clear_errors(version, region):
    with pytest.raises(ValueError, match="nowhere-1|release number"):
        botocore_facts.default_data_endpoint(version, region=region)


# --- the build script's probe and fallback, on the installed botocore (offline) -----------------


def _script():
    """The build script as a module."""
    spec = importlib.util.spec_from_file_location(
        "build_botocore_history", ROOT / "scripts/build_botocore_history.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_scripts_probe_and_its_endpoints_json_fallback_agree_with_botocore(tmp_path, clean_aws):
    script = _script()
    site = Path(botocore.__file__).parent.parent
    regions = ["ap-northeast-2", "cn-north-1", "us-gov-west-1"]
    probed, error = script.Prober(tmp_path, regions)._run_child(site, [])
    assert probed is not None, error
    real = {r: _real_default_host(r) for r in regions}
    assert {r: _botocore_fetch.host_of(u) for r, u in probed["hosts"].items()} == real
    assert script.endpoints_json_hosts(site, regions)["hosts"] == real


# --- describe and the ATS client, in the lab (real TLS on 127.0.0.1) ----------------------------


@pytest.fixture(scope="module")
def lab_env():
    """One lab for the module (starting it costs a few seconds)."""
    with lab.environment("lab", region="ap-northeast-2") as env:
        yield env


def _describe_calls(env) -> int:
    """DescribeEndpoint requests the lab has answered so far."""
    return int((env.requests()["path"] == "/endpoint").sum())


def test_describe_lists_every_endpoint_type_with_its_class(lab_env):
    frame = endpoints.describe()
    assert frame["endpoint_type"].tolist() == list(endpoints.ENDPOINT_TYPES)
    assert frame["host_class"].tolist() == ["legacy-verisign", "ats", "credentials", "jobs"]
    assert frame["error"].isna().all() and (frame["region"] == "ap-northeast-2").all()
    redacted = endpoints.describe(redact=True)
    assert redacted["address"].str.match(r"<prefix-[0-9a-f]{4}>").all()


def test_describe_keeps_a_type_the_account_cannot_describe_with_its_error(lab_env, monkeypatch):
    monkeypatch.setattr(endpoints, "ENDPOINT_TYPES", ("iot:Data-ATS", "iot:No-Such-Type"))
    frame = endpoints.describe(redact=True).set_index("endpoint_type")
    assert frame.loc["iot:Data-ATS", "host_class"] == "ats" and pd.isna(frame.loc["iot:Data-ATS", "error"])
    failed = frame.loc["iot:No-Such-Type"]
    assert pd.isna(failed["address"]) and pd.isna(failed["host_class"])
    assert "DescribeEndpoint" in failed["error"] and "iot:No-Such-Type" in failed["error"]  # AWS's own words


def test_ats_data_client_fixes_the_incident_under_certifi_2021_10_8(lab_env):
    endpoints.clear_cache()
    with lab_env.botocore_env(certifi="2021.10.8"):
        assert botocore_facts.effective_ca_bundle().rule == "AWS_CA_BUNDLE"
        legacy = boto3.client("iot-data", endpoint_url=lab_env.iot_data_url("legacy"))
        with pytest.raises(SSLError, match="CERTIFICATE_VERIFY_FAILED"):
            legacy.get_thing_shadow(thingName=lab_env.thing_name)
        client = endpoints.ats_data_client()
        assert endpoints.classify(client.meta.endpoint_url) == "ats"
        client.update_thing_shadow(thingName=lab_env.thing_name, payload=b'{"state":{"desired":{"on":1}}}')
        shadow = json.loads(client.get_thing_shadow(thingName=lab_env.thing_name)["payload"].read())
    assert shadow["state"]["desired"] == {"on": 1}


def test_ats_address_is_cached_per_session_and_region(lab_env):
    endpoints.clear_cache()
    before = _describe_calls(lab_env)
    first = endpoints.ats_data_client().meta.endpoint_url
    second = endpoints.ats_data_client(region="ap-northeast-2").meta.endpoint_url
    assert first == second and _describe_calls(lab_env) == before + 1
    other = lab_env.lab.session()  # another session, with the lab's keys and trust (not in the environment)
    endpoints.ats_data_client(other)  # another session asks again (moto gives it a new prefix)
    assert _describe_calls(lab_env) == before + 2
    endpoints.clear_cache()
    endpoints.ats_data_client()
    assert _describe_calls(lab_env) == before + 3


def test_ats_data_client_refuses_an_endpoint_url_and_needs_a_region(monkeypatch):
    with pytest.raises(TypeError, match="endpoint_url"):
        endpoints.ats_data_client(endpoint_url="https://example.com")
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    with pytest.raises(ValueError, match="no AWS region"):
        endpoints.ats_data_client(boto3.session.Session())


def test_sessions_of_every_kind_are_accepted_and_nothing_else():
    core = botocore.session.Session()
    assert _aws.session(core)._session is core
    with pytest.raises(TypeError, match="boto3 or botocore Session"):
        endpoints.describe("my-profile")


def test_live_botocore_env_sets_and_restores_real_bundle_and_host(clean_aws, monkeypatch):
    """Live mode's botocore_env: the real release's roots and the real legacy host, restored after."""
    monkeypatch.setenv("AWS_CA_BUNDLE", "/before.pem")
    region = "ap-northeast-2"
    hosts = {
        "data_legacy": f"data.iot.{region}.amazonaws.com",
        "data_ats": f"data-ats.iot.{region}.amazonaws.com",
        "account_ats": f"a1b2c3d4e5f6g7-ats.iot.{region}.amazonaws.com",
    }
    live = lab.LiveEnv(region=region, thing_name="t", endpoints=hosts)
    session = boto3.session.Session(region_name=region)
    with live.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy"):
        choice = botocore_facts.effective_ca_bundle(session=session)
        assert choice.rule == "AWS_CA_BUNDLE"
        assert choice.bundle.fingerprints == bundles.certifi("2021.10.8").fingerprints
        assert not choice.bundle.find(incident.ROOT_AT_FAULT)  # the incident: G5 left certifi in 2020.12.5
        client = session.client("iot-data", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x")
        assert client.meta.endpoint_url == "https://data.iot.ap-northeast-2.amazonaws.com"
    assert os.environ["AWS_CA_BUNDLE"] == "/before.pem"
    assert "AWS_ENDPOINT_URL_IOT_DATA_PLANE" not in os.environ
    with pytest.raises(ValueError, match="iot_data_endpoint"), live.botocore_env(iot_data_endpoint="x"):
        pass


def test_verify_true_on_the_client_overrides_aws_ca_bundle(clean_aws, ca_files, monkeypatch):
    monkeypatch.setenv("AWS_CA_BUNDLE", ca_files["aws_env"])
    session = botocore.session.Session()
    client = session.create_client("iot-data", region_name="ap-northeast-2", verify=True)
    choice = botocore_facts.effective_ca_bundle(client, session=session)
    assert (choice.rule, choice.path) == ("certifi", certifi.where())
    assert choice.path == _loaded_by_botocore(session, verify=True)
