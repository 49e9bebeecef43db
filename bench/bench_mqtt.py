"""Bench: a device's connect -> publish (QoS 1, a shadow update) -> disconnect against the lab's MQTT.

Run: ``.venv/bin/python bench/bench_mqtt.py [--runs 20]``. One lab is started; each run is a fresh
paho-mqtt client with the real Amazon Root CA 1 mapped to its twin and a moto device certificate,
connecting to the account's ATS endpoint on 8883 (and, as a second series, 443 with ALPN
``x-amzn-mqtt-ca``): TLS with client certificate, CONNECT/CONNACK, a QoS 1 PUBLISH to the thing's shadow
update topic until its PUBACK, DISCONNECT. Printed: the median and range per port - target: median at
most 0.5 s. Baseline in the same run: a bare TLS handshake with the same certificate (no MQTT).
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402

from helpers import lab  # noqa: E402

REGION = "ap-northeast-2"


def context(root: Path, device: lab.DeviceCredentials, alpn: str | None) -> ssl.SSLContext:
    tls = ssl.create_default_context(cafile=str(root))
    tls.load_cert_chain(str(device.cert_path), str(device.key_path))
    if alpn:
        tls.set_alpn_protocols([alpn])
    return tls


def connect_publish_disconnect(
    ep: lab.DeviceEndpoint, root: Path, device: lab.DeviceCredentials, n: int
) -> float:
    """Seconds for one device session: connect, one QoS 1 shadow update acknowledged, disconnect."""
    started = time.perf_counter()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-{n}")
    client.tls_set_context(context(root, device, ep.alpn))
    connected = queue.Queue()
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.put(reason)
    client.connect(ep.host, ep.port, keepalive=30)
    client.loop_start()
    if connected.get(timeout=10) != 0:
        raise SystemExit("the lab refused the bench device; run tests/test_lab_mqtt.py")
    payload = json.dumps({"state": {"reported": {"n": n}}})
    client.publish(f"$aws/things/{device.thing_name}/shadow/update", payload, qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()
    return time.perf_counter() - started


def handshake(ep: lab.DeviceEndpoint, root: Path, device: lab.DeviceCredentials) -> float:
    """Seconds for the TLS handshake alone (the baseline)."""
    started = time.perf_counter()
    with (
        socket.create_connection((ep.host, ep.port), timeout=10) as raw,
        context(root, device, ep.alpn).wrap_socket(raw, server_hostname=ep.host),
    ):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with lab.environment("lab", region=REGION) as env, tempfile.TemporaryDirectory() as tmp:
        device = env.register_device()
        root = env.device_root_file(lab.real_root_file("Amazon Root CA 1", Path(tmp, "AmazonRootCA1.pem")))
        for ep in (e for e in env.device_endpoints() if e.chain == "ats"):
            connect_publish_disconnect(ep, root, device, -1)  # warm-up: imports, contexts
            times = [connect_publish_disconnect(ep, root, device, n) for n in range(args.runs)]
            base = [handshake(ep, root, device) for _ in range(args.runs)]
            median = statistics.median(times)
            print(
                f"{ep.name:>8} ({ep.alpn or 'no ALPN'}): connect-publish-disconnect median {median:.3f} s "
                f"({min(times):.3f}-{max(times):.3f}, {args.runs} runs); TLS handshake alone "
                f"{statistics.median(base):.3f} s; target <= 0.5 s: {'met' if median <= 0.5 else 'NOT met'}"
            )


if __name__ == "__main__":
    main()
