"""``lab up --wrap vlan|gre`` (chokepoint.lab.wrap, chokepoint.lab.wrapper): the client side behind a VLAN or a
GRE tunnel, inline and on-path; the censor reaches the same verdicts as on the unwrapped lab for the same
client actions (an allowed page, a blocked SNI, a blocked DNS name), and its events show the wrapping where the
censor sees it. Real curl and dig in the client namespace; root only."""

from __future__ import annotations

import json
import time

import pytest

from chokepoint import lab
from chokepoint.lab import system
from chokepoint.lab.wrap import GRE_KEY, VLAN_ID

from ._e2e import session
from ._lab import down_keeping_foreign

BLOCKED = "example-blocked.test"  # the demo profile's SNI reset and DNS forgery
SITE = "198.19.0.10"


def run_actions(state: lab.LabState) -> list[tuple]:
    """The client's actions; the censor's verdicts, without the client's address, port and timing."""
    ns = state.namespace("client")
    curl = ["curl", "-s", "-o", "/dev/null", "--max-time", "4"]
    system.run([*curl, "https://allowed.test/"], netns=ns, check=False, timeout=10)
    system.run([*curl, "--resolve", f"{BLOCKED}:443:{SITE}", f"https://{BLOCKED}/"], netns=ns, check=False, timeout=10)
    system.run(["dig", "+tries=1", "+time=2", "@198.19.0.53", BLOCKED, "A"], netns=ns, check=False, timeout=10)
    time.sleep(1.0)
    path = state.path("events.jsonl")
    events = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return sorted(
        {
            (e["chokepoint"]["rule"], e["dest_ip"], e.get("dest_port"), e["app_proto"], tuple(e.get("encap", ())))
            for e in events
            if e["event_type"] == "chokepoint"
        }
    )


@pytest.fixture(scope="module")
def verdicts():
    """Each (mode, wrap) lab's verdicts, the labs brought up one after another under the session lock."""
    found: dict[tuple[str, str | None], list[tuple]] = {}
    with session():
        for mode in ("inline", "mirror"):
            for wrap in (None, "vlan", "gre"):
                try:
                    state = lab.up("demo", mode, seed=1, wrap=wrap)
                    found[(mode, wrap)] = run_actions(state)
                finally:
                    report = down_keeping_foreign()
                    assert not report.errors, report.errors
    return found


def without_encap(verdicts: list[tuple]) -> list[tuple]:
    return sorted({v[:4] for v in verdicts})


@pytest.mark.parametrize("mode", ["inline", "mirror"])
@pytest.mark.parametrize("wrap", ["vlan", "gre"])
def test_the_censor_decides_as_on_the_unwrapped_lab(verdicts, mode, wrap):
    plain = verdicts[(mode, None)]
    assert {v[0] for v in plain} >= {"demo-sni-reset", "demo-dns-forge"}, plain
    assert without_encap(verdicts[(mode, wrap)]) == without_encap(plain)


def test_where_the_wrapping_shows(verdicts):
    """GRE is seen inline and on-path (the censor forwards the tunnel); the VLAN tag only on-path (inline, the
    kernel hands NFQUEUE the routed packet, without its link layer)."""
    gre, vlan = (f"gre:{GRE_KEY}",), (f"vlan:{VLAN_ID}",)
    for mode in ("inline", "mirror"):
        assert {v[4] for v in verdicts[(mode, "gre")]} == {gre}, verdicts[(mode, "gre")]
        assert {v[4] for v in verdicts[(mode, None)]} == {()}
    assert {v[4] for v in verdicts[("mirror", "vlan")]} == {vlan}
    assert {v[4] for v in verdicts[("inline", "vlan")]} == {()}  # NFQUEUE gets the packet untagged
