"""Package indexes on 127.0.0.1 for tests, so none depends on PyPI: ``serve(routes)`` for a test's own
pages and files, and ``serve_index()`` for tests/data/index (a partial PyPI mirror) as a PEP 691 index:
JSON pages and PEP 658 ``.metadata`` files.

The mirror's wheels themselves answer 404, so whoever resolves against it works from metadata alone.
With ``upload_times=False`` its pages leave out PEP 700's ``upload-time`` (and say API version 1.0), as
an older mirror would.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

INDEX_DIR = Path(__file__).resolve().parent / "data" / "index"
JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class LocalIndex:
    """A running local index: its simple-API URL and the paths it was asked for."""

    url: str
    requested: list[str] = field(default_factory=list)

    @property
    def projects(self) -> list[str]:
        """The projects the index serves."""
        return sorted(p.stem for p in INDEX_DIR.glob("*.json"))


def _page(project: str, base: str, *, upload_times: bool) -> bytes | None:
    """The project's JSON page with file URLs pointing at this server, or None when there is none."""
    path = INDEX_DIR / f"{project}.json"
    if not path.is_file():
        return None
    page = json.loads(path.read_text())
    for entry in page["files"]:
        entry["url"] = f"{base}/files/{entry['filename']}"
        if not upload_times:
            entry.pop("upload-time", None)
    if not upload_times:
        page["meta"]["api-version"] = "1.0"
        page.pop("versions", None)
    return json.dumps(page).encode()


def serve(routes: dict[str, tuple[str, bytes]], *, requested: list[str] | None = None):
    """Start a threaded HTTP server for ``routes`` (path -> (content type, body); read per request, so
    it may be filled after the start) on 127.0.0.1; return (server, port). ``requested`` collects paths."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if requested is not None:
                requested.append(self.path)
            content_type, body = routes.get(self.path.split("?")[0], ("text/plain", None))
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_index(*, upload_times: bool = True) -> Iterator[LocalIndex]:
    """Run the mirror on a free 127.0.0.1 port for the ``with`` block."""
    index = LocalIndex(url="")
    routes: dict[str, tuple[str, bytes]] = {}
    server, port = serve(routes, requested=index.requested)
    base = f"http://127.0.0.1:{port}"
    index.url = f"{base}/simple"
    listing = {"meta": {"api-version": "1.0"}, "projects": [{"name": name} for name in index.projects]}
    routes["/simple/"] = (JSON_TYPE, json.dumps(listing).encode())
    for project in index.projects:
        routes[f"/simple/{project}/"] = (JSON_TYPE, _page(project, base, upload_times=upload_times))
    for metadata in (INDEX_DIR / "metadata").glob("*.whl.metadata"):
        routes[f"/files/{metadata.name}"] = ("application/octet-stream", metadata.read_bytes())
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
