"""A botocore release the embedded table lacks, read from its own wheel: a real botocore wheel (the
installed package re-versioned as 1.99.0 with the tests' own cacert.pem) served by a PEP 691 index on
127.0.0.1, fetched through pip, run in a child Python, and cached in the kit's private cache."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import subprocess
import time
import zipfile
from pathlib import Path

import pytest
from local_index import JSON_TYPE, closed_port, serve

from helpers import _botocore_fetch, _index, _x509, botocore_facts, pki
from helpers._paths import ROOT
from helpers.kinds import HostClass, InputError

VERSION = "1.99.0"  # not in the embedded table (newer than its newest release)
WHEEL = f"botocore-{VERSION}-py3-none-any.whl"
_DIST_INFO_KEPT = ("METADATA", "WHEEL", "LICENSE.txt", "NOTICE", "top_level.txt")


def _record_line(name: str, data: bytes) -> str:
    """A RECORD row: path, urlsafe-base64 sha256 without padding, size."""
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def botocore_wheel(version: str, cacert: bytes) -> bytes:
    """The installed botocore as a wheel of ``version``: its files, ``__version__`` changed, ``cacert``
    as its vendored cacert.pem, and a dist-info with that version and a valid RECORD."""
    dist = importlib.metadata.distribution("botocore")
    package = Path(dist.locate_file("botocore"))
    members: dict[str, bytes] = {}
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            members[f"botocore/{path.relative_to(package).as_posix()}"] = path.read_bytes()
    init = members["botocore/__init__.py"].decode()
    init, count = re.subn(r"^__version__ = .*$", f"__version__ = '{version}'", init, flags=re.M)
    assert count == 1
    members["botocore/__init__.py"] = init.encode()
    members["botocore/cacert.pem"] = cacert
    info = f"botocore-{version}.dist-info"
    for name in _DIST_INFO_KEPT:
        text = dist.read_text(name)
        if text is not None:
            if name == "METADATA":
                text = re.sub(r"^Version: .*$", f"Version: {version}", text, count=1, flags=re.M)
            members[f"{info}/{name}"] = text.encode()
    record = [_record_line(name, data) for name, data in members.items()] + [f"{info}/RECORD,,"]
    members[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def serve_index(files: dict[str, bytes], *, lie_about: str = ""):
    """A PEP 691 index for botocore holding ``files`` (the sha256 of ``lie_about`` is wrong)."""
    entries = [
        {
            "filename": name,
            "url": f"../../files/{name}",
            "hashes": {"sha256": hashlib.sha256(data + (b"x" if name == lie_about else b"")).hexdigest()},
            "upload-time": "2031-01-02T03:04:05Z",
            "yanked": False,
        }
        for name, data in files.items()
    ]
    page = {"meta": {"api-version": "1.1"}, "name": "botocore", "files": entries, "versions": [VERSION]}
    routes = {"/simple/botocore/": (JSON_TYPE, json.dumps(page).encode())}
    routes.update({f"/files/{n}": ("application/octet-stream", d) for n, d in files.items()})
    server, port = serve(routes)
    return server, f"http://127.0.0.1:{port}/simple"


def installed_botocore_host(region: str, monkeypatch) -> str:
    """The default iot-data host the installed botocore's code gives for ``region`` (no AWS settings)."""
    import botocore.session

    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    client = botocore.session.get_session().create_client(
        "iot-data", region_name=region, aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="x"
    )
    return client.meta.endpoint_url.split("://", 1)[1]


def cache_files(cache: Path) -> list[str]:
    """The names in the kit's botocore release cache under ``cache`` (none if it does not exist)."""
    folder = cache / _botocore_fetch.CACHE_FOLDER
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture(scope="module")
def roots() -> list[pki.CA]:
    """The test's own roots: the fetched wheel's vendored cacert.pem holds exactly these."""
    return [pki.CA(f"Fetch Test Root {i}", organization="atskit tests", key_type="ec") for i in range(2)]


@pytest.fixture(scope="module")
def wheel(roots) -> bytes:
    """botocore 1.99.0's wheel, built from the installed botocore."""
    return botocore_wheel(VERSION, b"".join(ca.cert_pem for ca in roots))


@pytest.fixture(scope="module")
def index(wheel):
    """The local index serving the wheel (its URL)."""
    server, url = serve_index({WHEEL: wheel})
    yield url
    server.shutdown()


@pytest.fixture(scope="module")
def fetched(index, tmp_path_factory):
    """One fetch through the local index into a module cache: (cache folder, answer, seconds)."""
    cache = tmp_path_factory.mktemp("kitcache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATSKIT_CACHE_DIR", str(cache))
        mp.setenv("PIP_INDEX_URL", index)
        started = time.perf_counter()
        answer = botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2", fetch=True)
        seconds = time.perf_counter() - started
    return cache, answer, seconds


