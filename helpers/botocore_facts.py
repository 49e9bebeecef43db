"""What botocore does, read from botocore itself and from real releases: which CA bundle it loads and
why, its default ``iot-data`` host release by release, its vendored ``cacert.pem``, its retries."""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import _aws
from helpers._paths import data_file
from helpers.incident import REGION, ROOT_AT_FAULT
from helpers.kinds import HostClass, InputError, KitError, Rule, UnusableError

if TYPE_CHECKING:  # imported where used: the child Python of ca_bundle_without_certifi needs neither
    import pandas as pd

    from helpers import bundles
    from helpers.bundles import Bundle

__all__ = [
    "AtsBoundary",
    "CABundleChoice",
    "DefaultEndpoint",
    "ats_boundary",
    "botocore_retries",
    "ca_bundle_without_certifi",
    "choices_frame",
    "default_data_endpoint",
    "default_endpoint_table",
    "effective_ca_bundle",
    "provenance",
    "vendored_bundle",
    "version_key",
]

_HISTORY_CSV = ("botocore", "iot_data_default_endpoint.csv")
_HISTORY_PROVENANCE = ("botocore", "iot_data_default_endpoint.provenance.json")


# --- which CA bundle botocore loads -------------------------------------------------------------


@dataclass(frozen=True)
class CABundleChoice:
    """The CA bundle botocore verifies TLS with, the rule of its precedence that chose it, and why."""

    path: str | None  # None when verification is off
    rule: Rule
    bundle: bundles.Bundle | None  # None when off, or when the file cannot be loaded (see explanation)
    explanation: str
    verify: bool | str  # the value botocore holds (client._endpoint.http_session._verify)


def _session_rules(core) -> list[tuple[Rule, object, str]]:
    """botocore's own answer for each session-level step: (rule, value, where it came from)."""
    env_name = core.session_var_map["ca_bundle"][1]
    config_file = core.get_config_variable("config_file")
    return [
        (
            Rule.SESSION_CA_BUNDLE,
            core.get_config_variable("ca_bundle", methods=("instance",)),
            "the session's ca_bundle (set_config_variable)",
        ),
        (
            Rule.AWS_CA_BUNDLE,
            core.get_config_variable("ca_bundle", methods=("env",)),
            f"the {env_name} environment variable",
        ),
        (
            Rule.CONFIG_FILE,
            core.get_config_variable("ca_bundle", methods=("config",)),
            f"ca_bundle in the config file {config_file} (profile {core.profile or 'default'})",
        ),
        (
            Rule.REQUESTS_CA_BUNDLE,
            os.environ.get("REQUESTS_CA_BUNDLE"),
            "the REQUESTS_CA_BUNDLE environment variable (botocore's EndpointCreator reads it)",
        ),
    ]


def _default_bundle_rule() -> tuple[Rule, str, str]:
    """(rule, path, explanation) for verify=True: certifi if botocore imported it, else its vendored file."""
    from botocore import httpsession

    path = httpsession.get_cert_path(True)
    if httpsession.where.__module__.startswith("certifi"):
        return Rule.CERTIFI, path, "certifi is importable, so botocore uses certifi.where()"
    return (
        Rule.BOTOCORE_VENDORED,
        path,
        "certifi could not be imported when botocore loaded, so it uses its vendored cacert.pem",
    )


def _load(rule: Rule, path: str) -> tuple[bundles.Bundle | None, str]:
    """The Bundle at ``path`` (named after the rule), or None and why it cannot be loaded."""
    from helpers import bundles

    try:
        if rule == Rule.CERTIFI:  # the version as bundles.certifi() names it: '2026.10.19.post1'
            import importlib.metadata

            return bundles.from_pem(path, name="certifi", version=importlib.metadata.version("certifi")), ""
        if rule == Rule.BOTOCORE_VENDORED:
            import botocore

            return bundles.from_pem(path, name="botocore-vendored", version=botocore.__version__), ""
        return bundles.from_pem(path, name=Path(path).name), ""
    except (OSError, ValueError) as exc:
        return None, f"; botocore will fail every TLS connection: {exc}"


