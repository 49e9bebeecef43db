"""AWS IoT endpoints and what botocore does with them: types, host classes, CA bundle, default host."""

from __future__ import annotations

import csv
import json
import os
import re
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from helpers._lab_routing import environ as _environ
from helpers._paths import data_file

if TYPE_CHECKING:  # imported where used: the child Python of ca_bundle_without_certifi needs neither
    import pandas as pd

    from helpers import bundles

__all__ = [
    "check_region",
    "ENDPOINT_TYPES",
    "HOST_CLASSES",
    "RULES",
    "AtsBoundary",
    "CABundleChoice",
    "DefaultEndpoint",
    "ats_boundary",
    "ats_data_client",
    "ca_bundle_without_certifi",
    "choices_frame",
    "classify",
    "clear_cache",
    "default_data_endpoint",
    "default_endpoint_table",
    "describe",
    "effective_ca_bundle",
    "redact_host",
    "scenario",
]

ENDPOINT_TYPES = ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs")
HOST_CLASSES = ("legacy-verisign", "ats", "control-plane", "credentials", "jobs", "unknown")
RULES = (
    "verify-argument",
    "session-ca_bundle",
    "AWS_CA_BUNDLE",
    "config-file",
    "REQUESTS_CA_BUNDLE",
    "certifi",
    "botocore-vendored",
    "verification-off",
)
DEFAULT_REGION = "ap-northeast-2"  # the incident's region
G5_NAME = "VeriSign Class 3 Public Primary Certification Authority - G5"  # the legacy endpoint's root
_HISTORY_CSV = ("botocore", "iot_data_default_endpoint.csv")
_HISTORY_PROVENANCE = ("botocore", "iot_data_default_endpoint.provenance.json")


# --- sessions: every AWS-facing function resolves ``session=None`` here -------------------------


def _session(session=None):
    """A boto3 Session: the given one, one wrapping a botocore session, or boto3's default session."""
    import boto3
    import botocore.session

    if session is None:
        if boto3.DEFAULT_SESSION is None:
            boto3.setup_default_session()
        return boto3.DEFAULT_SESSION
    if isinstance(session, boto3.session.Session):
        return session
    if isinstance(session, botocore.session.Session):
        return boto3.session.Session(botocore_session=session)
    raise TypeError(f"session must be a boto3 or botocore Session (or None), not {type(session).__name__}")


def _region(session, region: str | None) -> str:
    """``region`` or the session's region; a clear error when there is neither."""
    region = region or session.region_name
    if not region:
        raise ValueError("no AWS region: pass region='ap-northeast-2' (say) or set AWS_DEFAULT_REGION")
    return region


# --- host names ---------------------------------------------------------------------------------

_SUFFIX = re.compile(r"\.(amazonaws\.com|amazonaws\.com\.cn)$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")


def check_region(region: str) -> str:
    """Return ``region`` if it is shaped like an AWS region name, else raise a one-line ValueError."""
    if not isinstance(region, str) or not _REGION.match(region):
        raise ValueError(f"region={region!r} is not an AWS region name; use one like 'ap-northeast-2'")
    return region


_ACCOUNT_PREFIX = re.compile(r"^[a-z0-9]{8,}(-ats)?$")


def _host_of(host_or_url: str) -> str:
    """Lower-case host name of a host or URL (scheme, port, path and trailing dot removed)."""
    text = host_or_url.strip().lower()
    text = text.split("://", 1)[-1].split("/", 1)[0]
    text = text.rsplit("@", 1)[-1]
    text = re.sub(r":\d+$", "", text)
    return text.rstrip(".")