@pytest.fixture
def kit_cache(monkeypatch, tmp_path):
    """A fresh kit cache for one test, with the index unreachable unless the test points it elsewhere."""
    cache = tmp_path / "kitcache"
    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    return cache


def no_child_process(monkeypatch) -> None:
    """Make any child process (pip, the probe) fail the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"a child process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


# ---------------------------------------------------------------- without fetching


def test_a_release_outside_the_table_stays_uncovered_without_fetch(kit_cache):
    answer = botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2")
    assert (answer.covered, answer.host) == (False, None)
    assert answer.basis.startswith("newer than the newest probed release")
    bundle, reason = botocore_facts.vendored_bundle(VERSION)
    assert bundle is None and "not in the kit's data" in reason
    assert cache_files(kit_cache) == []


def test_the_table_answers_first_even_with_fetch(kit_cache, monkeypatch):
    no_child_process(monkeypatch)
    answer = botocore_facts.default_data_endpoint("1.24.30", region="ap-northeast-2", fetch=True)
    assert (answer.covered, answer.basis, answer.host_class) == (True, "probed", HostClass.ATS)
    assert cache_files(kit_cache) == []


def test_bad_region_or_version_is_an_input_error_even_with_fetch(kit_cache):
    with pytest.raises(InputError, match="not an AWS region name"):
        botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2; rm", fetch=True)
    with pytest.raises(InputError, match="not in the default-endpoint table"):
        botocore_facts.default_data_endpoint(VERSION, region="eu-central-1")
    with pytest.raises(InputError):
        botocore_facts.default_data_endpoint("1.99.0 --index-url x", fetch=True)


def test_index_down_leaves_it_uncovered_with_a_one_line_reason_and_no_cache_entry(kit_cache):
    answer = botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2", fetch=True)
    assert (answer.covered, answer.host, answer.host_class) == (False, None, None)
    assert "cannot reach the package index at http://127.0.0.1:" in answer.basis
    assert answer.basis.startswith("newer than the newest probed release")
    assert "\n" not in answer.basis and "Traceback" not in answer.basis
    bundle, reason = botocore_facts.vendored_bundle(VERSION, fetch=True)
    assert bundle is None and "cannot reach the package index" in reason and "\n" not in reason
    assert cache_files(kit_cache) == []


def test_a_linked_cache_folder_is_refused_not_followed(kit_cache, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / f"botocore-{VERSION}.json").write_text(
        json.dumps({"version": VERSION, "hosts": {"ap-northeast-2": "data-ats.iot.example"}})
    )
    kit_cache.mkdir(mode=0o700)
    (kit_cache / _botocore_fetch.CACHE_FOLDER).symlink_to(elsewhere)
    answer = botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2", fetch=True)
    assert not answer.covered and "must be a real folder" in answer.basis


def test_the_build_script_uses_the_shared_probe_and_cacert_reader(roots, tmp_path):
    spec = importlib.util.spec_from_file_location("bbh", ROOT / "scripts" / "build_botocore_history.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert not hasattr(script, "PROBE") and not hasattr(script, "vendored_cacert")
    assert [script.PRIMARY_REGION, *script.EXTRA_REGIONS] == list(_botocore_fetch.REGIONS)
    old = tmp_path / "botocore" / "vendored" / "requests" / "cacert.pem"  # the layout of old releases
    old.parent.mkdir(parents=True)
    old.write_bytes(roots[0].cert_pem)
    facts = _botocore_fetch.vendored_cacert(tmp_path)
    assert facts["cacert_path"] == "botocore/vendored/requests/cacert.pem"
    assert (facts["cacert_roots"], facts["has_verisign_g5"]) == (1, False)
    assert _botocore_fetch.vendored_cacert(tmp_path / "nothing")["cacert_path"] == ""


# ---------------------------------------------------------------- fetched from the local index


@pytest.mark.slow
def test_fetch_answers_from_the_release_own_wheel(fetched, wheel, roots, monkeypatch):
    cache, answer, _ = fetched
    assert answer.covered
    assert answer.host == installed_botocore_host("ap-northeast-2", monkeypatch)
    assert answer.host_class == HostClass.ATS
    assert re.fullmatch(
        rf"fetched botocore {VERSION}'s wheel from http://127\.0\.0\.1:\d+/simple", answer.basis
    )
    assert answer.vendored_has_verisign_g5 is False
    assert cache_files(cache) == [f"botocore-{VERSION}.json", f"botocore-{VERSION}.pem"]
    folder = cache / _botocore_fetch.CACHE_FOLDER
    meta = json.loads((folder / f"botocore-{VERSION}.json").read_text())
    pem = b"".join(ca.cert_pem for ca in roots)
    assert meta["wheel_sha256"] == hashlib.sha256(wheel).hexdigest()
    assert meta["cacert_sha256"] == hashlib.sha256(pem).hexdigest()
    assert (folder / f"botocore-{VERSION}.pem").read_bytes() == pem
    assert set(meta["hosts"]) == set(_botocore_fetch.REGIONS)
    assert meta["fetched_at"] and meta["version"] == VERSION
    assert oct(folder.stat().st_mode & 0o777) == "0o700"


@pytest.mark.slow
def test_cached_answers_need_no_index_and_start_no_process(fetched, roots, monkeypatch, tmp_path):
    cache = tmp_path / "kitcache"
    shutil.copytree(fetched[0], cache)
    expected = installed_botocore_host("us-east-1", monkeypatch)
    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    no_child_process(monkeypatch)
    started = time.perf_counter()
    answer = botocore_facts.default_data_endpoint(VERSION, region="us-east-1", fetch=True)
    bundle, rule = botocore_facts.vendored_bundle(VERSION, fetch=True)
    seconds = time.perf_counter() - started
    assert answer.covered and answer.host == expected
    assert answer.basis.startswith(f"cached (fetched botocore {VERSION}'s wheel from http://127.0.0.1:")
    assert {_x509.fingerprint(c) for c in bundle.certificates} == {_x509.fingerprint(ca.cert) for ca in roots}
    assert (bundle.name, bundle.version, bundle.problems) == ("botocore-vendored", VERSION, [])
    assert (
        rule.startswith(f"botocore {VERSION}'s vendored botocore/cacert.pem (cached (")
        and bundle.source == rule
    )
    assert seconds < 5


@pytest.mark.slow
def test_a_region_not_cached_needs_the_index_again(fetched, monkeypatch, tmp_path):
    cache = tmp_path / "kitcache"
    shutil.copytree(fetched[0], cache)
    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    answer = botocore_facts.default_data_endpoint(VERSION, region="eu-central-1", fetch=True)
    assert not answer.covered and "cannot reach the package index" in answer.basis


@pytest.mark.slow
def test_a_cache_entry_whose_pem_changed_is_not_trusted(fetched, monkeypatch, tmp_path):
    cache = tmp_path / "kitcache"
    shutil.copytree(fetched[0], cache)
    pem = cache / _botocore_fetch.CACHE_FOLDER / f"botocore-{VERSION}.pem"
    pem.write_bytes(pem.read_bytes() + b"\n")
    monkeypatch.setenv("ATSKIT_CACHE_DIR", str(cache))
    monkeypatch.setenv("PIP_INDEX_URL", f"http://127.0.0.1:{closed_port()}/simple")
    bundle, reason = botocore_facts.vendored_bundle(VERSION, fetch=True)
    assert bundle is None and "cannot reach the package index" in reason


@pytest.mark.slow
def test_a_release_the_index_does_not_have_is_bad_input(index, kit_cache, monkeypatch):
    """A version no index has is a typo (exit 2 at the command), not an unknown the gate carries on with."""
    from helpers.kinds import InputError

    monkeypatch.setenv("PIP_INDEX_URL", index)
    with pytest.raises(
        InputError, match=r"botocore 1\.98\.0: http://127\.0\.0\.1:\d+/simple has no such release"
    ):
        botocore_facts.default_data_endpoint("1.98.0", region="ap-northeast-2", fetch=True)
    with pytest.raises(InputError, match="has no such release; check the version"):
        botocore_facts.vendored_bundle("1.98.0", fetch=True)
    assert cache_files(kit_cache) == []


@pytest.mark.slow
def test_a_wheel_whose_hash_does_not_match_the_index_is_refused(wheel, kit_cache, monkeypatch):
    server, url = serve_index({WHEEL: wheel}, lie_about=WHEEL)
    try:
        settings = _index.PipSettings(index_url=url, options=("--retries", "0"), timeout=10)
        with pytest.raises(_index.BuildError, match="hash mismatch"):
            _botocore_fetch.release(VERSION, settings=settings)
        monkeypatch.setenv("PIP_INDEX_URL", url)
        answer = botocore_facts.default_data_endpoint(VERSION, region="ap-northeast-2", fetch=True)
    finally:
        server.shutdown()
    assert not answer.covered and "hash mismatch" in answer.basis and "\n" not in answer.basis
    assert cache_files(kit_cache) == []
