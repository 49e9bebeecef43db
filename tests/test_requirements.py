"""What a side installs for a target: requirements (markers, includes, constraints), pip freeze, and the
lock files real tools wrote (tests/data/locks/, made by scripts/make_lock_fixtures.py)."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pytest
from packaging.markers import default_environment

from helpers import requirements
from helpers.kinds import KitError
from helpers.requirements import UNKNOWN_VERSION, ResolutionError, Target

LOCKS = Path(__file__).parent / "data" / "locks"
BEFORE, AFTER = "2020.6.20", "2021.10.8"  # the certifi pins in the fixtures
PY311, PY312 = Target("3.11", "linux-x86_64"), Target("3.12", "linux-x86_64")


def _one_line_naming(caught: pytest.ExceptionInfo, name: str) -> str:
    message = str(caught.value)
    assert "\n" not in message and name in message, message
    assert isinstance(caught.value, KitError)
    return message


# --- targets ---------------------------------------------------------------------------------------


def test_the_current_target_is_the_running_interpreter():
    current = Target.current()
    running = default_environment()
    assert current.python_version == running["python_version"]
    assert current.marker_environment()["python_full_version"] == running["python_full_version"]
    assert current.marker_environment()["sys_platform"] == sys.platform
    assert Target.parse(None, None) == current


@pytest.mark.parametrize(
    ("platform", "expected"),
    [
        ("linux", {"sys_platform": "linux", "platform_machine": "x86_64", "os_name": "posix"}),
        (
            "linux-aarch64",
            {"sys_platform": "linux", "platform_machine": "aarch64", "platform_system": "Linux"},
        ),
        ("macos-arm64", {"sys_platform": "darwin", "platform_machine": "arm64", "platform_system": "Darwin"}),
        ("windows-x86_64", {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"}),
    ],
)
def test_a_target_sets_the_marker_variables(platform, expected):
    target = Target.parse("3.13", platform)
    environment = target.marker_environment()
    assert {key: environment[key] for key in expected} == expected
    assert (environment["python_version"], environment["implementation_name"]) == ("3.13", "cpython")
    assert environment["python_full_version"].startswith("3.13.")
    assert target.label == f"CPython 3.13 on {target.platform}"
    assert Target.parse("3.13", "LINUX").platform == "linux-x86_64"


@pytest.mark.parametrize(
    ("python_version", "platform", "flag", "accepted"),
    [
        ("3", None, "--python-version", "3.12"),
        ("3.12.1", None, "--python-version", "3.12"),
        ("2.7", None, "--python-version", "3.12"),
        ("three", None, "--python-version", "3.12"),
        (None, "solaris", "--platform", "linux-aarch64, macos-x86_64"),
    ],
)
def test_a_bad_target_is_one_line_naming_the_option(python_version, platform, flag, accepted):
    with pytest.raises(ResolutionError) as caught:
        Target.parse(python_version, platform)
    message = _one_line_naming(caught, flag)
    assert accepted in message


# --- requirements files ----------------------------------------------------------------------------


def _write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder / next(iter(files))


def test_markers_and_an_include_give_each_target_its_certifi(tmp_path):
    path = _write(
        tmp_path,
        {
            "deploy/requirements.txt": "-r ../shared/base.txt\nbotocore==1.23.1\n",
            "shared/base.txt": (
                f'certifi=={BEFORE} ; python_version < "3.12"\n'
                f'certifi=={AFTER} ; python_version >= "3.12"\n'
                "pywin32==306 ; sys_platform == 'win32'\n"
            ),
        },
    )
    old = requirements.resolve(path, use_pip=False, target=PY311)
    new = requirements.resolve(path, use_pip=False, target=PY312)
    assert (old.certifi, new.certifi) == (BEFORE, AFTER)
    assert (old.method, old.botocore, old.target) == ("pins", "1.23.1", "CPython 3.11 on linux-x86_64")
    assert "pywin32" not in new.packages
    on_windows = requirements.resolve(path, use_pip=False, target=Target("3.12", "windows-x86_64"))
    assert on_windows.packages["pywin32"] == "306"
    parsed = requirements.parse_requirements(path, target=PY312)
    assert parsed.skipped == [
        f'certifi=={BEFORE} ; python_version < "3.12"',
        "pywin32==306 ; sys_platform == 'win32'",
    ]


def test_two_pins_that_both_apply_are_an_error_naming_both(tmp_path):
    path = _write(
        tmp_path, {"requirements.txt": f"-r more.txt\ncertifi=={BEFORE}\n", "more.txt": f"certifi=={AFTER}\n"}
    )
    with pytest.raises(ResolutionError) as caught:
        requirements.resolve(path, use_pip=False)
    message = _one_line_naming(caught, "requirements.txt")
    assert f"certifi=={AFTER}" in message and f"certifi=={BEFORE}" in message


def test_constraints_install_nothing_and_pin_nothing(tmp_path):
    _write(tmp_path, {"constraints.txt": f"certifi=={BEFORE}\nbotocore==1.23.1\n"})
    only = _write(tmp_path, {"only-constraints.txt": "-c constraints.txt\n"})
    environment = requirements.resolve(only, use_pip=False)
    assert (environment.packages, environment.method, environment.floated) == ({}, "lock", ())
    assert "only constraints" in environment.note
    with_boto3 = _write(tmp_path, {"requirements.txt": "--constraint=constraints.txt\nboto3\n"})
    parsed = requirements.parse_requirements(with_boto3)
    assert (parsed.pins, parsed.constraints) == ({}, {"certifi": BEFORE, "botocore": "1.23.1"})
    with pytest.raises(ResolutionError, match="not both pinned"):  # constraints do not make them pinned
        requirements.resolve(with_boto3, use_pip=False)


def test_compiled_output_with_markers_stays_complete(tmp_path):
    path = _write(
        tmp_path,
        {
            "requirements.txt": (
                "# This file was autogenerated by uv via the following command:\n"
                "#    uv pip compile requirements.in\n"
                f"certifi=={BEFORE} ; python_version < '3.12'\n    # via -r requirements.in\n"
                f"certifi=={AFTER} ; python_version >= '3.12'\n"
                "six==1.16.0\n"
            )
        },
    )
    environment = requirements.resolve(path, use_pip=False, target=PY312)
    assert (environment.method, environment.packages) == ("lock", {"certifi": AFTER, "six": "1.16.0"})


def test_a_resolver_reports_what_it_floated_and_as_of_when(tmp_path, local_index):
    """tests/data/index (a partial PyPI mirror) through uv: a constraint holds, and is not a pin."""
    _write(tmp_path, {"constraints.txt": "certifi==2020.6.20\n"})
    path = _write(tmp_path, {"requirements.txt": "-c constraints.txt\nrequests==2.24.0\n"})
    environment = requirements.resolve(path)
    assert environment.method == "resolved" and environment.as_of == ""
    assert environment.certifi == "2020.6.20"  # the constraint held (the mirror's newest is 2022.5.18.1)
    assert environment.floated == ("certifi", "chardet", "idna", "urllib3")  # constraints pin nothing
    assert "as of today" in environment.note and "it chose certifi 2020.6.20" in environment.note
    dated = requirements.resolve(
        _write(tmp_path, {"r.txt": "requests==2.26.0\n"}), as_of=dt.date(2021, 12, 1)
    )
    assert (dated.certifi, dated.as_of) == ("2021.10.8", "2021-12-01")
    assert "as of 2021-12-01" in dated.note


# --- pip freeze ------------------------------------------------------------------------------------

FREEZE = f"""boto3==1.20.0
botocore==1.23.1
certifi @ https://files.pythonhosted.org/packages/certifi-{AFTER}-py3-none-any.whl
mylib @ file:///build/mylib
-e git+https://example.invalid/repo.git@0123abc#egg=my_tool
six==1.16.0
"""


def test_a_freeze_is_the_whole_environment(tmp_path):
    path = _write(tmp_path, {"freeze.txt": FREEZE})
    environment = requirements.resolve(path, freeze=True, use_pip=False)
    assert environment.method == "freeze"
    assert environment.packages == {
        "boto3": "1.20.0",
        "botocore": "1.23.1",
        "certifi": AFTER,  # from the wheel's file name
        "mylib": UNKNOWN_VERSION,
        "my-tool": UNKNOWN_VERSION,
        "six": "1.16.0",
    }
    assert environment.floated == ()


@pytest.mark.parametrize("line", ["requests>=2.0", "boto3", "-r other.txt", "certifi==2021.*"])
def test_what_pip_freeze_never_writes_is_refused(tmp_path, line):
    path = _write(tmp_path, {"freeze.txt": f"six==1.16.0\n{line}\n"})
    with pytest.raises(ResolutionError, match="not a pip freeze output") as caught:
        requirements.resolve(path, freeze=True)
    assert line in _one_line_naming(caught, "freeze.txt")


# --- conda -----------------------------------------------------------------------------------------

CONDA = [
    ("environment.yml", "name: lambda\ndependencies:\n  - python=3.12\n  - certifi\n"),
    ("environment.yaml", "dependencies: [certifi]\n"),
    ("conda-lock.yml", "version: 1\npackage: []\n"),
    (
        "spec.txt",
        "# This file may be used to create an environment using:\n@EXPLICIT\nhttps://x/certifi.conda\n",
    ),
]


@pytest.mark.parametrize(("name", "text"), CONDA, ids=[c[0] for c in CONDA])
def test_conda_files_get_one_actionable_line(tmp_path, name, text):
    path = _write(tmp_path, {name: text})
    with pytest.raises(ResolutionError) as caught:
        requirements.resolve(path)
    message = _one_line_naming(caught, name)
    assert "conda files are not supported" in message
    assert "python -m pip freeze > freeze.txt" in message and "--freeze" in message


# --- lock files the tools wrote --------------------------------------------------------------------

DEV_CASES = sorted({p.name.rsplit("-", 1)[0] for p in LOCKS.glob("*-dev-before")})
LOCK_NAMES = ("uv.lock", "pdm.lock", "poetry.lock", "Pipfile.lock")


def _lock(case: str) -> Path:
    folder = LOCKS / case
    return next(folder / name for name in LOCK_NAMES if (folder / name).exists())


def test_the_fixtures_are_there_with_their_provenance():
    assert {"uv-dev", "pdm-dev", "poetry2-dev", "poetry18-dev", "poetry14-dev"} <= set(DEV_CASES)
    for folder in LOCKS.iterdir():
        assert "scripts/make_lock_fixtures.py" in (folder / "PROVENANCE.md").read_text(), folder.name


@pytest.mark.parametrize("case", DEV_CASES)
@pytest.mark.parametrize(("side", "certifi"), [("before", BEFORE), ("after", AFTER)])
def test_a_dev_only_certifi_is_not_installed_unless_dev_is_named(case, side, certifi):
    path = _lock(f"{case}-{side}")
    default = requirements.resolve(path, use_pip=False, target=PY312)
    assert default.method == "lock"
    assert default.certifi is None
    assert set(default.packages) == {"python-dateutil", "six"}  # six only through python-dateutil
    with_dev = requirements.resolve(path, use_pip=False, target=PY312, groups=("dev",))
    assert with_dev.certifi == certifi
    assert set(with_dev.packages) == {"python-dateutil", "six", "certifi"}


@pytest.mark.parametrize("case", ["uv-markers", "poetry2-markers", "poetry18-markers"])
def test_markers_give_each_target_its_certifi(case):
    path = _lock(case)
    assert requirements.resolve(path, use_pip=False, target=PY311).certifi == BEFORE
    assert requirements.resolve(path, use_pip=False, target=PY312).certifi == AFTER
    lambda_arm = Target.parse("3.13", "linux-aarch64")
    assert requirements.resolve(path, use_pip=False, target=lambda_arm).certifi == AFTER


def test_uv_forks_by_platform():
    path = LOCKS / "uv-platform" / "uv.lock"
    assert "resolution-markers" in path.read_text()  # uv really forked
    mac = requirements.resolve(path, use_pip=False, target=Target("3.12", "macos-arm64"))
    linux = requirements.resolve(path, use_pip=False, target=Target("3.12", "linux-aarch64"))
    assert (mac.certifi, linux.certifi) == (BEFORE, AFTER)
    assert mac.packages["six"] == linux.packages["six"]


@pytest.mark.parametrize("case", ["uv-markers", "uv-platform"])
def test_pylock_exported_by_uv_agrees_with_uv_lock(case):
    for target in (PY311, PY312, Target("3.12", "macos-x86_64"), Target("3.13", "windows-x86_64")):
        from_pylock = requirements.resolve(LOCKS / case / "pylock.toml", use_pip=False, target=target)
        from_uv = requirements.resolve(LOCKS / case / "uv.lock", use_pip=False, target=target)
        assert from_pylock.packages == from_uv.packages, target.label


def test_a_uv_lock_walk_that_reaches_two_certifi_is_an_error(tmp_path):
    lock = (LOCKS / "uv-markers" / "uv.lock").read_text()
    both = lock.replace("python_full_version < '3.12'", "python_full_version >= '3.0'")
    assert both != lock
    path = _write(tmp_path, {"uv.lock": both})
    with pytest.raises(ResolutionError, match="certifi") as caught:
        requirements.resolve(path, use_pip=False, target=PY312)
    _one_line_naming(caught, "uv.lock")


def test_poetry_lock_2_0_needs_its_pyproject(tmp_path):
    shutil.copy(_lock("poetry18-dev-before"), tmp_path / "poetry.lock")
    with pytest.raises(ResolutionError) as caught:
        requirements.resolve(tmp_path / "poetry.lock", use_pip=False)
    message = _one_line_naming(caught, "poetry.lock")
    assert "lock-version 2.0" in message and "keep pyproject.toml beside it" in message


def test_pipfile_lock_markers_and_develop():
    path = LOCKS / "pipenv-dev-markers" / "Pipfile.lock"
    linux = requirements.resolve(path, use_pip=False, target=PY312)
    mac = requirements.resolve(path, use_pip=False, target=Target("3.12", "macos-arm64"), groups=("dev",))
    assert "jmespath" not in linux.packages and linux.certifi is None
    assert mac.packages["jmespath"] == "1.0.1" and mac.certifi == BEFORE


MALFORMED = [
    ("uv.lock", 'version = 1\n[[package]\nname = "x"\n'),
    ("pdm.lock", "[metadata\n"),
    ("poetry.lock", "[[package]]\nname = \n"),
    (
        "pylock.toml",
        "lock-version = '1.0'\n[[packages]]\nname = 'certifi'\nmarker = 'python_version >>> \"3\"'\n",
    ),
    ("Pipfile.lock", '{"default": {"certifi": '),
    ("uv.lock", "[[package]]\nversion = '1'\n"),
    ("pdm.lock", "[[package]]\nname = 'certifi'\nversion = '2020.6.20'\n"),
]


@pytest.mark.parametrize(("name", "text"), MALFORMED, ids=[f"{m[0]}-{i}" for i, m in enumerate(MALFORMED)])
def test_a_malformed_lock_is_one_line_naming_the_file(tmp_path, name, text):
    path = _write(tmp_path, {name: text})
    with pytest.raises(ResolutionError) as caught:
        requirements.resolve(path, use_pip=False)
    _one_line_naming(caught, name)


@pytest.mark.parametrize(
    "spec, as_of, message",
    [
        ("", None, "the spec is empty"),  # Path('') is the current folder: not 'is a directory'
        ("  ", None, "the spec is empty"),
        ("requests==2.24.0", dt.date(1999, 12, 31), "as of 1999-12-31: before 2000"),
        ("requests==2.24.0", dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))), "before 2000"),
    ],
)
def test_an_empty_spec_and_a_date_before_any_index_are_refused_in_one_line(spec, as_of, message):
    with pytest.raises(ResolutionError, match=message) as caught:
        requirements.resolve(spec, as_of=as_of, use_pip=False)
    assert "\n" not in str(caught.value)
