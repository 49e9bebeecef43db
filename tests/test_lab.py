"""The offline lab: the incident reproduced through real boto3, real TLS on 127.0.0.1, real routing."""

from __future__ import annotations

import _socket
import itertools
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from contextlib import closing
from dataclasses import dataclass

import boto3
import botocore.exceptions
import pytest
from botocore.retries import standard
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from helpers import _lab_routing, _lab_twins, _x509, botocore_facts, bundles, chains, lab
from helpers._paths import ROOT
from helpers.kinds import InputError

REGION = "ap-northeast-2"
THING = "incident-thing"
G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
ROOT_CA_1 = "Amazon Root CA 1"
ROOT_CA_3 = "Amazon Root CA 3"
STARFIELD_G2 = "Starfield Services Root Certificate Authority - G2"
INCIDENT_MESSAGE = (
    "SSL validation failed for https://data.iot.{region}.amazonaws.com/things/{thing}/shadow "
    "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate"
)


def incident_message(region: str = REGION, thing: str = THING) -> re.Pattern:
    """The incident's error text for a region and thing, with OpenSSL's '(_ssl.c:NNNN)' suffix."""
    return re.compile(re.escape(INCIDENT_MESSAGE.format(region=region, thing=thing)) + r" \(_ssl\.c:\d+\)")


def run_incident_snippet(thing_name: str) -> dict:
    """The incident's code, verbatim (boto3.client("iot-data") with no arguments)."""
    shadow_state_desired = {"state": {"desired": {"led": "on"}}}
    client_iot = boto3.client("iot-data")
    return client_iot.update_thing_shadow(thingName=thing_name, payload=json.dumps(shadow_state_desired))


def has_root(bundle: bundles.Bundle, cn: str) -> bool:
    """Whether ``bundle`` holds a self-signed root with this CN (read from the real data)."""
    return any(
        _x509.name_attr(c.subject, NameOID.COMMON_NAME) == cn and c.subject == c.issuer
        for c in bundle.certificates
    )


def without(bundle: bundles.Bundle, cn: str) -> bundles.Bundle:
    """A copy of a real release minus one root (to show what the cross-signature buys)."""
    kept = [c for c in bundle.certificates if _x509.name_attr(c.subject, NameOID.COMMON_NAME) != cn]
    return bundles.Bundle(f"{bundle.name} without {cn}", bundle.version, bundle.source, kept)


def tls_verdict(port: int, server_name: str, ca_file: str, *, cipher: str | None = None) -> bool:
    """A real handshake to the lab verifying against ``ca_file``; ``cipher`` pins TLS 1.2 RSA or ECDSA."""
    context = ssl.create_default_context(cafile=ca_file)
    if cipher:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(cipher)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=server_name),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


# --- the incident, in one lab shared by the class ---------------------------------------------------


@pytest.fixture(scope="class")
def env():
    with lab.environment("lab", region=REGION, thing_name=THING) as running_env:
        yield running_env


def releases_to_check() -> list[str]:
    """Releases around the changes that matter, found in the certifi history (not typed in)."""
    versions = list(bundles.certifi_releases()["version"])
    g5_gone = bundles.removed_in(G5)
    amazon_added = bundles.added_in(ROOT_CA_1)
    picks = {versions[0], versions[-1], g5_gone, amazon_added}
    picks |= {versions[versions.index(g5_gone) - 1], versions[versions.index(amazon_added) - 1]}
    picks |= {"2020.6.20", "2021.10.8"}  # the incident's two releases
    return sorted(picks, key=versions.index)


