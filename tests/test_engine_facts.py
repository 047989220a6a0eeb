"""The per-packet facts the country profiles added to MatchInput, as Engine.match_input fills them from real
packets: payload, data_packet_index_c2s (with its re-evaluation), local_hour on the profile's clock, and the
computed fields over them (client_port_gt_server_port, payload_len, first_payload_c2s_len)."""

from __future__ import annotations

from chokepoint.engine import RECHECK_DATA_PACKETS, Engine
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ACK, PSH, SYN
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import load_rules_text

C, S = "192.0.2.1", "203.0.113.5"


def tcp_packets(cport: int, sport: int, payloads: list[bytes], t0: float = 0.0):
    out = [
        (t0, build.ipv4_tcp(C, S, cport, sport, 1000, 0, SYN)),
        (t0 + 0.01, build.ipv4_tcp(S, C, sport, cport, 5000, 1001, SYN | ACK)),
        (t0 + 0.02, build.ipv4_tcp(C, S, cport, sport, 1001, 5001, ACK)),
    ]
    seq = 1001
    for i, data in enumerate(payloads):
        out.append((t0 + 0.1 + i * 0.1, build.ipv4_tcp(C, S, cport, sport, seq, 5001, PSH | ACK, data)))
        seq += len(data)
    return out


def inputs(rules: str, packets, *, profile_block: str = ""):
    """Every MatchInput the engine builds for ``packets`` (one per policy evaluation), in order."""
    profile = load_rules_text(profile_block + rules, require_profile=bool(profile_block))
    engine = Engine(profile)
    seen = []
    original = engine.policy.evaluate

    class Spy:
        def __getattr__(self, name):
            return getattr(original.__self__, name)

        def evaluate(self, inp):
            seen.append(inp)
            return original(inp)

    engine.policy = Spy()
    decoder = Decoder()
    for i, (ts, raw) in enumerate(packets, 1):
        engine.process(decoder.decode(Frame(ts, 101, raw, len(raw), i)))
    engine.finish()
    return seen, profile


RULES_INDEX = "rules:\n  - {id: second, action: log, when: {data_packet_index_c2s: 2}}\n"
RULES_PLAIN = "rules:\n  - {id: big, action: drop, when: {server_port: 1}}\n"


def test_data_packet_index_counts_client_data_packets_and_re_asks_the_policy() -> None:
    payloads = [b"\x01" * 10, b"\x02" * 10, b"\x03" * 10, b"\x04" * 10, b"\x05" * 10, b"\x06" * 10]
    seen, profile = inputs(RULES_INDEX, tcp_packets(40000, 443, payloads))
    assert "data_packet_index_c2s" in profile.policy.fields_used
    by_index = [(inp.data_packet_index_c2s, inp.payload) for inp in seen if inp.payload]
    # the first data packet is new facts; then each of the first RECHECK_DATA_PACKETS is asked about
    assert [i for i, _ in by_index] == list(range(1, RECHECK_DATA_PACKETS + 1))
    assert all(payload == payloads[i - 1] for i, payload in by_index)


def test_without_such_a_rule_unchanged_facts_do_not_re_ask() -> None:
    seen, profile = inputs(RULES_PLAIN, tcp_packets(40001, 443, [b"\x01" * 10, b"\x02" * 10, b"\x03" * 10]))
    assert "data_packet_index_c2s" not in profile.policy.fields_used
    assert len([inp for inp in seen if inp.data_packet_index_c2s >= 2]) == 0


def test_payload_rules_are_asked_on_every_data_packet() -> None:
    rules = "rules:\n  - {id: p, action: drop, when: {payload_len: {ge: 1001}}}\n"
    datagrams = [(0.1 * i, build.ipv4_udp(C, S, 40002, 443, bytes([i]) * (10 + i))) for i in range(5)]
    seen, _ = inputs(rules, datagrams)
    assert [len(inp.payload) for inp in seen] == [10, 11, 12, 13, 14]


def test_local_hour_follows_the_profile_timezone() -> None:
    block = (
        "profile: {name: tz, title: t, country: MM, observed: '2021', description: d, cite: [c], "
        "timezone: 'UTC+06:30'}\n"
    )
    noon_utc = 1_717_416_000.0  # 2024-06-03 12:00:00 UTC
    seen, profile = inputs(RULES_PLAIN, tcp_packets(40003, 443, [b"x"], t0=noon_utc), profile_block=block)
    assert profile.meta.utc_offset_s == 23400 and {inp.local_hour for inp in seen} == {18}  # 18:30 local
    seen, _ = inputs(RULES_PLAIN, tcp_packets(40004, 443, [b"x"], t0=noon_utc))
    assert {inp.local_hour for inp in seen} == {12}, "no timezone: UTC"


def test_computed_fields_over_the_facts() -> None:
    rules = """
rules:
  - {id: ports, action: log, when: {client_port_gt_server_port: true}}
  - {id: first-len, action: log, when: {first_payload_c2s_len: {ge: 200}}}
  - {id: hello, action: log, when: {payload: {prefix: "16 03"}}}
"""
    hello = tls_client_hello("www.example.org")
    profile = load_rules_text(rules)
    engine = Engine(profile)
    decoder = Decoder()
    flows = []
    for cport, sport in ((40005, 443), (400, 443)):
        for i, (ts, raw) in enumerate(tcp_packets(cport, sport, [hello]), 1):
            flows += engine.process(decoder.decode(Frame(ts, 101, raw, len(raw), i)))
    flows += engine.finish()
    logs = {f.client_port: sorted(v.rule_id for v in f.logs) for f in flows}
    assert logs[40005] == ["first-len", "hello", "ports"]
    assert logs[400] == ["first-len", "hello"]
