"""Time-true resolution with uv against a partial PyPI mirror on 127.0.0.1 (tests/data/index)."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from local_index import INDEX_DIR, serve_index
from packaging.utils import parse_wheel_filename

from helpers import _resolver
from helpers.requirements import ResolutionError


def _newest_in_mirror(project: str) -> str:
    """The newest version of ``project`` that the mirror's page lists (read from the data, not assumed)."""
    page = json.loads((INDEX_DIR / f"{project}.json").read_text())
    return str(max(parse_wheel_filename(f["filename"])[1] for f in page["files"]))


def _upload_time(project: str, version: str) -> datetime:
    page = json.loads((INDEX_DIR / f"{project}.json").read_text())
    (stamp,) = [
        f["upload-time"] for f in page["files"] if str(parse_wheel_filename(f["filename"])[1]) == version
    ]
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@pytest.fixture
def requirements(tmp_path):
    """A function writing a requirements file from lines."""

    def write(*lines: str, name: str = "requirements.txt") -> Path:
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


def test_the_incident_before_side_resolves_to_the_certifi_of_its_day(local_index, requirements):
    resolution = _resolver.resolve(requirements("requests==2.24.0"), as_of=date(2020, 7, 1))
    assert resolution.packages == {
        "requests": "2.24.0",
        "certifi": "2020.6.20",
        "urllib3": "1.25.9",  # 1.25.10 came out on 2020-07-22
        "idna": "2.10",
        "chardet": "3.0.4",
    }
    assert resolution.as_of == datetime(2020, 7, 2, tzinfo=UTC)  # the whole of 2020-07-01, as uv reads a date
    assert resolution.index == local_index.url
    assert resolution.resolver.startswith("uv 0.")
    assert resolution.seconds > 0


def test_the_incident_after_side_resolves_to_the_certifi_of_its_day(local_index, requirements):
    resolution = _resolver.resolve(requirements("requests==2.26.0"), as_of=date(2021, 12, 1))
    assert resolution.packages["certifi"] == "2021.10.8"
    assert resolution.packages["charset-normalizer"] == "2.0.8"  # 2.0.9 came out on 2021-12-03
    assert "chardet" not in resolution.packages  # requests 2.26 needs it on Python 2 only


def test_an_instant_just_before_an_upload_leaves_that_upload_out(local_index, requirements):
    uploaded = _upload_time("certifi", "2021.10.8")
    before = _resolver.resolve(requirements("certifi"), as_of=uploaded.replace(microsecond=0))
    after = _resolver.resolve(requirements("certifi"), as_of=uploaded.replace(tzinfo=None).replace(second=59))
    assert (before.packages["certifi"], after.packages["certifi"]) == ("2021.5.30", "2021.10.8")
    assert after.as_of.tzinfo == UTC  # a naive datetime is taken as UTC


def test_without_a_date_the_newest_release_in_the_mirror_wins(local_index, requirements):
    resolution = _resolver.resolve(requirements("requests==2.26.0"))
    assert resolution.as_of is None
    assert resolution.packages["certifi"] == _newest_in_mirror("certifi")
    assert resolution.packages["urllib3"] == _newest_in_mirror("urllib3")


def test_uv_works_from_metadata_alone_and_never_fetches_a_wheel(local_index, requirements):
    _resolver.resolve(requirements("requests==2.24.0"), as_of=date(2020, 7, 1))
    files = [path for path in local_index.requested if path.startswith("/files/")]
    assert files and all(path.endswith(".whl.metadata") for path in files)


