"""A trust-store postmortem from an upgrade check: the evidence gathered, then the document written.

``evidence = postmortem.gather(result, mode="lab", region=...)`` collects what a convincing postmortem
names (the missing root, the release that dropped it, the chain, when the verdict changed, which
bundle each side loaded and why, the default host); ``postmortem.write(evidence, title=..., ...)``
lays it out as a :class:`helpers.report.Postmortem`. In lab mode every certificate table has a
``lab_twin`` column and the document opens with a banner: a lab twin's fingerprint is not evidence.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from helpers import botocore_facts, bundles, chains, lab
from helpers.kinds import Mode
from helpers.redaction import redact_frame
from helpers.report import Postmortem

if TYPE_CHECKING:
    from helpers.chains import Chain
    from helpers.upgrade import UpgradeCheck

__all__ = ["LAB_BANNER", "Evidence", "gather", "write"]

LAB_BANNER = (
    "**LAB MODE.** Every endpoint certificate in this report is an ATS kit *lab twin*, made on this "
    "machine to stand for the real one: its fingerprint is not AWS's. Do not paste lab fingerprints into "
    'a real postmortem; rerun with `mode="live"` for real evidence.'
)
FINGERPRINT_SHOWN = 16  # hex digits of a fingerprint in tables; the appendix has them whole


@dataclass
class Evidence:
    """What :func:`gather` found (tables are DataFrames, fingerprints shortened; ``fingerprints`` whole)."""

    result: UpgradeCheck
    mode: Mode
    region: str
    broken: list[str]  # endpoints that passed before and fail after
    missing_root: str | None  # the certificate the failing chain could not reach
    removed_in: str | None  # the certifi release that dropped it
    removed_on: dt.date | None
    failing_chain: Chain | None
    chain_table: pd.DataFrame  # the failing chain, leaf first
    root_diff: pd.DataFrame  # the roots the upgrade removed, the one the chain needs first
    transitions: pd.DataFrame  # certifi releases where the failing chain's verdict changed
    bundle_facts: pd.DataFrame  # which bundle each side loads, and why
    default_facts: pd.DataFrame  # each side's default iot-data host
    boundary: botocore_facts.AtsBoundary
    fingerprints: pd.DataFrame  # every certificate shown above, with its whole SHA-256


def _short(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame as a table shows it: fingerprints cut to :data:`FINGERPRINT_SHOWN` hex digits, dates
    without their time of day."""
    if "not_after" in frame and not frame.empty:
        frame = frame.assign(not_after=pd.to_datetime(frame["not_after"], utc=True).dt.date)
    if "fingerprint_sha256" not in frame:
        return frame
    return frame.assign(fingerprint_sha256=frame["fingerprint_sha256"].str[:FINGERPRINT_SHOWN] + "…")


def gather(result: UpgradeCheck, *, mode: str, region: str) -> Evidence:
    """The evidence of an upgrade check's failure (or of its absence: every field says so)."""
    mode = Mode(mode)
    broken = result.broken
    after = result.verdicts[result.verdicts["side"] == "after"].set_index("endpoint")
    missing = [after.loc[e, "missing_issuer"] for e in broken if pd.notna(after.loc[e, "missing_issuer"])]
    missing_root = missing[0] if missing else None
    removed_in = bundles.removed_in(missing_root) if missing_root else None
    releases = bundles.certifi_releases().set_index("version")
    removed_on = releases.loc[removed_in, "released"].date() if removed_in else None
    failing_chain = result.chains.get(broken[0]) if broken else None

    chain_table = pd.DataFrame(
        columns=["position", "role", "name", "issuer", "not_after", "lab_twin", "fingerprint_sha256"]
    )
    transitions = pd.DataFrame(columns=["previous", "version", "released", "ok", "reason"])
    if failing_chain is not None:
        chain_table = failing_chain.frame().assign(
            lab_twin=[lab.is_lab_twin(c) for c in failing_chain.certificates]
        )[["position", "role", "name", "issuer", "not_after", "lab_twin", "fingerprint_sha256"]]
        trust = (
            lab.trust_view if mode is Mode.LAB else None
        )  # a lab chain ends at twins: each release's lab view
        across = chains.across_certifi(failing_chain, hostname=failing_chain.hostname, trust=trust)
        transitions = chains.transitions(across)[["previous", "version", "released", "ok", "reason"]].assign(
            released=lambda f: pd.to_datetime(f["released"]).dt.date
        )
    root_diff = pd.DataFrame(columns=["name", "subject_o", "not_after", "lab_twin", "fingerprint_sha256"])
    if result.before.bundle is not None and result.after.bundle is not None:
        root_diff = (
            bundles.compare(result.before.bundle, result.after.bundle)
            .frame()
            .query("change == 'removed'")
            .assign(needed_by_the_failing_chain=lambda f: f["name"].eq(missing_root), lab_twin=False)
            .sort_values(["needed_by_the_failing_chain", "name"], ascending=[False, True], kind="stable")
            [["name", "subject_o", "not_after", "needed_by_the_failing_chain", "lab_twin",
              "fingerprint_sha256"]]
            .reset_index(drop=True)
        )  # fmt: skip
    here = botocore_facts.effective_ca_bundle()
    sides = result.sides()
    bundle_facts = pd.DataFrame(
        [{"where": f"{s.side} ({s.source})", "trust_store": s.trust_store, "why": s.trust_rule}
         for s in sides.itertuples()]
        + [{"where": "the Python that generated this report",
            "trust_store": here.bundle.label if here.bundle else here.path,
            "why": f"{here.rule}: {here.explanation}"}]
    )  # fmt: skip
    fingerprints = pd.concat(
        [
            chain_table[["name", "lab_twin", "fingerprint_sha256"]].assign(table="the chain"),
            root_diff[["name", "lab_twin", "fingerprint_sha256"]].assign(table="roots removed"),
        ],
        ignore_index=True,
    )[["table", "name", "lab_twin", "fingerprint_sha256"]]
    return Evidence(
        result=result,
        mode=mode,
        region=region,
        broken=broken,
        missing_root=missing_root,
        removed_in=removed_in,
        removed_on=removed_on,
        failing_chain=failing_chain,
        chain_table=_short(chain_table),
        root_diff=_short(root_diff),
        transitions=transitions,
        bundle_facts=bundle_facts,
        default_facts=sides[["side", "botocore", "iot_data_default_host", "default_host_basis"]],
        boundary=botocore_facts.ats_boundary(region=region),
        fingerprints=fingerprints,
    )


