"""A package index on 127.0.0.1 for tests (PEP 691 JSON pages and files): shared by the certifi and
botocore fetch tests, so neither depends on PyPI."""

from __future__ import annotations

import http.server
import socket
import threading

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


def serve(routes: dict[str, tuple[str, bytes]]):
    """Start a threaded HTTP server for ``routes`` (path -> (content type, body)) on 127.0.0.1;
    return (server, port)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            content_type, body = routes.get(self.path.split("?")[0], ("text/plain", None))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