@pytest.mark.usefixtures("env")
class TestIncident:
    def test_the_snippet_works_with_certifi_2020_6_20(self, env):
        with env.botocore_env(certifi="2020.6.20", iot_data_endpoint="legacy"):
            response = run_incident_snippet(env.thing_name)
            shadow = json.loads(
                boto3.client("iot-data").get_thing_shadow(thingName=env.thing_name)["payload"].read()
            )
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
        assert shadow["state"]["desired"] == {"led": "on"}

    def test_the_snippet_fails_with_certifi_2021_10_8_with_the_incident_message(self, env):
        before = len(env.connections())
        with (
            env.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy"),
            pytest.raises(botocore.exceptions.SSLError) as caught,
        ):
            run_incident_snippet(env.thing_name)
        assert incident_message().fullmatch(str(caught.value)), str(caught.value)
        handshakes = env.connections().iloc[before:]
        # botocore's standard retry mode (the lab pins it; botocore's own default) tries this many times.
        assert len(handshakes) == standard.DEFAULT_MAX_ATTEMPTS
        assert set(handshakes["chain"]) == {"legacy"} and set(handshakes["outcome"]) == {"failed"}
        assert handshakes["error"].str.contains("unknown ca").all()

    def test_max_attempts_1_makes_a_single_handshake(self, env):
        before = len(env.connections())
        with (
            env.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy", max_attempts=1),
            pytest.raises(botocore.exceptions.SSLError),
        ):
            run_incident_snippet(env.thing_name)
        assert len(env.connections()) - before == 1

    def test_the_fix_works_with_certifi_2021_10_8(self, env):
        with env.botocore_env(certifi="2021.10.8"):
            client_iot = boto3.client("iot-data", endpoint_url=env.iot_data_url("account-ats"))
            response = client_iot.update_thing_shadow(thingName=env.thing_name, payload=b'{"state": {}}')
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200

    @pytest.mark.parametrize("release", releases_to_check())
    def test_boto3_across_releases_follows_the_real_roots(self, env, release):
        real = bundles.certifi(release)
        expected = {
            "legacy": has_root(real, G5),
            # the ATS chain verifies through Amazon Root CA 1/3 or through Starfield's cross-signature
            "ats": (has_root(real, ROOT_CA_1) or has_root(real, STARFIELD_G2))
            and (has_root(real, ROOT_CA_3) or has_root(real, STARFIELD_G2)),
        }
        seen = {}
        for endpoint in expected:
            with env.botocore_env(certifi=release, iot_data_endpoint=endpoint, max_attempts=1):
                try:
                    run_incident_snippet(env.thing_name)
                    seen[endpoint] = True
                except botocore.exceptions.SSLError as exc:
                    assert incident_message().fullmatch(str(exc)) or endpoint == "ats", str(exc)
                    seen[endpoint] = False
        assert seen == expected

    @pytest.mark.parametrize(
        ("kwargs", "message"),
        [
            ({"iot_data_endpoint": "nearest"}, "iot_data_endpoint='nearest': use one of default, legacy"),
            ({"retry_mode": "fast"}, "retry_mode='fast': use 'legacy', 'standard' or 'adaptive'"),
            ({"certifi": "2020.13.1"}, "is not a release in data/certifi; nearest releases"),
        ],
        ids=["endpoint", "retry-mode", "certifi"],
    )
    def test_bad_botocore_env_arguments_say_what_to_use_and_change_nothing(self, env, kwargs, message):
        environ_before = dict(os.environ)
        with pytest.raises(ValueError, match=message), env.botocore_env(**kwargs):
            pass
        assert dict(os.environ) == environ_before

    def test_served_chains_are_chosen_by_name(self, env):
        issuers = {
            name: chains.fetch_chain(host).certificates[0].issuer for name, host in env.endpoints.items()
        }
        cns = {name: _x509.name_attr(issuer, NameOID.COMMON_NAME) for name, issuer in issuers.items()}
        assert cns["data_legacy"] == cns["account_legacy"] == "Symantec Class 3 Secure Server CA - G4"
        for name in ("data_ats", "account_ats", "control_plane"):
            assert cns[name].startswith("Amazon "), (name, cns[name])

    def test_chains_diagnose_the_lab_chain_as_the_incident(self, env):
        host = env.endpoints["data_legacy"]
        chain = chains.fetch_chain(host)
        verdict = chains.verify(chain, env.trust_view("2021.10.8"), hostname=host)
        assert (verdict.reason, verdict.missing_issuer) == ("missing-root", G5)
        assert chains.verify(chain, env.trust_view("2020.6.20"), hostname=host).ok
        changes = chains.transitions(chains.across_certifi(chain, hostname=host, trust=env.trust_view))
        first_failure = changes.loc[~changes["ok"], "version"].iloc[0]
        assert first_failure == bundles.removed_in(G5)


@dataclass(frozen=True)
class Case:
    """One handshake scenario: which release (maybe minus a root), which chain, the real roots that decide."""

    release: str
    chain: str  # legacy, ats-rsa, ats-ecdsa
    cipher: str | None
    drop: str | None = None

    @property
    def id(self) -> str:
        return f"{self.release}{'-no-starfield' if self.drop else ''}-{self.chain}"


_CIPHERS = {
    "legacy": None,
    "ats-rsa": "ECDHE-RSA-AES128-GCM-SHA256",
    "ats-ecdsa": "ECDHE-ECDSA-AES128-GCM-SHA256",
}
_DECIDING_ROOTS = {
    "legacy": (G5,),
    "ats-rsa": (ROOT_CA_1, STARFIELD_G2),
    "ats-ecdsa": (ROOT_CA_3, STARFIELD_G2),
}
CASES = [
    Case(release, chain, cipher, drop)
    for release in (bundles.added_in(ROOT_CA_1), "2016.9.26", "2020.6.20", "2021.10.8")
    for drop in (None, STARFIELD_G2)
    for chain, cipher in _CIPHERS.items()
]


@pytest.fixture(scope="class")
def handshake_lab():
    """One started lab for the handshake table (no routing needed: it connects to 127.0.0.1 directly);
    stopped right after the table, since one lab runs at a time."""
    started = lab.Lab(REGION).start()
    yield started
    started.stop()


class TestHandshakes:
    """The handshake table, on one lab started for it (a class: the lab stops when the table ends)."""

    @pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
    def test_each_chain_verifies_exactly_where_its_real_roots_are(self, case, handshake_lab):
        _each_chain_verifies(case, handshake_lab)


def _each_chain_verifies(case, lab_for_case) -> None:
    real = bundles.certifi(case.release)
    if case.drop:
        real = without(real, case.drop)
    expected = any(has_root(real, cn) for cn in _DECIDING_ROOTS[case.chain])
    host = (
        f"data.iot.{REGION}.amazonaws.com"
        if case.chain == "legacy"
        else f"data-ats.iot.{REGION}.amazonaws.com"
    )
    ca_file = str(lab.trust_view(real).path())
    assert tls_verdict(lab_for_case.port, host, ca_file, cipher=case.cipher) == expected


# --- twins ------------------------------------------------------------------------------------------


def test_every_lab_certificate_says_it_is_a_twin_and_keeps_the_real_name():
    pki = lab.pki()
    for twin_id, ca in pki.cas.items():
        assert lab.is_lab_twin(ca.cert), twin_id
        real = pki.real_roots.get(twin_id)
        if real is not None:
            assert _lab_twins.real_name(ca.cert.subject) == real.subject
            assert _x509.key_description(ca.cert) == _x509.key_description(real)
            assert (ca.cert.not_valid_before_utc, ca.cert.not_valid_after_utc) == (
                real.not_valid_before_utc,
                real.not_valid_after_utc,
            )
    for leaf in pki.leaves(REGION).values():
        assert lab.is_lab_twin(leaf.cert)
        assert lab.LAB_OU in leaf.cert.subject.rfc4514_string()


@pytest.mark.parametrize("release", ["2020.6.20", "2021.10.8"])
def test_trust_view_swaps_exactly_the_real_roots_that_have_twins(release):
    real = bundles.certifi(release)
    view = lab.trust_view(release)
    twins = [c for c in view.certificates if lab.is_lab_twin(c)]
    expected = [cn for cn in _lab_twins._ROOT_CNS.values() if has_root(real, cn)]
    assert sorted(_x509.name_attr(c.subject, NameOID.COMMON_NAME) for c in twins) == sorted(expected)
    assert len(view) == len(real)
    assert (G5 in expected) == (release == "2020.6.20")


