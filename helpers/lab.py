"""The offline lab: AWS IoT endpoints on real TLS at 127.0.0.1, served by moto behind twins of real chains.

``with lab.environment("lab", region="ap-northeast-2") as env:`` starts a server on an ephemeral port
that picks its certificate chain by SNI (legacy ``data.iot.<region>`` names get the VeriSign G5 ->
Symantec G4 twin chain, ``-ats`` names and the control plane get the Amazon Trust Services twins: RSA
to any client offering RSA, ECDSA only to ECDSA-only clients, as real ATS endpoints do), routes
``*.amazonaws.com`` to it in this process (``_lab_routing``: other names are refused), sets fake AWS
credentials and the trust view of the installed certifi, and creates a thing ready for shadow calls.
One lab at a time per process: while a lab serves or its environment is open, another is refused.
It also speaks MQTT 3.1.1 (``_lab_mqtt``) with client certificates, as AWS IoT device endpoints do: on
8883 (a second listener, which the routing maps 8883 to) and on 443 with ALPN ``x-amzn-mqtt-ca``; the
chain is chosen by SNI as for HTTPS. Device certificates are moto's (``env.register_device()``): the
lab trusts exactly the certificates moto holds as ACTIVE, so any other is refused in the TLS handshake.
``lab.environment("live", ...)`` gives the same surface against real AWS with your credentials.
Inside, ``env.botocore_env(certifi="2021.10.8", iot_data_endpoint="legacy")`` sets the environment
variables that make an unchanged ``boto3.client("iot-data")`` behave as it did in the incident.
This module holds the environments; the server itself is ``_lab_server``.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from helpers import _aws, _lab_routing, _x509, bundles, endpoints
from helpers._io import atomic_write_bytes
from helpers._lab_server import (
    ATS_SERVER_CIPHERS,
    FAKE_ACCESS_KEY_ID,
    MQTT_ALPN,
    MQTT_PORT,
    Lab,
    LabError,
    chain_for,
    close_scope,
    open_scope,
)
from helpers._lab_twins import LAB_OU, LabPKI, is_lab_twin, pki, trust_view, twin_roots
from helpers.incident import REGION, ROOT_AT_FAULT, THING_NAME, WORKING_CERTIFI
from helpers.kinds import InputError, Mode

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ATS_SERVER_CIPHERS",
    "CHECKED_ENDPOINTS",
    "FAKE_ACCESS_KEY_ID",
    "MQTT_ALPN",
    "MQTT_PORT",
    "DeviceCredentials",
    "DeviceEndpoint",
    "ROOT_FILE_ROOTS",
    "LAB_OU",
    "Lab",
    "LabEnv",
    "LabError",
    "LabPKI",
    "LiveEnv",
    "chain_for",
    "environment",
    "is_lab_twin",
    "pki",
    "real_root_file",
    "root_file_verdicts",
    "trust_view",
    "twin_roots",
]

_IOT_DATA_HOSTS = {"legacy": "data_legacy", "ats": "data_ats", "account-ats": "account_ats"}  # -> endpoint
IOT_DATA_ENDPOINTS = ("default", *_IOT_DATA_HOSTS)
CHECKED_ENDPOINTS = tuple(_IOT_DATA_HOSTS.values())  # what a check covers by default


_ENDPOINT_NOTES = {
    "control_plane": "IoT control plane (describe_endpoint, create_thing)",
    "data_legacy": "iot-data default endpoint before botocore 1.24.30",
    "data_ats": "iot-data default endpoint since botocore 1.24.30",
    "account_ats": "describe_endpoint(endpointType='iot:Data-ATS'), the fix",
    "account_legacy": "describe_endpoint(endpointType='iot:Data'), legacy",
}


def _endpoints(iot, region: str) -> dict[str, str]:
    """The IoT endpoints of a region, the account-specific ones from ``describe_endpoint``."""
    return {
        "control_plane": f"iot.{region}.amazonaws.com",
        "data_legacy": f"data.iot.{region}.amazonaws.com",
        "data_ats": f"data-ats.iot.{region}.amazonaws.com",
        "account_ats": iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"],
        "account_legacy": iot.describe_endpoint(endpointType="iot:Data")["endpointAddress"],
    }


@dataclass(frozen=True)
class DeviceEndpoint:
    """Where a device connects: host, port, ALPN protocol (None on 8883) and the chain it gets."""

    name: str  # 'legacy 8883', 'ats 443', ...
    host: str
    port: int
    alpn: str | None
    chain: str  # 'legacy' (VeriSign G5) or 'ats' (Amazon Root CA 1)


@dataclass(frozen=True)
class DeviceCredentials:
    """A device certificate moto issued and registered (attached to ``thing_name``), with its key.

    ``cert_path`` / ``key_path``: 0600 files in the lab's private folder, removed when the lab stops.
    ``endpoint``: the account's ATS device endpoint (``<prefix>-ats.iot.<region>.amazonaws.com``).
    """

    thing_name: str
    cert_id: str
    cert_arn: str
    cert_pem: str
    key_pem: str
    cert_path: Path
    key_path: Path
    endpoint: str


@dataclass
class _Env:
    """What lab and live mode share: the region's endpoints, trust by certifi release, and the
    environment that makes unchanged boto3 code behave like the incident's."""

    region: str
    thing_name: str
    endpoints: dict[str, str]

    mode = Mode.LAB

    def trust_view(self, release: str | bundles.Bundle) -> bundles.Bundle:
        """The trust store that stands for ``release`` (a certifi version or a Bundle) here.

        ``.path()`` of it is a PEM file for boto3's ``verify=`` or ``AWS_CA_BUNDLE``.
        """
        raise NotImplementedError

    def fetch_chain(self, host: str, port: int = 443, **options):
        """``chains.fetch_chain`` while this environment is in use (LabError once a lab has stopped, so a
        re-run cell never reaches the real host by mistake)."""
        from helpers import chains

        self._check()
        return chains.fetch_chain(host, port, **options)

    def try_mqtt(self, endpoint: DeviceEndpoint, **options):
        """``devices.try_mqtt`` to one of :meth:`device_endpoints` (its host, port and ALPN) while this
        environment is in use: LabError once a lab has stopped, as :meth:`fetch_chain`."""
        from helpers import devices

        self._check()
        return devices.try_mqtt(endpoint.host, endpoint.port, alpn=endpoint.alpn, **options)

    def describe_endpoints(self, *, redact: bool = True) -> pd.DataFrame:
        """``endpoints.describe`` for this environment's region while it is in use (LabError once a lab
        has stopped, so a re-run cell never calls real AWS by mistake)."""
        self._check()
        return endpoints.describe(region=self.region, redact=redact)

    def device_endpoints(self) -> list[DeviceEndpoint]:
        """The account's MQTT device endpoints: legacy and ATS, each on 8883 and on 443 with ALPN."""
        return [
            DeviceEndpoint(f"{kind} {port}", self.endpoints[f"account_{kind}"], port, alpn, kind)
            for kind in ("legacy", "ats")
            for port, alpn in ((MQTT_PORT, None), (443, MQTT_ALPN))
        ]

    def device_root_file(self, real_root: str | os.PathLike) -> Path:
        """The root file to give a device that holds the real root PEM ``real_root`` (a device's
        root-CA.crt): here the file itself; in the lab its trust view (real roots -> twins)."""
        return Path(real_root)

    def checked_hosts(self) -> list[str]:
        """The hosts a check covers by default: the legacy, ATS and account ATS data endpoints."""
        return [self.endpoints[name] for name in CHECKED_ENDPOINTS]

    def _check(self) -> None:
        """Raise if this environment can no longer be used."""

    def endpoints_frame(self, *, redact: bool = True) -> pd.DataFrame:
        """One row per endpoint: name, host (account prefix redacted unless ``redact=False``), class, what."""
        import pandas as pd

        return pd.DataFrame(
            [
                {
                    "endpoint": name,
                    "host": endpoints.redact_host(host) if redact else host,
                    "class": endpoints.classify(host),
                    "what": _ENDPOINT_NOTES[name],
                }
                for name, host in self.endpoints.items()
            ]
        )

    def iot_data_url(self, which: str = "legacy") -> str:
        """``https://`` URL of an iot-data endpoint: 'legacy', 'ats' or 'account-ats'."""
        if which not in _IOT_DATA_HOSTS:
            raise InputError(f"iot_data_endpoint={which!r}: use one of {', '.join(IOT_DATA_ENDPOINTS)}")
        return f"https://{self.endpoints[_IOT_DATA_HOSTS[which]]}"

    @contextmanager
    def botocore_env(
        self,
        *,
        certifi: str | bundles.Bundle | None = None,
        iot_data_endpoint: str = "default",
        max_attempts: int | None = None,
        retry_mode: str | None = None,
    ) -> Iterator[dict[str, str | None]]:
        """Environment variables that make unchanged boto3 code behave like the incident's environment.

        ``certifi``: AWS_CA_BUNDLE = that release's trust view (stands in for "this certifi is
        installed"). ``iot_data_endpoint``: 'legacy' sets AWS_ENDPOINT_URL_IOT_DATA_PLANE to
        data.iot.<region> (what botocore < 1.24.30 chose by default); 'ats' / 'account-ats' the ATS
        hosts; 'default' leaves botocore's choice. ``max_attempts`` / ``retry_mode``: AWS_MAX_ATTEMPTS /
        AWS_RETRY_MODE (None keeps what is set). AWS_DEFAULT_REGION is this environment's region.
        Everything is restored after the block. Yields the variables it set.
        """
        self._check()
        values: dict[str, str | None] = {"AWS_DEFAULT_REGION": self.region}
        if certifi is not None:
            values["AWS_CA_BUNDLE"] = str(self.trust_view(certifi).path())
        if iot_data_endpoint != "default":
            values["AWS_ENDPOINT_URL_IOT_DATA_PLANE"] = self.iot_data_url(iot_data_endpoint)
        if max_attempts is not None:
            values["AWS_MAX_ATTEMPTS"] = str(int(max_attempts))
        if retry_mode is not None:
            if retry_mode not in ("legacy", "standard", "adaptive"):
                raise InputError(f"retry_mode={retry_mode!r}: use 'legacy', 'standard' or 'adaptive'")
            values["AWS_RETRY_MODE"] = retry_mode
        with _lab_routing.environ(values) as applied:
            yield applied


