"""AWS IoT endpoint names: their types, what class a host is, account prefixes, and the ATS client."""

from __future__ import annotations

import re
import weakref
from functools import cache
from typing import TYPE_CHECKING

from helpers import _aws
from helpers.kinds import HostClass, InputError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ENDPOINT_TYPES",
    "MQTT_ALPN",
    "MQTT_PORT",
    "ats_address",
    "ats_data_client",
    "check_region",
    "iot_regions",
    "classify",
    "clear_cache",
    "describe",
    "redact_host",
]

ENDPOINT_TYPES = ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs")
MQTT_PORT = 8883  # where devices speak MQTT over TLS with a client certificate
MQTT_ALPN = "x-amzn-mqtt-ca"  # the ALPN protocol that asks for the same MQTT on port 443


# --- host names ---------------------------------------------------------------------------------

_SUFFIX = re.compile(r"\.(amazonaws\.com|amazonaws\.com\.cn)$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d+$")


def check_region(region: str) -> str:
    """Return ``region`` if AWS IoT is offered there in the ``aws`` partition (botocore's own endpoint
    data says), else raise a one-line InputError listing the regions to use. China and GovCloud
    regions are refused up front: their endpoints and certificate authorities differ, and the kit's
    lab and data are for the ``aws`` partition."""
    if not isinstance(region, str) or not _REGION.match(region):
        raise InputError(f"region={region!r} is not an AWS region name; use one like 'ap-northeast-2'")
    regions = iot_regions()
    if region not in regions:
        partition = next((p for p, names in _other_partitions().items() if region in names), None)
        why = (
            f"is in the {partition} partition, which the kit does not cover"
            if partition
            else ("has no AWS IoT (botocore's endpoint data)")
        )
        raise InputError(f"region={region!r} {why}; use one of {', '.join(regions)}")
    return region


@cache
def iot_regions() -> list[str]:
    """The regions of the ``aws`` partition where AWS IoT is offered, from botocore's endpoint data."""
    import botocore.session

    return botocore.session.get_session().get_available_regions("iot")


@cache
def _other_partitions() -> dict[str, list[str]]:
    """IoT regions of the other partitions (aws-cn, aws-us-gov, ...), by partition."""
    import botocore.session

    session = botocore.session.get_session()
    return {
        p: session.get_available_regions("iot", partition_name=p)
        for p in session.get_available_partitions()
        if p != "aws"
    }


_ACCOUNT_PREFIX = re.compile(r"^[a-z0-9]{8,}(-ats)?$")


def _host_of(host_or_url: str) -> str:
    """Lower-case host name of a host or URL (scheme, port, path and trailing dot removed)."""
    text = host_or_url.strip().lower()
    text = text.split("://", 1)[-1].split("/", 1)[0]
    text = text.rsplit("@", 1)[-1]
    text = re.sub(r":\d+$", "", text)
    return text.rstrip(".")


def classify(host: str) -> HostClass:
    """The class of an IoT host from its name alone: a :class:`~helpers.kinds.HostClass`.

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
        return HostClass.UNKNOWN
    labels = name[: suffix.start()].split(".")
    if len(labels) < 2 or not _REGION.match(labels[-1]):
        return HostClass.UNKNOWN
    head, service = labels[:-2], labels[-2]
    if service not in ("iot", "iot-fips"):
        return HostClass.UNKNOWN
    fips = service == "iot-fips"
    match head:
        case []:
            return HostClass.CONTROL_PLANE
        case ["data"]:
            return HostClass.ATS if fips else HostClass.LEGACY_VERISIGN
        case ["data-ats"] | ["data", "ats"]:
            return HostClass.ATS
        case [prefix, "ats"] if _ACCOUNT_PREFIX.match(prefix):
            return HostClass.ATS
        case [prefix, "credentials"] if _ACCOUNT_PREFIX.match(prefix):
            return HostClass.CREDENTIALS
        case ["data", "jobs"]:
            return HostClass.JOBS
        case [prefix, "jobs"] if _ACCOUNT_PREFIX.match(prefix):
            return HostClass.JOBS
        case [prefix] if _ACCOUNT_PREFIX.match(prefix):
            return HostClass.ATS if prefix.endswith("-ats") else HostClass.LEGACY_VERISIGN
    return HostClass.UNKNOWN


def redact_host(host: str) -> str:
    """The host with its account-specific prefix masked as ``<prefix-3f2a>`` (for anything exported)."""
    from helpers.redaction import prefix_placeholder

    name = _host_of(host)
    first, _, rest = name.partition(".")
    if rest and first not in ("data", "data-ats", "iot", "iot-fips") and _ACCOUNT_PREFIX.match(first):
        prefix = first.removesuffix("-ats")
        return prefix_placeholder(prefix) + ("-ats." if first.endswith("-ats") else ".") + rest
    return name


# --- endpoint types and the ATS client ----------------------------------------------------------


def describe(session=None, *, region: str | None = None, redact: bool = False) -> pd.DataFrame:
    """One row per IoT endpoint type: ``describe_endpoint``'s address and its :func:`classify` class.

    A type the account cannot describe gets its error in ``error`` (the row is kept, not dropped).
    ``redact=True`` masks account-specific prefixes as ``<prefix-3f2a>`` (for reports).
    """
    import pandas as pd
    from botocore.exceptions import BotoCoreError, ClientError

    boto_session = _aws.session(session)
    region = _aws.region(boto_session, region)
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


def ats_address(session=None, *, region: str | None = None) -> str:
    """The account's ``iot:Data-ATS`` address for (session, region), asked once and then cached."""
    boto_session = _aws.session(session)
    region = _aws.region(boto_session, region)
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
    boto_session = _aws.session(session)
    region = _aws.region(boto_session, region)
    address = ats_address(boto_session, region=region)
    return boto_session.client(
        "iot-data", region_name=region, endpoint_url=f"https://{address}", **client_kwargs
    )


def clear_cache() -> None:
    """Forget every cached ``iot:Data-ATS`` address."""
    _ATS_ADDRESSES.clear()
