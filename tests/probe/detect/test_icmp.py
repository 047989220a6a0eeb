"""The ICMP finder (:mod:`chokepoint.probe.detect.icmp`)."""

from __future__ import annotations

import pytest

from chokepoint.enforce.personality import parse_personality, preset
from chokepoint.policy.verdict import Action
from tests.probe.detect._censored import Censored, _only, _same


@pytest.mark.parametrize("name", ["linux", "packetlogic"])
def test_icmp_unreachable_in_the_destination_s_name(tmp_path, name):
    conn = Censored(preset(name), Action.ICMP_UNREACHABLE)
    finding = _only(conn.detect(tmp_path), "icmp")
    (icmp,) = finding.packets
    assert icmp.index in conn.injected and icmp.claimed == "server" and icmp.to_json()["icmp_code"] == 13
    assert set(icmp.signals) == {"admin-prohibited", "ttl"}
    assert set(finding.candidates[0].personalities) == _same(name, lambda p: p.icmp)


def test_icmp_unreachable_from_a_middle_hop_matches_no_preset(tmp_path):
    censor = parse_personality({"based_on": "linux", "icmp": {"source": "198.18.0.1", "code": 10}})
    finding = _only(Censored(censor, Action.ICMP_UNREACHABLE).detect(tmp_path), "icmp")
    assert finding.packets[0].claimed == "middle hop" and "middle-hop" in finding.packets[0].signals
    assert not any(c.consistent for c in finding.candidates)  # every preset spoofs the destination, code 13