# --- routing, environment and lifecycle ---------------------------------------------------------------


def _aws_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("AWS_") or k.endswith("CA_BUNDLE")}


def test_routing_and_environment_are_restored_after_exit():
    original = socket.getaddrinfo
    before = socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    environ_before, session_before = _aws_environ(), boto3.DEFAULT_SESSION
    threads_before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="boom"), lab.environment("lab", region=REGION) as env:
        assert env.lab._thread in set(threading.enumerate()) - threads_before  # the server's own thread
        assert socket.getaddrinfo is not original
        port = env.port
        assert socket.getaddrinfo(f"data.iot.{REGION}.amazonaws.com", 443)[0][4] == ("127.0.0.1", port)
        assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM) == before
        with pytest.raises(socket.gaierror, match="not resolved inside the ATS kit lab"):
            socket.getaddrinfo("pypi.org", 443)
        with pytest.raises(PermissionError, match="blocked"), socket.socket() as sock:
            sock.connect(("192.0.2.1", 443))  # TEST-NET-1: an address off this machine
        assert (
            "AWS_ACCESS_KEY_ID" not in os.environ
        )  # the lab's keys are its session's, not the environment's
        assert boto3.DEFAULT_SESSION.get_credentials().access_key == lab.FAKE_ACCESS_KEY_ID
        raise RuntimeError("boom")
    assert socket.getaddrinfo is original
    assert socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM) == before
    assert _aws_environ() == environ_before
    assert boto3.DEFAULT_SESSION is session_before
    assert set(threading.enumerate()) - threads_before == set()  # no server or handler thread left
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_one_lab_at_a_time_and_one_after_another():
    """A second lab while one runs is refused in one line (names, credentials and trust stay unambiguous);
    once the first stops, another starts, in any region."""
    with lab.environment("lab", region=REGION) as first:
        with pytest.raises(lab.LabError, match="is already running in this process: stop it first"):
            lab.Lab("us-east-1").start()
        with (
            pytest.raises(lab.LabError, match="one lab at a time"),
            lab.environment("lab", region="us-east-1"),
        ):
            pass
        assert first.lab.is_running
    with lab.environment("lab", region="us-east-1", thing_name="other") as virginia:
        iot = boto3.client("iot")
        assert {t["thingName"] for t in iot.list_things()["things"]} == {"other"}  # moto state is per lab
        assert socket.getaddrinfo("iot.us-east-1.amazonaws.com", 443)[0][4][1] == virginia.port


@pytest.fixture
def callers_state(monkeypatch):
    """The caller's own AWS settings and default session, as a user's would be, and a function giving
    what the lab must leave exactly as it found: os.environ, boto3's default session, socket's names."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALCALLERKEY000")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/callers-own.pem")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session(region_name="us-west-2"))
    return lambda: (dict(os.environ), boto3.DEFAULT_SESSION, _socket_namespaces())


def test_a_second_lab_is_refused_while_the_first_environment_is_open_even_stopped(callers_state):
    """The audit's sequence: e1 entered, its lab stopped, e2 entered, e1 left, e2 left. e2 is refused in
    one line (the first scope is open), nothing of the caller's comes back inside e1, and once both are
    left os.environ, boto3's default session and socket's names are exactly what they were."""
    before = callers_state()
    e1 = lab.environment("lab", region=REGION)
    env = e1.__enter__()
    env.lab.stop()
    e2 = lab.environment("lab", region="us-east-1")
    with pytest.raises(lab.LabError, match="is still open in this process: leave its 'with' block") as caught:
        e2.__enter__()
    assert "\n" not in str(caught.value) and "one lab at a time" in str(caught.value)
    with pytest.raises(lab.LabError, match="is still open in this process"):
        lab.Lab("us-east-1").start()  # a bare lab too, while the scope is open
    assert "AWS_ACCESS_KEY_ID" not in os.environ  # still e1's scope: the caller's key stays out
    assert boto3.DEFAULT_SESSION.get_credentials().access_key == lab.FAKE_ACCESS_KEY_ID
    e1.__exit__(None, None, None)
    e2.__exit__(None, None, None)
    assert callers_state() == before
    with lab.environment("lab", region="us-east-1"):  # and a new lab may start once the scope is left
        pass
    assert callers_state() == before


def test_a_lab_scope_and_its_botocore_env_may_end_in_either_order(callers_state):
    """A notebook may close the lab before a botocore_env block it opened inside: the caller's
    variables (which both touch) still come back exactly."""
    before = callers_state()
    scope = lab.environment("lab", region=REGION)
    env = scope.__enter__()
    inner = env.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy")
    inner.__enter__()
    assert os.environ["AWS_DEFAULT_REGION"] == REGION
    scope.__exit__(None, None, None)  # first in, first out
    assert os.environ["AWS_DEFAULT_REGION"] == REGION  # the inner block, still open, keeps its own
    inner.__exit__(None, None, None)
    assert callers_state() == before


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))), ids=str)
def test_environ_blocks_restore_exactly_in_any_exit_order(monkeypatch, order):
    """Three overlapping blocks left in every order: at each step a variable has the value of the latest
    block still open that set it (else the one from before), and at the end exactly what it was."""
    monkeypatch.setenv("ATSKIT_T_A", "before")
    monkeypatch.delenv("ATSKIT_T_B", raising=False)
    blocks = [
        {"ATSKIT_T_A": "0", "ATSKIT_T_B": "0"},
        {"ATSKIT_T_A": None},
        {"ATSKIT_T_A": "2", "ATSKIT_T_B": "2"},
    ]
    original = {"ATSKIT_T_A": "before", "ATSKIT_T_B": None}
    managers = [_lab_routing.environ(values) for values in blocks]
    for manager in managers:
        manager.__enter__()
    still_open = [0, 1, 2]
    for index in order:
        managers[index].__exit__(None, None, None)
        still_open.remove(index)
        for name, value in original.items():
            expected = next((blocks[i][name] for i in reversed(still_open) if name in blocks[i]), value)
            assert os.environ.get(name) == expected, (order, index, name)


def test_a_lab_started_from_a_second_thread_is_refused_while_one_runs(callers_state):
    """One lab per process, whichever thread starts it: a second from another thread is refused in one
    line, both ways, and the first keeps routing to itself."""
    before = callers_state()
    refused: list[str] = []

    def try_to_start():
        for start in (
            lambda: lab.environment("lab", region="us-east-1").__enter__(),
            lambda: lab.Lab("us-east-1").start(),
        ):
            try:
                start()
            except lab.LabError as exc:
                refused.append(str(exc))

    with lab.environment("lab", region=REGION) as env:
        worker = threading.Thread(target=try_to_start)
        worker.start()
        worker.join()
        assert len(refused) == 2 and all("one lab at a time" in message for message in refused), refused
        assert socket.getaddrinfo("iot.us-east-1.amazonaws.com", 443)[0][4] == ("127.0.0.1", env.port)

    opened, leave, errors = threading.Event(), threading.Event(), []

    def run_a_lab():
        try:
            with lab.environment("lab", region="us-east-1"):
                opened.set()
                leave.wait()
        except BaseException as exc:  # noqa: BLE001 - reported to the main thread
            errors.append(exc)
            opened.set()

    worker = threading.Thread(target=run_a_lab)
    worker.start()
    try:
        opened.wait()
        with (
            pytest.raises(lab.LabError, match="is already running in this process"),
            lab.environment("lab", region=REGION),
        ):
            pass
    finally:
        leave.set()
        worker.join()
    assert errors == []
    assert callers_state() == before


CHILD = """
import json, os, socket
print(json.dumps({"aws": sorted(k for k in os.environ if k.startswith("AWS_")),
                  "routed": socket.getaddrinfo is not socket.__dict__.get("_real", socket.getaddrinfo)}))
