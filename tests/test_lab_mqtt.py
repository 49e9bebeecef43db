"""MQTT in the lab: real device clients (paho-mqtt, AWSIoTPythonSDK) over mutual TLS on 8883 and 443/ALPN."""

from __future__ import annotations

import datetime as dt
import json
import queue
import socket
import ssl
import struct
import uuid

import boto3
import paho.mqtt.client as paho
import pytest
from AWSIoTPythonSDK.MQTTLib import AWSIoTMQTTClient
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from helpers import _lab_mqtt, lab

REGION = "ap-northeast-2"
THING = "incident-thing"
G5 = "VeriSign Class 3 Public Primary Certification Authority - G5"
ROOT_CA_1 = "Amazon Root CA 1"
UNKNOWN_ISSUER = "certificate verify failed: unable to get local issuer certificate"
# the SDK builds its 8883 context with ssl.PROTOCOL_TLS, which Python deprecates (the SDK's, not ours)
pytestmark = pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
WAIT = 10.0  # seconds to wait for an answer that should come at once (a bound, not a measurement)


@pytest.fixture(scope="module")
def env():
    with lab.environment("lab", region=REGION, thing_name=THING) as running_env:
        yield running_env


@pytest.fixture(scope="module")
def device(env):
    return env.register_device()


@pytest.fixture(scope="module")
def roots(env):
    """The device root files: the real root PEM, as a device holds it, mapped to its lab twin."""
    return {
        name: env.device_root_file(lab.real_root_file(name, env.lab.files / f"{name[:10]}.pem"))
        for name in (G5, ROOT_CA_1)
    }


def endpoint(env, name: str) -> lab.DeviceEndpoint:
    return next(e for e in env.device_endpoints() if e.name == name)


def paho_client(ep: lab.DeviceEndpoint, root, cert, key) -> paho.Client:
    """A paho client with a root file and a device certificate; ALPN set when the endpoint needs it."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"paho-{uuid.uuid4().hex[:8]}")
    context = ssl.create_default_context(cafile=str(root))
    context.load_cert_chain(str(cert), str(key))
    if ep.alpn:
        context.set_alpn_protocols([ep.alpn])
    client.tls_set_context(context)
    return client


def sdk_client(ep: lab.DeviceEndpoint, root, cert, key) -> AWSIoTMQTTClient:
    """The AWS IoT Device SDK's client (it offers ALPN x-amzn-mqtt-ca by itself on 443)."""
    client = AWSIoTMQTTClient(f"sdk-{uuid.uuid4().hex[:8]}")
    client.configureEndpoint(ep.host, ep.port)
    client.configureCredentials(str(root), str(key), str(cert))
    client.configureConnectDisconnectTimeout(WAIT)
    client.configureMQTTOperationTimeout(WAIT)
    client.configureAutoReconnectBackoffTime(1, 2, 3)
    return client


def connect(library: str, ep, root, cert, key):
    """Connect with ``library``; returns the connected client (raises what the library raises)."""
    if library == "paho":
        client = paho_client(ep, root, cert, key)
        assert client.connect(ep.host, ep.port, keepalive=30) == paho.MQTT_ERR_SUCCESS
        connected = queue.Queue()
        client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
        client.loop_start()
        assert connected.get(timeout=WAIT) == 0
        return client
    client = sdk_client(ep, root, cert, key)
    assert client.connect(keepAliveIntervalSecond=30) is True
    return client


def disconnect(client) -> None:
    client.disconnect()
    if isinstance(client, paho.Client):
        client.loop_stop()


ENDPOINTS = ["legacy 8883", "legacy 443", "ats 8883", "ats 443"]


def test_device_endpoints_are_the_account_hosts_on_8883_and_443_with_alpn(env):
    rows = {(e.name, e.host, e.port, e.alpn, e.chain) for e in env.device_endpoints()}
    legacy, ats = env.endpoints["account_legacy"], env.endpoints["account_ats"]
    assert rows == {
        ("legacy 8883", legacy, 8883, None, "legacy"),
        ("legacy 443", legacy, 443, "x-amzn-mqtt-ca", "legacy"),
        ("ats 8883", ats, 8883, None, "ats"),
        ("ats 443", ats, 443, "x-amzn-mqtt-ca", "ats"),
    }
    assert {lab.chain_for(e.host, REGION) for e in env.device_endpoints()} == {"legacy", "ats"}


