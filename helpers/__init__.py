"""ATS endpoint investigation kit: trust bundles, chains, the offline lab, endpoints and reports.

Import the modules you need: ``from helpers import bundles, chains, lab, endpoints``.

- ``bundles``: trust bundles, every certifi release's roots, how they differ;
- ``chains``: capture a server's chain, verify it against any bundle at any time, say what is wrong;
- ``lab``: the offline lab (real TLS on 127.0.0.1, moto behind twins of the real chains), and live mode;
- ``endpoints``: AWS IoT endpoint names and the ATS client (the incident's fix);
- ``botocore_facts``: which CA bundle botocore loads and why, its default iot-data host by release;
- ``requirements`` and ``upgrade``: what each side of an upgrade installs, and what the upgrade breaks;
- ``devices``: a fleet's devices against their endpoints, with the roots they carry, and real MQTT clients;
- ``report``, ``postmortem`` and ``redaction``: the postmortem's layout and evidence, and what is masked in
  everything exported;
- ``pki``: certificates for tests and the lab (trustme-style);
- ``incident``, ``kinds``, ``notebook``: the incident's constants, the kinds of results and the kit's
  errors, and what the notebooks share.
"""

__version__ = "0.1.0"
__all__ = [
    "botocore_facts",
    "bundles",
    "chains",
    "devices",
    "endpoints",
    "incident",
    "kinds",
    "lab",
    "notebook",
    "pki",
    "postmortem",
    "redaction",
    "report",
    "requirements",
    "upgrade",
]
