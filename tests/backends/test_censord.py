"""The daemon's backend-independent core (``Censor``): real captures in, plans, events and counters out.

No root and no sockets: packets of the real nDPI captures are fed to ``Censor.observe`` and the plans are
inspected, never sent (their addresses are real Internet hosts).
"""

from __future__ import annotations

import json
from pathlib import Path

import dns.message
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chokepoint.backends.censor import Censor, check_params, ip_packet, packet_fields, residual_key
from chokepoint.backends.censord import main
from chokepoint.backends.kernel import ResidualKey
from chokepoint.enforce import DEFAULT
from chokepoint.enforce.craft import Stamp, tcp_reset
from chokepoint.packet import build
from chokepoint.packet.pcap import open_capture
from chokepoint.packet.record import Packet, tcp_flags_text
from chokepoint.policy import PolicyError, load_rules_text

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
PCAPS = SHARED / "ndpi" / "pcap"

RULES = """
rules:
  - id: host
    action: reset
    params: {residual_s: 90}
    when: {http.host: {exact: google.com}}
  - id: forge
    action: dns-forge
    params: {answers: [192.0.2.7, "2001:db8::7"]}
    when: {dns.qname: {exact: www.example.com}}
"""


def capture(name: str) -> list[bytes]:
    path = PCAPS / name
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path} (the nDPI captures beside the checkout)")
    with open_capture(path) as reader:
        frames = list(reader)
    assert all(f.linktype == 1 for f in frames)
    return [f.data for f in frames]


def run(censor: Censor, frames: list[bytes]):
    return [d for d in (censor.observe(f, 1) for f in frames) if d is not None and d.plan is not None]


@pytest.fixture
def profile():
    return load_rules_text(RULES)


def test_reset_plan_on_a_real_http_request(profile, tmp_path):
    censor = Censor(profile, mode="inline", seed=1, state_dir=tmp_path)
    (decision,) = run(censor, capture("http.pcapng"))
    pkt, plan = decision.pkt, decision.plan
    assert plan.rule_id == "host" and plan.drop_trigger and plan.flow_action == "drop"
    to_client, to_server = plan.injections
    rst_c = packet_fields(to_client.packet)
    rst_s = packet_fields(to_server.packet)
    # RFC 5961: at the receiver's RCV.NXT - the client expects the request's ack; the server, whose
    # request is dropped, still expects the request's own seq
    assert (rst_c["seq"], rst_c["tcp_flags"], rst_c["dest_port"]) == (pkt.ack, "RA", pkt.sport)
    assert (rst_s["seq"], rst_s["tcp_flags"], rst_s["dest_port"]) == (pkt.seq, "RA", 80)
    assert plan.residual.scope == "3-tuple" and plan.residual.seconds == 90
    key = residual_key(plan.residual)
    assert key == ResidualKey("3-tuple", key.client_ip, "216.58.208.142", 80, 0, 6)
    record = censor.record_action(decision, [rst_c, rst_s], trigger_dropped=True, kernel={"mark": 2})
    censor.close()
    lines = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert lines[0] == json.loads(json.dumps(record))
    assert lines[0]["chokepoint"]["residual"]["key"] == ["tcp", key.client_ip, "216.58.208.142", 80]
    (flow,) = [x for x in lines if x["event_type"] == "flow"]
    assert flow["chokepoint"]["verdict"] == "reset" and flow["http"]["hostname"] == "google.com"
    stats = json.loads((tmp_path / "censor-stats.json").read_text())
    assert stats["running"] is False and stats["verdicts"]["by_rule"] == {"host": 1}
    assert stats["flows"]["ended"] == 1 and stats["packets"]["seen"] == 10


def test_mirror_mode_never_drops(profile):
    censor = Censor(profile, mode="mirror", seed=1)
    (decision,) = run(censor, capture("http.pcapng"))
    plan = decision.plan
    assert not plan.drop_trigger and plan.flow_action == "allow"
    to_server = packet_fields(plan.injections[1].packet)
    assert to_server["seq"] == decision.pkt.seq + len(decision.pkt.payload)  # the request was delivered
    assert plan.residual.action == "reset"  # mirror: a drop cannot be done


def test_forged_dns_answer_for_a_real_query(profile):
    censor = Censor(profile, mode="inline", seed=3)
    (decision,) = run(censor, capture("dns.pcap"))
    (injection,) = decision.plan.injections
    fields = packet_fields(injection.packet)
    assert fields["dns"]["answers"][0]["rdata"] == "2001:db8::7"  # the capture asks for AAAA
    query = dns.message.from_wire(decision.pkt.payload)
    answer = dns.message.from_wire(bytes.fromhex(fields["payload_hex"]))
    assert answer.id == query.id and answer.question == query.question
    assert (fields["src_port"], fields["dest_port"]) == (decision.pkt.dport, decision.pkt.sport)


