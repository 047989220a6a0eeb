"""The loading API the engine and CLI use: load_profile, load_rules_file, list_profiles, Profile."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.policy import PolicyError, load_profile, load_rules_file
from chokepoint.policy.profile import BUNDLED_DIR, Profile, list_profiles, load_rules_text
from chokepoint.settings import EngineSettings
from tests.policy.factories import flow, ids

PROFILE = """
profile:
  name: tiny
  title: A tiny profile
  country: ZZ
  operator: AS64500
  observed: "2024-01/2024-06"
  description: for tests
  cite: [one, two]
engine:
  reassembly: false
  tcp_timeout: 30
  inspect_max_packets: 4
lists:
  names: {kind: domain, file: lists/names.txt}
rules:
  - {id: r, action: reset, when: {tls.sni: {in_list: names}}}
"""


def _write(tmp_path: Path) -> Path:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "names.txt").write_text("blocked.test\n", encoding="utf-8")
    path = tmp_path / "tiny.yaml"
    path.write_text(PROFILE, encoding="utf-8")
    return path


def test_load_profile_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path)
    monkeypatch.chdir("/")  # list files resolve against the profile's folder, not the working directory
    profile = load_profile(str(path))
    assert isinstance(profile, Profile) and profile.name == "tiny" and profile.source == path
    assert (profile.meta.title, profile.meta.country, profile.meta.operator) == ("A tiny profile", "ZZ", "AS64500")
    assert profile.meta.observed == "2024-01/2024-06" and profile.meta.cite == ("one", "two")
    assert profile.engine == EngineSettings(reassembly=False, tcp_timeout=30.0, inspect_max_packets=4)
    assert type(profile.engine.tcp_timeout) is float
    assert ids(profile, flow(tls_sni="www.blocked.test")) == ["r"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "other"  # type: ignore[misc]


def test_rule_file_needs_no_profile_block(tmp_path: Path) -> None:
    path = tmp_path / "my-rules.yaml"
    path.write_text("rules:\n  - {id: r, action: drop, when: {server_port: 8388}}\n", encoding="utf-8")
    profile = load_rules_file(path)
    assert profile.name == "my-rules" and profile.meta.title == "my-rules" and profile.meta.cite == ()
    assert profile.engine == EngineSettings()
    assert ids(profile, flow(server_port=8388)) == ["r"]
    with pytest.raises(PolicyError, match="missing required key 'profile'"):
        load_profile(str(path))


def test_bundled_profiles_by_name() -> None:
    names = list_profiles()
    assert {"gfw", "demo"} <= set(names) and names == sorted(names)
    for name in names:
        profile = load_profile(name)
        assert profile.name == name and profile.source == BUNDLED_DIR / f"{name}.yaml"


def test_a_rejected_file_loads_nothing(tmp_path: Path) -> None:
    """Errors found late (here: an unknown list in the last rule) still reject the whole file."""
    path = _write(tmp_path)
    path.write_text(PROFILE + "  - {id: late, action: log, when: {tls.sni: {in_list: nope}}}\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="unknown list 'nope'"):
        load_profile(str(path))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_profiles_raise_only_policy_errors(data: st.DataObject) -> None:
    """Real profile text, truncated / with characters replaced / with lines spliced: the loader either
    loads it or raises PolicyError, never anything else."""
    bundled = sorted(path.name for path in BUNDLED_DIR.glob("*.yaml"))  # every section: personality, examples
    text = (BUNDLED_DIR / data.draw(st.sampled_from(bundled))).read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    how = data.draw(st.sampled_from(["truncate", "replace", "splice", "delete"]))
    if how == "truncate":
        text = text[: data.draw(st.integers(0, len(text)))]
    elif how == "replace":
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(text) - 1))
            text = (
                text[:at]
                + data.draw(st.sampled_from(list(":-{}[],'\"#*&!|>? \n\tx0~=.") + ["\u00e9"]))
                + text[at + 1 :]
            )
    elif how == "splice":
        i, j = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[j])
        text = "".join(lines)
    else:
        i = data.draw(st.integers(0, len(lines) - 1))
        text = "".join(lines[:i] + lines[i + 1 :])
    try:
        load_rules_text(text, "mutated.yaml", BUNDLED_DIR)
    except PolicyError as exc:
        assert exc.line >= 1 and exc.column >= 1 and exc.message


def test_list_entries_can_come_from_an_outside_file(tmp_path):
    """``list_files``: the central manager's lists replace a declared list's entries (inline or file)."""
    text = (
        "lists:\n  blocked: {kind: domain, items: [inline.test], cite: x}\n"
        "rules:\n  - id: r\n    action: drop\n    when: {tls.sni: {in_list: blocked}}\n"
    )
    feed = tmp_path / "feed.txt"
    feed.write_text("one.test\n# comment\ntwo.test\n")
    profile = load_rules_text(text, list_files={"blocked": feed})
    assert profile.policy.lists["blocked"].entries == ("one.test", "two.test")
    assert profile.policy.lists["blocked"].cite == "x"
    feed.write_text("ok.test\nbad name\n")
    with pytest.raises(PolicyError, match=rf"^{feed}:2:1: "):
        load_rules_text(text, list_files={"blocked": feed})
    with pytest.raises(PolicyError, match="no list 'other' is declared"):
        load_rules_text(text, list_files={"other": feed})