@dataclass
class LabEnv(_Env):
    """The lab: its server, its endpoints, trust views with lab twins, and a thing ready for shadow calls."""

    lab: Lab | None = None

    @property
    def host(self) -> str:
        """The address the lab listens on (127.0.0.1)."""
        return self.lab.host

    @property
    def port(self) -> int:
        """The lab's port (LabError once stopped)."""
        return self.lab.port

    def _check(self) -> None:
        self.lab.require_running()

    def trust_view(self, release: str | bundles.Bundle) -> bundles.Bundle:
        """The release's real roots with the lab twins swapped in (see :func:`trust_view`)."""
        return trust_view(release)

    def connections(self) -> pd.DataFrame:
        """The lab's TLS handshakes so far (see :meth:`Lab.connections`)."""
        return self.lab.connections()

    def device_root_file(self, real_root: str | os.PathLike) -> Path:
        """The lab's stand-in for a device's root file: the real roots in ``real_root`` (a PEM file)
        swapped for their twins (a root without a twin stays as it is, and verifies nothing here)."""
        self._check()
        return trust_view(bundles.from_pem(real_root, name=Path(real_root).name)).path()

    def register_device(self, thing_name: str | None = None, *, active: bool = True) -> DeviceCredentials:
        """A device certificate and key from moto's ``create_keys_and_certificate`` (ACTIVE unless
        ``active=False``), attached to ``thing_name`` (default: this environment's thing), written to the
        lab's private folder. Routing must be on (inside ``running``)."""
        self._check()
        thing_name = thing_name or self.thing_name
        iot = self.lab.setup_client("iot")
        created = iot.create_keys_and_certificate(setAsActive=active)
        iot.attach_thing_principal(thingName=thing_name, principal=created["certificateArn"])
        cert_id = created["certificateId"]
        folder = self.lab.files
        cert_path = atomic_write_bytes(
            folder / f"{cert_id[:16]}.cert.pem", created["certificatePem"].encode(), mode=0o600
        )
        key_path = atomic_write_bytes(
            folder / f"{cert_id[:16]}.private.key", created["keyPair"]["PrivateKey"].encode(), mode=0o600
        )
        return DeviceCredentials(
            thing_name=thing_name,
            cert_id=cert_id,
            cert_arn=created["certificateArn"],
            cert_pem=created["certificatePem"],
            key_pem=created["keyPair"]["PrivateKey"],
            cert_path=cert_path,
            key_path=key_path,
            endpoint=self.endpoints["account_ats"],
        )

    def mqtt_events(self) -> pd.DataFrame:
        """What the lab's MQTT broker saw (see :meth:`Lab.mqtt_events`)."""
        return self.lab.mqtt_events()

    def requests(self) -> pd.DataFrame:
        """The lab's HTTP requests so far (see :meth:`Lab.requests`)."""
        return self.lab.requests()