"""


_LOOKUP_EVENTS = ("socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyaddr", "socket.getnameinfo")
_resolver_calls: list | None = None  # while a list: the lookups that reached socket's C functions
_recorder_installed = False


def _record_lookups(event: str, args: tuple) -> None:
    """Audit hook (installed after the lab's, so it sees only what the lab let through): note each
    lookup of a name or address that is not loopback reaching the C resolver functions."""
    if _resolver_calls is None or event not in _LOOKUP_EVENTS:
        return
    host = args[0][0] if isinstance(args[0], tuple) else args[0]
    host = host.decode() if isinstance(host, bytes) else host
    if host is not None and host not in ("localhost", "127.0.0.1", "::1"):
        _resolver_calls.append((event, host))


def _socket_namespaces() -> dict[str, dict]:
    """Everything ``socket``, ``_socket`` and the ``socket.socket`` class hold (to compare before/after)."""
    return {name: dict(vars(owner)) for name, owner in (("socket", socket), ("_socket", _socket))} | {
        "socket.socket": dict(vars(socket.socket))
    }


def test_every_way_to_resolve_a_name_reaches_the_lab_or_is_refused():
    """getaddrinfo, gethostbyname(_ex), gethostbyaddr and getnameinfo of socket and _socket, getfqdn,
    connect, connect_ex, bind, create_connection, UDP sendto and sendmsg by name, on socket.socket and on
    a raw _socket.socket, and functions taken before the lab: AWS names go to the lab, other names are
    refused in one line and never reach the system resolver; all is exactly as before after the lab."""
    global _resolver_calls, _recorder_installed
    host = f"data.iot.{REGION}.amazonaws.com"
    refused = "not resolved inside the ATS kit lab"
    held = {name: getattr(_socket, name) for name in ("getaddrinfo", "gethostbyname", "gethostbyaddr")}
    held["getnameinfo"] = socket.getnameinfo
    before = _socket_namespaces()
    with lab.environment("lab", region=REGION) as env:
        if not _recorder_installed:  # after the lab's own hook, which the lab installed by now
            sys.addaudithook(_record_lookups)
            _recorder_installed = True
        _resolver_calls = []
        try:
            assert _socket.getaddrinfo(host, 443)[0][4] == ("127.0.0.1", env.port)
            assert socket.gethostbyname(host) == _socket.gethostbyname(host) == "127.0.0.1"
            assert socket.gethostbyname_ex(host)[2] == ["127.0.0.1"]
            assert socket.gethostbyaddr(host)[2] == _socket.gethostbyaddr(host)[2] == ["127.0.0.1"]
            assert socket.getfqdn(host) == host
            assert socket.getnameinfo((host, 443), socket.NI_NUMERICHOST) == ("127.0.0.1", "https")
            assert socket.getfqdn("example.com") == "example.com"  # its lookup refused, so the name as given
            for resolve, argument in (
                (_socket.getaddrinfo, ("example.com", 443)),
                (socket.gethostbyname, ("example.com",)),
                (_socket.gethostbyname_ex, ("example.com",)),
                (socket.gethostbyaddr, ("example.com",)),
                (_socket.gethostbyaddr, ("192.0.2.1",)),  # a reverse lookup
                (socket.getnameinfo, (("example.com", 443), 0)),
                (_socket.getnameinfo, (("192.0.2.1", 443), 0)),
                (held["getaddrinfo"], ("example.com", 443)),  # taken before the lab: the audit hook
                (held["gethostbyname"], (host,)),
                (held["gethostbyaddr"], ("example.com",)),
                (held["getnameinfo"], (("192.0.2.1", 443), socket.NI_NUMERICHOST)),
            ):
                with pytest.raises(socket.gaierror, match=refused) as caught:
                    resolve(*argument)
                assert "\n" not in str(caught.value)
            for make in (socket.socket, _socket.socket):  # _socket.socket made in the lab is routed too
                with closing(make()) as sock:
                    sock.connect((host, 443))  # by name: to the lab
                    assert sock.getpeername() == ("127.0.0.1", env.port)
                with closing(make()) as sock:
                    assert sock.connect_ex((host, 443)) == 0
                with closing(make()) as sock:
                    sock.bind((host, 0))  # an AWS name is the lab's address; the port is the caller's
                    assert sock.getsockname()[0] == "127.0.0.1"
                with closing(make(socket.AF_INET, socket.SOCK_DGRAM)) as udp:
                    assert udp.sendmsg([b"x"], [], 0, (host, 9)) == 1  # to the lab's port on 127.0.0.1
                for kind, use in (
                    (socket.SOCK_STREAM, lambda sock: sock.connect(("nonexist.example", 80))),
                    (socket.SOCK_STREAM, lambda sock: sock.connect_ex(("example.com", 80))),
                    (socket.SOCK_STREAM, lambda sock: sock.bind(("example.com", 0))),
                    (socket.SOCK_DGRAM, lambda udp: udp.sendto(b"x", ("example.com", 53))),
                    (socket.SOCK_DGRAM, lambda udp: udp.sendto(b"x", 0, ("example.com", 53))),
                    (socket.SOCK_DGRAM, lambda udp: udp.sendmsg([b"x"], [], 0, ("example.com", 53))),
                ):
                    with (
                        closing(make(socket.AF_INET, kind)) as sock,
                        pytest.raises(socket.gaierror, match=refused),
                    ):
                        use(sock)
            with socket.create_connection((host, 443), timeout=5) as sock:
                assert sock.getpeername()[1] == env.port
            with socket.create_server((host, 0)) as server:
                assert server.getsockname()[0] == "127.0.0.1"
            assert _resolver_calls == []  # nothing above reached the system resolver
            kept = socket.getaddrinfo
        finally:
            _resolver_calls = None
    assert _socket_namespaces() == before  # every function, method and class exactly as before
    assert socket.socket.connect is _socket.socket.connect  # the class's own method again
    assert kept("localhost", 80, type=socket.SOCK_STREAM) == socket.getaddrinfo("localhost", 80, type=1)


def test_sends_off_the_machine_are_refused_by_every_method_and_only_inside_a_lab():
    """UDP sendto and sendmsg, and connect, to an address off this machine are refused in a lab (sendmsg
    was not: a datagram left); the audit hook that refuses them does nothing outside a lab."""
    off_machine = ("192.0.2.1", 9)  # TEST-NET-1
    held = _socket.getnameinfo  # taken before the lab: only the audit hook sees its calls
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        loopback = listener.getsockname()
        with lab.environment("lab", region=REGION):
            for make in (socket.socket, _socket.socket):
                with closing(make(socket.AF_INET, socket.SOCK_DGRAM)) as udp:
                    for send in (
                        lambda: udp.sendto(b"x", off_machine),
                        lambda: udp.sendmsg([b"x"], [], 0, off_machine),
                        lambda: udp.connect(off_machine),
                    ):
                        with pytest.raises(PermissionError, match="off this machine are blocked"):
                            send()
                    assert udp.sendmsg([b"x"], [], 0, loopback) == 1  # loopback is fine
            with pytest.raises(socket.gaierror, match="not resolved inside the ATS kit lab"):
                held(off_machine, socket.NI_NUMERICHOST)
        assert held(off_machine, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV) == ("192.0.2.1", "9")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            assert udp.sendmsg([b"x"], [], 0, loopback) == 1


def test_child_processes_started_in_a_lab_get_neither_its_keys_nor_its_trust():
    """The lab's credentials, region and trust view live on its boto3 session, not in the environment:
    a child process inherits none of them (a caller passes them on purpose: botocore_env)."""
    with lab.environment("lab", region=REGION) as env:
        child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        assert json.loads(child.stdout)["aws"] == []
        with env.botocore_env(certifi="2021.10.8"):  # on purpose: this block's children see it
            child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
            assert "AWS_CA_BUNDLE" in json.loads(child.stdout)["aws"]


def test_a_port_in_use_gives_a_one_line_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(lab.LabError, match=f"127.0.0.1:{port} is already in use") as caught:
            lab.Lab(REGION, port=port).start()
        assert "\n" not in str(caught.value)
        with pytest.raises(lab.LabError, match="in use"), lab.environment("lab", port=port):
            pass


def test_start_and_stop_are_idempotent_and_a_stopped_lab_says_so():
    one = lab.Lab(REGION)
    assert one.start() is one.start()
    port = one.port
    assert one.port == port
    one.stop()
    one.stop()
    for use in (lambda: one.port, lambda: one.route().__enter__()):
        with pytest.raises(lab.LabError, match="is stopped: start a new one"):
            use()
    with lab.environment("lab", region=REGION) as env:
        env.lab.stop()
        with pytest.raises(lab.LabError, match="is stopped"), env.botocore_env(certifi="2020.6.20"):
            pass
        with pytest.raises(socket.gaierror, match="is stopped"):
            socket.getaddrinfo(f"data.iot.{REGION}.amazonaws.com", 443)
        with pytest.raises(botocore.exceptions.EndpointConnectionError):
            boto3.client(
                "iot-data", config=botocore.config.Config(retries={"max_attempts": 1})
            ).get_thing_shadow(thingName=env.thing_name)
    one.start()  # a stopped lab can start again
    assert one.is_running
    one.stop()


MOTO_STATE = """
import json
from moto.iam.models import iam_backends
from moto.iot.models import iot_backends
from moto.iotdata.models import iotdata_backends
from helpers import lab
def lab_accounts():  # the kit's labs use accounts 999000000001, 999000000002, ...
    return {b.service_name: [account for account in b if account.startswith("999")]
            for b in (iot_backends, iotdata_backends, iam_backends)}
with lab.environment("lab") as env:
    during_lab = lab_accounts()
print(json.dumps({"during_lab": during_lab, "after_lab": lab_accounts()}))
"""


def test_a_lab_leaves_no_moto_state_behind():
    """In a new process: a lab's thing lives in moto while the lab runs, and nothing is left after."""
    proc = subprocess.run([sys.executable, "-c", MOTO_STATE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["during_lab"]["iot"] == ["999000000001"]  # the lab's thing, while it runs
    assert seen["after_lab"] == {"iot": [], "iot-data": [], "iam": []}


def test_botocore_retry_table_reads_the_installed_botocore():
    table = botocore_facts.botocore_retries().set_index("retry_mode")
    assert table.loc["standard", "attempts"] == standard.DEFAULT_MAX_ATTEMPTS
    assert table["default"].sum() == 1
    legacy = table.loc["legacy"]
    assert legacy["worst_sleep_s"] == sum(2 ** (n - 1) for n in range(1, legacy["attempts"]))


def test_live_mode_works_against_the_lab_as_it_would_against_aws():
    with lab.environment("lab", region=REGION) as env:
        with lab.environment("live", region=REGION, thing_name=env.thing_name) as live_env:
            assert live_env.endpoints["data_legacy"] == f"data.iot.{REGION}.amazonaws.com"
            assert live_env.endpoints["account_ats"].endswith(f"-ats.iot.{REGION}.amazonaws.com")
            assert live_env.trust_view("2021.10.8").label == bundles.certifi("2021.10.8").label  # real roots
            frame = live_env.endpoints_frame()
            assert frame.set_index("endpoint").loc["account_ats", "host"].startswith("<prefix-")  # redacted
        with (
            pytest.raises(lab.LabError, match="'no-such-thing' not found in ap-northeast-2") as caught,
            lab.environment("live", region=REGION, thing_name="no-such-thing"),
        ):
            pass
        assert "\n" not in str(caught.value)
        with _lab_routing.environ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}):
            boto3.DEFAULT_SESSION = None  # running() restores the caller's default session on exit
            with (
                pytest.raises(lab.LabError, match="no AWS credentials found"),
                lab.environment("live", region=REGION),
            ):
                pass


@pytest.mark.parametrize("region", ["Seoul", "ap-northeast", ""])
def test_a_bad_region_is_refused_with_what_to_do(region):
    with pytest.raises(ValueError, match="is not an AWS region name; use one like 'ap-northeast-2'"):
        lab.Lab(region)


@pytest.mark.parametrize("port", [-1, 65536, "8443"])
def test_a_bad_port_is_refused_with_what_to_do(port):
    with pytest.raises(ValueError, match=r"use 0 \(a free port\) or a TCP port number"):
        lab.Lab(REGION, port=port)


def test_the_private_cache_is_the_users_own_folder_and_keys_are_0600(tmp_path, monkeypatch):
    """Trust views and the lab's keys live in a 0700 folder that must be a real folder of this
    user's (a symlink planted there is refused, not followed); saved keys are 0600."""
    import stat

    from helpers import _cache
    from helpers.kinds import UnusableError

    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(tmp_path / "cache"))
    view = bundles.Bundle("fresh", None, "test", list(bundles.certifi("2021.10.8").certificates)).path()
    assert view.parent == tmp_path / "cache" / "trust"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o700 for p in (view.parent, view.parent.parent))
    elsewhere = tmp_path / "world-writable"
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    (tmp_path / "cache" / "lab").symlink_to(elsewhere)
    with pytest.raises(UnusableError, match="real folder"):
        _cache.private_dir("lab")


