"""Trust bundles and certifi's history, rebuilt offline from data/certifi."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from pathlib import Path

import matplotlib
import pandas as pd
import pytest

from helpers import _certifi_build, bundles, incident, pki

matplotlib.use("Agg")

RELEASES = bundles.certifi_releases()
G5 = incident.ROOT_AT_FAULT
AWS_ROOTS = [f"Amazon Root CA {i}" for i in range(1, 5)] + [
    "Starfield Services Root Certificate Authority - G2"
]


# ---------------------------------------------------------------- reconstruction of every release


@pytest.mark.parametrize("version", RELEASES["version"].tolist())
def test_every_release_reconstructs_to_the_digest_recorded_from_its_file(version):
    row = RELEASES.set_index("version").loc[version]
    bundle = bundles.certifi(version)
    every_block = set(bundle.fingerprints) | {p.fingerprint_sha256 for p in bundle.problems}
    assert _certifi_build.fingerprints_digest(every_block) == row["fingerprints_digest"]
    assert len(bundle.certificates) + len(bundle.problems) == row["blocks"]
    assert (len(bundle.certificates), len(bundle.problems)) == (row["roots"], row["problems"])


def test_releases_are_every_version_on_the_index_oldest_first():
    every = bundles.certifi_releases(with_unusable=True)
    assert every["version"].is_unique
    dated = every.dropna(subset=["released"])
    assert dated["released"].is_monotonic_increasing
    assert (every["status"] == "ok").sum() == len(RELEASES)
    assert set(every.loc[every["status"] != "ok", "status"]) <= {
        "no file on the index",
        "no cacert.pem in the file",
        "cacert.pem has no usable certificate",
    }
    assert {"version", "released", "roots", "cacert_sha256"} <= set(RELEASES.columns)


def test_installed_certifi_matches_its_release_in_the_data():
    installed = bundles.installed_certifi()
    assert installed.version == importlib.metadata.version("certifi")
    import certifi

    row = RELEASES.set_index("version").loc[installed.version]  # KeyError: refresh the data
    assert hashlib.sha256(Path(certifi.where()).read_bytes()).hexdigest() == row["cacert_sha256"]
    assert installed.fingerprints == bundles.certifi(installed.version).fingerprints


def test_digests_match_the_downloaded_files_where_they_are_cached():
    cached = _certifi_build.cached_files()
    if not cached:
        pytest.skip(
            "no downloaded certifi files in ~/.cache/atskit (run `python -m helpers refresh-certifi --full`)"
        )
    rows = RELEASES.set_index("version")
    for version, path in cached.items():
        member, pem = _certifi_build.extract_cacert(path)
        assert hashlib.sha256(pem).hexdigest() == rows.loc[version, "cacert_sha256"], version
        fps = [fp for fp, _, _ in _certifi_build.split_blocks(pem)]
        assert _certifi_build.fingerprints_digest(fps) == rows.loc[version, "fingerprints_digest"], version


# ---------------------------------------------------------------- versions and bad input


def test_zero_padded_version_as_the_incident_writes_it():
    assert bundles.certifi("2020.06.20").fingerprints == bundles.certifi("2020.6.20").fingerprints
    assert bundles.certifi("2020.06.20").version == "2020.6.20"


def test_unknown_version_names_the_nearest_releases():
    with pytest.raises(ValueError) as err:
        bundles.certifi("2020.7.1")
    message = str(err.value)
    assert "\n" not in message
    assert "'2020.7.1' is not a release" in message
    versions = RELEASES["version"].tolist()
    after = next(
        v for v in versions if _certifi_build.version_key(v) > _certifi_build.version_key("2020.7.1")
    )
    before = versions[versions.index(after) - 1]
    assert f"{before}, {after}" in message  # the releases either side of the unknown one


def test_empty_version_and_a_release_without_a_file_give_one_line():
    with pytest.raises(ValueError) as err:
        bundles.certifi("  ")
    first, last = RELEASES["version"].iloc[0], RELEASES["version"].iloc[-1]
    assert f"{first} ... {last}" in str(err.value) and "\n" not in str(err.value)
    every = bundles.certifi_releases(with_unusable=True)
    no_roots = every[every["status"] != "ok"]
    assert not no_roots.empty  # the index lists version '0' with no file
    version, status = no_roots[["version", "status"]].iloc[0]
    with pytest.raises(ValueError, match=f"certifi {re.escape(version)} has no roots to load") as err:
        bundles.certifi(version)
    assert status in str(err.value) and "\n" not in str(err.value)


def test_first_release_has_no_changes_to_show():
    with pytest.raises(ValueError, match="is the first release") as err:
        bundles.release_changes(RELEASES["version"].iloc[0])
    assert "\n" not in str(err.value)


def test_certifi_reads_a_release_under_any_spelling_of_its_version():
    bundle = bundles.certifi("2020.6.20")
    assert bundles.certifi("2020.06.20").fingerprints == bundle.fingerprints  # the same release
    assert bundles.certifi("2021.10.8").fingerprints != bundle.fingerprints


def test_bundle_pem_file_is_named_by_content_and_shared(tmp_path):
    roots = [pki.CA(f"Path Root {i}", key_type="ec").cert_pem for i in range(2)]
    one, same = (bundles.from_pem(roots[0], name="p") for _ in range(2))
    other = bundles.from_pem(roots[1], name="p")
    assert one.path() == same.path() != other.path()  # same roots -> one file, not one per object
    assert one.path().read_bytes() == one.pem() and other.path().read_bytes() == other.pem()
    assert hashlib.sha256(one.pem()).hexdigest()[:16] in one.path().name


def test_garbage_pem_gives_one_line_and_unusable_blocks_become_problems():
    with pytest.raises(ValueError, match="no PEM CERTIFICATE blocks found") as err:
        bundles.from_pem(b"this is not a certificate bundle")
    assert "\n" not in str(err.value)
    good = pki.CA("Good Root", key_type="ec").cert_pem
    bad_base64 = b"-----BEGIN CERTIFICATE-----\n@@@@\n-----END CERTIFICATE-----\n"
    not_a_cert = b"-----BEGIN CERTIFICATE-----\nMAMCAQE=\n-----END CERTIFICATE-----\n"
    bundle = bundles.from_pem(bad_base64 + good + not_a_cert)
    assert len(bundle.certificates) == 1
    assert [(p.position, p.reason.split(":")[0]) for p in bundle.problems] == [
        (0, "not base64"),
        (2, "unparseable"),
    ]
    assert bundle.problems_frame()["reason"].notna().all()


def test_missing_file_gives_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        bundles.from_pem(tmp_path / "nope.pem")
    assert "nope.pem: no such PEM file" in str(err.value) and "\n" not in str(err.value)


def test_empty_or_unknown_root_name_gives_one_line():
    for needle in ("", "No Such Root Anywhere"):
        with pytest.raises(ValueError) as err:
            bundles.root_presence(needle)
        assert "\n" not in str(err.value)


def test_old_certificates_with_parser_warnings_are_loaded_and_labelled():
    with_warnings = RELEASES[RELEASES["loaded_with_warning"] > 0]
    assert not with_warnings.empty  # real old bundles carry negative serials / long names
    bundle = bundles.certifi(with_warnings["version"].iloc[0])
    frame = bundle.frame()
    assert frame["parser_warning"].notna().sum() == with_warnings["loaded_with_warning"].iloc[0]


# ---------------------------------------------------------------- compare()


def test_compare_marks_added_removed_kept_from_a_to_b():
    r1, r2, r3 = (pki.CA(f"Root {i}", key_type="ec").cert_pem for i in range(3))
    a = bundles.from_pem(r1 + r2, name="a")
    b = bundles.from_pem(r2 + r3, name="b")
    diff = bundles.compare(a, b).frame()
    assert diff["change"].tolist() == ["removed", "added", "kept"]
    assert diff["name"].tolist() == ["Root 0", "Root 2", "Root 1"]
    assert diff[["in_a", "in_b"]].values.tolist() == [[True, False], [False, True], [True, True]]
    assert diff.attrs == {"a": "a", "b": "b"}
    assert bundles.compare(a, a).count("kept") == len(a) and not bundles.compare(a, a).changed()


def test_incident_diff_removes_g5():
    diff = bundles.compare(bundles.certifi("2020.6.20"), bundles.certifi("2021.10.8")).frame()
    removed = diff[diff["change"] == "removed"]
    assert G5 in removed["name"].tolist()
    old, new = bundles.certifi("2020.6.20"), bundles.certifi("2021.10.8")
    assert len(removed) == len(old.fingerprints - new.fingerprints)
    assert (diff["change"] == "added").sum() == len(new.fingerprints - old.fingerprints)


# ---------------------------------------------------------------- history and presence


def test_g5_removal_is_found_from_the_data():
    removal = bundles.removed_in(G5)
    versions = RELEASES["version"].tolist()
    before = versions[versions.index(removal) - 1]
    assert bundles.certifi(before).find(G5) and not bundles.certifi(removal).find(G5)
    assert all(not bundles.certifi(v).find(G5) for v in versions[versions.index(removal) :])
    assert removal == "2020.12.5"  # the incident's claim, checked against the data above
    changes = bundles.release_changes(removal).frame()
    assert G5 in changes.loc[changes["change"] == "removed", "name"].tolist()


def test_history_has_one_row_per_release_and_distinct_root():
    frame = bundles.history()
    assert list(frame["version"].cat.categories) == RELEASES["version"].tolist()
    assert not frame.duplicated(["version", "fingerprint_sha256"]).any()
    per_release = frame.groupby("version", observed=True)["fingerprint_sha256"].nunique()
    expected = {v: len(bundles.certifi(v).fingerprints) for v in RELEASES["version"]}
    assert per_release.to_dict() == expected
    frame.loc[:, "name"] = "changed"  # history() hands out a copy
    assert (bundles.history()["name"] != "changed").all()


@pytest.mark.parametrize("root", AWS_ROOTS)
def test_presence_agrees_with_each_release(root):
    presence = bundles.root_presence(root)
    assert len(presence) == len(RELEASES) * presence["fingerprint_sha256"].nunique()
    for row in presence.sample(10, random_state=0).itertuples():
        assert row.present == (row.fingerprint_sha256 in bundles.certifi(str(row.version)).fingerprints)
    first = presence.loc[presence["present"], "version"].min()
    assert bundles.added_in(root) == str(first)


def test_presence_by_fingerprint_prefix_matches_name():
    by_name = bundles.root_presence("Amazon Root CA 1")
    fp = by_name["fingerprint_sha256"].iloc[0]
    by_fp = bundles.root_presence(fp[:16].upper())
    assert by_fp["present"].tolist() == by_name["present"].tolist()
    assert bundles.removed_in(fp) == bundles.removed_in("Amazon Root CA 1")


# ---------------------------------------------------------------- plot and styling


def test_timeline_marks_the_release_that_removed_the_root():
    ax = bundles.timeline_plot()
    removal = bundles.removed_in(G5)
    removal_date = RELEASES.set_index("version").loc[removal, "released"]
    vlines = [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
    assert len(vlines) == 1
    x = vlines[0].get_xdata()[0]
    marked = matplotlib.dates.num2date(x) if isinstance(x, float) else pd.Timestamp(x)
    assert marked.date() == removal_date.date()
    assert any(removal in t.get_text() for t in ax.texts)
    matplotlib.pyplot.close(ax.figure)


def test_style_presence_colours_present_green_and_absent_red():
    removal = bundles.removed_in(G5)
    versions = RELEASES["version"].tolist()
    before = versions[versions.index(removal) - 1]
    presence = bundles.root_presence(G5)
    table = presence[presence["version"].astype(str).isin([before, removal])].pivot_table(
        index="name", columns="version", values="present", aggfunc="any", observed=True
    )
    css = table.style.pipe(bundles.style_presence).to_html().split("</style>")[0]
    for colour, present in [("#d1e7dd", True), ("#f8d7da", False)]:
        rules = re.findall(r"([^{}]+)\{\s*background-color: " + colour + r";\s*\}", css)
        cells = {tuple(map(int, m)) for rule in rules for m in re.findall(r"row(\d+)_col(\d+)", rule)}
        expected = {(r, c) for r in range(table.shape[0]) for c in range(table.shape[1])}
        assert cells == {(r, c) for r, c in expected if bool(table.iat[r, c]) is present}, present
    assert table[before].all() and not table[removal].any()


def test_style_changes_colours_removed_rows_only():
    diff = bundles.compare(bundles.certifi("2020.6.20"), bundles.certifi("2021.10.8")).frame()
    css = diff.style.pipe(bundles.style_changes).to_html().split("</style>")[0]
    for colour, change in [("#f8d7da", "removed"), ("#d1e7dd", "added")]:
        rules = re.findall(r"([^{}]+)\{\s*background-color: " + colour + r";\s*\}", css)
        cells = {tuple(map(int, m)) for rule in rules for m in re.findall(r"row(\d+)_col(\d+)", rule)}
        rows = diff.index[diff["change"] == change]
        assert cells == {(r, c) for r in rows for c in range(diff.shape[1])}, change
