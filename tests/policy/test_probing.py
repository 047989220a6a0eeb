"""The ``active_probing:`` section: the gfw profile's prober loads; mistakes are reported where they are."""

from __future__ import annotations

import pytest
import yaml

from chokepoint.policy import PolicyError, load_profile, load_rules_text
from chokepoint.policy.profile import BUNDLED_DIR


def _text(mutate) -> str:
    gfw = yaml.safe_load((BUNDLED_DIR / "gfw.yaml").read_text())
    doc = {"rules": [r for r in gfw["rules"] if r["id"].startswith("gfw-ap-")], "active_probing": gfw["active_probing"]}
    mutate(doc)
    return yaml.safe_dump(doc, sort_keys=False)


def test_the_gfw_profile_has_the_documented_prober():
    ap = load_profile("gfw").active_probing
    assert dict(ap.triggers) == {"gfw-ap-suspect": "shadowsocks", "gfw-ap-tor": "tor"}
    ss = ap.probe_sets["shadowsocks"]
    assert [t.name for t in ss.replay_types] == ["R1", "R2", "R3", "R4", "R5"]
    assert dict((t.name, t.changes) for t in ss.replay_types)["R3"] == ((0, 7), (62, 63))
    assert [t.name for t in ss.replay_types if t.after_data] == ["R3", "R4", "R5"]
    nr = {r.name: r.lengths for r in ss.random}
    assert nr["NR2"] == (221,) and {7, 8, 9, 48, 49, 50} <= set(nr["NR1"])
    assert ss.replay_lengths == (160, 700) and ss.ttl == (46, 50) and ss.source_ports == (32768, 60999)
    assert ss.delay_quantiles[1] == (1.0, 0.2) and ss.delay_quantiles[2] == (60.0, 0.5)
    assert ss.block_direction == "s2c" and ss.block_rule == "gfw-ap-block-shadowsocks"
    assert dict(ss.uncertain)["confirm"]
    assert ap.probe_sets["tor"].confirm_any == ("tor-handshake",)


def _set(doc, *path_value):
    *path, value = path_value
    node = doc["active_probing"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize(
    "mutate, what",
    [
        (lambda d: _set(d, "triggers", 0, "rule", "nope"), "no rule 'nope'"),
        (lambda d: _set(d, "triggers", 0, "probes", "nope"), "no probe set 'nope'"),
        (lambda d: _set(d, "probe_sets", "shadowsocks", "delay", "quantiles", [[1, 0.5], [2, 0.2]]), "rise"),
        (lambda d: _set(d, "probe_sets", "shadowsocks", "confirm", "any", ["vibes"]), "vibes"),
        (lambda d: _set(d, "probe_sets", "shadowsocks", "fingerprint", "ttl", [60, 50]), "first is above last"),
        (lambda d: _set(d, "probe_sets", "shadowsocks", "block", "scope", "planet"), "planet"),
    ],
)
def test_mistakes_in_the_prober_are_reported_at_file_line_column(mutate, what):
    with pytest.raises(PolicyError) as info:
        load_rules_text(_text(mutate), "p.yaml")
    message = str(info.value)
    assert message.startswith("p.yaml:") and message.split(":")[1].isdigit(), message
    assert what in message