def test_the_lab_pki_is_saved_0600_and_reused_by_a_new_process(tmp_path):
    """A first process makes the lab's keys and saves them for this user only; a second reuses them."""
    code = (
        "import json; from helpers import lab; "
        "print(json.dumps([lab.pki().cas[t].cert.fingerprint(__import__('cryptography').hazmat.primitives"
        ".hashes.SHA256()).hex() for t in ('verisign_g5', 'amazon_root_ca_1')]))"
    )
    env = dict(os.environ, ATSKIT_CACHE_DIR=str(tmp_path / "cache"))
    first, second = (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        for _ in range(2)
    )
    assert json.loads(first.stdout) == json.loads(second.stdout)
    [saved] = (tmp_path / "cache" / "lab").glob("pki-*.json")
    assert oct(saved.stat().st_mode & 0o777) == "0o600"


def test_a_saved_lab_pki_changed_on_disk_is_not_loaded(tmp_path, monkeypatch):
    """The saved PKI is named by the SHA-256 of its content: one whose twin root was swapped for
    another CA (keys that match, so it would load) is removed and a new PKI made, never trusted."""
    from helpers import pki

    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(tmp_path / "cache"))
    made = _lab_twins._make_pki.__wrapped__()  # this process's cached PKI is not touched
    [saved] = (tmp_path / "cache" / "lab").glob("pki-*.json")
    assert saved.stem.rsplit("-", 1)[-1] == __import__("hashlib").sha256(saved.read_bytes()).hexdigest()
    again = _lab_twins._make_pki.__wrapped__()
    assert again.cas["amazon_root_ca_1"].cert == made.cas["amazon_root_ca_1"].cert  # reused as it was
    planted = pki.CA("Planted Root", key_type="ec")
    content = json.loads(saved.read_bytes())
    content["cas"]["amazon_root_ca_1"] = [planted.cert_pem.decode(), planted.private_key_pem.decode()]
    saved.write_text(json.dumps(content))
    rebuilt = _lab_twins._make_pki.__wrapped__()
    assert rebuilt.cas["amazon_root_ca_1"].cert not in (planted.cert, made.cas["amazon_root_ca_1"].cert)
    [resaved] = (tmp_path / "cache" / "lab").glob("pki-*.json")
    assert resaved != saved and not saved.exists() and oct(resaved.stat().st_mode & 0o777) == "0o600"