def effective_ca_bundle(client=None, *, session=None) -> CABundleChoice:
    """Which CA file botocore verifies TLS with, and the rule of its precedence that chose it.

    botocore's order: the client's ``verify=`` -> the session's ``ca_bundle`` -> ``AWS_CA_BUNDLE`` ->
    ``ca_bundle`` in the config file -> ``REQUESTS_CA_BUNDLE`` -> ``certifi.where()`` if certifi was
    importable when botocore loaded -> botocore's vendored ``cacert.pem``. Without ``client`` this is
    what a new client of ``session`` would load; with one, the path is that client's own (pass the
    session it came from so the rule is attributed correctly).
    """
    path, rule, why, verify = _resolve(client, session)
    if path is None:
        return CABundleChoice(None, rule, None, why, verify)
    bundle, trouble = _load(rule, path)
    return CABundleChoice(path, rule, bundle, why + trouble, verify)


def _resolve(client, session) -> tuple[str | None, Rule, str, bool | str]:
    """(path, rule, explanation, botocore's verify value) for :func:`effective_ca_bundle`, unloaded."""
    core = _aws.session(session)._session
    rules = _session_rules(core)
    if client is not None:
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if not hasattr(http_session, "_verify"):
            raise TypeError(f"{type(client).__name__} is not a botocore client with an HTTP session")
        verify = http_session._verify
    else:
        verify = next((value for _, value, _ in rules if value is not None), True)
    if verify is False:
        return None, Rule.VERIFICATION_OFF, "verify=False: certificates are NOT checked", verify
    if isinstance(verify, str) and not verify.strip():
        raise InputError(
            "the configured CA bundle is an empty string; botocore rejects it (InvalidConfigError)"
        )
    if verify is True:
        rule, path, why = _default_bundle_rule()
        if client is None:
            why = "no verify=, ca_bundle, AWS_CA_BUNDLE or REQUESTS_CA_BUNDLE is set; " + why
    else:
        path = str(verify)
        first = next((step for step in rules if step[1] is not None), None)  # what botocore would pick
        if first is not None and first[1] == verify:
            rule, why = first[0], f"set by {first[2]}"
        else:
            rule, why = (
                Rule.VERIFY_ARGUMENT,
                "the client was created with verify=<path>, which overrides the rest",
            )
    return path, rule, why, verify


_WITHOUT_CERTIFI = """
import json, sys
sys.modules["certifi"] = None  # `import certifi` raises ImportError, as if certifi were uninstalled
from helpers import _aws, botocore_facts  # light: pandas and the bundle loader stay in the parent
from helpers.incident import REGION
from botocore.httpsession import get_cert_path
session = _aws.session(None)
path, rule, explanation, verify = botocore_facts._resolve(None, session)
client = session.client("iot-data", region_name=REGION)
used = get_cert_path(client._endpoint.http_session._verify)
print(json.dumps({"path": path, "rule": rule, "explanation": explanation, "verify": verify,
                  "client_path": used}))
"""


def ca_bundle_without_certifi(*, environ: dict[str, str] | None = None) -> CABundleChoice:
    """What :func:`effective_ca_bundle` says in a child Python where certifi cannot be imported.

    ``environ`` is the child's environment (default: this one); the child also builds a real client
    and the answer is checked against the file that client hands to urllib3.
    """
    import subprocess
    import sys

    from helpers._paths import ROOT

    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_CERTIFI],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ if environ is None else environ),
        timeout=60,
    )
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnusableError(f"the child Python without certifi failed: {tail}")
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    if seen["path"] != seen["client_path"]:
        raise UnusableError(
            f"effective_ca_bundle said {seen['path']} but botocore used {seen['client_path']}"
        )
    bundle, trouble = _load(seen["rule"], seen["path"]) if seen["path"] else (None, "")
    return CABundleChoice(
        seen["path"], Rule(seen["rule"]), bundle, seen["explanation"] + trouble, seen["verify"]
    )


def choices_frame(choices: dict[str, CABundleChoice]) -> pd.DataFrame:
    """One row per named set-up: rule, path, roots, whether the bundle carries VeriSign G5, and why."""
    import pandas as pd

    rows = [
        {
            "setup": setup,
            "rule": choice.rule,
            "path": choice.path,
            "roots": len(choice.bundle) if choice.bundle is not None else None,
            "carries_verisign_g5": bool(choice.bundle.find(ROOT_AT_FAULT))
            if choice.bundle is not None
            else None,
            "explanation": choice.explanation,
        }
        for setup, choice in choices.items()
    ]
    frame = pd.DataFrame(
        rows, columns=["setup", "rule", "path", "roots", "carries_verisign_g5", "explanation"]
    )
    return frame.astype({"roots": "Int64", "carries_verisign_g5": "boolean"})