def test_same_seed_same_plans(profile):
    frames = capture("http.pcapng")
    first = [d.plan.injections for d in run(Censor(profile, mode="inline", seed=9), frames)]
    again = [d.plan.injections for d in run(Censor(profile, mode="inline", seed=9), frames)]
    assert first == again


def test_check_params_rejects_what_the_enforcer_cannot_do():
    text = (
        "personality:\n  blockpage: {location: 'http://blocked.invalid/'}\n"
        "rules:\n  - id: r\n    action: blockpage\n    params: {status: 302}\n    when: {transport: tcp}\n"
    )
    profile = load_rules_text(text)  # fine with its own personality (it has a location) ...
    check_params(profile, profile.personality)
    with pytest.raises(PolicyError, match="needs a location"):
        check_params(profile, DEFAULT)  # ... not with one that has none
    with pytest.raises(PolicyError):
        Censor(profile, mode="inline", personality=DEFAULT)


def test_residual_match_in_user_space(profile):
    censor = Censor(profile, mode="mirror")
    censor.note_residual(ResidualKey("3-tuple", "198.18.0.2", "198.19.0.10", 80), "reset", 5, "r3")
    censor.note_residual(ResidualKey("4-tuple", "198.18.0.2", "198.19.0.11", 443, 5555), "reset", 5, "r4")
    censor.note_residual(ResidualKey("server", "", "198.19.0.12", 53, proto=17), "drop", 5, "rs")

    def pkt(src, sport, dst, dport):
        return Packet(0.0, 4, build.address(src), build.address(dst), 6, sport, dport)

    assert censor.residual_match(pkt("198.18.0.2", 4000, "198.19.0.10", 80))[2] == "r3"
    assert censor.residual_match(pkt("198.19.0.10", 80, "198.18.0.2", 4000))[2] == "r3"  # server side
    assert censor.residual_match(pkt("198.18.0.2", 4000, "198.19.0.10", 81)) is None
    assert censor.residual_match(pkt("198.18.0.2", 5555, "198.19.0.11", 443))[2] == "r4"
    assert censor.residual_match(pkt("198.18.0.2", 5556, "198.19.0.11", 443)) is None
    assert censor.residual_match(pkt("198.18.0.9", 1, "198.19.0.12", 53))[2] == "rs"
    assert censor.residual_active() == 3


def test_tcp_flags_text():
    assert tcp_flags_text(0x14) == "RA" and tcp_flags_text(0x02) == "S" and tcp_flags_text(0x19) == "FPA"


def test_ip_packet_cuts_link_header_and_padding():
    rst = tcp_reset("192.0.2.1", "192.0.2.2", 80, 1, 1, 1, with_ack=True, stamp=Stamp())
    assert ip_packet(build.ethernet(rst) + b"\0" * 6) == rst
    assert ip_packet(build.ethernet(rst, vlans=[(0x8100, 7)])) == rst


SEEDS = [
    tcp_reset("192.0.2.1", "192.0.2.2", 80, 1, 1, 1, with_ack=True, stamp=Stamp(), payload=b"x"),
    tcp_reset("2001:db8::1", "2001:db8::2", 80, 1, 1, 1, with_ack=False, stamp=Stamp()),
]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SEEDS), st.integers(0, 80), st.binary(max_size=64), st.integers(0, 99), st.integers(0, 255))
def test_packet_fields_never_raises(seed, cut, tail, pos, value):
    mutated = bytearray(seed[:cut] + tail)
    if mutated:
        mutated[pos % len(mutated)] = value
    fields = packet_fields(bytes(mutated))
    assert "size" in fields


def test_dns_answer_fields_survive_mutated_payloads():
    query = dns.message.make_query("example.com", "A").to_wire()
    from chokepoint.dissect.dns import build_response

    answer = build_response(query, ["192.0.2.9"])
    for cut in range(len(answer) + 1):
        fields = packet_fields(build.ipv4_udp("192.0.2.53", "192.0.2.2", 53, 4000, answer[:cut]))
        assert ("dns" in fields) == (cut == len(answer))


def test_daemon_rejects_a_bad_profile_name(capsys, tmp_path):
    assert main(["--mode", "inline", "--profile", "no-such-profile", "--state-dir", str(tmp_path)]) == 1
    assert "profile rejected" in capsys.readouterr().err
    assert not (tmp_path / "censor-stats.json").exists()


def test_every_bundled_profile_starts_in_both_modes():
    from chokepoint.policy import list_profiles, load_profile

    for name in list_profiles():
        profile = load_profile(name)
        for mode in ("inline", "mirror"):
            censor = Censor(profile, mode=mode)
            assert censor.personality is profile.personality
