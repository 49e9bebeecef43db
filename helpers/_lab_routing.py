"""Process-local routing for the lab: ``*.amazonaws.com`` resolves to a lab; nothing else leaves the machine.

While a route is active, every name-resolution path Python offers is replaced in this process:
``getaddrinfo``, ``gethostbyname`` and ``gethostbyname_ex`` of both ``socket`` and ``_socket``, and
``connect``, ``connect_ex`` and ``sendto`` of ``socket.socket`` given a name. AWS names go to the lab's
127.0.0.1 port (a route's ``ports`` sends some service ports, MQTT's 8883, to another lab listener),
loopback names resolve as usual, anything else is refused in one line. An audit hook also
refuses ``connect``/``sendto`` to any non-loopback address. When the route ends, every original is put
back.
"""

from __future__ import annotations

import _socket
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

AWS_SUFFIX = ".amazonaws.com"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


@dataclass(frozen=True, eq=False)
class Route:
    """One lab's claim on AWS names: its region, its port, whether it is still serving, and other ports
    (service port -> lab port, e.g. {8883: port of the lab's MQTT listener}); any other port -> ``port``."""

    label: str
    region: str
    port: int
    is_serving: Callable[[], bool]
    ports: Mapping[int, int] = field(default_factory=dict)


_lock = threading.RLock()
_routes: list[Route] = []
_hook_installed = False


def active_routes() -> list[Route]:
    """The routes in force, outermost first."""
    with _lock:
        return list(_routes)


def _is_loopback(host: str) -> bool:
    """True for localhost names and loopback IP literals."""
    if host.lower().rstrip(".") in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _route_for(host: str) -> Route | None:
    """The route for an AWS name: the innermost lab of the name's region, else the innermost lab."""
    labels = host.lower().rstrip(".").split(".")
    with _lock:
        for route in reversed(_routes):
            if route.region in labels:
                return route
        return _routes[-1] if _routes else None


def _routed_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's own names
    """``getaddrinfo`` while routing: AWS names -> the lab, loopback as usual, the rest refused."""
    name = host.decode("idna") if isinstance(host, bytes) else host
    if name is None or not _is_name(name):
        return _saved["_socket.getaddrinfo"](host, port, family, type, proto, flags)
    _, lab_port = _lab_address(name, port)
    if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
        raise socket.gaierror(socket.EAI_FAMILY, f"{name}: the lab listens on IPv4 127.0.0.1 only")
    sock_type = type or socket.SOCK_STREAM
    return [(socket.AF_INET, sock_type, proto or socket.IPPROTO_TCP, "", ("127.0.0.1", lab_port))]


def _lab_address(name: str, port=None) -> tuple[str, int]:
    """The lab's (127.0.0.1, port) for an AWS name and service port; gaierror in one line for other names."""
    route = _route_for(name) if name.lower().rstrip(".").endswith(AWS_SUFFIX) else None
    if route is None:
        raise socket.gaierror(
            socket.EAI_NONAME,
            f"{name}: not resolved inside the ATS kit lab (only *.amazonaws.com and loopback)",
        )
    if not route.is_serving():
        raise socket.gaierror(
            socket.EAI_NONAME, f"{name}: {route.label} is stopped; start it again or leave its 'with' block"
        )
    try:
        service_port = int(port) if port is not None else None
    except (TypeError, ValueError):  # a service name such as "https"
        service_port = None
    return "127.0.0.1", route.ports.get(service_port, route.port)


def _is_name(host) -> bool:
    """A host name that needs resolving (not an IP literal, not loopback)."""
    if not isinstance(host, str | bytes):
        return False
    name = host.decode("idna") if isinstance(host, bytes) else host
    try:
        ipaddress.ip_address(name.split("%", 1)[0])
        return False
    except ValueError:
        return not _is_loopback(name)


def _routed_gethostbyname(host):
    """``gethostbyname`` while routing: AWS names -> 127.0.0.1 (the lab), loopback as usual, else refused."""
    name = host.decode("idna") if isinstance(host, bytes) else host
    return _lab_address(name)[0] if _is_name(name) else _saved["_socket.gethostbyname"](host)


def _routed_gethostbyname_ex(host):
    """``gethostbyname_ex`` while routing (see :func:`_routed_gethostbyname`)."""
    name = host.decode("idna") if isinstance(host, bytes) else host
    if not _is_name(name):
        return _saved["_socket.gethostbyname_ex"](host)
    return name, [], [_lab_address(name)[0]]


def _routed_address(address):
    """A socket address with an AWS name replaced by the lab's address (other names refused)."""
    if isinstance(address, tuple) and address and _is_name(address[0]):
        name = address[0].decode("idna") if isinstance(address[0], bytes) else address[0]
        return _lab_address(name, address[1] if len(address) > 1 else None)
    return address


def _connect(self, address):
    return _saved["socket.connect"](self, _routed_address(address))


def _connect_ex(self, address):
    return _saved["socket.connect_ex"](self, _routed_address(address))


def _sendto(self, data, *flags_and_address):
    *flags, address = flags_and_address
    return _saved["socket.sendto"](self, data, *flags, _routed_address(address))


# (module or class, attribute, replacement): every way Python resolves a name
_PATCHES = (
    (socket, "getaddrinfo", _routed_getaddrinfo),
    (_socket, "getaddrinfo", _routed_getaddrinfo),
    (socket, "gethostbyname", _routed_gethostbyname),
    (_socket, "gethostbyname", _routed_gethostbyname),
    (socket, "gethostbyname_ex", _routed_gethostbyname_ex),
    (_socket, "gethostbyname_ex", _routed_gethostbyname_ex),
    (socket.socket, "connect", _connect),
    (socket.socket, "connect_ex", _connect_ex),
    (socket.socket, "sendto", _sendto),
)
_saved: dict[str, object] = {}


def _key(owner, attribute: str) -> str:
    return f"{'socket' if owner in (socket, socket.socket) else '_socket'}.{attribute}"


def _audit(event: str, args: tuple) -> None:
    """Audit hook: while routing, refuse connect/sendto to any address that is not loopback."""
    if event not in ("socket.connect", "socket.sendto") or not _routes:
        return
    sock, address = args[0], args[-1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6):
        return
    host = address[0] if isinstance(address, tuple) and address else str(address)
    host = host.decode("idna") if isinstance(host, bytes) else str(host)
    if not _is_loopback(host):
        raise PermissionError(f"{host}: connections off this machine are blocked while an ATS kit lab routes")


@contextmanager
def routed(route: Route) -> Iterator[Route]:
    """Route AWS names to ``route`` for the duration of the block (scopes may nest and overlap)."""
    global _hook_installed
    with _lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # cannot be removed; inert while no route is active
            _hook_installed = True
        if not _routes:
            for owner, attribute, _ in _PATCHES:
                _saved[_key(owner, attribute)] = getattr(owner, attribute)
            for owner, attribute, replacement in _PATCHES:
                setattr(owner, attribute, replacement)
        _routes.append(route)
    try:
        yield route
    finally:
        with _lock:
            _routes.remove(route)
            if not _routes:
                for owner, attribute, _ in _PATCHES:
                    setattr(owner, attribute, _saved[_key(owner, attribute)])


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set each variable, or unset it where the value is None."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[dict[str, str | None]]:
    """Set (or, for None, unset) environment variables for the block; restore the previous values after."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        _set_environ(values)
        yield dict(values)
    finally:
        _set_environ(saved)