# --- default iot-data host by botocore release ---------------------------------------------------


def version_key(version: str) -> tuple[int, ...]:
    """(1, 24, 30) for '1.24.30'; botocore releases are all plain dotted numbers."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+)*", version.strip()):
        raise InputError(f"{version!r} is not a botocore release number like '1.24.30'")
    return tuple(int(part) for part in version.strip().split("."))


@cache
def _history() -> pd.DataFrame:
    """The probed table from data/botocore (one row per release x region)."""
    import pandas as pd

    with data_file(*_HISTORY_CSV).open(newline="") as handle:
        frame = pd.DataFrame(list(csv.DictReader(handle)))
    return frame.assign(
        has_verisign_g5=frame["has_verisign_g5"].eq("True"),
        cacert_roots=frame["cacert_roots"].astype(int),
        _key=frame["version"].map(version_key),
    )


def default_endpoint_table(*, region: str | None = None) -> pd.DataFrame:
    """The default-endpoint history (probed releases, oldest first), optionally for one region."""
    frame = _history()
    if region is not None:
        _check_region(region)
        frame = frame[frame["region"] == region]
    return frame.sort_values(["_key", "region"]).drop(columns="_key").reset_index(drop=True)


def provenance() -> dict:
    """Where the default-endpoint table came from (script, sources, the discovered boundary)."""
    return json.loads(data_file(*_HISTORY_PROVENANCE).read_text())


def _check_region(region: str) -> None:
    """ValueError naming the covered regions when ``region`` is not in the table."""
    regions = sorted(_history()["region"].unique())
    if region not in regions:
        raise InputError(f"region {region!r} is not in the default-endpoint table; use one of {regions}")


@dataclass(frozen=True)
class DefaultEndpoint:
    """The ``iot-data`` host a botocore release picks by default, and how sure the table is of it."""

    botocore_version: str
    region: str
    covered: bool  # False: the table cannot answer (see basis); host and host_class are then None
    host: str | None
    host_class: HostClass | None
    basis: str  # 'probed', 'between probed X and Y, which agree', or why it is not covered
    vendored_has_verisign_g5: bool | None  # known only for probed releases


def default_data_endpoint(
    botocore_version: str | None = None, *, region: str = REGION, fetch: bool = False
) -> DefaultEndpoint:
    """The default ``iot-data`` host of a botocore release (the installed one by default), from the table.

    A probed release is answered directly; one between two probed releases only when both agree.
    Outside the table (older than the oldest, newer than the newest probed, or between a disagreeing
    pair) the result has ``covered=False`` and says why; a malformed version raises InputError, and so
    does a region the table does not hold unless ``fetch``. With ``fetch=True`` what the table lacks is
    read from the release's own wheel (fetched through pip from the user's index, or from the kit's
    cache); when that is impossible the result stays ``covered=False`` with the reason.
    """
    if botocore_version is None:
        import botocore

        botocore_version = botocore.__version__
    key = version_key(botocore_version)
    if fetch and region not in set(_history()["region"]):
        from helpers import _botocore_fetch

        _botocore_fetch.check_region(region)
        answer = DefaultEndpoint(
            botocore_version, region, False, None, None, f"region {region!r} is not in the table", None
        )
    else:
        _check_region(region)
        answer = _table_endpoint(botocore_version, key, region)
    if answer.covered or not fetch:
        return answer
    return _fetched_endpoint(botocore_version, region, answer.basis)


def _table_endpoint(botocore_version: str, key: tuple[int, ...], region: str) -> DefaultEndpoint:
    """:func:`default_data_endpoint` from the embedded table alone."""
    rows = _history()[lambda f: (f["region"] == region) & ~f["host_class"].isin(["absent", "error"])]
    rows = rows.sort_values("_key")
    exact = rows[rows["_key"] == key]
    if not exact.empty:
        row = exact.iloc[0]
        return DefaultEndpoint(
            botocore_version,
            region,
            True,
            row["default_host"],
            HostClass(row["host_class"]),
            "probed",
            bool(row["has_verisign_g5"]),
        )
    before, after = rows[rows["_key"] < key], rows[rows["_key"] > key]

    def uncovered(why: str) -> DefaultEndpoint:
        return DefaultEndpoint(botocore_version, region, False, None, None, why, None)

    if before.empty:
        return uncovered(f"older than the oldest probed release {rows.iloc[0]['version']}")
    if after.empty:
        return uncovered(
            f"newer than the newest probed release {rows.iloc[-1]['version']}; "
            "rerun scripts/build_botocore_history.py"
        )
    low, high = before.iloc[-1], after.iloc[0]
    if low["default_host"] != high["default_host"]:
        return uncovered(
            f"between probed {low['version']} ({low['default_host']}) and {high['version']} "
            f"({high['default_host']}), which disagree"
        )
    return DefaultEndpoint(
        botocore_version,
        region,
        True,
        low["default_host"],
        HostClass(low["host_class"]),
        f"between probed {low['version']} and {high['version']}, which agree",
        None,
    )


def _fetched_endpoint(botocore_version: str, region: str, table_says: str) -> DefaultEndpoint:
    """:func:`default_data_endpoint` from the release's own wheel (fetched or cached), never a guess."""
    from helpers import _botocore_fetch, endpoints

    def uncovered(why: str) -> DefaultEndpoint:
        return DefaultEndpoint(botocore_version, region, False, None, None, f"{table_says}; {why}", None)

    try:
        release = _botocore_fetch.release(botocore_version, regions=[region])
    except _botocore_fetch.NoSuchRelease:
        raise  # bad input (exit 2), not something the gate could not check
    except KitError as exc:
        return uncovered(f"could not read it from its wheel: {exc}")
    if release.absent:
        return uncovered(f"botocore {botocore_version} has no iot-data client ({release.basis})")
    host = release.hosts.get(region, "error: not probed")
    if host.startswith("error"):
        return uncovered(f"botocore {botocore_version} made no iot-data client for {region}: {host}")
    return DefaultEndpoint(
        botocore_version,
        region,
        True,
        host,
        endpoints.classify(host),
        release.basis,
        release.has_verisign_g5 if release.cacert_path else None,
    )