def test_the_cache_is_bounded_by_count_and_size_sparing_files_in_use(tmp_path, monkeypatch):
    """Beyond the newest ``keep`` files or ``keep_bytes`` in all, the least recently used files go,
    also ones written today; a file this process handed out stays even when it is the oldest."""
    from helpers import _cache, pki

    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(tmp_path / "cache"))
    folder = _cache.private_dir("trust")
    bundle = bundles.from_pem(pki.CA("In Use Root", key_type="ec").cert_pem, name="in-use")
    in_use = bundle.path()
    os.utime(in_use, ns=(0, 0))  # the least recently used of all
    now = os.stat(in_use).st_ctime_ns
    for i in range(12):
        (folder / f"f{i:02}.pem").write_bytes(b"x" * 1000)
        os.utime(folder / f"f{i:02}.pem", ns=(now + i, now + i))  # f11 the most recently used
    assert _cache.prune(folder, keep=5) == 7
    assert sorted(p.name for p in folder.iterdir()) == [*(f"f{i:02}.pem" for i in range(7, 12)), in_use.name]
    assert _cache.prune(folder, keep=100, keep_bytes=2500) == 3
    assert sorted(p.name for p in folder.iterdir()) == ["f10.pem", "f11.pem", in_use.name]
    assert bundle.path() == in_use and in_use.read_bytes() == bundle.pem()  # whole, and still handed out


