"""The lab's TLS server: moto behind twins of real chains on 127.0.0.1, the chain chosen by SNI, MQTT on
8883 and on 443 by ALPN, every handshake and request recorded, and one lab at a time per process
(``lab`` only; notebooks use ``lab.environment``)."""

from __future__ import annotations

import datetime as dt
import errno
import functools
import itertools
import logging
import os
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import _cache, _lab_mqtt, _lab_routing, bundles, endpoints
from helpers._io import atomic_write_bytes
from helpers._lab_twins import CHAINS, pki, trust_view, twin_roots
from helpers.incident import REGION
from helpers.kinds import InputError, KitError

if TYPE_CHECKING:
    import pandas as pd

FAKE_ACCESS_KEY_ID = "AKIAATSKITLABFAKEKEY"  # shaped like an access key; means nothing anywhere
FAKE_SECRET_ACCESS_KEY = "ats-kit-lab-fake-secret-access-key-000000"
_HANDSHAKE_TIMEOUT = 10.0
# The ATS server's cipher order: RSA first, so only a client offering no RSA suite gets the ECDSA chain
# (all four are on AWS IoT's documented list; see docs/evidence-ats-chains.md).
ATS_SERVER_CIPHERS = (
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384"
)
_account_numbers = itertools.count(1)
MQTT_PORT = endpoints.MQTT_PORT  # mutual TLS; 443 serves MQTT to clients offering MQTT_ALPN
MQTT_ALPN = endpoints.MQTT_ALPN
_log = logging.getLogger("helpers.lab")  # the lab's log, under the module notebooks know


class LabError(KitError, RuntimeError):
    """The lab cannot do what was asked (port in use, lab stopped, ...); the message is one line."""


def chain_for(server_name: str | None, region: str) -> str:
    """The chain the lab serves for a TLS server name: 'legacy' (VeriSign G5) or 'ats' (Amazon roots).

    Legacy: ``data.iot.<region>`` and account endpoints without ``-ats`` (``<prefix>.iot.<region>``).
    ATS: ``data-ats.iot.<region>``, ``<prefix>-ats.iot.<region>``, the control plane, anything else.
    """
    name = (server_name or "").lower().rstrip(".")
    suffix = f".iot.{region}.amazonaws.com"
    if not name.endswith(suffix):
        return "ats"
    prefix = name[: -len(suffix)]
    return "legacy" if "." not in prefix and not prefix.endswith("-ats") else "ats"


@functools.cache
def _moto_dispatcher():
    """moto's own server application (dispatches on the SigV4 signing name), shared by all labs."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return DomainDispatcherApplication(create_backend_app)


def _server_classes():
    """The TLS WSGI server and request handler classes (werkzeug and moto imported on first use)."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import ThreadedWSGIServer

    class Handler(MotoRequestHandler):
        """moto's request handler, logging each request into the lab instead of to stderr."""

        def log_request(self, code="-", size="-") -> None:
            self.server.lab._record_request(self, code)

        def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - werkzeug's signature
            _log.debug("%s: " + message, type, *args)

    class Server(ThreadedWSGIServer):
        """werkzeug's threaded server, doing each TLS handshake in the connection's own thread."""

        daemon_threads = True

        def __init__(
            self, lab: Lab, listener: socket.socket, front: ssl.SSLContext, *, mqtt_only: bool = False
        ) -> None:
            super().__init__("127.0.0.1", 0, lab._wsgi_app, Handler, fd=listener.fileno())
            self.lab, self.ssl_context, self.open_sockets = lab, front, set()
            self.mqtt_only = mqtt_only  # the 8883 listener: every connection is MQTT

        def finish_request(self, request, client_address) -> None:
            request.settimeout(_HANDSHAKE_TIMEOUT)
            tls = self.ssl_context.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
            self.open_sockets.add(tls)
            try:
                with self.lab._handshaking:
                    self.lab._in_flight += 1
                try:
                    tls.do_handshake()
                    error = None
                except (ssl.SSLError, OSError) as exc:
                    error = exc
                listener = _lab_mqtt_port_label(self.mqtt_only)
                self.lab._record_connection(tls, error, listener)
                if error is not None:
                    return
                tls.settimeout(None)
                if self.mqtt_only or tls.selected_alpn_protocol() == MQTT_ALPN:
                    if tls.getpeercert(binary_form=True):  # 443 asks for a certificate, MQTT needs one
                        self.lab._broker.serve(tls)
                    return
                super().finish_request(tls, client_address)
            finally:
                self.open_sockets.discard(tls)
                tls.close()

        def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - werkzeug's signature
            _log.debug("%s: " + message, type, *args)

    return Server


