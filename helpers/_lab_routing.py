"""Process-local routing for the lab: ``*.amazonaws.com`` resolves to a lab; nothing else leaves the machine.

While at least one route is active, ``socket.getaddrinfo`` is replaced in this process: AWS names go to
the 127.0.0.1 port of the lab serving their region (the innermost lab if none does), loopback names
resolve as usual, anything else is refused. An audit hook also refuses ``connect``/``sendto`` to any
non-loopback address, so code that skips ``getaddrinfo`` cannot leave either. When the last route ends,
the original ``socket.getaddrinfo`` object is put back.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

AWS_SUFFIX = ".amazonaws.com"
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


@dataclass(frozen=True, eq=False)
class Route:
    """One lab's claim on AWS names: its region, its port, and whether it is still serving."""

    label: str
    region: str
    port: int
    is_serving: Callable[[], bool]


_lock = threading.RLock()
_routes: list[Route] = []
_saved_getaddrinfo = socket.getaddrinfo  # what routing replaced (re-read when the first route starts)
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
    """``socket.getaddrinfo`` while routing: AWS names -> the lab, loopback as usual, the rest refused."""
    name = host.decode("idna") if isinstance(host, bytes) else host
    if name is None or _is_loopback(name):
        return _saved_getaddrinfo(host, port, family, type, proto, flags)
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
    if family not in (0, socket.AF_INET, socket.AF_UNSPEC):
        raise socket.gaierror(socket.EAI_FAMILY, f"{name}: the lab listens on IPv4 127.0.0.1 only")
    sock_type = type or socket.SOCK_STREAM
    return [(socket.AF_INET, sock_type, proto or socket.IPPROTO_TCP, "", ("127.0.0.1", route.port))]


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
    global _hook_installed, _saved_getaddrinfo
    with _lock:
        if not _hook_installed:
            sys.addaudithook(_audit)  # cannot be removed; inert while no route is active
            _hook_installed = True
        if not _routes:
            _saved_getaddrinfo = socket.getaddrinfo
            socket.getaddrinfo = _routed_getaddrinfo
        _routes.append(route)
    try:
        yield route
    finally:
        with _lock:
            _routes.remove(route)
            if not _routes:
                socket.getaddrinfo = _saved_getaddrinfo


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
