"""Serve tests/data/index on 127.0.0.1 as a PEP 691 index: JSON pages and PEP 658 ``.metadata`` files.

The wheels themselves answer 404, so whoever resolves against it works from metadata alone. With
``upload_times=False`` the pages leave out PEP 700's ``upload-time`` (and say API version 1.0), as an
older mirror would.
"""

from __future__ import annotations

import json
import re
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


@contextmanager
def serve_index(*, upload_times: bool = True) -> Iterator[LocalIndex]:
    """Run the index on a free 127.0.0.1 port for the ``with`` block."""
    index = LocalIndex(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            index.requested.append(self.path)
            base = f"http://{self.headers.get('Host')}"
            path = self.path.split("?", 1)[0]
            body, kind = None, "application/octet-stream"
            if match := re.fullmatch(r"/simple/([^/]+)/?", path):
                project = re.sub(r"[-_.]+", "-", match.group(1)).lower()
                body, kind = _page(project, base, upload_times=upload_times), JSON_TYPE
            elif path in ("/simple", "/simple/"):
                names = [{"name": name} for name in index.projects]
                body, kind = (
                    json.dumps({"meta": {"api-version": "1.0"}, "projects": names}).encode(),
                    JSON_TYPE,
                )
            elif (match := re.fullmatch(r"/files/([^/]+\.whl\.metadata)", path)) and (
                INDEX_DIR / "metadata" / match.group(1)
            ).is_file():
                body = (INDEX_DIR / "metadata" / match.group(1)).read_bytes()
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    index.url = f"http://127.0.0.1:{server.server_address[1]}/simple"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield index
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
