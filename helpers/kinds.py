"""The kit's vocabulary: the kinds its results take (as ``StrEnum``) and the base of its errors.

Each kind is a ``str``, so it compares equal to its value (``Reason.MISSING_ROOT == "missing-root"``),
prints as it, and lands in tables and JSON as plain text.
"""

from __future__ import annotations

from enum import StrEnum


class KitError(Exception):
    """Base of every error the kit raises on purpose; its message is one line saying what to do.

    One exception is deliberately outside it: ``upgrade.GateFailure``, raised by
    ``UpgradeCheck.raise_for_gate()``, is the gate's verdict on good input, not an error of the kit's.
    """


class InputError(KitError, ValueError):
    """A value the caller gave cannot be used (an unknown release, a bad date, a bad parameter)."""


class MissingFileError(KitError, FileNotFoundError):
    """A file the caller named, or the kit's own data, is not there."""


class UnusableError(KitError, RuntimeError):
    """Something the kit needs cannot be used here (a child Python failed, a real root is missing)."""


class Reason(StrEnum):
    """Why a chain does or does not verify against a trust store (``chains.verify``)."""

    OK = "ok"
    MISSING_ROOT = "missing-root"
    MISSING_INTERMEDIATE = "missing-intermediate"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    HOSTNAME_MISMATCH = "hostname-mismatch"
    SELF_SIGNED = "self-signed"
    OTHER = "other"
    UNKNOWN = "unknown"  # no verdict could be computed (no chain, or no trust store)


class HostClass(StrEnum):
    """What an AWS IoT host name is (``endpoints.classify``)."""

    LEGACY_VERISIGN = "legacy-verisign"
    ATS = "ats"
    CONTROL_PLANE = "control-plane"
    CREDENTIALS = "credentials"
    JOBS = "jobs"
    UNKNOWN = "unknown"


class Rule(StrEnum):
    """The step of botocore's CA bundle precedence that chose the bundle (``botocore_facts``)."""

    VERIFY_ARGUMENT = "verify-argument"
    SESSION_CA_BUNDLE = "session-ca_bundle"
    AWS_CA_BUNDLE = "AWS_CA_BUNDLE"
    CONFIG_FILE = "config-file"
    REQUESTS_CA_BUNDLE = "REQUESTS_CA_BUNDLE"
    CERTIFI = "certifi"
    BOTOCORE_VENDORED = "botocore-vendored"
    VERIFICATION_OFF = "verification-off"


class Change(StrEnum):
    """What an upgrade did to one endpoint (``upgrade.check``)."""

    STILL_OK = "still-ok"
    BROKE = "broke"
    FIXED = "fixed"
    STILL_FAILING = "still-failing"
    UNKNOWN = "unknown"


class Mode(StrEnum):
    """Where a notebook or check gets its endpoints: the offline lab, real AWS, or saved chains."""

    LAB = "lab"
    LIVE = "live"
    SAVED = "saved"
