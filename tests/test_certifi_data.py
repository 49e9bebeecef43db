"""Building data/certifi through pip from a package index: a real local PEP 691 index on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from local_index import JSON_TYPE
from local_index import closed_port as _closed_port
from local_index import serve as _serve

from helpers import _certifi_build, _io, _paths, bundles, pki
from helpers._index import IndexUnreachable, PipSettings, pip_settings
from helpers._paths import ROOT
from helpers.kinds import InputError, UnusableError

GARBAGE_BLOCK = b"-----BEGIN CERTIFICATE-----\nthis is not base64 at all!\n-----END CERTIFICATE-----\n"
NOT_A_CERT_BLOCK = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"  # DER INTEGER 1


def _wheel(version: str, files: dict[str, bytes]) -> bytes:
    """A minimal but valid certifi wheel holding ``files``."""
    info = f"certifi-{version}.dist-info"
    members = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: certifi\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{info}/RECORD": b"",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _sdist(version: str, files: dict[str, bytes]) -> bytes:
    """An old-style sdist (no build metadata pip can prepare) holding ``files`` under certifi-V/."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(f"certifi-{version}/{name}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class LocalIndex:
    """A PEP 691 index for 'certifi' served on 127.0.0.1 (files, hashes, upload times, versions)."""

    url: str
    files: dict[str, bytes]
    page: dict
    roots: list[pki.CA]

    def settings(self) -> PipSettings:
        """pip settings pointing at this index only."""
        return PipSettings(index_url=self.url, options=("--retries", "0"), timeout=10)


def _page(files: dict[str, bytes], uploads: dict[str, str], versions: list[str], *, lie_about: str = ""):
    """The PEP 691 JSON page for ``files`` (the hash of ``lie_about`` is deliberately wrong)."""
    entries = []
    for name, data in files.items():
        digest = hashlib.sha256(data + (b"x" if name == lie_about else b"")).hexdigest()
        entries.append(
            {
                "filename": name,
                "url": f"../../files/{name}",
                "hashes": {"sha256": digest},
                "upload-time": uploads[name],
                "yanked": False,
            }
        )
    return {"meta": {"api-version": "1.1"}, "name": "certifi", "files": entries, "versions": versions}


@pytest.fixture(scope="module")
def ca_roots():
    """Three test roots."""
    return [pki.CA(f"Test Root {i}", organization="atskit tests", key_type="ec") for i in range(3)]


@pytest.fixture(scope="module")
def index_files(ca_roots):
    """The index's files: a wheel, an old sdist (top-level cacert.pem with two unusable blocks) and a
    wheel without cacert.pem."""
    r0, r1, r2 = (ca.cert_pem for ca in ca_roots)
    return {
        "certifi-2020.1.1-py3-none-any.whl": _wheel("2020.1.1", {"certifi/cacert.pem": r0 + r1}),
        "certifi-2021.01.02.tar.gz": _sdist(
            "2021.01.02", {"cacert.pem": r1 + GARBAGE_BLOCK + r2 + NOT_A_CERT_BLOCK, "README": b"old"}
        ),
        "certifi-2022.1.1-py3-none-any.whl": _wheel("2022.1.1", {"certifi/core.py": b""}),
    }


def _index(ca_roots, files: dict[str, bytes], *, lie_about: str = ""):
    """Serve ``files`` as a PEP 691 index listing their versions, plus a version '0' that has no file."""
    versions = {name: re.match(r"certifi-([0-9.]+?)(?:-py3|\.tar)", name).group(1) for name in files}
    uploads = {
        name: "{}-{:02d}-{:02d}T10:00:00Z".format(*map(int, version.split(".")))
        for name, version in versions.items()
    }
    page = _page(files, uploads, ["0", *versions.values()], lie_about=lie_about)
    routes = {"/simple/certifi/": (JSON_TYPE, json.dumps(page).encode())}
    routes.update({f"/files/{n}": ("application/octet-stream", d) for n, d in files.items()})
    server, port = _serve(routes)
    return server, LocalIndex(f"http://127.0.0.1:{port}/simple", files, page, ca_roots)