def test_a_notebook_environment_reopens_cleanly_and_refuses_once_closed():
    """Re-running a notebook's start cell closes the lab it started before; after the last cell closes
    it, a cell that would capture a chain or call AWS refuses in one line instead of leaving the lab."""
    from helpers import _lab_routing, notebook

    first = notebook.open_environment("lab", region=REGION, thing_name="t1")
    second = notebook.open_environment("lab", region=REGION, thing_name="t2")  # the start cell, run again
    assert not first.lab.is_running and second.lab.is_running
    assert len(_lab_routing.active_routes()) == 1
    notebook.close_environment()
    assert not second.lab.is_running and _lab_routing.active_routes() == []
    for call in (
        lambda: second.fetch_chain(second.endpoints["data_legacy"]),
        lambda: second.botocore_env().__enter__(),
    ):
        with pytest.raises(lab.LabError, match="is stopped: start a new one"):
            call()


def test_the_ats_chains_verify_against_every_releases_lab_view():
    """Starfield Services Root G2 is in every certifi release and cross-signs Amazon Root CA 1 and 3,
    so the lab's ATS chains verify everywhere, as the real ones do (the cross-signatures carry a CA's
    key usage, as the real ones do)."""
    with lab.environment("lab", region=REGION) as env:
        for name in ("data_ats", "account_ats"):
            chain = env.fetch_chain(env.endpoints[name])
            frame = chains.across_certifi(chain, hostname=chain.hostname, trust=env.trust_view)
            assert set(frame["reason"]) == {"ok"}, frame.loc[~frame["ok"], ["version", "message"]].head()


# --- which ATS chain a client gets (docs/evidence-ats-chains.md) -----------------------------------

_CLIENT_SUITES = {
    "rsa-only": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
    "ecdsa-only": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384",
}


_ROOTS_TRIED = (ROOT_CA_1, ROOT_CA_3, STARFIELD_G2)


def _served(port: int, views: dict[str, str], suites: str | None) -> tuple[str, frozenset[str], str]:
    """Verifying handshakes to data-ats, each trusting one root's lab twin alone: (leaf key type, the
    roots the client's chain reaches, TLS version). OpenSSL verifies; Python's public ssl API says only
    whether it did, so each root is tried on its own (a chain verifies against one root only if it
    leads there)."""
    reached, key, version = set(), None, None
    for root, ca_file in views.items():
        context = ssl.create_default_context(cafile=ca_file)
        if suites:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers(suites)
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
                context.wrap_socket(raw, server_hostname=f"data-ats.iot.{REGION}.amazonaws.com") as tls,
            ):
                leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
                key = "rsa" if isinstance(leaf.public_key(), rsa.RSAPublicKey) else "ec"
                reached.add(root)
                version = tls.version()
        except ssl.SSLCertVerificationError:
            continue
    return key, frozenset(reached), version


@pytest.fixture(scope="class")
def served():
    """A handshake function on one lab: the server picks its chain from what the client offers."""
    certifi = bundles.certifi("2020.6.20")
    pems = {root: certifi.find(root)[0].public_bytes(Encoding.PEM) for root in _ROOTS_TRIED}
    alone = {root: bundles.from_pem(pem, name=root) for root, pem in pems.items()}
    views = {root: str(lab.trust_view(bundle).path()) for root, bundle in alone.items()}
    with lab.Lab(REGION) as server:
        yield lambda suites: _served(server.port, views, suites)


class TestWhichAtsChain:
    """Real verifying handshakes to data-ats: which leaf key and root each kind of client gets."""

    def test_pythons_default_context_gets_the_rsa_chain_to_root_ca_1(self, served):
        assert served(None) == ("rsa", frozenset({ROOT_CA_1, STARFIELD_G2}), "TLSv1.2")

    def test_an_rsa_only_client_gets_the_rsa_chain(self, served):
        assert served(_CLIENT_SUITES["rsa-only"])[:2] == ("rsa", frozenset({ROOT_CA_1, STARFIELD_G2}))

    def test_an_ecdsa_only_client_gets_the_ecdsa_chain_to_root_ca_3(self, served):
        assert served(_CLIENT_SUITES["ecdsa-only"])[:2] == ("ec", frozenset({ROOT_CA_3, STARFIELD_G2}))