def test_8883_reaches_the_mqtt_listener_and_443_the_https_one(env):
    host = env.endpoints["account_ats"]
    assert socket.getaddrinfo(host, 8883)[0][4] == ("127.0.0.1", env.lab.mqtt_port)
    assert socket.getaddrinfo(host, 443)[0][4] == ("127.0.0.1", env.port)
    assert env.lab.mqtt_port != env.port


@pytest.mark.parametrize("library", ["paho", "sdk"])
@pytest.mark.parametrize("name", ENDPOINTS)
@pytest.mark.parametrize("root", [G5, ROOT_CA_1], ids=["G5", "RootCA1"])
def test_g5_works_on_legacy_only_and_amazon_root_ca_1_on_ats_only(env, device, roots, library, name, root):
    ep = endpoint(env, name)
    works = (ep.chain == "legacy") == (root == G5)
    before = len(env.connections())
    if works:
        disconnect(connect(library, ep, roots[root], device.cert_path, device.key_path))
    else:
        with pytest.raises(ssl.SSLCertVerificationError, match=UNKNOWN_ISSUER):
            connect(library, ep, roots[root], device.cert_path, device.key_path)
    seen = env.connections().iloc[before:]
    assert list(seen["port"]) == [ep.port] and list(seen["chain"]) == [ep.chain]
    if works:
        assert list(seen["alpn"].fillna("none")) == [ep.alpn or "none"] and list(seen["client_cert"]) == [
            True
        ]