def test_forced_colour_in_the_environment_still_resolves(local_index, requirements, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("CLICOLOR_FORCE", "1")
    resolution = _resolver.resolve(requirements("requests==2.24.0"), as_of=date(2020, 7, 1))
    assert resolution.packages["certifi"] == "2020.6.20"
    with pytest.raises(ResolutionError) as caught:
        _resolver.resolve(requirements("certifi==1999.1.1"))
    assert "\x1b[" not in str(caught.value)


def test_an_index_without_upload_times_cannot_resolve_as_of_a_date(requirements, monkeypatch, tmp_path):
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    with serve_index(upload_times=False) as index:
        monkeypatch.setenv("UV_DEFAULT_INDEX", index.url)
        path = requirements("requests==2.24.0")
        with pytest.raises(ResolutionError) as caught:
            _resolver.resolve(path, as_of=date(2020, 7, 1))
        undated = _resolver.resolve(path)  # without a date there is nothing to check
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {index.url} gives no upload times for ")
    assert "cannot resolve as of 2020-07-01 (use a mirror that serves PEP 700 upload-time" in message
    assert undated.packages["certifi"] == _newest_in_mirror("certifi")


def test_the_page_check_catches_what_uv_leaves_unsaid(local_index, requirements, monkeypatch):
    """A resolution that uv finished is still checked: certifi's page must give upload times."""
    path = requirements("certifi")
    resolution = _resolver.resolve(path, as_of=date(2021, 12, 1))
    settings = _resolver._index_settings(path)
    _resolver._check_upload_times(path, settings, resolution.packages, "2021-12-01")  # passes
    with serve_index(upload_times=False) as bare:
        bare_settings = dataclasses.replace(settings, index_url=bare.url)
        with pytest.raises(ResolutionError, match="gives no upload times for certifi"):
            _resolver._check_upload_times(path, bare_settings, resolution.packages, "2021-12-01")


def test_pins_decide_which_pages_are_checked(requirements):
    inner = requirements("botocore==1.20.0", "urllib3>=1.25", name="inner.txt")
    constraints = requirements("idna==2.10", name="constraints.txt")
    path = requirements(f"-r {inner.name}", f"--constraint {constraints.name}", "requests==2.24.0  # pinned")
    assert _resolver._pinned_names(path) == {"botocore", "idna", "requests"}


def test_a_constraints_only_file_resolves_to_nothing(local_index, requirements):
    constraints = requirements("certifi==2020.6.20", "requests==2.24.0", name="constraints.txt")
    only = _resolver.resolve(requirements(f"-c {constraints.name}"), as_of=date(2021, 12, 1))
    assert only.packages == {}
    constrained = _resolver.resolve(
        requirements(f"-c {constraints.name}", "requests"), as_of=date(2021, 12, 1)
    )
    assert (constrained.packages["requests"], constrained.packages["certifi"]) == ("2.24.0", "2020.6.20")


def test_the_target_python_version_decides_markers(local_index, requirements):
    path = requirements(
        'certifi==2020.6.20; python_version < "3.12"', 'certifi==2021.10.8; python_version >= "3.12"'
    )
    assert _resolver.resolve(path, python_version="3.11").packages == {"certifi": "2020.6.20"}
    assert _resolver.resolve(path, python_version="3.12").packages == {"certifi": "2021.10.8"}
    here = "2020.6.20" if sys.version_info < (3, 12) else "2021.10.8"
    assert _resolver.resolve(path).packages == {"certifi": here}  # default: this interpreter


def test_the_target_platform_decides_markers(local_index, requirements):
    path = requirements(
        'certifi==2020.6.20; sys_platform == "win32"', 'certifi==2021.10.8; sys_platform != "win32"'
    )
    assert _resolver.resolve(path, platform="windows-x86_64").packages == {"certifi": "2020.6.20"}
    assert _resolver.resolve(path, platform="linux-aarch64").packages == {"certifi": "2021.10.8"}
    assert _resolver.resolve(path, platform="macos-arm64").packages == {"certifi": "2021.10.8"}


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("platform", "solaris", "unknown platform 'solaris'; use one of linux-x86_64"),
        ("python_version", "three", "python version 'three' is not like '3.11'"),
    ],
)
def test_bad_targets_are_one_line_naming_the_file(requirements, argument, value, expected):
    path = requirements("certifi")
    with pytest.raises(ResolutionError) as caught:
        _resolver.resolve(path, **{argument: value})
    assert str(caught.value).startswith(f"{path}: ") and expected in str(caught.value)


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(ResolutionError, match=r"nope\.txt: no such requirements file$"):
        _resolver.resolve(tmp_path / "nope.txt")