def timeline(evidence: Evidence, *, incident_start: dt.date, resolved: dt.date | None) -> pd.DataFrame:
    """Dated events from the kit's data (certifi releases, botocore's default host) and the incident's own."""
    releases = bundles.certifi_releases().set_index("version")
    before, after = evidence.result.before.environment.certifi, evidence.result.after.environment.certifi
    boundary = evidence.boundary
    broke = bool(evidence.broken)
    rows = []
    if before in releases.index:
        whose = "both sides' trust store" if after == before else "the working side's trust store"
        rows.append(
            (releases.loc[before, "released"], f"certifi {before} released ({whose})", "data/certifi")
        )
    if evidence.removed_in:
        rows.append(
            (
                evidence.removed_on,
                f"certifi {evidence.removed_in} released without {evidence.missing_root!r}",
                "data/certifi",
            )
        )
    if after in releases.index and after != before:
        whose = "the failing side's trust store" if broke else "the updated side's trust store"
        rows.append((releases.loc[after, "released"], f"certifi {after} released ({whose})", "data/certifi"))
    if broke:
        rows.append((incident_start, "failure starts: " + ", ".join(evidence.broken), "parameters"))
        if resolved:
            rows.append((resolved, "fix deployed", "parameters"))
    else:
        rows.append((incident_start, "incident start (no endpoint broke with this update)", "parameters"))
        if resolved:
            rows.append((resolved, "incident closed (nothing to fix in this update)", "parameters"))
    rows.append(
        (
            dt.date.fromisoformat(boundary.first_ats_released),
            f"botocore {boundary.first_ats}: iot-data defaults to data-ats.iot.{evidence.region}",
            "data/botocore",
        )
    )
    return (
        pd.DataFrame(rows, columns=["date", "event", "source"])
        .assign(date=lambda f: pd.to_datetime(f["date"]).dt.date)
        .sort_values("date", kind="stable")
        .reset_index(drop=True)
    )


def _move(evidence: Evidence) -> str:
    """'requests 2.24.0 → 2.26.0 pulled certifi 2020.6.20 → 2021.10.8', or what stayed."""
    b, a = evidence.result.before.environment, evidence.result.after.environment
    certifi = (
        f"certifi {b.certifi or '(none)'} → {a.certifi or '(none)'}"
        if b.certifi != a.certifi
        else f"certifi unchanged at {a.certifi or '(none)'}"
    )
    requests_before, requests_after = b.packages.get("requests"), a.packages.get("requests")
    if requests_before != requests_after:
        requests = f"requests {requests_before or '(none)'} → {requests_after or '(none)'}"
        return f"{requests} pulled {certifi}" if b.certifi != a.certifi else f"{requests}; {certifi}"
    return certifi


