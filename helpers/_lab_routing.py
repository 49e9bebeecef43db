"""Process-local routing for the lab: ``*.amazonaws.com`` resolves to a lab; no other name is resolved.

While a route is active, in this process:

- replaced: ``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``, ``gethostbyaddr`` and ``getnameinfo``
  of both ``socket`` and ``_socket`` (so ``create_connection``, ``create_server`` and ``getfqdn`` too);
  ``connect``, ``connect_ex``, ``bind``, ``sendto`` and ``sendmsg`` of ``socket.socket`` given a name; and
  ``_socket.socket`` names a subclass doing the same, so a raw socket made during the route is routed.
  AWS names go to the lab's 127.0.0.1 port (a route's ``ports`` sends some service ports, MQTT's 8883,
  to another lab listener; ``bind`` keeps the port given), loopback names resolve as usual, any other
  name is refused in one line (``socket.gaierror``), and so is a reverse lookup of an address that is
  not loopback.
- an audit hook refuses what the replacements cannot reach (a function or socket taken before the route
  began, code calling ``_socket``'s C functions): lookups of names or addresses that are not loopback
  (events ``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyaddr``, ``getnameinfo``), ``connect``,
  ``sendto`` and ``sendmsg`` to an address that is not loopback, ``bind`` to a name. An audit hook cannot
  be removed: it does nothing while no route is active.

When the last route ends, every original is put back exactly (a method ``socket.socket`` inherited is
inherited again); a replacement kept from inside a route behaves as its original once no route is active.

Not contained: a socket made before the route began resolves a name given to its ``connect``, ``bind``,
``sendto`` or ``sendmsg`` in C before Python or the audit hook sees it (the hook then refuses the
connection or datagram, but the lookup has been made); C code resolving with the C library itself; child
processes (routing is per process).
"""

from __future__ import annotations

import _socket
import functools
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
_RAW_SOCKET = _socket.socket  # the C socket type, whatever _socket.socket names during a route


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


def _text(host) -> str | None:
    """A host as text (bytes decoded as IDNA); None stays None."""
    return host.decode("idna") if isinstance(host, bytes) else host