def _lab_mqtt_port_label(mqtt_only: bool) -> int:
    """The service port a listener stands for: 8883 (MQTT only) or 443."""
    return MQTT_PORT if mqtt_only else 443


def _listen(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:port (0 picks a free port); LabError if the port is taken."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if os.name == "posix":  # lets a fixed port be reused right after a stop (TIME_WAIT)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise LabError(
                f"127.0.0.1:{port} is already in use; pass port=0 for a free port or stop what listens there"
            ) from None
        raise LabError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror or exc}") from None
    return listener


_running: Lab | None = None  # the lab serving in this process, if any
_scoped: Lab | None = None  # the lab whose environment (running()) is open in this process, if any
_running_lock = threading.Lock()


def _refuse_another(lab: Lab) -> None:
    """LabError unless ``lab`` may start: no other lab serves and no other lab's environment is open
    (stopped or not), in any thread. Call with ``_running_lock`` held."""
    if _running is not None and _running is not lab and _running.is_running:
        raise LabError(
            f"{_running.label} is already running in this process: stop it first "
            "(leave its 'with' block, or run the notebook's last cell); one lab at a time"
        )
    if _scoped is not None and _scoped is not lab:
        raise LabError(
            f"the environment of {_scoped.label} is still open in this process: leave its "
            "'with' block first (or run the notebook's last cell); one lab at a time"
        )


def _release(lab: Lab) -> None:
    """Forget ``lab`` as the running one."""
    global _running
    with _running_lock:
        if _running is lab:
            _running = None


def open_scope(lab: Lab) -> None:
    """Mark ``lab``'s environment open (``lab.environment("lab")``): LabError if another lab serves or another
    lab's environment is open, in any thread."""
    global _scoped
    with _running_lock:
        _refuse_another(lab)
        _scoped = lab


def close_scope() -> None:
    """Mark the open lab environment closed (the end of ``lab.environment("lab")``'s 'with' block)."""
    global _scoped
    with _running_lock:
        _scoped = None


