"""The catalogue of profiles: the ones the issue asks for exist and cite everything, uncertainties are
shown, ``chokepoint profiles list/show`` print the data, and docs/profiles.md is generated from it (this
test fails when the committed file is stale)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from chokepoint.cli import app, profiles_doc
from chokepoint.policy.describe import describe
from chokepoint.policy.profile import BUNDLED_DIR, era_starts, list_profiles, load_profile, named_dates

REQUIRED = (
    "gfw-2023",
    "gfw-2025",
    "henan",
    "iran",
    "russia-tspu",
    "turkmenistan",
    "kazakhstan-2019",
    "myanmar",
    "tsg",
    "pakistan",
    "belarus-2020",
    "gfw",
    "demo",
)
runner = CliRunner()


def test_required_profiles_are_bundled() -> None:
    assert set(REQUIRED) <= set(list_profiles()) | set(named_dates())


def test_named_dates_are_registered_and_declared_alike() -> None:
    """chokepoint.profiles.NAMED_DATES (name -> file) and each file's profile.named_dates (name -> day) agree."""
    declared = {alias: name for name in list_profiles() for alias, _day in load_profile(name).meta.named_dates}
    assert declared == named_dates() == {"gfw-2023": "gfw", "gfw-2025": "gfw"}
    assert str(load_profile("gfw-2023").as_of) == "2022-06-01" and str(load_profile("gfw-2025").as_of) == "2025-06-01"


@pytest.mark.parametrize("name", list_profiles())
def test_every_rule_list_and_knob_is_cited(name: str) -> None:
    profile = load_profile(name)
    assert profile.provenance_gaps() == []
    assert profile.meta.cite and profile.meta.observed and profile.meta.description and profile.meta.title
    assert profile.policy.rules and all(rule.cite and rule.reason for rule in profile.policy.rules)
    assert all(d.cite for d in profile.policy.lists.values())
    assert all(k.cite for k in profile.knobs)
    assert all(a.cite for a in profile.also_observed)


@pytest.mark.parametrize("name", [n for n in REQUIRED if n not in ("gfw", "demo")])
def test_country_profiles_have_a_personality_a_clock_and_state_their_doubts(name: str) -> None:
    profile = load_profile(name)
    assert profile.meta.timezone or profile.meta.country == "XX"
    d = describe(profile)
    assert d["uncertainties"], "every country profile says what is not verified"
    if name != "kazakhstan-2019":  # interception has no injected packets: no personality to cite
        assert profile.knobs


def test_list_files_have_a_header_citing_their_source() -> None:
    for path in sorted((BUNDLED_DIR / "lists").glob("*.txt")):
        head = path.read_text(encoding="utf-8").splitlines()[0]
        assert head.startswith("# "), path.name
    referenced = {
        Path(d.file).name
        for n in list_profiles()
        for day in era_starts(load_profile(n))
        for d in load_profile(n, as_of=day).policy.lists.values()
        if d.file
    }
    assert referenced == {p.name for p in (BUNDLED_DIR / "lists").glob("*.txt")}, "no orphan list files"


def test_profiles_list_prints_every_profile_with_its_techniques() -> None:
    result = runner.invoke(app, ["profiles", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in list_profiles():
        assert name in result.output
    assert "QUIC SNI" in result.output and "fully encrypted" in result.output
    assert "2020-08/2025-08" in result.output and "gfw as of 2022-06-01" in result.output  # gfw-2023


def test_profiles_show_text_states_uncertainties_and_examples() -> None:
    result = runner.invoke(app, ["profiles", "show", "gfw-2023"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Uncertain (encoded as knobs, not as fact):" in out
    assert "0.26 is the brief's figure" in out
    assert "Examples (blocked):" in out and "fet-random-vps" in out and "-> generic_timeout_error" in out
    assert "Examples (allowed):" in out and "sni-fragmented-records" in out
    assert "Wu, Sippe, Sivakumar" in out and "as of 2022-06-01" in out
    assert "gfw-fet-drop [drop] fully encrypted drop (active 2021-11-01..2023-03-07)" in out
    kz = runner.invoke(app, ["profiles", "show", "kazakhstan-2019"], env={"COLUMNS": "250"}).output
    assert "kz-tls-intercept [tls-intercept] TLS SNI interception" in kz


def test_profiles_show_json_is_describe() -> None:
    result = runner.invoke(app, ["profiles", "show", "russia-tspu", "--json", "--as-of", "2021-04-01"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data == json.loads(json.dumps(describe(load_profile("russia-tspu", as_of="2021-04-01"))))
    assert data["as_of"] == "2021-04-01" and data["coverage"] == ["2021-03-01", "2025-04-30"]
    assert data["examples"]["blocked"][0]["symptom"] == "throttled"
    rules = {r["id"]: r for r in data["rules"]}
    assert rules["tspu-twitter-throttle"]["params"] == {"rate_kbps": 140}
    assert "rate_kbps" in rules["tspu-twitter-throttle"]["uncertain"]


def test_profiles_show_unknown_name_fails_cleanly() -> None:
    result = runner.invoke(app, ["profiles", "show", "atlantis"])
    assert result.exit_code == 1 and "no bundled profile 'atlantis'" in result.output


def test_docs_profiles_md_is_current() -> None:
    doc = profiles_doc.DOC
    assert doc.is_file(), "generate it: python -m chokepoint.cli.profiles_doc --write"
    assert doc.read_text(encoding="utf-8") == profiles_doc.render(), (
        "docs/profiles.md is stale: python -m chokepoint.cli.profiles_doc --write"
    )
    assert profiles_doc.main(["--check"]) == 0
    text = doc.read_text(encoding="utf-8")
    for name in list_profiles():
        assert f"## {name}: " in text


def test_profiles_show_timeline_prints_the_dated_behaviours_by_start() -> None:
    result = runner.invoke(
        app, ["profiles", "show", "gfw", "--timeline", "--as-of", "2022-06-01"], env={"COLUMNS": "250"}
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "covers 2020-08-01 to 2025-08-31 (inclusive); loaded as of 2022-06-01" in out
    assert "named dates: gfw-2023 = 2022-06-01, gfw-2025 = 2025-06-01" in out
    fet = next(line for line in out.splitlines() if "rule" in line and "gfw-fet-drop" in line)
    assert fet.split()[:3] == ["2021-11-01", "2023-03-07", "*"]  # in force on the day loaded
    quic = next(line for line in out.splitlines() if "rule" in line and "gfw-quic-sni-drop" in line)
    assert quic.split()[:2] == ["2024-04-07", "2025-03-12"] and "*" not in quic.split()[:3]
    assert "rule gfw-fet-drop: Wu et al. 2023: onset early November 2021" in out
    data = json.loads(runner.invoke(app, ["profiles", "show", "gfw", "--timeline", "--json"]).output)
    assert data["coverage"] == ["2020-08-01", "2025-08-31"] and data["as_of"] == "2025-08-31"
    assert any(
        (d["kind"], d["name"], d.get("from"), d.get("until")) == ("rule", "gfw-fet-drop", "2021-11-01", "2023-03-07")
        for d in data["timeline"]
    )


def test_profiles_show_rejects_a_day_outside_the_coverage() -> None:
    result = runner.invoke(app, ["profiles", "show", "iran", "--as-of", "2019-01-01"])
    assert result.exit_code == 1 and "outside the dates profile 'iran' covers" in result.output
    bad = runner.invoke(app, ["profiles", "show", "iran", "--as-of", "2021/01/01"])
    assert bad.exit_code == 1 and "not a day" in bad.output
