"""The lab's MQTT 3.1.1 broker: the subset AWS IoT devices use, over a TLS socket the lab has accepted.

CONNECT/CONNACK, PUBLISH QoS 0 and 1 (PUBACK), SUBSCRIBE/SUBACK (granted QoS 0 or 1, as AWS IoT),
UNSUBSCRIBE/UNSUBACK, PINGREQ/PINGRESP, DISCONNECT. No retained messages, no will, no persistent
sessions, no policies: the client certificate is checked in the TLS handshake (see ``lab``). A second
connection with a client id already connected takes over, as on AWS IoT. Shadow topics
(``$aws/things/<thing>/shadow[/name/<shadow>]/update|get|delete``) act on moto's iot-data backend of
the lab's account (what boto3's ``iot-data`` reads) and answer on ``.../accepted`` or ``.../rejected``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import re
import socket
import ssl
import struct
import threading

MAX_PACKET = 128 * 1024  # AWS IoT's message size limit
_CONNECT, _CONNACK, _PUBLISH, _PUBACK = 1, 2, 3, 4
_SUBSCRIBE, _SUBACK, _UNSUBSCRIBE, _UNSUBACK = 8, 9, 10, 11
_PINGREQ, _PINGRESP, _DISCONNECT = 12, 13, 14
_SHADOW_TOPIC = re.compile(r"^\$aws/things/([^/]+)/shadow(?:/name/([^/]+))?/(update|get|delete)$")


class _Closed(Exception):
    """The connection is over (client gone, protocol violation, or taken over)."""


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 topic matching: '+' one level, '#' the rest; wildcards never match a leading '$'."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    parts, levels = topic_filter.split("/"), topic.split("/")
    for index, part in enumerate(parts):
        if part == "#":
            return True
        if index >= len(levels) or (part != "+" and part != levels[index]):
            return False
    return len(parts) == len(levels)


def _string(data: bytes, at: int) -> tuple[str, int]:
    """A length-prefixed UTF-8 string at ``at``, and the offset after it."""
    if at + 2 > len(data):
        raise _Closed("truncated string")
    (size,) = struct.unpack_from("!H", data, at)
    end = at + 2 + size
    if end > len(data):
        raise _Closed("truncated string")
    return data[at + 2 : end].decode("utf-8", "strict"), end


def _encode_string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def packet(kind: int, flags: int, body: bytes) -> bytes:
    """One MQTT packet: fixed header (type, flags, remaining length) and body."""
    size, length = len(body), bytearray()
    while True:
        size, digit = divmod(size, 128)
        length.append(digit | (0x80 if size else 0))
        if not size:
            break
    return bytes([kind << 4 | flags]) + bytes(length) + body


class _Session:
    """One connected client: its socket, client id and subscriptions (filter -> granted QoS)."""

    def __init__(self, tls: ssl.SSLSocket, client_id: str) -> None:
        self.tls, self.client_id = tls, client_id
        self.subscriptions: dict[str, int] = {}
        self._write = threading.Lock()
        self._ids = itertools.cycle(range(1, 65536))

    def send(self, data: bytes) -> None:
        with self._write:
            self.tls.sendall(data)

    def deliver(self, topic: str, payload: bytes, qos: int) -> None:
        """PUBLISH to this client (QoS 1 gets a packet id; its PUBACK is read and dropped)."""
        body = _encode_string(topic) + (struct.pack("!H", next(self._ids)) if qos else b"") + payload
        self.send(packet(_PUBLISH, qos << 1, body))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.tls.shutdown(socket.SHUT_RDWR)


class Broker:
    """The broker of one lab account and region; ``serve`` runs one connection in the caller's thread."""

    def __init__(self, account_id: str, region: str, *, timeout: float = 10.0) -> None:
        self.account_id, self.region, self.timeout = account_id, region, timeout
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._anonymous = itertools.count(1)
        self.events: list[dict] = []

    def _note(self, client_id: str | None, event: str, topic: str | None = None, detail: str | None = None):
        self.events.append(
            {
                "at": dt.datetime.now(dt.UTC),
                "client_id": client_id,
                "event": event,
                "topic": topic,
                "detail": detail,
            }
        )

    def serve(self, tls: ssl.SSLSocket) -> None:
        """Serve one MQTT connection until it ends; the first packet must be CONNECT."""
        session = None
        try:
            tls.settimeout(self.timeout)
            kind, _, body = self._read(tls)
            if kind != _CONNECT:
                raise _Closed("first packet is not CONNECT")
            session = self._connect(tls, body)
            if session is None:
                return
            while True:
                kind, flags, body = self._read(tls)
                if kind == _DISCONNECT:
                    self._note(session.client_id, "disconnect")
                    return
                self._handle(session, kind, flags, body)
        except (_Closed, OSError, UnicodeDecodeError, struct.error) as exc:
            client_id = session.client_id if session else None
            self._note(client_id, "closed", detail=str(exc) or type(exc).__name__)
        finally:
            if session is not None:
                with self._lock:
                    if self._sessions.get(session.client_id) is session:
                        del self._sessions[session.client_id]

    def close_all(self) -> None:
        """End every connection (the lab is stopping)."""
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            session.close()

    @staticmethod
    def _read(tls: ssl.SSLSocket) -> tuple[int, int, bytes]:
        """One packet: (type, flags, body)."""

        def exactly(count: int) -> bytes:
            data = bytearray()
            while len(data) < count:
                chunk = tls.recv(count - len(data))
                if not chunk:
                    raise _Closed("connection closed by the client")
                data += chunk
            return bytes(data)

        first = exactly(1)[0]
        size, shift = 0, 0
        for _ in range(4):
            digit = exactly(1)[0]
            size |= (digit & 0x7F) << shift
            shift += 7
            if not digit & 0x80:
                break
        else:
            raise _Closed("malformed remaining length")
        if size > MAX_PACKET:
            raise _Closed(f"packet of {size} bytes exceeds {MAX_PACKET}")
        return first >> 4, first & 0x0F, exactly(size)

    def _connect(self, tls: ssl.SSLSocket, body: bytes) -> _Session | None:
        """Answer CONNECT: CONNACK 0 and a session, or CONNACK 1 (MQTT 3.1.1 only) and None."""
        name, at = _string(body, 0)
        if at + 4 > len(body):
            raise _Closed("truncated CONNECT")
        level, flags, keepalive = body[at], body[at + 1], struct.unpack_from("!H", body, at + 2)[0]
        if name != "MQTT" or level != 4:
            tls.sendall(packet(_CONNACK, 0, b"\x00\x01"))
            self._note(None, "refused", detail=f"protocol {name!r} level {level}: only MQTT 3.1.1")
            return None
        client_id, at = _string(body, at + 4)
        if not client_id:
            client_id = f"lab-anonymous-{next(self._anonymous)}"
        session = _Session(tls, client_id)
        with self._lock:
            previous, self._sessions[client_id] = self._sessions.get(client_id), session
        if previous is not None:
            self._note(client_id, "taken over")
            previous.close()
        tls.settimeout(keepalive * 1.5 if keepalive else None)
        session.send(packet(_CONNACK, 0, b"\x00\x00"))
        self._note(client_id, "connect", detail=f"keepalive {keepalive}s, clean session {bool(flags & 2)}")
        return session

    def _handle(self, session: _Session, kind: int, flags: int, body: bytes) -> None:
        """One packet after CONNECT."""
        if kind == _PUBLISH:
            qos = (flags >> 1) & 3
            if qos > 1:
                raise _Closed("QoS 2 is not supported (as on AWS IoT)")
            topic, at = _string(body, 0)
            packet_id = body[at : at + 2] if qos else b""
            payload = body[at + len(packet_id) :]
            self._note(session.client_id, "publish", topic, f"QoS {qos}, {len(payload)} bytes")
            if qos:
                session.send(packet(_PUBACK, 0, packet_id))
            self.publish(topic, payload, qos)
            shadow = _SHADOW_TOPIC.match(topic)
            if shadow:
                self._shadow(topic, *shadow.groups(), payload)
        elif kind == _SUBSCRIBE:
            packet_id, at, granted = body[:2], 2, bytearray()
            while at < len(body):
                topic_filter, at = _string(body, at)
                qos = min(body[at] & 3, 1)
                at += 1
                session.subscriptions[topic_filter] = qos
                granted.append(qos)
                self._note(session.client_id, "subscribe", topic_filter, f"QoS {qos}")
            session.send(packet(_SUBACK, 0, packet_id + bytes(granted)))
        elif kind == _UNSUBSCRIBE:
            packet_id, at = body[:2], 2
            while at < len(body):
                topic_filter, at = _string(body, at)
                session.subscriptions.pop(topic_filter, None)
                self._note(session.client_id, "unsubscribe", topic_filter)
            session.send(packet(_UNSUBACK, 0, packet_id))
        elif kind == _PINGREQ:
            session.send(packet(_PINGRESP, 0, b""))
        elif kind == _PUBACK:
            pass  # acknowledgement of a QoS 1 delivery: nothing is redelivered
        else:
            raise _Closed(f"unsupported packet type {kind}")

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> int:
        """Deliver to every subscriber whose filter matches (at the lower QoS); returns how many got it."""
        with self._lock:
            sessions = list(self._sessions.values())
        delivered = 0
        for session in sessions:
            granted = [q for f, q in list(session.subscriptions.items()) if topic_matches(f, topic)]
            if granted:
                try:
                    session.deliver(topic, payload, min(max(granted), qos))
                    delivered += 1
                except OSError:
                    session.close()
        return delivered

    def _shadow(self, topic: str, thing: str, shadow_name: str | None, action: str, payload: bytes) -> None:
        """A shadow request through moto's iot-data backend; the answer on .../accepted or .../rejected."""
        from moto.core.exceptions import JsonRESTError, ServiceException
        from moto.iotdata.models import iotdata_backends

        backend = iotdata_backends[self.account_id][self.region]
        try:
            if action == "update":
                answer = backend.update_thing_shadow(thing, payload.decode(), shadow_name).to_response_dict()
            elif action == "get":
                answer = backend.get_thing_shadow(thing, shadow_name).to_dict()
            else:
                backend.delete_thing_shadow(thing, shadow_name)
                answer = {"timestamp": int(dt.datetime.now(dt.UTC).timestamp())}
            reply = f"{topic}/accepted"
        except (JsonRESTError, ServiceException, ValueError) as exc:  # ValueError: UnicodeDecodeError too
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            answer = {"code": getattr(exc, "code", 400), "message": message}
            reply = f"{topic}/rejected"
        self._note(None, "shadow " + reply.rsplit("/", 1)[1], topic)
        self.publish(reply, json.dumps(answer).encode(), 1)