def classify(host: str) -> str:
    """The class of an IoT host from its name alone: one of :data:`HOST_CLASSES`.

    - ``legacy-verisign``: ``data.iot.R`` and account-specific ``PREFIX.iot.R`` (the ``iot:Data`` type,
      whose certificate chains to VeriSign Class 3 G5 — gone from certifi since 2020.12.5);
    - ``ats``: ``data-ats.iot.R``, ``PREFIX-ats.iot.R``, China's ``data.ats.iot.R`` / ``PREFIX.ats.iot.R``
      and the FIPS data host ``data.iot-fips.R`` (the host botocore's ``data-ats.iot`` entry resolves to);
    - ``control-plane``: ``iot.R`` / ``iot-fips.R``; ``credentials``: ``PREFIX.credentials.iot.R``;
      ``jobs``: ``PREFIX.jobs.iot.R`` and ``data.jobs.iot.R``; anything else is ``unknown``.

    R is a region and the suffix ``amazonaws.com`` or ``amazonaws.com.cn``; a URL is accepted too.
    """
    if not isinstance(host, str):
        raise TypeError(f"classify() takes a host name string, not {type(host).__name__}")
    name = _host_of(host)
    suffix = _SUFFIX.search(name)
    if not suffix:
        return "unknown"
    labels = name[: suffix.start()].split(".")
    if len(labels) < 2 or not _REGION.match(labels[-1]):
        return "unknown"
    head, service = labels[:-2], labels[-2]
    if service not in ("iot", "iot-fips"):
        return "unknown"
    fips = service == "iot-fips"
    match head:
        case []:
            return "control-plane"
        case ["data"]:
            return "ats" if fips else "legacy-verisign"
        case ["data-ats"] | ["data", "ats"]:
            return "ats"
        case [prefix, "ats"] if _ACCOUNT_PREFIX.match(prefix):
            return "ats"
        case [prefix, "credentials"] if _ACCOUNT_PREFIX.match(prefix):
            return "credentials"
        case ["data", "jobs"]:
            return "jobs"
        case [prefix, "jobs"] if _ACCOUNT_PREFIX.match(prefix):
            return "jobs"
        case [prefix] if _ACCOUNT_PREFIX.match(prefix):
            return "ats" if prefix.endswith("-ats") else "legacy-verisign"
    return "unknown"


def redact_host(host: str) -> str:
    """The host with its account-specific prefix replaced by ``<prefix>`` (for anything exported)."""
    name = _host_of(host)
    first, _, rest = name.partition(".")
    if rest and first not in ("data", "data-ats", "iot", "iot-fips") and _ACCOUNT_PREFIX.match(first):
        return ("<prefix>-ats." if first.endswith("-ats") else "<prefix>.") + rest
    return name


# --- endpoint types and the ATS client ----------------------------------------------------------


def describe(session=None, *, region: str | None = None, redact: bool = False) -> pd.DataFrame:
    """One row per IoT endpoint type: ``describe_endpoint``'s address and its :func:`classify` class.

    A type the account cannot describe gets its error in ``error`` (the row is kept, not dropped).
    ``redact=True`` replaces account-specific prefixes with ``<prefix>`` (for reports).
    """
    import pandas as pd
    from botocore.exceptions import BotoCoreError, ClientError

    boto_session = _session(session)
    region = _region(boto_session, region)
    iot = boto_session.client("iot", region_name=region)
    rows = []
    for endpoint_type in ENDPOINT_TYPES:
        try:
            address, error = iot.describe_endpoint(endpointType=endpoint_type)["endpointAddress"], None
        except (ClientError, BotoCoreError) as exc:
            address, error = None, f"{type(exc).__name__}: {exc}"
        rows.append({"endpoint_type": endpoint_type, "address": address, "error": error})
    frame = pd.DataFrame(rows, columns=["endpoint_type", "address", "error"])
    return (
        frame.assign(
            # a failed type has no address (NaN in pandas' string column): keep the row, classify nothing
            host_class=frame["address"].map(lambda a: classify(a) if isinstance(a, str) else None),
            region=region,
            address=frame["address"].map(lambda a: redact_host(a) if isinstance(a, str) and redact else a),
        )
        .loc[:, ["endpoint_type", "address", "host_class", "region", "error"]]
        .reset_index(drop=True)
    )