def write(
    evidence: Evidence,
    *,
    title: str,
    incident_start: dt.date,
    resolved: dt.date | None,
    environment: pd.DataFrame,
) -> Postmortem:
    """The postmortem: summary, impact, timeline, root cause, fix, prevention, evidence (prose for the
    author to finish is in italics; everything is redacted on export)."""
    from helpers.upgrade import DEFAULT_HOST_LABEL

    e, b, a = evidence, evidence.result.before, evidence.result.after
    move = _move(e)
    named = [f"`{endpoint}`" for endpoint in e.broken if endpoint != DEFAULT_HOST_LABEL]
    broken = ", ".join(named) or "botocore's default `iot-data` host"
    if named and DEFAULT_HOST_LABEL in e.broken:
        broken += " (also the host an `iot-data` client picks by default on the updated side)"
    pm = Postmortem.skeleton(
        title,
        incident_start=f"{incident_start:%Y-%m-%d}",
        resolved=f"{resolved:%Y-%m-%d}" if resolved else "not yet",
        region=e.region,
        generated=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        mode=str(e.mode) + (" (offline lab: certificates are lab twins)" if e.mode is Mode.LAB else ""),
    )
    if e.mode is Mode.LAB:
        pm.banner = LAB_BANNER
    if e.broken:
        summary = f"After a dependency update ({move}), TLS verification failed for {broken}. " + (
            f"The chain ends at **{e.missing_root}**, which certifi removed in {e.removed_in} "
            f"({e.removed_on}); botocore verifies with certifi's bundle whenever certifi is installed, "
            "so code that never changed broke."
            if e.missing_root
            else "The failing verdicts below say what each chain lacks."
        )
        impact = (
            f"Calls to {broken} failed with `SSL: CERTIFICATE_VERIFY_FAILED ... unable to get local issuer "
            "certificate`. Endpoints on the Amazon Trust Services chain kept working."
        )
    else:
        summary = (
            f"The dependency update ({move}) broke no endpoint that worked before: every verdict is below."
        )
        impact = "No TLS failure is attributable to this update."
    changes = e.result.changes()[["endpoint", "change", "reason_before", "reason_after"]]
    pm.section("Summary").add(summary)
    pm.section("Impact").add(
        impact,
        "_Complete: which functions/devices, how many requests, for how long, customer-visible effects._",
        redact_frame(changes.sort_values(["change", "endpoint"], kind="stable")),
    )
    pm.section("Timeline").add(timeline(e, incident_start=incident_start, resolved=resolved))
    root_cause = pm.section("Root cause")
    if not e.broken:
        root_cause.add(
            "None in this update: no endpoint that worked before fails after (verdicts under Impact)."
        )
    if b.bundle is not None and a.bundle is not None:
        loads = (
            "botocore loads `certifi.where()` whenever certifi is importable (else its vendored `cacert.pem`)"
        )
        if b.bundle.label == a.bundle.label:
            root_cause.add(
                f"The update ({move}) left the trust store botocore loads at {a.bundle.label}: {loads}."
            )
        else:
            root_cause.add(
                f"The update ({move}) changed the trust store botocore loads from {b.bundle.label} to "
                f"{a.bundle.label}: {loads}."
            )
    if e.missing_root:
        root_cause.add(
            f"The endpoint's chain needs **{e.missing_root}**; the roots the update removed are below."
        )
    if not e.root_diff.empty:
        root_cause.add(e.root_diff)
    if not e.chain_table.empty:
        root_cause.add(
            "The chain the endpoint presented (captured by `chains.fetch_chain`):",
            redact_frame(e.chain_table),
        )
        root_cause.add("Verdict across every certifi release (the releases where it changed):", e.transitions)
    fix = pm.section("Fix")
    if not e.broken:
        fix.add(
            "Nothing to fix for this update. Each side's default `iot-data` host, for reference (a "
            "client on the legacy host breaks once its trust store loses VeriSign G5):",
            e.default_facts,
        )
    else:
        fix.add(
            "Use the account's ATS data endpoint, whose chain ends at Amazon Root CA 1/3 "
            "(present in every side's store):",
            '```python\naddress = boto3.client("iot").describe_endpoint(endpointType="iot:Data-ATS")'
            '["endpointAddress"]\n'
            'client = boto3.client("iot-data", endpoint_url=f"https://{address}")\n```',
            f"or upgrade botocore to {e.boundary.first_ats} or later ({e.boundary.first_ats_released}), "
            f"whose default iot-data host is `data-ats.iot.{e.region}.amazonaws.com`. "
            "Not a fix: `verify=False`, pinning an old "
            "certifi, or pointing `AWS_CA_BUNDLE` at an old bundle (notebook 03 shows why).",
            e.default_facts,
        )
    pm.section("Prevention").add(
        "- Gate dependency upgrades with `atskit upgrade-check --before OLD --after NEW` "
        "(exit 1 when an endpoint "
        "that worked breaks); `docs/upgrade-check-workflow.yml` is a GitHub Actions job to copy.\n"
        "- Use ATS endpoints everywhere (`endpoints.ats_data_client`), and keep botocore current.\n"
        "- _Complete: alerting on TLS errors, owners, follow-up tickets._"
    )
    evidence_section = pm.section("Evidence")
    if not environment.empty:
        evidence_section.add("Environment that generated this report:", environment)
    evidence_section.add("Each side:", redact_frame(e.result.sides()), redact_frame(e.bundle_facts))
    if not e.fingerprints.empty:  # no table without rows: nothing failed, so no certificate is shown
        evidence_section.add("Every certificate above, with its whole SHA-256 fingerprint:", e.fingerprints)
    return pm