def test_root_file_verdicts_follow_the_evidence():
    frame = lab.root_file_verdicts(at="2024-06-01").set_index("root")
    expected = {  # ats default, ats rsa-only, ats ecdsa-only, legacy default
        ROOT_CA_1: [True, True, False, False],
        ROOT_CA_3: [False, False, True, False],
        STARFIELD_G2: [True, True, True, False],
        G5: [False, False, False, True],
    }
    assert {root: list(frame.loc[root]) for root in frame.index} == expected
    assert list(frame.columns) == ["ats default", "ats rsa-only", "ats ecdsa-only", "legacy default"]


def test_fetch_chains_finds_both_ats_chains_and_the_one_legacy_chain():
    with lab.Lab(REGION) as server:
        ats, legacy = (
            chains.fetch_chains(server.host, server.port, server_name=f"{name}.iot.{REGION}.amazonaws.com")
            for name in ("data-ats", "data")
        )
    assert isinstance(ats["rsa-only"].leaf.public_key(), rsa.RSAPublicKey)
    assert isinstance(ats["ecdsa-only"].leaf.public_key(), ec.EllipticCurvePublicKey)
    assert {c.tls_version for c in ats.values()} == {"TLSv1.2"}
    assert list(legacy) == ["rsa-only"]
    assert _x509.name_attr(legacy["rsa-only"].certificates[-1].issuer, NameOID.COMMON_NAME) == G5


# --- twins carry their real certificate's extensions; the kit agrees with openssl --------------------

_KEY_IDS = {"2.5.29.14", "2.5.29.35"}  # subject and authority key identifiers: a twin's own key


def test_each_root_twin_carries_every_extension_of_its_real_root():
    pki = lab.pki()
    for twin_id, real in pki.real_roots.items():
        twin = pki.cas[twin_id].cert

        def by_oid(cert):
            return {e.oid.dotted_string: e for e in cert.extensions}

        real_ext, twin_ext = by_oid(real), by_oid(twin)
        assert set(real_ext) == set(twin_ext), twin_id
        for oid, extension in real_ext.items():
            assert twin_ext[oid].critical == extension.critical, (twin_id, oid)
            if oid not in _KEY_IDS:
                assert twin_ext[oid].value == extension.value, (twin_id, oid)
            else:
                assert twin_ext[oid].value != extension.value, (twin_id, oid)


def test_the_kit_agrees_with_openssl_verify_on_the_lab_chains_in_every_certifi_release(tmp_path):
    at = "2024-06-01T00:00:00+00:00"
    epoch = str(int(chains.parse_time(at).timestamp()))
    pki = lab.pki()
    served = {
        chain_id: chains.Chain(
            [c for pem in pki.served_chain_pems(chain_id, REGION) for c in _x509.parse_pem(pem).certificates],
            server_name=f"{'data' if chain_id == 'legacy' else 'data-ats'}.iot.{REGION}.amazonaws.com",
        )
        for chain_id in ("legacy", "ats-rsa", "ats-ecdsa")
    }
    files = {}
    for chain_id, chain in served.items():
        leaf, rest = tmp_path / f"{chain_id}-leaf.pem", tmp_path / f"{chain_id}-rest.pem"
        leaf.write_bytes(_x509.to_pem([chain.leaf]))
        rest.write_bytes(_x509.to_pem(chain.intermediates))
        files[chain_id] = (leaf, rest)
    disagreements, verdicts = [], set()
    for release in bundles.certifi_versions():
        view = lab.trust_view(release)
        if not len(view):
            continue
        for chain_id, chain in served.items():
            leaf, rest = files[chain_id]
            command = ["openssl", "verify", "-attime", epoch, "-no-CApath", "-no-CAstore"]
            command += ["-CAfile", str(view.path()), "-untrusted", str(rest), "-purpose", "sslserver"]
            command += ["-verify_hostname", chain.hostname, str(leaf)]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            kit = chains.verify(chain, view, hostname=chain.hostname, at=at)
            verdicts.add((chain_id, kit.ok))
            if (done.returncode == 0) != kit.ok:
                disagreements.append((release, chain_id, kit.message, done.stdout + done.stderr))
    assert not disagreements, disagreements[:3]
    assert {("legacy", True), ("legacy", False), ("ats-rsa", True), ("ats-ecdsa", True)} <= verdicts


def test_the_data_readme_names_the_real_roots_the_twins_copy():
    text = (ROOT / "data" / "README.md").read_text()
    listed = dict(re.findall(r"^\| `([a-z0-9_]+)` \| [^|]+ \| `([0-9a-f]{64})` \|$", text, re.MULTILINE))
    assert listed == {t: _x509.fingerprint(c) for t, c in lab.pki().real_roots.items()}
    in_data = {_x509.fingerprint(c) for c in bundles.certifi("2020.6.20").certificates}
    assert set(listed.values()) <= in_data


def test_device_credentials_are_private_files_that_go_with_the_lab():
    with lab.environment("lab", region=REGION, thing_name="other-thing") as other:
        creds = other.register_device()
        assert creds.cert_path.read_text() == creds.cert_pem and creds.key_path.read_text() == creds.key_pem
        assert creds.key_path.stat().st_mode & 0o077 == 0 and creds.endpoint == other.endpoints["account_ats"]
        principals = boto3.client("iot").list_thing_principals(thingName="other-thing")["principals"]
        assert principals == [creds.cert_arn]
    assert not creds.key_path.exists() and not creds.cert_path.parent.exists()


def test_environment_refuses_the_other_modes_options_in_one_line():
    """One way in, two modes: a lab's port or trust view mean nothing live, and a live session nothing in
    the lab; each is refused before anything starts."""
    with pytest.raises(InputError, match="port= and certifi= are the lab's") as live_port:
        lab.environment("live", port=8443)
    with pytest.raises(InputError, match="session= is for mode='live'") as lab_session:
        lab.environment("lab", session=boto3.Session())
    assert "\n" not in str(live_port.value) + str(lab_session.value)