class Lab:
    """One lab server for one region: start/stop (both idempotent), routing, and what it has seen."""

    host = "127.0.0.1"

    def __init__(self, region: str = REGION, *, port: int = 0) -> None:
        endpoints.check_region(region)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise InputError(f"port={port!r}: use 0 (a free port) or a TCP port number up to 65535")
        self.region = region
        self.account_id = f"{999_000_000_000 + next(_account_numbers)}"  # isolates this lab's moto state
        self._requested_port = port
        self._port: int | None = None
        self._server = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._connections: list[dict] = []
        self._handshaking = threading.Condition()
        self._in_flight = 0  # handshakes accepted and not yet recorded
        self._requests: list[dict] = []
        self._mqtt_server = None
        self._mqtt_thread: threading.Thread | None = None
        self._broker = _lab_mqtt.Broker(self.account_id, region)
        self._files: tempfile.TemporaryDirectory | None = None  # served chains, device credentials
        self._device_contexts: dict[tuple[str, ...], dict[str, ssl.SSLContext]] = {}
        self._device_lock = threading.Lock()

    @property
    def label(self) -> str:
        """'lab ap-northeast-2 on 127.0.0.1:PORT' (or 'not started')."""
        where = f"127.0.0.1:{self._port}" if self._port else "(not started)"
        return f"lab {self.region} on {where}"

    def __repr__(self) -> str:
        return f"<{self.label}, {'running' if self.is_running else 'stopped'}>"

    @property
    def is_running(self) -> bool:
        """True between start() and stop()."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The TCP port the lab listens on (LabError if the lab is not running)."""
        self.require_running()
        return self._port

    @property
    def mqtt_port(self) -> int:
        """The port of the lab's MQTT listener (what the routing maps 8883 to; LabError if stopped)."""
        self.require_running()
        return self._mqtt_server.server_address[1]

    @property
    def files(self) -> Path:
        """The lab's private folder (0700): served chains and device credentials, removed at stop."""
        self.require_running()
        return Path(self._files.name)

    def require_running(self) -> None:
        """Raise a one-line LabError if the lab is stopped."""
        if not self.is_running:
            raise LabError(
                f"{self.label} is stopped: start a new one (in a notebook: run it again from the top)"
            )

    def start(self) -> Lab:
        """Start serving (no-op if already running); returns the lab. LabError if another lab runs in
        this process, or another lab's environment is still open (from any thread): one lab at a time
        keeps names, credentials and trust unambiguous."""
        global _running
        with self._lock:
            if self._server is not None:
                return self
            with _running_lock:
                _refuse_another(self)
                _running = self
            listeners = []
            try:
                server_class = _server_classes()
                self._files = tempfile.TemporaryDirectory(prefix="atskit-lab-")
                self._write_chains()
                listeners.append(_listen(self._requested_port))
                listeners.append(_listen(0))
                self._server = server_class(self, listeners[0], self._front_context(ssl.CERT_OPTIONAL))
                self._mqtt_server = server_class(
                    self, listeners[1], self._front_context(ssl.CERT_REQUIRED), mqtt_only=True
                )
            except BaseException:
                for server in (self._server, self._mqtt_server):
                    if server is not None:
                        server.server_close()
                self._server = self._mqtt_server = None
                if self._files is not None:
                    self._files.cleanup()
                _release(self)
                raise
            finally:
                for listener in listeners:
                    listener.close()  # each server holds its own duplicate of the descriptor
            self._port = self._server.server_address[1]
            self._thread, self._mqtt_thread = (
                threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
                for server in (self._server, self._mqtt_server)
            )
            self._thread.name = f"atskit-{self.label}"
            self._mqtt_thread.name = f"atskit-{self.label}-mqtt"
            self._thread.start()
            self._mqtt_thread.start()
            return self

    def stop(self) -> None:
        """Stop serving, close open connections and drop this lab's moto state (no-op if stopped)."""
        with self._lock:
            server, self._server = self._server, None
            if server is None:
                return
            mqtt_server, self._mqtt_server = self._mqtt_server, None
            for each in (server, mqtt_server):
                each.shutdown()
                each.server_close()
            _release(self)
            self._broker.close_all()
            for tls in [*server.open_sockets, *mqtt_server.open_sockets]:
                with suppress(OSError):
                    tls.shutdown(socket.SHUT_RDWR)
            self._thread.join(timeout=5)
            self._mqtt_thread.join(timeout=5)
            self._files.cleanup()
            self._device_contexts.clear()
            _drop_moto_state(self.account_id)

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @contextmanager
    def route(self) -> Iterator[Lab]:
        """Within the block, ``*.amazonaws.com`` reaches this lab from this process; other names are
        refused."""
        self.require_running()
        port = self._port
        route = _lab_routing.Route(
            self.label,
            self.region,
            port,
            lambda: self.is_running and self._port == port,
            ports={MQTT_PORT: self.mqtt_port},
        )
        with _lab_routing.routed(route):
            yield self

    def _write_chains(self) -> None:
        """Write each served chain and its key into the lab's private folder (read by every context)."""
        lab_pki = pki()
        for chain_id in CHAINS:
            leaf = lab_pki.leaves(self.region)[chain_id]
            served = b"".join(lab_pki.served_chain_pems(chain_id, self.region))
            atomic_write_bytes(Path(self._files.name, f"{chain_id}.pem"), served, mode=0o600)
            atomic_write_bytes(Path(self._files.name, f"{chain_id}.key"), leaf.private_key_pem, mode=0o600)

    def _tls_contexts(
        self, trusted: tuple[str, ...] = (), verify_mode: ssl.VerifyMode = ssl.CERT_OPTIONAL
    ) -> dict[str, ssl.SSLContext]:
        """Server contexts per chain: 'legacy' (RSA) and 'ats' (RSA and ECDSA, RSA preferred).

        As real ATS endpoints do (docs/evidence-ats-chains.md), the ATS context serves the RSA chain to
        any client that offers an RSA suite (Python's default context, OpenSSL, mbedTLS) and the ECDSA
        chain only to a client offering nothing else: the server's cipher order puts ECDHE-RSA first,
        and TLS is capped at 1.2, since under TLS 1.3 OpenSSL picks the certificate by signature
        algorithm (ECDSA first) and Python's ssl cannot set a server's. The ATS context is the one a
        handshake starts in, so its version cap holds for legacy names too (docs/design.md).

        Client certificates: ``trusted`` (PEM texts, moto's ACTIVE device certificates) are the only
        trust anchors (partial chains allowed: a device certificate is its own anchor). ``verify_mode``
        counts only in the context a handshake starts in (OpenSSL keeps it across the SNI switch).
        Both offer ALPN ``x-amzn-mqtt-ca`` before ``http/1.1``.
        """
        contexts = {}
        for chain_id in CHAINS:
            served = "legacy" if chain_id == "legacy" else "ats"
            if served not in contexts:
                context = contexts[served] = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                if served == "ats":
                    context.maximum_version = ssl.TLSVersion.TLSv1_2
                    context.set_ciphers(ATS_SERVER_CIPHERS)
                context.set_alpn_protocols([MQTT_ALPN, "http/1.1"])
                context.verify_mode = verify_mode
                context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
                if trusted:
                    context.load_verify_locations(cadata="".join(trusted))
            contexts[served].load_cert_chain(
                Path(self._files.name, f"{chain_id}.pem"), Path(self._files.name, f"{chain_id}.key")
            )
        return contexts

    def _front_context(self, verify_mode: ssl.VerifyMode) -> ssl.SSLContext:
        """The context a listener's handshakes start in: 443 asks for a client certificate
        (CERT_OPTIONAL), 8883 demands one (CERT_REQUIRED); its SNI callback picks the chain."""
        front = self._tls_contexts(verify_mode=verify_mode)["ats"]
        front.sni_callback = self._on_sni()
        return front

    def _trusted_device_certificates(self) -> tuple[str, ...]:
        """The PEM texts of the certificates moto holds as ACTIVE for this lab's account and region."""
        from moto.iot.models import iot_backends

        if self.account_id not in iot_backends:
            return ()
        certificates = iot_backends[self.account_id][self.region].certificates
        return tuple(sorted(c.certificate_pem for c in list(certificates.values()) if c.status == "ACTIVE"))

    def _contexts_now(self) -> dict[str, ssl.SSLContext]:
        """The served contexts trusting the device certificates active right now (made once per set)."""
        trusted = self._trusted_device_certificates()
        with self._device_lock:
            contexts = self._device_contexts.get(trusted)
            if contexts is None:
                if len(self._device_contexts) > 16:
                    self._device_contexts.clear()
                contexts = self._device_contexts[trusted] = self._tls_contexts(trusted)
            return contexts

    def _on_sni(self):
        """The SNI callback: note the server name and switch to the chain it gets, trusting the device
        certificates active at this moment (so a certificate made INACTIVE is refused from then on)."""

        def choose(tls: ssl.SSLSocket, server_name: str | None, _context: ssl.SSLContext) -> None:
            tls.atskit_server_name = server_name
            tls.context = self._contexts_now()[chain_for(server_name, self.region)]

        return choose

    def _wsgi_app(self, environ, start_response):
        """moto's application, with this lab's account id so two labs never share state."""
        environ["HTTP_X_MOTO_ACCOUNT_ID"] = self.account_id
        return _moto_dispatcher()(environ, start_response)

    def _record_connection(self, tls: ssl.SSLSocket, error: BaseException | None, port: int = 443) -> None:
        """Remember one TLS handshake and how it ended (``port``: 443 or 8883, the service port)."""
        server_name = getattr(tls, "atskit_server_name", None)
        with self._handshaking:
            self._in_flight -= 1
            self._handshaking.notify_all()
            self._connections.append(
                {
                    "at": dt.datetime.now(dt.UTC),
                    "server_name": server_name,
                    "chain": chain_for(server_name, self.region),
                    "outcome": "failed" if error else "ok",
                    "tls_version": None if error else tls.version(),
                    "cipher": None if error else tls.cipher()[0],
                    "error": " ".join(str(error).split()) if error else None,
                    "port": port,
                    "alpn": None if error else tls.selected_alpn_protocol(),
                    "client_cert": None if error else bool(tls.getpeercert(binary_form=True)),
                }
            )

    def _record_request(self, handler, code) -> None:
        """Remember one HTTP request the lab answered."""
        server_name = getattr(handler.connection, "atskit_server_name", None)
        self._requests.append(
            {
                "at": dt.datetime.now(dt.UTC),
                "server_name": server_name,
                "method": handler.command,
                "path": handler.path.split("?", 1)[0],
                "status": int(code) if isinstance(code, int) or str(code).isdigit() else None,
            }
        )

    def connections(self, *, settle: float = 2.0) -> pd.DataFrame:
        """One row per TLS handshake the lab saw: server name (SNI), chain served, outcome, error, service
        port (443 or 8883), ALPN protocol chosen and whether a client certificate was verified.

        Waits up to ``settle`` seconds for handshakes still in progress (a client that gave up may be
        a moment ahead of the server thread recording its side).
        """
        with self._handshaking:
            self._handshaking.wait_for(lambda: self._in_flight == 0, timeout=settle)
        import pandas as pd

        columns = ["at", "server_name", "chain", "outcome", "tls_version", "cipher", "error"]
        columns += ["port", "alpn", "client_cert"]
        return pd.DataFrame(list(self._connections), columns=columns)

    def requests(self) -> pd.DataFrame:
        """One row per HTTP request answered: server name, method, path, status."""
        import pandas as pd

        return pd.DataFrame(list(self._requests), columns=["at", "server_name", "method", "path", "status"])

    def mqtt_events(self) -> pd.DataFrame:
        """What the lab's MQTT broker saw: one row per connect, publish, subscribe, shadow answer, close."""
        import pandas as pd

        columns = ["at", "client_id", "event", "topic", "detail"]
        return pd.DataFrame(list(self._broker.events), columns=columns)

    def cleared_environ(self) -> dict[str, str | None]:
        """What the lab takes out of the environment for its scope (AWS settings, CA files, proxies),
        so nothing of the caller's points elsewhere; it puts nothing of its own in: child processes
        never inherit the lab's credentials or trust view."""
        values: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AWS_")}
        values |= {name: None for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "MOTO_ACCOUNT_ID")}
        return values | {name: None for name in os.environ if name.lower().endswith("_proxy")}

    def session(self, trust: str | bundles.Bundle | None = None):
        """A boto3 Session for the lab: fake credentials, the lab's region, and a config file of its
        own naming the trust view (default: the installed certifi's, what botocore would use here) and
        botocore's standard retry mode. Its CA bundle ranks as a config file's: an ``AWS_CA_BUNDLE``
        set on purpose (``botocore_env``) still wins, as in botocore's own order."""
        import boto3
        import botocore.session

        view = trust_view(trust) if trust is not None else _installed_view()
        config = _cache.private_dir("lab") / f"config-{self.region}-{view.path().stem[-16:]}"
        text = f"[default]\nregion = {self.region}\nca_bundle = {view.path()}\nretry_mode = standard\n"
        if not (config.is_file() and config.read_text() == text):
            atomic_write_bytes(config, text.encode(), mode=0o600)
        core = botocore.session.Session()
        core.set_config_variable("config_file", str(config))
        core.set_config_variable("credentials_file", os.devnull)
        return boto3.session.Session(
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
            botocore_session=core,
        )

    def setup_client(self, service: str, *, session=None):
        """A boto3 client for the lab's own setup calls: fake keys, trusting the twin roots, no retries.

        ``session``: the boto3 Session to make it from (default: a new one with the fake keys).
        """
        import boto3
        from botocore.config import Config

        if session is None:
            session = boto3.session.Session(
                aws_access_key_id=FAKE_ACCESS_KEY_ID,
                aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
                region_name=self.region,
            )
        config = Config(retries={"max_attempts": 1})
        return session.client(service, region_name=self.region, verify=str(twin_roots_path()), config=config)


@functools.cache
def _installed_view() -> bundles.Bundle:
    """The lab trust view of the installed certifi (what botocore uses here), made once."""
    return trust_view(bundles.installed_certifi())


def twin_roots_path() -> Path:
    """PEM file of the twin roots alone (the lab's own setup calls trust it), checked each time."""
    return _twin_roots_bundle().path()


@functools.cache
def _twin_roots_bundle() -> bundles.Bundle:
    """The twin roots as one Bundle, made once (its file is checked by ``path()`` at each use)."""
    return twin_roots()


def _drop_moto_state(account_id: str) -> None:
    """Forget what moto holds for one lab account: IoT things and shadows, and the IAM backend moto
    makes for each account it sees a request from."""
    from moto.iam.models import iam_backends
    from moto.iot.models import iot_backends
    from moto.iotdata.models import iotdata_backends

    for backends in (iot_backends, iotdata_backends, iam_backends):
        if account_id in backends:
            del backends[account_id]