@dataclass(frozen=True)
class AtsBoundary:
    """Where the default ``iot-data`` host became ATS for one region, as probed."""

    region: str
    last_legacy: str
    first_ats: str
    first_ats_released: str
    exact: bool  # True when the two are consecutive releases (the bisected region); else an upper bound


def ats_boundary(*, region: str = REGION) -> AtsBoundary:
    """The last probed release with the legacy default host and the first with the ATS one."""
    table = default_endpoint_table(region=region)
    rows = table[table["host_class"].isin([HostClass.ATS, HostClass.LEGACY_VERISIGN])]
    is_ats = rows["host_class"].eq(HostClass.ATS).tolist()
    flips = [i for i in range(1, len(is_ats)) if is_ats[i] and not is_ats[i - 1]]
    if len(flips) != 1 or not all(is_ats[flips[0] :]):
        raise InputError(f"the table shows no single legacy -> ATS change for {region!r}")
    low, high = rows.iloc[flips[0] - 1], rows.iloc[flips[0]]
    boundary = provenance()["boundary"]
    exact = (boundary["last_legacy"], boundary["first_ats"]) == (low["version"], high["version"])
    return AtsBoundary(region, low["version"], high["version"], high["released"], exact)


def vendored_bundle(botocore_version: str, *, fetch: bool = False) -> tuple[Bundle | None, str]:
    """botocore's vendored ``cacert.pem`` for a release, and how the kit knows it.

    The installed botocore's file is read directly. Otherwise the default-endpoint table (data/botocore)
    records the SHA-256 of each probed release's ``cacert.pem``; when it equals a certifi release's
    ``cacert.pem`` digest (data/certifi), that release's roots are exactly the vendored file's. A release
    between two probed ones that carry the same file is taken to carry it too (said in the rule).
    When the data cannot say, ``fetch=True`` reads the file from the release's own wheel (fetched through
    pip from the user's index, or from the kit's cache); (None, reason) when that is impossible too.
    """
    bundle, rule = _vendored_from_data(botocore_version)
    if bundle is not None or not fetch:
        return bundle, rule
    return _vendored_fetched(botocore_version, rule)