@dataclass
class LiveEnv(_Env):
    """Live mode's counterpart of LabEnv: real AWS endpoints and the real certifi releases."""

    mode = Mode.LIVE

    def trust_view(self, release: str | bundles.Bundle) -> bundles.Bundle:
        """The real roots of a certifi release (or the Bundle given)."""
        return bundles.certifi(release) if isinstance(release, str) else release


@contextmanager
def live(region: str = REGION, *, thing_name: str = THING_NAME, session=None) -> Iterator[LiveEnv]:
    """``environment("live")``: real AWS with your credentials, the same surface as the lab's, nothing
    served here.

    Credentials, region and ``thing_name`` (whose shadow will be updated) are checked up front;
    a one-line LabError says what to fix.
    """
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    endpoints.check_region(region)
    iot = _aws.session(session).client("iot", region_name=region)
    try:
        iot.describe_thing(thingName=thing_name)
        found = _endpoints(iot, region)
    except NoCredentialsError:
        raise LabError(
            "no AWS credentials found; configure them (aws configure, AWS_PROFILE) or use mode='lab'"
        ) from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            raise LabError(
                f"thing {thing_name!r} not found in {region}; create it (aws iot create-thing) "
                "or pass another thing_name"
            ) from None
        raise LabError(f"AWS IoT in {region} said {code or exc}; check your credentials and region") from None
    except BotoCoreError as exc:
        raise LabError(f"cannot reach AWS IoT in {region}: {exc}") from None
    yield LiveEnv(region=region, thing_name=thing_name, endpoints=found)


