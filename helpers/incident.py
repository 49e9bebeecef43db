"""The incident the kit is about, in one place: its region, thing, releases, root at fault and error.

Every default in the kit's helpers, command and lab comes from here (a notebook's parameters cell
repeats its own as literals, which papermill needs). The facts these names point at
(which release dropped the root, which botocore changed the default host) are never typed in: the kit
derives them from ``data/`` (``bundles.removed_in(ROOT_AT_FAULT)``, ``botocore_facts.ats_boundary()``).
"""

from __future__ import annotations

REGION = "ap-northeast-2"
THING_NAME = "incident-thing"
WORKING_CERTIFI = "2020.6.20"  # the Lambda layer's certifi before the rebuild (requests 2.24.0)
FAILING_CERTIFI = "2021.10.8"  # after the rebuild (requests 2.26.0)
ROOT_AT_FAULT = "VeriSign Class 3 Public Primary Certification Authority - G5"
AWS_ROOTS = (
    "Amazon Root CA 1",
    "Amazon Root CA 2",
    "Amazon Root CA 3",
    "Amazon Root CA 4",
    "Starfield Services Root Certificate Authority - G2",
)
EXAMPLE_BEFORE = "docs/examples/incident-before.txt"  # the layer's requirements, before and after
EXAMPLE_AFTER = "docs/examples/incident-after.txt"


def error_message(region: str = REGION, thing_name: str = THING_NAME) -> str:
    """The error the incident's ``update_thing_shadow`` raised (botocore adds '(_ssl.c:NNNN)')."""
    return (
        f"SSL validation failed for https://data.iot.{region}.amazonaws.com/things/{thing_name}/shadow "
        "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate"
    )