def _is_ip(host: str) -> bool:
    """True for an IP literal (an IPv6 one may carry a %scope)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    """True for localhost names and loopback IP literals."""
    if host.lower().rstrip(".") in _LOOPBACK_NAMES or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_name(host) -> bool:
    """A host name that needs resolving (not an IP literal, not loopback, not '' for "any address")."""
    if not isinstance(host, str | bytes):
        return False
    name = _text(host)
    return name != "" and not _is_ip(name) and not _is_loopback(name)


def _refused(host: str, why: str = "only *.amazonaws.com and loopback") -> socket.gaierror:
    """The one-line refusal of a name (or an address's reverse lookup) while routing."""
    return socket.gaierror(socket.EAI_NONAME, f"{host}: not resolved inside the ATS kit lab ({why})")


def _route_for(host: str) -> Route | None:
    """The route for an AWS name: the innermost lab of the name's region, else the innermost lab."""
    labels = host.lower().rstrip(".").split(".")
    with _lock:
        for route in reversed(_routes):
            if route.region in labels:
                return route
        return _routes[-1] if _routes else None


def _lab_address(name: str, port=None) -> tuple[str, int]:
    """The lab's (127.0.0.1, port) for an AWS name and service port; gaierror in one line for other names."""
    route = _route_for(name) if name.lower().rstrip(".").endswith(AWS_SUFFIX) else None
    if route is None:
        raise _refused(name)
    if not route.is_serving():
        raise socket.gaierror(
            socket.EAI_NONAME, f"{name}: {route.label} is stopped; start it again or leave its 'with' block"
        )
    try:
        service_port = int(port) if port is not None else None
    except (TypeError, ValueError):  # a service name such as "https"
        service_port = None
    return "127.0.0.1", route.ports.get(service_port, route.port)


def _original_once_unrouted(key: str):
    """Make a replacement call the original ``key`` while no route is active (a reference taken inside
    a lab behaves as the original after it)."""

    def wrap(replacement):
        @functools.wraps(replacement)
        def call(*args, **kwargs):
            return (replacement if _routes else _saved[key])(*args, **kwargs)

        return call

    return wrap


@_original_once_unrouted("_socket.getaddrinfo")
def _routed_getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # noqa: A002 - socket's own names
    """``getaddrinfo`` while routing: AWS names -> the lab, loopback as usual, the rest refused."""
    if not _is_name(host):
        return _saved["_socket.getaddrinfo"](host, port, family, type, proto, flags)
    name = _text(host)
    _, lab_port = _lab_address(name, port)
    if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
        raise socket.gaierror(socket.EAI_FAMILY, f"{name}: the lab listens on IPv4 127.0.0.1 only")
    sock_type = type or socket.SOCK_STREAM
    return [(socket.AF_INET, sock_type, proto or socket.IPPROTO_TCP, "", ("127.0.0.1", lab_port))]


@_original_once_unrouted("_socket.gethostbyname")
def _routed_gethostbyname(host):
    """``gethostbyname`` while routing: AWS names -> 127.0.0.1 (the lab), loopback as usual, else refused."""
    return _lab_address(_text(host))[0] if _is_name(host) else _saved["_socket.gethostbyname"](host)


@_original_once_unrouted("_socket.gethostbyname_ex")
def _routed_gethostbyname_ex(host):
    """``gethostbyname_ex`` while routing (see :func:`_routed_gethostbyname`)."""
    if not _is_name(host):
        return _saved["_socket.gethostbyname_ex"](host)
    name = _text(host)
    return name, [], [_lab_address(name)[0]]


@_original_once_unrouted("_socket.gethostbyaddr")
def _routed_gethostbyaddr(host):
    """``gethostbyaddr`` (and so ``getfqdn``) while routing: loopback as usual, AWS names -> 127.0.0.1,
    other names and the reverse lookup of any other address refused."""
    name = _text(host)
    if not isinstance(name, str) or _is_loopback(name):
        return _saved["_socket.gethostbyaddr"](host)
    if _is_ip(name):
        raise _refused(name, "a reverse lookup leaves the machine")
    return name, [], [_lab_address(name)[0]]


@_original_once_unrouted("_socket.getnameinfo")
def _routed_getnameinfo(sockaddr, flags):
    """``getnameinfo`` while routing: loopback as usual; an AWS name is the lab's 127.0.0.1; another
    address only numerically (``NI_NUMERICHOST``); other names refused. The service part is the original's."""
    original = _saved["_socket.getnameinfo"]
    host = _text(sockaddr[0]) if isinstance(sockaddr, tuple) and sockaddr else None
    if not isinstance(host, str) or _is_loopback(host):
        return original(sockaddr, flags)
    if _is_ip(host):
        if not flags & socket.NI_NUMERICHOST:
            raise _refused(host, "a reverse lookup leaves the machine")
        numeric = host.split("%", 1)[0]
        answer = str(ipaddress.ip_address(numeric)) + host[len(numeric) :]
    else:
        lab_host = _lab_address(host)[0]  # refuses names other than AWS ones
        answer = lab_host if flags & socket.NI_NUMERICHOST else host
    numeric_flags = (flags | socket.NI_NUMERICHOST) & ~socket.NI_NAMEREQD
    service = original(("127.0.0.1", *sockaddr[1:2]), numeric_flags)[1]
    return answer, service


def _routed_address(address):
    """A socket address with an AWS name replaced by the lab's address (other names refused)."""
    if _routes and isinstance(address, tuple) and address and _is_name(address[0]):
        return _lab_address(_text(address[0]), address[1] if len(address) > 1 else None)
    return address


def _bound_address(address):
    """An address to bind: an AWS name is the lab's 127.0.0.1 (the port kept); other names refused."""
    if _routes and isinstance(address, tuple) and address and _is_name(address[0]):
        return (_lab_address(_text(address[0]))[0], *address[1:])
    return address


def _socket_methods(original: Callable[[str], Callable]) -> dict[str, Callable]:
    """``connect``, ``connect_ex``, ``bind``, ``sendto`` and ``sendmsg`` routing the address they are
    given, then calling ``original(method name)``."""

    def connect(self, address):
        return original("connect")(self, _routed_address(address))

    def connect_ex(self, address):
        return original("connect_ex")(self, _routed_address(address))

    def bind(self, address):
        return original("bind")(self, _bound_address(address))

    def sendto(self, data, *flags_and_address):
        if flags_and_address:  # sendto(data, address) or sendto(data, flags, address)
            flags_and_address = (*flags_and_address[:-1], _routed_address(flags_and_address[-1]))
        return original("sendto")(self, data, *flags_and_address)

    def sendmsg(self, buffers, *rest):  # sendmsg(buffers[, ancdata[, flags[, address]]])
        if len(rest) >= 3:
            rest = (*rest[:2], _routed_address(rest[2]), *rest[3:])
        return original("sendmsg")(self, buffers, *rest)

    return {"connect": connect, "connect_ex": connect_ex, "bind": bind, "sendto": sendto, "sendmsg": sendmsg}


# what _socket.socket names during a route: the C socket type, routing the names given to it
_RoutedRawSocket = type(
    "socket",
    (_RAW_SOCKET,),
    {"__slots__": (), "__module__": __name__, **_socket_methods(lambda method: getattr(_RAW_SOCKET, method))},
)


_SOCKET_METHODS = _socket_methods(lambda method: _saved[f"socket.{method}"])

# (module or class, attribute, replacement): the ways Python resolves a name that can be replaced
_PATCHES = (
    *(
        (module, attribute, replacement)
        for attribute, replacement in (
            ("getaddrinfo", _routed_getaddrinfo),
            ("gethostbyname", _routed_gethostbyname),
            ("gethostbyname_ex", _routed_gethostbyname_ex),
            ("gethostbyaddr", _routed_gethostbyaddr),
            ("getnameinfo", _routed_getnameinfo),
        )
        for module in (socket, _socket)
    ),
    *((socket.socket, attribute, method) for attribute, method in _SOCKET_METHODS.items()),
    (_socket, "socket", _RoutedRawSocket),
)
_saved: dict[str, object] = {}  # key -> what the attribute gave before the route (called by replacements)
_own: set[str] = set()  # keys whose attribute was the owner's own (the rest were inherited)


def _key(owner, attribute: str) -> str:
    return f"{'socket' if owner in (socket, socket.socket) else '_socket'}.{attribute}"


_LOOKUP_EVENTS = {"socket.getaddrinfo", "socket.gethostbyname"}  # args[0]: the host
_REVERSE_EVENTS = {"socket.gethostbyaddr", "socket.getnameinfo"}  # args[0]: the host, or (host, port)
_SEND_EVENTS = {"socket.connect", "socket.sendto", "socket.sendmsg"}  # args: (socket, address or None)


def _audit(event: str, args: tuple) -> None:
    """Audit hook: while routing, refuse what the replacements could not route (see the module's text)."""
    if not _routes or not event.startswith("socket."):
        return
    if event in _LOOKUP_EVENTS or event in _REVERSE_EVENTS:
        host = args[0][0] if event == "socket.getnameinfo" and isinstance(args[0], tuple) else args[0]
        host = _text(host)
        reverse = event in _REVERSE_EVENTS
        if isinstance(host, str) and (_is_name(host) or (reverse and not _is_loopback(host))):
            raise _refused(host, "called around the lab's routing")
        return
    if event not in _SEND_EVENTS and event != "socket.bind":
        return
    sock, address = args[0], args[-1]
    if getattr(sock, "family", None) not in (socket.AF_INET, socket.AF_INET6) or address is None:
        return
    host = _text(address[0] if isinstance(address, tuple) and address else address)
    host = str(host)
    if _is_name(host):  # a socket made before the route resolved it already; its connection is refused
        raise _refused(host, "a socket made before the lab is not routed")
    if event != "socket.bind" and not _is_loopback(host):
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
            _own.clear()
            for owner, attribute, _ in _PATCHES:
                key = _key(owner, attribute)
                _saved[key] = getattr(owner, attribute)
                if attribute in vars(owner):
                    _own.add(key)
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
                    key = _key(owner, attribute)
                    if key in _own:
                        setattr(owner, attribute, _saved[key])
                    else:
                        delattr(owner, attribute)


_environ_layers: list[dict[str, str | None]] = []  # each open environ() block's saved values, oldest first


def _set_environ(values: Mapping[str, str | None]) -> None:
    """Set each variable, or unset it where the value is None."""
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def environ(values: Mapping[str, str | None]) -> Iterator[dict[str, str | None]]:
    """Set (or, for None, unset) environment variables for the block; restore the previous values after.

    Blocks may end in any order: a variable that a later block, still open, also set keeps that block's
    value, and that block puts back the value from before this one when it ends.
    """
    with _lock:
        saved = {name: os.environ.get(name) for name in values}
        _environ_layers.append(saved)
    try:
        with _lock:
            _set_environ(values)
        yield dict(values)
    finally:
        with _lock:
            index = next(i for i, layer in enumerate(_environ_layers) if layer is saved)
            del _environ_layers[index]
            for name, value in saved.items():
                later = next((layer for layer in _environ_layers[index:] if name in layer), None)
                if later is not None:
                    later[name] = value
                else:
                    _set_environ({name: value})