def test_no_matching_version_is_one_line_with_uvs_reason(local_index, requirements):
    path = requirements("certifi==1999.1.1")
    with pytest.raises(ResolutionError) as caught:
        _resolver.resolve(path, as_of=date(2021, 12, 1))
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: uv could not resolve it: ")
    assert "certifi==1999.1.1" in message


def test_an_unreachable_index_is_one_line(requirements, monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("UV_DEFAULT_INDEX", f"http://user:secret@127.0.0.1:{port}/simple")
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    path = requirements("certifi")
    with pytest.raises(ResolutionError) as caught:
        _resolver.resolve(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: uv could not resolve it: ")
    assert f"127.0.0.1:{port}" in message and "Connection refused" in message
    assert "secret" not in message


def test_an_index_that_never_answers_times_out_in_one_line(requirements, monkeypatch):
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("UV_DEFAULT_INDEX", f"http://127.0.0.1:{silent.getsockname()[1]}/simple")
        path = requirements("certifi")
        with pytest.raises(ResolutionError, match=r"uv did not finish resolving within 1 s$"):
            _resolver.resolve(path, timeout=1)


def test_pips_index_is_used_and_its_credentials_are_masked(requirements, monkeypatch, tmp_path):
    monkeypatch.delenv("UV_DEFAULT_INDEX", raising=False)
    monkeypatch.delenv("UV_INDEX_URL", raising=False)
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "uv-cache"))
    with serve_index() as index:
        monkeypatch.setenv("PIP_INDEX_URL", index.url.replace("http://", "http://user:secret@"))
        resolution = _resolver.resolve(requirements("requests==2.24.0"), as_of=date(2020, 7, 1))
        assert index.requested  # pip's index answered uv and the upload-time check
    assert resolution.packages["certifi"] == "2020.6.20"
    assert resolution.index == index.url and "secret" not in resolution.index


def test_uv_variables_that_change_the_result_do_not_reach_uv(
    local_index, requirements, monkeypatch, tmp_path
):
    (tmp_path / "c.txt").write_text("certifi==2020.4.5.2\n")
    monkeypatch.setenv("UV_CONSTRAINT", str(tmp_path / "c.txt"))
    monkeypatch.setenv("UV_EXCLUDE_NEWER", "2019-01-01T00:00:00Z")
    monkeypatch.setenv("UV_PRERELEASE", "allow")
    assert _resolver.resolve(requirements("certifi"), as_of=date(2020, 7, 1)).packages == {
        "certifi": "2020.6.20"
    }


def test_uv_is_the_package_installed_one():
    binary = _resolver._uv_bin()
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True)
    assert _resolver._uv_version(binary) == " ".join(done.stdout.split()[:2])


def test_the_mirror_is_small_and_says_where_it_came_from():
    size = sum(p.stat().st_size for p in INDEX_DIR.rglob("*") if p.is_file())
    assert size < 1_000_000
    assert "build_test_index.py" in (INDEX_DIR / "PROVENANCE.md").read_text()


def test_an_index_url_with_credentials_is_opened_with_basic_auth():
    """user:password@ in PIP_INDEX_URL (a private index) reaches the index as HTTP Basic authentication,
    not in the host name: what the upload-time check and the certifi/botocore fetches all open with."""
    import base64
    import http.server
    import threading

    from helpers import _index

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.headers.get("Authorization"))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://kit%40user:s3cret@127.0.0.1:{server.server_address[1]}/simple/certifi/"
        settings = _index.PipSettings(index_url=url.rsplit("/certifi/", 1)[0], options=(), timeout=10)
        with _index.open_url(url, settings) as response:
            assert response.read() == b"ok"
    finally:
        server.shutdown()
    assert seen == ["Basic " + base64.b64encode(b"kit@user:s3cret").decode()]