_ATS_ADDRESSES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # botocore session -> {region: host}


def _ats_address(boto_session, region: str) -> str:
    """The ``iot:Data-ATS`` address for (session, region), asked once and then cached."""
    per_region = _ATS_ADDRESSES.setdefault(boto_session._session, {})
    if region not in per_region:
        iot = boto_session.client("iot", region_name=region)
        per_region[region] = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    return per_region[region]


def ats_data_client(session=None, *, region: str | None = None, **client_kwargs):
    """An ``iot-data`` client bound to ``https://`` + the ``iot:Data-ATS`` address: the incident's fix.

    The address is looked up once per (session, region) and cached; :func:`clear_cache` forgets it.
    ``client_kwargs`` go to ``session.client`` (``verify``, ``config``, ...), except ``endpoint_url``.
    """
    if "endpoint_url" in client_kwargs:
        raise TypeError("ats_data_client() chooses endpoint_url itself; build the client yourself instead")
    boto_session = _session(session)
    region = _region(boto_session, region)
    address = _ats_address(boto_session, region)
    return boto_session.client(
        "iot-data", region_name=region, endpoint_url=f"https://{address}", **client_kwargs
    )


def clear_cache() -> None:
    """Forget every cached ``iot:Data-ATS`` address."""
    _ATS_ADDRESSES.clear()


_IOT_DATA_HOSTS = {"legacy": "data.iot", "ats": "data-ats.iot"}


@contextmanager
def scenario(
    env=None,
    *,
    certifi: str | bundles.Bundle | None = None,
    iot_data_endpoint: str = "default",
    region: str | None = None,
    session=None,
    max_attempts: int | None = None,
) -> Iterator[dict[str, str]]:
    """Within the block, botocore trusts ``certifi`` and ``iot-data`` goes to ``iot_data_endpoint``.

    With a lab ``env`` this is ``env.botocore_env(...)`` (the release's lab trust view). Live
    (``env=None``) it sets ``AWS_CA_BUNDLE`` to the real release's roots and
    ``AWS_ENDPOINT_URL_IOT_DATA_PLANE`` to the real host ('legacy' = data.iot.R, 'ats' = data-ats.iot.R,
    'account-ats' = the account's iot:Data-ATS address); both are restored afterwards.
    ``max_attempts`` sets AWS_MAX_ATTEMPTS (1 shows a TLS failure at once, without retries).
    """
    from helpers import bundles

    if env is not None:
        with env.botocore_env(
            certifi=certifi, iot_data_endpoint=iot_data_endpoint, max_attempts=max_attempts
        ) as applied:
            yield applied
        return
    values: dict[str, str] = {}
    if max_attempts is not None:
        values["AWS_MAX_ATTEMPTS"] = str(int(max_attempts))
    if certifi is not None:
        bundle = certifi if isinstance(certifi, bundles.Bundle) else bundles.certifi(certifi)
        values["AWS_CA_BUNDLE"] = str(bundle.path())
    if iot_data_endpoint != "default":
        boto_session = _session(session)
        region = _region(boto_session, region)
        if iot_data_endpoint == "account-ats":
            host = _ats_address(boto_session, region)
        elif iot_data_endpoint in _IOT_DATA_HOSTS:
            suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
            host = f"{_IOT_DATA_HOSTS[iot_data_endpoint]}.{region}.{suffix}"
        else:
            raise ValueError(
                f"iot_data_endpoint={iot_data_endpoint!r}: use default, legacy, ats or account-ats"
            )
        values["AWS_ENDPOINT_URL_IOT_DATA_PLANE"] = f"https://{host}"
    with _environ(values):
        yield values


# --- which CA bundle botocore loads -------------------------------------------------------------