def _self_signed(tmp_path):
    """A device certificate moto never saw (same shape as moto's), and its key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AWS IoT Certificate")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "rogue.cert.pem", tmp_path / "rogue.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.parametrize("library", ["paho", "sdk"])
@pytest.mark.parametrize("name", ["ats 8883", "ats 443"])
def test_an_unregistered_certificate_is_refused_in_the_handshake(env, roots, tmp_path, library, name):
    cert, key = _self_signed(tmp_path)
    before = len(env.connections())
    with pytest.raises(ssl.SSLError, match="alert unknown ca"):
        connect(library, endpoint(env, name), roots[ROOT_CA_1], cert, key)
    seen = env.connections().iloc[before:]
    assert list(seen["outcome"]) == ["failed"]
    assert seen["error"].str.contains("certificate verify failed").all()


@pytest.mark.parametrize("library", ["paho", "sdk"])
def test_an_inactive_certificate_is_refused_until_it_is_active_again(env, roots, library):
    fresh = env.register_device()
    iot = boto3.client("iot")
    ep = endpoint(env, "ats 8883")
    disconnect(connect(library, ep, roots[ROOT_CA_1], fresh.cert_path, fresh.key_path))
    iot.update_certificate(certificateId=fresh.cert_id, newStatus="INACTIVE")
    with pytest.raises(ssl.SSLError, match="alert unknown ca"):
        connect(library, ep, roots[ROOT_CA_1], fresh.cert_path, fresh.key_path)
    iot.update_certificate(certificateId=fresh.cert_id, newStatus="ACTIVE")
    disconnect(connect(library, ep, roots[ROOT_CA_1], fresh.cert_path, fresh.key_path))


def test_a_certificate_registered_inactive_is_refused(env, roots):
    inactive = env.register_device(active=False)
    with pytest.raises(ssl.SSLError, match="alert unknown ca"):
        connect("paho", endpoint(env, "ats 443"), roots[ROOT_CA_1], inactive.cert_path, inactive.key_path)


@pytest.mark.parametrize(
    ("library", "name"), [("paho", "ats 8883"), ("sdk", "ats 443"), ("paho", "legacy 443")]
)
def test_a_shadow_update_over_mqtt_is_what_boto3_reads(env, device, roots, library, name):
    ep = endpoint(env, name)
    root = roots[G5 if ep.chain == "legacy" else ROOT_CA_1]
    client = connect(library, ep, root, device.cert_path, device.key_path)
    answers = queue.Queue()
    topic = f"$aws/things/{THING}/shadow/update"
    state = {"reported": {"led": f"{library} {name}"}}
    try:
        if library == "paho":
            client.on_message = lambda _c, _u, message: answers.put((message.topic, message.payload))
            subscribed = client.subscribe(f"{topic}/+", qos=1)
            assert subscribed[0] == paho.MQTT_ERR_SUCCESS
            client.publish(f"{topic}/subscribed-check", b"", qos=1).wait_for_publish(WAIT)
            assert answers.get(timeout=WAIT)[0] == f"{topic}/subscribed-check"  # SUBACK done, delivery works
            client.publish(topic, json.dumps({"state": state}), qos=1).wait_for_publish(WAIT)
        else:
            client.subscribe(
                f"{topic}/accepted", 1, lambda _c, _u, message: answers.put((message.topic, message.payload))
            )
            assert client.publish(topic, json.dumps({"state": state}), 1) is True
        reply_topic, reply = answers.get(timeout=WAIT)
    finally:
        disconnect(client)
    assert reply_topic == f"{topic}/accepted"
    assert json.loads(reply)["state"] == state
    shadow = json.loads(boto3.client("iot-data").get_thing_shadow(thingName=THING)["payload"].read())
    assert shadow["state"]["reported"] == state["reported"]
    assert shadow["version"] == json.loads(reply)["version"]


def test_a_bad_shadow_update_is_rejected_and_changes_nothing(env, device, roots):
    client = connect("paho", endpoint(env, "ats 8883"), roots[ROOT_CA_1], device.cert_path, device.key_path)
    answers = queue.Queue()
    client.on_message = lambda _c, _u, message: answers.put((message.topic, message.payload))
    topic = f"$aws/things/{THING}/shadow/update"
    try:
        client.subscribe(f"{topic}/+", qos=1)
        client.publish(f"{topic}/subscribed-check", b"", qos=1).wait_for_publish(WAIT)
        answers.get(timeout=WAIT)
        data = boto3.client("iot-data")
        data.update_thing_shadow(thingName=THING, payload=json.dumps({"state": {"desired": {"led": "off"}}}))
        before = data.get_thing_shadow(thingName=THING)["payload"].read()
        client.publish(topic, json.dumps({"state": {"bogus": 1}}), qos=1).wait_for_publish(WAIT)
        reply_topic, reply = answers.get(timeout=WAIT)
    finally:
        disconnect(client)
    assert reply_topic == f"{topic}/rejected"
    assert json.loads(reply)["code"] == 400
    assert boto3.client("iot-data").get_thing_shadow(thingName=THING)["payload"].read() == before


# --- the broker's protocol, byte by byte ------------------------------------------------------------


def raw_session(env, device, roots, *, alpn: str | None = None, port: int = 8883, cert: bool = True):
    """A TLS socket to the ATS endpoint (certificate presented unless ``cert=False``)."""
    context = ssl.create_default_context(cafile=str(roots[ROOT_CA_1]))
    if cert:
        context.load_cert_chain(str(device.cert_path), str(device.key_path))
    if alpn:
        context.set_alpn_protocols([alpn])
    host = env.endpoints["account_ats"]
    raw = socket.create_connection((host, port), timeout=WAIT)
    return context.wrap_socket(raw, server_hostname=host)


def _s(text: str) -> bytes:
    return struct.pack("!H", len(text)) + text.encode()


def connect_packet(client_id: str, *, name: str = "MQTT", level: int = 4) -> bytes:
    return _lab_mqtt.packet(1, 0, _s(name) + bytes([level, 2]) + struct.pack("!H", 30) + _s(client_id))


def read_packet(tls) -> bytes:
    """One whole packet as bytes (b'' if the server closed the connection)."""
    first = tls.recv(1)
    if not first:
        return b""
    length = tls.recv(1)
    assert length[0] < 128  # the broker's answers here are short
    body = b""
    while len(body) < length[0]:
        body += tls.recv(length[0] - len(body))
    return first + length + body


def test_ping_subscribe_unsubscribe_and_qos_over_raw_packets(env, device, roots):
    with raw_session(env, device, roots) as tls:
        tls.sendall(connect_packet("raw-1"))
        assert read_packet(tls) == b"\x20\x02\x00\x00"
        tls.sendall(_lab_mqtt.packet(12, 0, b""))
        assert read_packet(tls) == b"\xd0\x00"
        # QoS 2 is granted as 1, as AWS IoT does; two filters in one SUBSCRIBE
        tls.sendall(_lab_mqtt.packet(8, 2, b"\x00\x07" + _s("lab/+/x") + b"\x02" + _s("lab/#") + b"\x00"))
        assert read_packet(tls) == b"\x90\x04\x00\x07\x01\x00"
        tls.sendall(_lab_mqtt.packet(3, 2, _s("lab/a/x") + b"\x00\x09" + b"hi"))  # QoS 1
        answers = {read_packet(tls), read_packet(tls)}
        assert b"\x40\x02\x00\x09" in answers  # PUBACK
        delivered = next(a for a in answers if a[0] >> 4 == 3)
        # delivered at QoS 1 (the highest granted of the matching filters, and the publisher's QoS)
        assert delivered[0] == 0x32 and delivered[2:].startswith(_s("lab/a/x")) and delivered.endswith(b"hi")
        tls.sendall(_lab_mqtt.packet(4, 0, delivered[2 + len(_s("lab/a/x")) :][:2]))  # our PUBACK
        tls.sendall(_lab_mqtt.packet(10, 2, b"\x00\x0a" + _s("lab/+/x") + _s("lab/#")))
        assert read_packet(tls) == b"\xb0\x02\x00\x0a"
        tls.sendall(_lab_mqtt.packet(3, 0, _s("lab/a/x") + b"gone"))
        tls.sendall(_lab_mqtt.packet(12, 0, b""))
        assert read_packet(tls) == b"\xd0\x00"  # nothing delivered after UNSUBSCRIBE
        tls.sendall(_lab_mqtt.packet(14, 0, b""))
        assert read_packet(tls) == b""


def test_mqtt_3_1_is_refused_with_connack_1_and_qos_2_closes(env, device, roots):
    with raw_session(env, device, roots) as tls:
        tls.sendall(connect_packet("raw-old", name="MQIsdp", level=3))
        assert read_packet(tls) == b"\x20\x02\x00\x01"
        assert read_packet(tls) == b""
    with raw_session(env, device, roots, port=443, alpn="x-amzn-mqtt-ca") as tls:
        tls.sendall(connect_packet("raw-qos2"))
        assert read_packet(tls) == b"\x20\x02\x00\x00"
        tls.sendall(_lab_mqtt.packet(3, 4, _s("lab/x") + b"\x00\x01" + b"x"))
        assert read_packet(tls) == b""


def test_a_second_connection_with_the_same_client_id_takes_over(env, device, roots):
    with raw_session(env, device, roots) as first, raw_session(env, device, roots) as second:
        first.sendall(connect_packet("same-id"))
        assert read_packet(first) == b"\x20\x02\x00\x00"
        second.sendall(connect_packet("same-id"))
        assert read_packet(second) == b"\x20\x02\x00\x00"
        assert read_packet(first) == b""


def test_443_with_mqtt_alpn_needs_a_certificate_and_without_alpn_is_https(env, device, roots):
    with raw_session(env, device, roots, port=443, alpn="x-amzn-mqtt-ca", cert=False) as tls:
        assert tls.selected_alpn_protocol() == "x-amzn-mqtt-ca"
        tls.sendall(connect_packet("no-cert"))
        assert read_packet(tls) == b""  # closed: no client certificate, no MQTT
    with raw_session(env, device, roots, port=443, alpn="http/1.1") as tls:
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {env.endpoints['account_ats']}\r\n\r\n".encode())
        assert tls.recv(12).startswith(b"HTTP/1.1")


def test_topic_filters_match_as_mqtt_3_1_1_says():
    match = _lab_mqtt.topic_matches
    assert match("a/+/c", "a/b/c") and match("a/#", "a/b/c") and match("#", "a") and match("a/#", "a")
    assert not match("a/+", "a/b/c") and not match("a/b", "a/b/c") and not match("+/b", "a/c")
    assert not match("#", "$aws/things/t/shadow/update") and match("$aws/#", "$aws/things/t/shadow/update")