def _prepare(lab: Lab, thing_name: str = THING_NAME, *, session=None) -> LabEnv:
    """Create ``thing_name`` and look up the account endpoints through the lab (routing must be on).

    ``session``: the boto3 Session to make the calls with (default: a new one with the fake keys).
    """
    lab.require_running()
    iot = lab.setup_client("iot", session=session)
    iot.create_thing(thingName=thing_name)
    return LabEnv(region=lab.region, thing_name=thing_name, endpoints=_endpoints(iot, lab.region), lab=lab)


@contextmanager
def running(
    region: str = REGION,
    *,
    port: int = 0,
    thing_name: str = THING_NAME,
    certifi: str | bundles.Bundle | None = None,
) -> Iterator[LabEnv]:
    """``environment("lab")``: start a lab, route AWS names to it, set fake credentials and a trust view,
    create a thing; undo all.

    ``certifi`` picks the trust view for the whole scope (default: the installed certifi's, which is
    what botocore would use here). boto3's default session is fresh inside and restored after.

    One lab environment at a time per process: while one is open, from its start to the end of its
    'with' block (even once its lab has stopped), another is refused with a LabError, from any thread,
    and so is starting any other :class:`Lab`. So no two scopes ever save and restore the same
    names, variables or default session, and their exits cannot interleave.
    """
    import boto3

    lab = Lab(region, port=port)
    open_scope(lab)
    try:
        lab.start()
        saved_session = boto3.DEFAULT_SESSION
        try:
            with lab.route(), _lab_routing.environ(lab.cleared_environ()):
                # boto3's default session is the lab's (fake keys, region, trust view): unchanged code such
                # as boto3.client("iot-data") uses it; the setup calls use it too, so its models load once
                boto3.DEFAULT_SESSION = lab.session(certifi)
                try:
                    yield _prepare(lab, thing_name, session=boto3.DEFAULT_SESSION)
                finally:
                    boto3.DEFAULT_SESSION = saved_session
        finally:
            lab.stop()
    finally:
        close_scope()