@dataclass(frozen=True)
class CABundleChoice:
    """The CA bundle botocore verifies TLS with, the rule of its precedence that chose it, and why."""

    path: str | None  # None when verification is off
    rule: str  # one of RULES
    bundle: bundles.Bundle | None  # None when off, or when the file cannot be loaded (see explanation)
    explanation: str
    verify: bool | str  # the value botocore holds (client._endpoint.http_session._verify)


def _session_rules(core) -> list[tuple[str, object, str]]:
    """botocore's own answer for each session-level step: (rule, value, where it came from)."""
    env_name = core.session_var_map["ca_bundle"][1]
    config_file = core.get_config_variable("config_file")
    return [
        (
            "session-ca_bundle",
            core.get_config_variable("ca_bundle", methods=("instance",)),
            "the session's ca_bundle (set_config_variable)",
        ),
        (
            "AWS_CA_BUNDLE",
            core.get_config_variable("ca_bundle", methods=("env",)),
            f"the {env_name} environment variable",
        ),
        (
            "config-file",
            core.get_config_variable("ca_bundle", methods=("config",)),
            f"ca_bundle in the config file {config_file} (profile {core.profile or 'default'})",
        ),
        (
            "REQUESTS_CA_BUNDLE",
            os.environ.get("REQUESTS_CA_BUNDLE"),
            "the REQUESTS_CA_BUNDLE environment variable (botocore's EndpointCreator reads it)",
        ),
    ]


def _default_bundle_rule() -> tuple[str, str, str]:
    """(rule, path, explanation) for verify=True: certifi if botocore imported it, else its vendored file."""
    from botocore import httpsession

    path = httpsession.get_cert_path(True)
    if httpsession.where.__module__.startswith("certifi"):
        return "certifi", path, "certifi is importable, so botocore uses certifi.where()"
    return (
        "botocore-vendored",
        path,
        "certifi could not be imported when botocore loaded, so it uses its vendored cacert.pem",
    )


def _load(rule: str, path: str) -> tuple[bundles.Bundle | None, str]:
    """The Bundle at ``path`` (named after the rule), or None and why it cannot be loaded."""
    from helpers import bundles

    try:
        if rule == "certifi":  # the distribution's version, '2026.10.19.post1', as bundles.certifi() names it
            import importlib.metadata

            return bundles.from_pem(path, name="certifi", version=importlib.metadata.version("certifi")), ""
        if rule == "botocore-vendored":
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


def _resolve(client, session) -> tuple[str | None, str, str, bool | str]:
    """(path, rule, explanation, botocore's verify value) for :func:`effective_ca_bundle`, unloaded."""
    core = _session(session)._session
    rules = _session_rules(core)
    if client is not None:
        http_session = getattr(getattr(client, "_endpoint", None), "http_session", None)
        if not hasattr(http_session, "_verify"):
            raise TypeError(f"{type(client).__name__} is not a botocore client with an HTTP session")
        verify = http_session._verify
    else:
        verify = next((value for _, value, _ in rules if value is not None), True)
    if verify is False:
        return None, "verification-off", "verify=False: certificates are NOT checked", verify
    if isinstance(verify, str) and not verify.strip():
        raise ValueError(
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
                "verify-argument",
                "the client was created with verify=<path>, which overrides the rest",
            )
    return path, rule, why, verify


