"""helpers.devices and ``atskit devices`` against the lab and saved lab chains, with the real roots."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization

from helpers import bundles, chains, cli, devices, incident, lab, pki
from helpers.kinds import InputError

G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
CA1 = "Amazon Root CA 1"
ATS = "a1b2-ats.iot.ap-northeast-2.amazonaws.com"
LEGACY = "a1b2.iot.ap-northeast-2.amazonaws.com"
AT = "2024-06-01"


def _root(cn: str):
    (root,) = [c for c in bundles.certifi("2020.6.20").find(cn) if c.subject == c.issuer]
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Path:
    """A folder with the real root files devices carry and chains saved from the lab on port 8883."""
    folder = tmp_path_factory.mktemp("fleet")
    (folder / "root-CA.crt").write_bytes(_root(G5).public_bytes(serialization.Encoding.PEM))
    (folder / "AmazonRootCA1.pem").write_bytes(_root(CA1).public_bytes(serialization.Encoding.PEM))
    with lab.environment("lab"):
        for host in (ATS, LEGACY):
            chains.fetch_chain(host, 8883).save(folder / f"{host}_8883.pem")
        chains.fetch_chain(ATS, 8883, client_offer="ecdsa-only").save(folder / f"{ATS}_8883_ecdsa-only.pem")
    return folder


def _inventory(folder: Path, rows: list[str], header: str = "device,endpoint,root_file,client") -> Path:
    path = folder / "inventory.csv"
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _saved(folder: Path) -> list[Path]:
    return sorted(folder.glob("*_8883*.pem"))


def _verdicts(result: devices.DeviceCheck) -> dict[str, tuple[bool, str]]:
    return {r["device"]: (r["ok"], str(r["reason"])) for r in result.rows}


def test_real_roots_on_legacy_and_ats_in_the_lab(fleet):
    path = _inventory(fleet, [
        f"g5-legacy,{LEGACY},root-CA.crt,", f"g5-ats,{ATS},root-CA.crt,",
        f"ca1-legacy,{LEGACY},AmazonRootCA1.pem,", f"ca1-ats,{ATS},AmazonRootCA1.pem,",
        f"ca1-ats-ecdsa,{ATS},AmazonRootCA1.pem,ecdsa-only",
    ])  # fmt: skip
    result = devices.check_inventory(path, mode="lab", at=AT)
    assert _verdicts(result) == {
        "g5-legacy": (True, "ok"),
        "g5-ats": (False, "missing-root"),
        "ca1-legacy": (False, "missing-root"),
        "ca1-ats": (True, "ok"),
        "ca1-ats-ecdsa": (False, "missing-root"),
    }
    assert {r["root"] for r in result.rows} == {G5, CA1}
    assert not result.ok and result.summary() == {"missing-root": 3, "ok": 2}


def test_chains_saved_from_the_lab_give_the_labs_verdicts_and_root_sha256_finds_the_real_root(fleet):
    sha = {name: _root(name).fingerprint(hashes.SHA256()).hex() for name in (G5, CA1)}
    path = _inventory(fleet, [
        f"a,{LEGACY},{sha[G5]},", f"b,{ATS}:8883,{sha[G5].upper()},default",
        f"c,{LEGACY},{sha[CA1]},", f"d,{ATS},{sha[CA1]},", f"e,{ATS},{sha[CA1]},ecdsa-only",
    ], header="device,endpoint,root_sha256,client")  # fmt: skip
    result = devices.check_inventory(path, mode="lab", chain_files=_saved(fleet), at=AT)
    assert _verdicts(result) == {
        "a": (True, "ok"),
        "b": (False, "missing-root"),
        "c": (False, "missing-root"),
        "d": (True, "ok"),
        "e": (False, "missing-root"),
    }
    assert [r["root"] for r in result.rows] == [G5, G5, CA1, CA1, CA1]


def test_real_roots_never_verify_lab_chains_as_saved_chains(fleet):
    path = _inventory(fleet, [f"d,{ATS},AmazonRootCA1.pem,"])
    (row,) = devices.check_inventory(path, mode="saved", chain_files=_saved(fleet), at=AT).rows
    assert (row["ok"], row["reason"]) == (False, "missing-root") and "--lab" in row["message"]


def test_a_device_without_a_saved_chain_for_its_client_is_bad_input(fleet):
    path = _inventory(fleet, [f"d,{LEGACY},AmazonRootCA1.pem,rsa-only"])
    with pytest.raises(InputError, match="no saved chain for .*:8883 as a rsa-only client"):
        devices.check_inventory(path, mode="saved", chain_files=_saved(fleet))


def test_verdicts_are_computed_once_per_distinct_chain_and_root(fleet):
    rows = [
        f"d{i},{(ATS, LEGACY)[i % 2]},{('root-CA.crt', 'AmazonRootCA1.pem')[i % 3 == 0]}," for i in range(300)
    ]
    result = devices.check_inventory(_inventory(fleet, rows), mode="saved", chain_files=_saved(fleet), at=AT)
    distinct = {(r.split(",")[1], r.split(",")[2]) for r in rows}
    assert len(result.rows) == 300
    assert result.verifications == len(distinct) == 4
    assert result.captures == 2


def test_a_server_wanting_a_client_certificate_still_gives_its_chain(tmp_path):
    ca = pki.CA("Kit Device CA", key_type="ec")
    chain_path, key_path = ca.issue_cert(ATS).write_files(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    context.maximum_version = ssl.TLSVersion.TLSv1_2  # the client learns of the refusal in the handshake
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca.cert_pem.decode())
    listener = socket.create_server(("127.0.0.1", 0))
    outcome = []

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True):
                outcome.append("accepted")
        except ssl.SSLError as exc:
            outcome.append(exc.reason)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    target = f"{ATS}:{port}{{127.0.0.1}}"
    (chain,) = chains.collect([target], alpn="x-amzn-mqtt-ca").values()
    thread.join(5)
    listener.close()
    assert outcome == ["PEER_DID_NOT_RETURN_A_CERTIFICATE"]  # the handshake did fail for lack of one
    assert chain.hostname == ATS and chain.host == "127.0.0.1" and chain.port == port
    assert "failed after the server sent its chain" in chain.notes["handshake"]
    assert chains.verify(chain, bundles.from_pem(ca.cert_pem), hostname=ATS).ok


def test_host_port_ip_sends_the_name_to_the_address(fleet):
    with lab.environment("lab", region="eu-west-1") as env:
        name, port = env.endpoints["account_ats"], env.port
        ((label, chain),) = chains.collect([f"{name}:{port}{{127.0.0.1}}"]).items()
        seen = env.connections()["server_name"].tolist()
    assert label == f"{name}:{port}{{127.0.0.1}}"
    assert seen[-1] == name and chain.hostname == name and chain.peer_address == f"127.0.0.1:{port}"
    assert chains.verify(chain, lab.trust_view("2021.10.8"), hostname=name, at=AT).ok


@pytest.mark.parametrize("text, words", [
    ("host:8883{10.0.0.5", "use HOST, HOST:PORT or HOST:PORT{IP}"),
    ("host:8883{}", "is not an IP address"),
    ("host:8883{not-an-ip}", "is not an IP address"),
    ("host{10.0.0.5}:8883", "use HOST, HOST:PORT or HOST:PORT{IP}"),
    ("host:0{10.0.0.5}", "port from 1 to 65535"),
])  # fmt: skip
def test_malformed_targets_are_one_line_errors(text, words):
    with pytest.raises(InputError, match="^bad endpoint") as caught:
        chains.parse_target(text)
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_parse_target_reads_the_address_and_the_default_port():
    assert chains.parse_target("A.example{[::1]}", default_port=8883) == chains.Target(
        "a.example", 8883, "::1"
    )
    with pytest.raises(InputError, match="without {IP}"):
        chains.parse_endpoint("a.example:443{127.0.0.1}")


def test_devices_json_shape_and_exit_code(fleet, capsys):
    path = _inventory(fleet, [f"ok,{ATS},AmazonRootCA1.pem,", f"bad,{LEGACY},AmazonRootCA1.pem,"])
    code = cli.main(["devices", str(path), "--lab", "--at", AT, "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == 1
    assert data["schema"] == 1 and data["ok"] is False and data["mode"] == "lab" and data["devices"] == 2
    assert data["summary"] == {"ok": 1, "missing-root": 1}
    assert set(data["results"][0]) == set(devices.COLUMNS)
    code = cli.main(
        ["devices", str(_inventory(fleet, [f"ok,{ATS},AmazonRootCA1.pem,"])), "--lab", "--at", AT]
    )
    out = capsys.readouterr().out
    assert code == 0 and "1/1 devices pass (ok 1)" in out


@pytest.mark.parametrize("header, row, words", [
    ("device,root_file", "d,AmazonRootCA1.pem", "no endpoint column"),
    ("device,endpoint", f"d,{ATS}", "no root_file or root_sha256 column"),
    ("device,endpoint,root_sha256", f"d,{ATS},{'ab' * 32}", "row 2 (device 'd'): root_sha256 abababab"),
    ("device,endpoint,root_sha256", f"d,{ATS},xyz", "is not a SHA-256"),
    ("device,endpoint,root_file", f"d,{ATS},missing.pem", "row 2 (device 'd'): root_file"),
    ("device,endpoint,root_file", f"d,{ATS}:99999,AmazonRootCA1.pem", "row 2 (device 'd'): bad endpoint"),
    ("device,endpoint,root_file,client", f"d,{ATS},AmazonRootCA1.pem,tls13", "client 'tls13'"),
    ("device,endpoint,root_file", "", "no devices"),
])  # fmt: skip
def test_bad_inventories_are_one_line_errors(fleet, capsys, header, row, words):
    code = cli.main(["devices", str(_inventory(fleet, [row] if row else [], header=header)), "--lab"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("atskit: error: ")
    assert words in err[0], err[0]


# --- a fleet's migration (docs/examples/fleet.csv) and real device clients ----------------------------


def test_the_example_fleet_gets_each_outcome_for_its_reason():
    from helpers._paths import ROOT

    outcomes = devices.classify_fleet(ROOT / "docs" / "examples" / "fleet.csv", mode="lab", at="2024-06-01")
    by_device = outcomes.set_index("device")["outcome"].to_dict()
    assert by_device == {
        "sensor-01": "breaks on ATS migration",  # VeriSign G5 on legacy: fine today, not on -ats
        "sensor-02": "fails now",  # Amazon Root CA 1 on legacy
        "gateway-03": "fine",  # Amazon Root CA 1 on ATS, RSA chain
        "gateway-04": "fails now",  # VeriSign G5 on ATS
        "tracker-05": "fine",  # Amazon Root CA 3, ECDSA-only client: the ECC chain
        "tracker-06": "fails now",  # Amazon Root CA 1, ECDSA-only client: the ECC chain ends at Root CA 3
        "meter-07": "fine",  # Starfield Services G2: through the cross-sign
        "meter-08": "breaks on legacy retirement",  # G5 and Root CA 1 in one file: only the endpoint moves
    }
    assert set(by_device.values()) == set(devices.OUTCOMES)


def test_the_ats_counterpart_of_an_endpoint():
    assert devices.ats_counterpart("abc123def456gh.iot.eu-west-1.amazonaws.com") == (
        "abc123def456gh-ats.iot.eu-west-1.amazonaws.com:8883"
    )
    assert (
        devices.ats_counterpart("data.iot.eu-west-1.amazonaws.com:443")
        == "data-ats.iot.eu-west-1.amazonaws.com:443"
    )
    assert (
        devices.ats_counterpart("x-ats.iot.eu-west-1.amazonaws.com:8883")
        == "x-ats.iot.eu-west-1.amazonaws.com:8883"
    )


@pytest.mark.parametrize("library", ["paho", "sdk"])
def test_try_mqtt_shows_what_a_real_device_library_does(tmp_path, library):
    """A real device client through devices.try_mqtt: the right root connects and publishes; the wrong
    one returns the library's own verification error in one line (nothing raised)."""
    from helpers import lab

    with lab.environment("lab", region="ap-northeast-2", thing_name="fleet-thing") as env:
        device = env.register_device()
        ats = next(e for e in env.device_endpoints() if e.name == "ats 443")
        roots = {name: env.device_root_file(lab.real_root_file(name, tmp_path / f"{name[:8]}.pem"))
                 for name in ("Amazon Root CA 1", incident.ROOT_AT_FAULT)}  # fmt: skip
        options = {
            "cert_file": device.cert_path,
            "key_file": device.key_path,
            "alpn": ats.alpn,
            "library": library,
        }
        update = ("$aws/things/fleet-thing/shadow/update", '{"state": {}}')
        ca1 = roots["Amazon Root CA 1"]
        good = devices.try_mqtt(ats.host, ats.port, root_file=ca1, publish=update, **options)
        bad = devices.try_mqtt(ats.host, ats.port, root_file=roots[incident.ROOT_AT_FAULT], **options)
    assert good.ok and good.published and good.error == "", good
    assert not bad.ok and "unable to get local issuer certificate" in bad.error and "\n" not in bad.error
    with pytest.raises(InputError, match="library='mosquitto'"):
        devices.try_mqtt("h", 8883, root_file="r", cert_file="c", key_file="k", library="mosquitto")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("device,endpoint,root_sha256\nd1,h.iot.eu-west-1.amazonaws.com,{sha}\nd1,h.iot.eu-west-1.amazonaws.com,{sha}\n",
         "inventory rows 2 and 3 are both device 'd1'"),
        ("device,endpoint,root_sha256\nd1,h.iot.eu-west-1.amazonaws.com,{sha},extra\n",
         "inventory row 2 has more fields than the header"),
    ],
    ids=["duplicate device", "a shifted row"],
)  # fmt: skip
def test_an_inventory_that_would_count_wrong_is_refused(tmp_path, capsys, text, words):
    inventory = tmp_path / "fleet.csv"
    inventory.write_text(text.format(sha="9acfab7e43c8d880d06b262a94deeee4b4659989c3d0caf19baf6405e41ab7df"))
    code = cli.main(["devices", str(inventory), "--lab"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err