def environment(
    mode: str = Mode.LAB,
    *,
    region: str = REGION,
    thing_name: str = THING_NAME,
    session=None,
    port: int = 0,
    certifi: str | bundles.Bundle | None = None,
):
    """The one way in for notebooks, tests and the command: a lab for "lab" (:func:`running`), real AWS
    for "live" (:func:`live`). Use it as a context manager; the environment it yields has the same
    surface either way. ``port`` (0: any free one) and ``certifi`` (the scope's trust view) are the lab's
    own; ``session`` is live mode's. One lab environment per process at a time (see :func:`running`);
    "live" changes nothing here."""
    mode = Mode(mode)
    if mode is Mode.LAB:
        if session is not None:
            raise InputError("session= is for mode='live'; the lab makes its own boto3 session")
        return running(region, thing_name=thing_name, port=port, certifi=certifi)
    if mode is Mode.LIVE:
        if port or certifi is not None:
            raise InputError("port= and certifi= are the lab's; leave them out with mode='live'")
        return live(region, thing_name=thing_name, session=session)
    raise InputError(f"mode={mode!r}: an environment is 'lab' or 'live'")


# The single-root trust stores of docs/evidence-ats-chains.md section 4: a device's root-CA.crt
ROOT_FILE_ROOTS = (
    "Amazon Root CA 1",
    "Amazon Root CA 3",
    "Starfield Services Root Certificate Authority - G2",
    ROOT_AT_FAULT,
)
ROOT_FILE_CLIENTS = (("ats", "default"), ("ats", "rsa-only"), ("ats", "ecdsa-only"), ("legacy", "default"))


def real_root_file(
    name: str, path: str | os.PathLike, *, release: str | bundles.Bundle = WORKING_CERTIFI
) -> Path:
    """Write the real root named ``name`` (a CN, e.g. 'Amazon Root CA 1') from certifi ``release`` to
    ``path``, as a device's root-CA.crt holds it; InputError unless the release holds exactly one."""
    real = bundles.certifi(release) if isinstance(release, str) else release
    found = [c for c in real.find(name) if c.subject == c.issuer]
    if len(found) != 1:
        raise InputError(f"{real.name} holds {len(found)} roots named {name!r}; pick another release")
    return atomic_write_bytes(Path(path), _x509.to_pem(found))


def root_file_verdicts(
    *, at: dt.datetime | str | None = None, release: str = WORKING_CERTIFI, region: str = REGION
) -> pd.DataFrame:
    """Which lab chain verifies against a trust store of one real root, per client kind (a DataFrame).

    One row per root of :data:`ROOT_FILE_ROOTS` (taken from certifi ``release``, written to a PEM file
    of its own and mapped to its trust view, as ``atskit check --bundle FILE`` does); one bool column
    per chain as served to a client offer (``chains.CLIENT_OFFERS``): 'ats default', 'ats rsa-only',
    'ats ecdsa-only', 'legacy default'. The chains are captured from a lab started for the call (a real
    handshake each) and verified with ``chains.verify`` at ``at`` (default now).
    """
    import pandas as pd

    from helpers import chains

    real = bundles.certifi(release)
    names = {"ats": f"data-ats.iot.{region}.amazonaws.com", "legacy": f"data.iot.{region}.amazonaws.com"}
    with Lab(region) as server:
        served = {
            (endpoint, client_offer): chains.fetch_chain(
                server.host, server.port, server_name=names[endpoint], client_offer=client_offer
            )
            for endpoint, client_offer in ROOT_FILE_CLIENTS
        }
    rows = []
    with tempfile.TemporaryDirectory(prefix="atskit-roots-") as tmp:
        for root_name in ROOT_FILE_ROOTS:
            path = real_root_file(root_name, Path(tmp, "root.pem"), release=real)
            view = trust_view(bundles.from_pem(path, name=f"{root_name} only"))
            row = {"root": root_name}
            for (endpoint, client_offer), chain in served.items():
                verdict = chains.verify(chain, view, hostname=chain.hostname, at=at)
                row[f"{endpoint} {client_offer}"] = verdict.ok
            rows.append(row)
    return pd.DataFrame(rows, columns=["root", *(f"{e} {o}" for e, o in ROOT_FILE_CLIENTS)])