_WITHOUT_CERTIFI = """
import json, sys
sys.modules["certifi"] = None  # `import certifi` raises ImportError, as if certifi were uninstalled
from helpers import endpoints  # light: pandas and the bundle loader stay in the parent
from botocore.httpsession import get_cert_path
session = endpoints._session(None)
path, rule, explanation, verify = endpoints._resolve(None, session)
client = session.client("iot-data", region_name="ap-northeast-2")
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
        raise RuntimeError(f"the child Python without certifi failed: {tail}")
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    if seen["path"] != seen["client_path"]:
        raise RuntimeError(f"effective_ca_bundle said {seen['path']} but botocore used {seen['client_path']}")
    bundle, trouble = _load(seen["rule"], seen["path"]) if seen["path"] else (None, "")
    return CABundleChoice(seen["path"], seen["rule"], bundle, seen["explanation"] + trouble, seen["verify"])


def choices_frame(choices: dict[str, CABundleChoice]) -> pd.DataFrame:
    """One row per named set-up: rule, path, roots, whether the bundle carries VeriSign G5, and why."""
    import pandas as pd

    rows = [
        {
            "setup": setup,
            "rule": choice.rule,
            "path": choice.path,
            "roots": len(choice.bundle) if choice.bundle is not None else None,
            "carries_verisign_g5": bool(choice.bundle.find(G5_NAME)) if choice.bundle is not None else None,
            "explanation": choice.explanation,
        }
        for setup, choice in choices.items()
    ]
    frame = pd.DataFrame(
        rows, columns=["setup", "rule", "path", "roots", "carries_verisign_g5", "explanation"]
    )
    return frame.astype({"roots": "Int64", "carries_verisign_g5": "boolean"})


# --- default iot-data host by botocore release ---------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    """(1, 24, 30) for '1.24.30'; botocore releases are all plain dotted numbers."""
    if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+)*", version.strip()):
        raise ValueError(f"{version!r} is not a botocore release number like '1.24.30'")
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
        _key=frame["version"].map(_version_key),
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
        raise ValueError(f"region {region!r} is not in the default-endpoint table; use one of {regions}")


@dataclass(frozen=True)
class DefaultEndpoint:
    """The ``iot-data`` host a botocore release picks by default, and how sure the table is of it."""

    botocore_version: str
    region: str
    covered: bool  # False: the table cannot answer (see basis); host and host_class are then None
    host: str | None
    host_class: str | None
    basis: str  # 'probed', 'between probed X and Y, which agree', or why it is not covered
    vendored_has_verisign_g5: bool | None  # known only for probed releases


def default_data_endpoint(
    botocore_version: str | None = None, *, region: str = DEFAULT_REGION
) -> DefaultEndpoint:
    """The default ``iot-data`` host of a botocore release (the installed one by default), from the table.

    A probed release is answered directly; one between two probed releases only when both agree.
    Outside the table (older than the oldest, newer than the newest probed, or between a disagreeing
    pair) the result has ``covered=False`` and says why; a malformed version or a region the table
    does not hold raises ValueError.
    """
    if botocore_version is None:
        import botocore

        botocore_version = botocore.__version__
    key = _version_key(botocore_version)
    _check_region(region)
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
            row["host_class"],
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
        low["host_class"],
        f"between probed {low['version']} and {high['version']}, which agree",
        None,
    )


@dataclass(frozen=True)
class AtsBoundary:
    """Where the default ``iot-data`` host became ATS for one region, as probed."""

    region: str
    last_legacy: str
    first_ats: str
    first_ats_released: str
    exact: bool  # True when the two are consecutive releases (the bisected region); else an upper bound


def ats_boundary(*, region: str = DEFAULT_REGION) -> AtsBoundary:
    """The last probed release with the legacy default host and the first with the ATS one."""
    rows = default_endpoint_table(region=region)[lambda f: f["host_class"].isin(["ats", "legacy-verisign"])]
    is_ats = rows["host_class"].eq("ats").tolist()
    flips = [i for i in range(1, len(is_ats)) if is_ats[i] and not is_ats[i - 1]]
    if len(flips) != 1 or not all(is_ats[flips[0] :]):
        raise ValueError(f"the table shows no single legacy -> ATS change for {region!r}")
    low, high = rows.iloc[flips[0] - 1], rows.iloc[flips[0]]
    boundary = provenance()["boundary"]
    exact = (boundary["last_legacy"], boundary["first_ats"]) == (low["version"], high["version"])
    return AtsBoundary(region, low["version"], high["version"], high["released"], exact)