def _vendored_fetched(botocore_version: str, data_says: str) -> tuple[Bundle | None, str]:
    """:func:`vendored_bundle` from the release's own wheel (fetched or cached)."""
    import dataclasses

    from helpers import _botocore_fetch, bundles

    try:
        release = _botocore_fetch.release(botocore_version)
    except _botocore_fetch.NoSuchRelease:
        raise  # bad input (exit 2), not something the gate could not check
    except KitError as exc:
        return None, f"{data_says}; could not read it from its wheel: {exc}"
    if release.pem is None:
        return None, f"botocore {botocore_version}'s wheel holds no vendored cacert.pem ({release.basis})"
    rule = f"botocore {botocore_version}'s vendored {release.cacert_path} ({release.basis})"
    bundle = bundles.from_pem(release.pem, name="botocore-vendored", version=botocore_version)
    return dataclasses.replace(bundle, source=rule), rule


def _vendored_from_data(botocore_version: str) -> tuple[Bundle | None, str]:
    """:func:`vendored_bundle` from the installed botocore and the kit's data alone."""
    import botocore

    from helpers import bundles

    if botocore_version == botocore.__version__:
        return bundles.botocore_vendored(), f"botocore {botocore_version}'s vendored cacert.pem (installed)"
    table = _history().sort_values(["_key", "region"]).drop_duplicates("version")
    key = version_key(botocore_version)
    exact = table[table["_key"] == key]
    if not exact.empty:
        sha, basis = exact.iloc[0]["cacert_sha256"], "probed"
    else:
        low, high = table[table["_key"] < key], table[table["_key"] > key]
        if low.empty or high.empty or low.iloc[-1]["cacert_sha256"] != high.iloc[0]["cacert_sha256"]:
            return None, (
                f"botocore {botocore_version}'s vendored cacert.pem is not in the kit's data "
                "(not probed, and its probed neighbours differ); pin certifi to check this side"
            )
        sha = low.iloc[-1]["cacert_sha256"]
        low_v, high_v = low.iloc[-1]["version"], high.iloc[0]["version"]
        basis = f"between probed {low_v} and {high_v}, which carry the same file"
    releases = bundles.certifi_releases()
    same = releases[releases["cacert_sha256"] == sha]
    if same.empty:
        return (
            None,
            f"botocore {botocore_version}'s vendored cacert.pem matches no certifi release in the kit's data",
        )
    version = same.iloc[0]["version"]
    bundle = bundles.certifi(version)
    rule = f"botocore {botocore_version}'s vendored cacert.pem ({basis}; identical to certifi {version}'s)"
    return bundles.Bundle(
        name="botocore-vendored",
        version=botocore_version,
        source=rule,
        certificates=bundle.certificates,
        problems=bundle.problems,
        warnings=bundle.warnings,
    ), rule


def botocore_retries() -> pd.DataFrame:
    """One row per botocore retry mode: attempts for a connection error and the backoff sleeps they add.

    Read from the installed botocore: standard mode's attempts and jittered backoff
    (``rand * base * 2**(n-1)`` with base 50 ms), legacy mode's ``_retry.json`` (``rand * 2**(n-1)`` s).
    ``default`` marks the mode this botocore uses when nothing is configured.
    """
    import botocore.loaders
    import pandas as pd
    from botocore.configprovider import BOTOCORE_DEFAUT_SESSION_VARIABLES
    from botocore.retries import standard

    default_mode = BOTOCORE_DEFAUT_SESSION_VARIABLES["retry_mode"][2]
    legacy = botocore.loaders.Loader().load_data("_retry")["retry"]["__default__"]
    backoff = standard.ExponentialBackoff
    base = backoff._DEFAULT_BACKOFF_CONFIG["non_throttling_base_scale"]
    modes = {
        "standard": (standard.DEFAULT_MAX_ATTEMPTS, base, backoff._BASE, backoff._MAX_BACKOFF),
        "legacy": (legacy["max_attempts"], 1.0, legacy["delay"]["growth_factor"], float("inf")),
    }
    rows = []
    for mode, (attempts, scale, growth, cap) in modes.items():
        worst = sum(min(scale * growth ** (n - 1), cap) for n in range(1, attempts))
        rows.append(
            {
                "retry_mode": mode,
                "default": mode == default_mode,
                "attempts": attempts,
                "backoff": f"rand(0,1) x {scale:g} s x {growth}^(n-1)",
                "expected_sleep_s": worst / 2,
                "worst_sleep_s": worst,
            }
        )
    return pd.DataFrame(rows)
