"""pakistan: the WMS 2.0 (TSG) RST middlebox without DF, and the ISP iframe blockpage OONI fingerprints."""

from __future__ import annotations

from chokepoint.enforce import preset
from chokepoint.packet.record import AE, RST
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.profile import load_profile
from tests.profiles._scenarios import CLIENT, SERVER, decide, fingerprint_patterns, http_request, read, tcp_flow

PROFILE = load_profile("pakistan")


def test_rst_without_df() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41000, 443, [tls_client_hello("www.queerty.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    rsts = [read(i.packet) for i in plan.injections]
    # geedge.report: RST+AE+RE, no DF (AE = 0x100; which reserved bit "RE" is, is the knob's stated uncertainty)
    assert len(rsts) == 2 and all(p.tcp_flags == RST | AE | 0x200 and not p.df for p in rsts)
    assert not PROFILE.engine.ip_fragment_reassembly
    assert "reserved bit" in dict((k.path, k.uncertain) for k in PROFILE.knobs)["reset.flags"]


def test_blockpage_carries_the_mobilink_fingerprint() -> None:
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41001, 80, [http_request("www.globalgayz.com")], 1.0))
    plan = decision.plan(PROFILE.personality)
    response = b"".join(read(i.packet).payload for i in plan.injections if i.to == "client")
    assert response.startswith(b"HTTP/1.1 200 ")
    assert fingerprint_patterns("http", "ooni.pk_1").encode() in response


def test_wms_1_packetlogic_fingerprint_is_documented() -> None:
    (also,) = PROFILE.also_observed
    assert also.preset == "packetlogic"
    decision = decide(PROFILE, tcp_flow(CLIENT, SERVER, 41002, 443, [tls_client_hello("www.queerty.com")], 1.0))
    rsts = [read(i.packet) for i in decision.plan(preset("packetlogic")).injections]
    assert rsts and all((p.ip_id, p.window) == (13330, 32120) for p in rsts)