@pytest.fixture(scope="module")
def built(ca_roots, index_files, tmp_path_factory):
    """data/certifi built from the local index into a temp folder (one build for the module)."""
    server, index = _index(ca_roots, index_files)
    data_dir = tmp_path_factory.mktemp("data") / "certifi"
    cache_dir = tmp_path_factory.mktemp("cache")
    try:
        result = _certifi_build.build(
            data_dir=data_dir, cache_dir=cache_dir, settings=index.settings(), progress=False, workers=2
        )
        yield index, result, data_dir, cache_dir
    finally:
        server.shutdown()


@pytest.fixture
def kit_data_at(monkeypatch):
    """Point helpers.bundles at another data folder for one test (caches cleared around it)."""

    def point(data_root: Path) -> None:
        monkeypatch.setattr(_paths, "DATA_DIR", data_root)
        bundles._certifi_data_loaded.cache_clear()

    yield point
    bundles._certifi_data_loaded.cache_clear()


def _snapshot(folder: Path) -> dict[str, str]:
    """name -> sha256 of every file in ``folder``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


# ---------------------------------------------------------------- the build


def test_build_lists_every_version_with_its_status(built):
    _, result, data_dir, _ = built
    rows = {r["version"]: r for r in _certifi_build.read_releases(data_dir)}
    assert list(rows) == ["0", "2020.1.1", "2021.1.2", "2022.1.1"]
    assert rows["0"]["status"] == "no file on the index"
    assert rows["2022.1.1"]["status"] == "no cacert.pem in the file"
    assert rows["2020.1.1"]["status"] == rows["2021.1.2"]["status"] == "ok"
    assert rows["2021.1.2"]["version_on_index"] == "2021.01.02"
    assert result.without_roots == [("0", "no file on the index"), ("2022.1.1", "no cacert.pem in the file")]


def test_wheel_comes_through_pip_and_old_sdist_falls_back_to_the_index_url(built):
    index, _, data_dir, _ = built
    rows = {r["version"]: r for r in _certifi_build.read_releases(data_dir)}
    assert rows["2020.1.1"]["fetched_with"] == "pip download"
    assert rows["2021.1.2"]["fetched_with"].startswith("index file URL")
    assert rows["2021.1.2"]["cacert_member"] == "certifi-2021.01.02/cacert.pem"
    for version, name in [("2020.1.1", "certifi-2020.1.1-py3-none-any.whl")]:
        assert rows[version]["file_sha256"] == hashlib.sha256(index.files[name]).hexdigest()
        assert rows[version]["uploaded_at"] == "2020-01-01T10:00:00Z"


def test_each_distinct_block_is_stored_once(built):
    _, result, data_dir, _ = built
    stored = _certifi_build.split_blocks((data_dir / "roots.pem").read_bytes())
    fingerprints = [fp for fp, _, _ in stored]
    assert fingerprints == sorted(set(fingerprints))
    assert len(fingerprints) == result.distinct_blocks == 5  # 3 roots, a non-base64 block, a non-certificate


def test_reconstruction_matches_the_digest_of_the_real_file_and_keeps_problems(built, kit_data_at):
    index, _, data_dir, _ = built
    kit_data_at(data_dir.parent)
    sdist = bundles.certifi("2021.01.02")  # zero padding as on the index
    assert sdist.version == "2021.1.2"
    expected = [ca.cert_pem for ca in index.roots[1:]]
    assert sorted(bundles.from_pem(b"".join(expected)).fingerprints) == sorted(sdist.fingerprints)
    assert [(p.position, p.reason.split(":")[0]) for p in sdist.problems] == [
        (1, "not base64"),
        (3, "unparseable"),
    ]
    file_blocks = _certifi_build.split_blocks(b"".join([index.roots[1].cert_pem, GARBAGE_BLOCK]))
    assert sdist.problems[0].fingerprint_sha256 == file_blocks[1][0]
    row = bundles.certifi_releases().set_index("version").loc["2021.1.2"]
    every = set(sdist.fingerprints) | {p.fingerprint_sha256 for p in sdist.problems}
    assert _certifi_build.fingerprints_digest(every) == row["fingerprints_digest"]
    assert (row["roots"], row["problems"], row["blocks"]) == (2, 2, 4)
    assert "2 x" not in row["problem_reasons"] and row["problem_reasons"].count("1 x") == 2


def test_missing_data_gives_one_line_naming_the_fix(tmp_path, kit_data_at):
    kit_data_at(tmp_path / "no-data-here")
    with pytest.raises(FileNotFoundError) as err:
        bundles.certifi("2020.6.20")
    assert "embedded data is missing" in str(err.value) and "ATSKIT_DATA" in str(err.value)
    assert "\n" not in str(err.value)


def test_release_without_roots_gives_a_one_line_error(built, kit_data_at):
    _, _, data_dir, _ = built
    kit_data_at(data_dir.parent)
    with pytest.raises(ValueError, match=r"certifi 2022\.1\.1 has no roots to load \(no cacert\.pem") as err:
        bundles.certifi("2022.1.1")
    assert "\n" not in str(err.value)
    assert bundles.certifi_releases()["version"].tolist() == ["2020.1.1", "2021.1.2"]
    assert len(bundles.certifi_releases(with_unusable=True)) == 4


def test_refresh_reuses_releases_whose_file_is_unchanged(built, tmp_path, ca_roots, index_files):
    index, _, data_dir, cache_dir = built
    server, again = _index(ca_roots, index_files)
    try:
        target = tmp_path / "certifi"
        for name in ("roots.pem", "membership.csv", "releases.csv", "source.json"):
            (tmp_path / "certifi").mkdir(exist_ok=True)
            (target / name).write_bytes((data_dir / name).read_bytes())
        result = _certifi_build.build(
            data_dir=target, cache_dir=tmp_path / "empty-cache", settings=again.settings(), progress=False
        )
    finally:
        server.shutdown()
    assert (result.downloaded, result.reused, result.changed) == (0, 3, False)
    assert _snapshot(target) == _snapshot(data_dir)  # nothing rewritten, not even the build time


def test_a_file_whose_hash_differs_from_the_index_is_refused(ca_roots, index_files, tmp_path):
    server, index = _index(ca_roots, index_files, lie_about="certifi-2020.1.1-py3-none-any.whl")
    target = tmp_path / "certifi"
    target.mkdir()
    (target / "releases.csv").write_text("untouched\n")
    try:
        with pytest.raises(_certifi_build.BuildError) as err:
            _certifi_build.build(
                data_dir=target,
                cache_dir=tmp_path / "c",
                settings=index.settings(),
                progress=False,
                workers=1,
                prune=True,  # the data there cannot be read: replacing it must be asked for
            )
    finally:
        server.shutdown()
    message = str(err.value)
    assert "certifi-2020.1.1-py3-none-any.whl" in message and "hash mismatch: Expected sha256" in message
    assert "\n" not in message
    assert (target / "releases.csv").read_text() == "untouched\n"
    assert sorted(p.name for p in target.iterdir()) == ["releases.csv"]


def test_refresh_against_an_unreachable_index_says_one_line_and_leaves_data(tmp_path):
    target = tmp_path / "certifi"
    target.mkdir()
    for path in (ROOT / "data" / "certifi").iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    before = _snapshot(target)
    env = {
        **os.environ,
        "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple",
        "PIP_EXTRA_INDEX_URL": "",
        "PIP_FIND_LINKS": "",
        "PIP_RETRIES": "0",
        "PIP_DEFAULT_TIMEOUT": "5",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "refresh-certifi", "--data-dir", str(target), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "cannot reach the package index at http://127.0.0.1:" in lines[0]
    assert "embedded certifi data is unchanged" in lines[0]
    assert _snapshot(target) == before


def test_cli_rejects_bad_usage_with_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "refresh-certifi", "--workers", "0"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["atskit: error: --workers 0: give a number from 1 to 32"]


# ---------------------------------------------------------------- pieces


def test_pip_settings_follow_pip_index_url_and_drop_credentials_for_display():
    env = {**os.environ, "PIP_INDEX_URL": "https://user:secret@mirror.example/simple/"}
    settings = pip_settings(env=env)
    assert settings.index_url == "https://user:secret@mirror.example/simple"
    assert settings.display_index_url == "https://mirror.example/simple"


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("2020.06.20", "2020.6.20"),
        ("14.05.14", "14.5.14"),
        ("2026.10.19.post1", "2026.10.19.post1"),
        ("0", "0"),
    ],
)
def test_normalize_version(raw, normal):
    assert _certifi_build.normalize_version(raw) == normal


def test_version_order_puts_post_releases_after_their_release():
    versions = ["2026.10.19.post1", "2020.12.5", "2026.10.19", "0.0.2", "2020.4.5.1", "2020.4.5"]
    assert sorted(versions, key=_certifi_build.version_key) == [
        "0.0.2",
        "2020.4.5",
        "2020.4.5.1",
        "2020.12.5",
        "2026.10.19",
        "2026.10.19.post1",
    ]


def test_extract_prefers_the_package_cacert_over_others(tmp_path):
    path = tmp_path / "certifi-1-py3-none-any.whl"
    path.write_bytes(_wheel("1", {"tests/cacert.pem": b"other", "certifi/cacert.pem": b"mine"}))
    assert _certifi_build.extract_cacert(path) == ("certifi/cacert.pem", b"mine")


def test_interrupted_atomic_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    target = tmp_path / "releases.csv"
    target.write_text("old contents\n")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(_io.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        _io.atomic_write_text(target, "new contents\n")
    assert target.read_text() == "old contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["releases.csv"]  # no temp file left behind


def _copy_of(data_dir: Path, tmp_path: Path) -> Path:
    """A copy of a built data folder to refresh (the module's build stays as it is)."""
    import shutil

    copy = tmp_path / "data" / "certifi"
    shutil.copytree(data_dir, copy)
    return copy


def test_a_partial_index_keeps_every_release_and_changes_nothing(built, ca_roots, index_files, tmp_path):
    """A mirror that lists only some releases extends nothing and drops nothing: byte-identical data."""
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        result = _certifi_build.build(
            data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False
        )
    finally:
        server.shutdown()
    assert not result.changed and result.dropped == []
    assert _snapshot(data) == before


def test_prune_drops_what_the_index_does_not_list_and_says_so(built, ca_roots, index_files, tmp_path):
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        result = _certifi_build.build(
            data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False, prune=True
        )
    finally:
        server.shutdown()
    assert result.changed and result.dropped == ["2021.1.2", "2022.1.1"]
    assert "dropped 2 releases (--prune): 2021.1.2, 2022.1.1" in result.line()
    assert [r["version"] for r in _certifi_build.read_releases(data)] == ["0", "2020.1.1"]


@pytest.mark.parametrize("stage", ["download", "check", "swap"])
def test_a_refresh_interrupted_at_any_stage_leaves_the_data_as_it_was(
    built, ca_roots, index_files, tmp_path, monkeypatch, stage
):
    """Ctrl-C (or SIGTERM, which the command turns into the same) while downloading, while checking the
    staged set, or at the swap: the data is byte-identical, and no staging folder is left behind."""
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)

    def interrupt(*_args, **_kwargs):
        raise KeyboardInterrupt

    target = {"download": "download", "check": "_check_staged", "swap": "_swap_in"}[stage]
    monkeypatch.setattr(_certifi_build, target, interrupt)
    newer = {
        "certifi-2023.1.1-py3-none-any.whl": _wheel("2023.1.1", {"certifi/cacert.pem": ca_roots[2].cert_pem})
    }
    server, index = _index(ca_roots, index_files | newer)  # a new release: the refresh has something to write
    try:
        with pytest.raises(KeyboardInterrupt):  # a fresh cache: every release must be fetched
            _certifi_build.build(data_dir=data, cache_dir=tmp_path / "cache", settings=index.settings(),
                                 progress=False, full=True)  # fmt: skip
    finally:
        server.shutdown()
    assert _snapshot(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["certifi"]  # no staging or old folder


def test_pip_no_index_is_honoured():
    with pytest.raises(IndexUnreachable, match="no package index"):
        pip_settings(env={**os.environ, "PIP_NO_INDEX": "1"})


def test_data_missing_a_release_s_members_is_an_error_not_an_empty_bundle(built, tmp_path, kit_data_at):
    """A set left inconsistent (say, by a copy interrupted by hand) raises; it never trusts nothing."""
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    rows = (data / "membership.csv").read_text().splitlines()
    (data / "membership.csv").write_text("\n".join(r for r in rows if not r.startswith("2020.1.1,")) + "\n")
    kit_data_at(data.parent)
    with pytest.raises(UnusableError, match="release 2020.1.1 lists no certificates"):
        bundles.certifi("2020.1.1")


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT to the process", "SIGINT to its group"])
def test_the_command_interrupted_mid_download_ends_pip_and_leaves_data_and_no_temp_folders(
    built, ca_roots, index_files, tmp_path, how
):
    """A real refresh, stopped while pip downloads from a slow index: exit 130, no pip process left,
    no download folder left, the data byte-identical."""
    import signal
    import time

    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    newer = {
        "certifi-2023.1.1-py3-none-any.whl": _wheel("2023.1.1", {"certifi/cacert.pem": ca_roots[2].cert_pem})
    }
    files = index_files | newer
    versions = {name: re.match(r"certifi-([0-9.]+?)(?:-py3|\.tar)", name).group(1) for name in files}
    uploads = {
        name: "{}-{:02d}-{:02d}T10:00:00Z".format(*map(int, v.split("."))) for name, v in versions.items()
    }
    page = json.dumps(_page(files, uploads, ["0", *versions.values()])).encode()

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            if self.path.startswith("/files/"):
                time.sleep(30)  # pip waits here while the test interrupts the command
            body = page if self.path.startswith("/simple/certifi") else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", JSON_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    cache = tmp_path / "fresh-cache"
    env = {**os.environ, "PIP_INDEX_URL": f"http://127.0.0.1:{server.server_address[1]}/simple",
           "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "", "PIP_RETRIES": "0"}  # fmt: skip
    command = [
        sys.executable,
        "-m",
        "helpers",
        "refresh-certifi",
        "--data-dir",
        str(data),
        "--cache-dir",
        str(cache),
        "--full",
    ]
    proc = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip

    def pips() -> list[int]:  # pip processes downloading into this test's cache
        found = []
        for entry in Path("/proc").iterdir():
            try:
                cmdline = (entry / "cmdline").read_text() if entry.name.isdigit() else ""
                if "\x00pip\x00" in cmdline and "\x00download\x00" in cmdline and str(cache) in cmdline:
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    try:
        deadline = time.monotonic() + 60
        while not pips() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pips(), "pip never started"
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        elif how == "SIGINT to the process":
            proc.send_signal(signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "atskit: interrupted"
    time.sleep(0.5)
    assert pips() == []
    assert _snapshot(data) == before
    assert not list(cache.glob(".download-*"))


# ------------------------------------------------------- nothing lost: --full, unreadable data, readers


def _refresh(data: Path, index_url: str, *args: str, cache: Path) -> subprocess.CompletedProcess:
    """``atskit refresh-certifi --data-dir DATA`` against ``index_url`` only, in a subprocess."""
    env = {**os.environ, "PIP_INDEX_URL": index_url, "PIP_EXTRA_INDEX_URL": "", "PIP_FIND_LINKS": "",
           "PIP_RETRIES": "0", "PIP_DEFAULT_TIMEOUT": "10"}  # fmt: skip
    command = [sys.executable, "-m", "helpers", "refresh-certifi", "--data-dir", str(data), "--cache-dir",
               str(cache), *args]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=data.parent, timeout=180)


def test_full_against_a_partial_index_redownloads_and_keeps_every_release(
    built, ca_roots, index_files, tmp_path
):
    """--full forces the downloads; it is not --prune: the releases the index does not list stay."""
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        done = _refresh(data, index.url, "--full", cache=tmp_path / "fresh-cache")
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert "1 downloaded" in done.stdout and "2 kept that the index does not list" in done.stdout
    assert "dropped" not in done.stdout
    assert _snapshot(data) == before  # 4 releases stay 4, byte for byte


def test_prune_names_every_release_it_drops_in_the_command_s_text(built, ca_roots, index_files, tmp_path):
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        done = _refresh(data, index.url, "--prune", cache=cache_dir)
    finally:
        server.shutdown()
    assert done.returncode == 0, done.stderr
    assert "dropped 2 releases (--prune): 2021.1.2, 2022.1.1" in done.stdout


@pytest.mark.parametrize("damage", ["membership.csv missing", "membership.csv unreadable", "no roots.pem"])
def test_existing_data_that_cannot_be_read_is_refused_not_rebuilt_from_the_index(built, tmp_path, damage):
    """Unreadable data is not silently replaced by whatever the index lists: exit 2, one line, nothing
    touched, and the index not even asked (it is a closed port here)."""
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    if damage == "membership.csv missing":
        (data / "membership.csv").unlink()
    elif damage == "membership.csv unreadable":
        (data / "membership.csv").write_bytes(b"\xff\xfe not csv at all")
    else:
        (data / "roots.pem").unlink()
    before = _snapshot(data)
    done = _refresh(data, f"http://127.0.0.1:{_closed_port()}/simple", "--full", cache=cache_dir)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "cannot be read" in lines[0] and "--prune" in lines[0] and "git checkout" in lines[0]
    assert _snapshot(data) == before


def test_prune_rebuilds_unreadable_data_and_names_the_releases_it_listed(
    built, ca_roots, index_files, tmp_path
):
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    (data / "membership.csv").unlink()
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        result = _certifi_build.build(
            data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False, prune=True
        )
    finally:
        server.shutdown()
    assert result.dropped == ["2021.1.2", "2022.1.1"] and "membership.csv missing" in result.discarded
    assert [r["version"] for r in _certifi_build.read_releases(data)] == ["0", "2020.1.1"]


def _keep_rows(data: Path, version: str, keep) -> None:
    """Rewrite membership.csv keeping only the rows of ``version`` that ``keep(rows)`` returns."""
    lines = (data / "membership.csv").read_text().splitlines()
    mine = [r for r in lines if r.startswith(f"{version},")]
    kept = set(keep(mine))
    (data / "membership.csv").write_text("\n".join(r for r in lines if r not in mine or r in kept) + "\n")


def test_a_release_with_part_of_its_members_is_an_error_naming_the_folder_and_repair(
    built, tmp_path, kit_data_at
):
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    _keep_rows(data, "2021.1.2", lambda rows: rows[:1])  # 1 of its 4 blocks
    kit_data_at(data.parent)
    with pytest.raises(UnusableError) as err:
        bundles.certifi("2021.1.2")
    message = str(err.value)
    assert "release 2021.1.2 has 1 of the 4 certificates its file held" in message
    assert str(data) in message and "git checkout -- data/certifi" in message and "--full" not in message
    assert len(bundles.certifi("2020.1.1")) == 2  # a whole release still loads


def test_a_release_with_other_members_than_its_file_is_an_error(built, tmp_path, kit_data_at):
    """The same count, but one block swapped for another release's: the digest tells."""
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    other = next(r for r in (data / "membership.csv").read_text().splitlines() if r.startswith("2020.1.1,0,"))
    text = (data / "membership.csv").read_text()
    first = next(r for r in text.splitlines() if r.startswith("2021.1.2,0,"))
    (data / "membership.csv").write_text(text.replace(first, "2021.1.2,0," + other.split(",")[2]))
    kit_data_at(data.parent)
    with pytest.raises(UnusableError, match="fingerprints digest differs"):
        bundles.certifi("2021.1.2")


def test_the_kit_s_own_release_with_10_of_its_138_members_is_refused(tmp_path, kit_data_at):
    import shutil

    data = tmp_path / "certifi"
    shutil.copytree(ROOT / "data" / "certifi", data)
    _keep_rows(data, "2020.6.20", lambda rows: rows[:10])
    kit_data_at(tmp_path)
    with pytest.raises(UnusableError, match="has 10 of the 138 certificates"):
        bundles.certifi("2020.6.20")


def test_a_refresh_repairs_a_partial_release_the_index_lists(built, ca_roots, index_files, tmp_path):
    """What the reader's error suggests works: the release is fetched again, the data whole again."""
    index, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    _keep_rows(data, "2021.1.2", lambda rows: rows[:1])
    result = _certifi_build.build(
        data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False
    )
    assert result.downloaded == 1
    assert {k: v for k, v in _snapshot(data).items() if k != "source.json"} == {
        k: v for k, v in _snapshot(data_dir).items() if k != "source.json"
    }


def test_a_partial_release_the_index_does_not_list_is_refused_not_dropped(
    built, ca_roots, index_files, tmp_path
):
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    _keep_rows(data, "2021.1.2", lambda rows: rows[:1])
    before = _snapshot(data)
    partial = {n: d for n, d in index_files.items() if n.startswith("certifi-2020")}
    server, index = _index(ca_roots, partial)
    try:
        with pytest.raises(UnusableError, match=r"certifi 2021\.1\.2 .* has 1 of the 4 .* --prune"):
            _certifi_build.build(
                data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False
            )
    finally:
        server.shutdown()
    assert _snapshot(data) == before


# ---------------------------------------------------------------- the swap


def _new_release_index(ca_roots, index_files):
    """The module's index plus a newer release, so that a refresh has something to swap in."""
    newer = {
        "certifi-2023.1.1-py3-none-any.whl": _wheel("2023.1.1", {"certifi/cacert.pem": ca_roots[2].cert_pem})
    }
    return _index(ca_roots, index_files | newer)


def test_an_interrupt_between_the_two_renames_puts_the_old_set_back(
    built, ca_roots, index_files, tmp_path, monkeypatch
):
    _, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    replace = os.replace
    held = []

    def second_rename_interrupted(src, dst):
        if Path(dst).parent == data.parent:  # the swap's renames (not the download cache's)
            held.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))
        if Path(src).name.startswith(".certifi-staging-"):
            raise KeyboardInterrupt  # as if Ctrl-C landed just after the data folder was set aside
        replace(src, dst)

    server, index = _new_release_index(ca_roots, index_files)
    monkeypatch.setattr(_certifi_build.os, "replace", second_rename_interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            _certifi_build.build(
                data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False
            )
    finally:
        monkeypatch.undo()
        server.shutdown()
    assert _snapshot(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["certifi"]  # no staging or old folder left
    assert held and all(held)  # SIGINT was held off while the folders were renamed


def _dead_pid() -> int:
    """The id of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)  # fmt: skip
    return int(child.stdout)


def test_a_set_left_aside_by_a_killed_swap_is_put_back_by_the_next_reader(built, tmp_path, kit_data_at):
    _, _, data_dir, _ = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    data.rename(data.with_name(f".certifi-old-{_dead_pid()}"))  # SIGKILL between the two renames
    kit_data_at(data.parent)
    assert len(bundles.certifi("2020.1.1")) == 2
    assert _snapshot(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["certifi"]


def test_a_set_left_aside_by_a_killed_swap_is_put_back_by_the_next_refresh(built, tmp_path):
    index, _, data_dir, cache_dir = built
    data = _copy_of(data_dir, tmp_path)
    before = _snapshot(data)
    data.rename(data.with_name(f".certifi-old-{_dead_pid()}"))
    result = _certifi_build.build(
        data_dir=data, cache_dir=cache_dir, settings=index.settings(), progress=False
    )
    assert not result.changed and result.downloaded == 0  # extended, not rebuilt from nothing
    assert _snapshot(data) == before
    assert sorted(p.name for p in data.parent.iterdir()) == ["certifi"]


# ---------------------------------------------------------------- pip settings and options


def test_a_pip_setting_pip_cannot_read_is_an_error_not_pypi():
    with pytest.raises(InputError) as err:
        pip_settings(env={**os.environ, "PIP_DEFAULT_TIMEOUT": "abc"})
    assert "invalid floating-point value: 'abc'" in str(err.value) and "\n" not in str(err.value)


def test_a_malformed_pip_conf_stops_the_command_with_pip_s_complaint(tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url\n")
    env = {**os.environ, "PIP_CONFIG_FILE": str(conf)}
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "refresh-certifi", "--data-dir", str(tmp_path / "certifi")],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip cannot read its configuration" in lines[0], proc.stderr
    assert "parsing errors" in lines[0] and "pip.conf" in lines[0]
    assert not (tmp_path / "certifi").exists()


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--data-dir", ""], "--data-dir: the path is empty"),
        (["--data-dir", "{file}"], "is not a folder"),
        (["--data-dir", "{file}/certifi"], "is not a folder"),
        (["--cache-dir", "{file}"], "is not a folder"),
        (["--workers", "100000"], "give a number from 1 to 32"),
    ],
)
def test_refresh_options_are_checked_before_the_index_is_asked(tmp_path, args, text):
    """Against a closed port: an option that got through would end in 'cannot reach', exit 1."""
    a_file = tmp_path / "afile"
    a_file.write_text("not a folder\n")
    env = {**os.environ, "PIP_INDEX_URL": f"http://127.0.0.1:{_closed_port()}/simple", "PIP_RETRIES": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "helpers", "refresh-certifi", *(a.format(file=a_file) for a in args)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and text in proc.stderr
