"""The engine end to end on packets built with real payloads: budget, reassembly, verdicts, RNG."""

import random

from chokepoint.engine import Engine
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ACK, PSH, SYN
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import load_rules_text

C, S = "192.0.2.1", "203.0.113.5"
RAW = 101

HOST_RULES = """
lists:
  blocked: {kind: domain, items: [blocked.test]}
rules:
  - id: host
    action: reset
    when: {http.host: {in_list: blocked}}
  - id: sni
    action: reset
    when: {tls.sni: {in_list: blocked}}
"""


def profile(rules: str, engine: str = ""):
    text = (f"engine:\n{engine}\n" if engine else "") + rules
    return load_rules_text(text)


def run(prof, packets, rng=None):
    decoder = Decoder()
    engine = Engine(prof, rng=rng)
    flows = []
    for i, (ts, data) in enumerate(packets, 1):
        pkt = decoder.decode(Frame(ts, RAW, data, len(data), i))
        assert pkt is not None, decoder.counters
        flows.extend(engine.process(pkt))
    flows.extend(engine.finish())
    return flows, engine


def handshake(cport=40000, sport=80):
    return [
        (0.0, build.ipv4_tcp(C, S, cport, sport, 1000, 0, SYN)),
        (0.01, build.ipv4_tcp(S, C, sport, cport, 5000, 1001, SYN | ACK)),
        (0.02, build.ipv4_tcp(C, S, cport, sport, 1001, 5001, ACK)),
    ]


def segments(payload: bytes, cuts: list[int], cport=40000, sport=80, order=None):
    points = [0, *cuts, len(payload)]
    segs = [(points[i], payload[points[i] : points[i + 1]]) for i in range(len(points) - 1)]
    if order:
        segs = [segs[i] for i in order]
    return [
        (0.1 + 0.01 * i, build.ipv4_tcp(C, S, cport, sport, 1001 + off, 5001, PSH | ACK, chunk))
        for i, (off, chunk) in enumerate(segs)
    ]


REQUEST = b"GET / HTTP/1.1\r\nHost: blocked.test\r\nUser-Agent: t\r\n\r\n"


def test_host_split_across_segments_is_found_with_reassembly():
    flows, _ = run(profile(HOST_RULES), handshake() + segments(REQUEST, [20]))
    (flow,) = flows
    assert flow.verdict.rule_id == "host"
    assert flow.verdict.direction == "c2s"
    assert flow.verdict.packet_index == 5  # decided on the segment that completed the Host


def test_without_reassembly_a_split_host_is_missed():
    prof = profile(HOST_RULES, "  reassembly: false")
    flows, _ = run(prof, handshake() + segments(REQUEST, [20]))
    assert flows[0].verdict is None
    # ... but a request in one segment is still caught
    flows, _ = run(prof, handshake() + segments(REQUEST, []))
    assert flows[0].verdict.rule_id == "host"


def test_out_of_order_segments_are_reassembled():
    flows, _ = run(profile(HOST_RULES), handshake() + segments(REQUEST, [10, 30], order=[2, 0, 1]))
    assert flows[0].verdict.rule_id == "host"


def test_tls_client_hello_split_over_tcp_segments():
    hello = tls_client_hello("blocked.test")
    flows, _ = run(profile(HOST_RULES), handshake(sport=443) + segments(hello, [50, 200], sport=443))
    assert flows[0].facts.tls.sni == "blocked.test"
    assert flows[0].verdict.rule_id == "sni"


def test_inspection_budget_ends_inspection():
    prof = profile(HOST_RULES, "  inspect_max_packets: 2")
    # the client's SYN and ACK spend its budget of 2; its request is not inspected any more
    flows, engine = run(prof, handshake() + segments(REQUEST, []))
    assert flows[0].verdict is None
    assert flows[0].inspected_pkts[0] == 2  # client direction: budget spent
    prof = profile(HOST_RULES, "  inspect_max_packets: 3")
    flows, _ = run(prof, handshake() + segments(REQUEST, []))
    assert flows[0].verdict.rule_id == "host"


def test_a_terminal_verdict_stops_inspection_and_logs_are_kept_once():
    rules = HOST_RULES.replace("rules:\n", "rules:\n  - id: seen-http\n    action: log\n    when: {app_proto: http}\n")
    packets = handshake() + segments(REQUEST, [5, 10, 15])
    flows, _ = run(profile(rules), packets)
    flow = flows[0]
    assert [v.rule_id for v in flow.logs] == ["seen-http"]
    assert flow.verdict.rule_id == "host" and not flow.inspecting


def test_first_packet_rules_fire_on_the_syn():
    rules = "rules:\n  - id: ip\n    action: drop\n    when: {server_ip: [203.0.113.0/24]}\n"
    flows, _ = run(profile(rules), handshake())
    assert flows[0].verdict.rule_id == "ip" and flows[0].verdict.packet_index == 1


def test_probability_uses_the_injected_rng_reproducibly():
    rules = "rules:\n  - id: ip\n    action: drop\n    params: {probability: 0.5}\n    when: {server_port: [80]}\n"
    prof = profile(rules)
    outcomes = []
    for seed in range(40):
        packets = handshake(cport=40000 + seed)
        flows, _ = run(prof, packets, rng=random.Random(seed))
        outcomes.append(flows[0].verdict is not None)
    again = [run(prof, handshake(cport=40000 + s), rng=random.Random(s))[0][0].verdict is not None for s in range(40)]
    assert outcomes == again
    assert 5 < sum(outcomes) < 35


def test_fully_encrypted_uses_the_first_data_packet_as_sent():
    rules = "rules:\n  - id: fet\n    action: drop\n    when: {fully_encrypted: true}\n"
    rng = random.Random(3)
    blob = rng.randbytes(600)
    flows, _ = run(profile(rules), handshake(sport=8388) + segments(blob, [300], sport=8388))
    assert flows[0].facts.fet.fully_encrypted
    assert flows[0].verdict.rule_id == "fet"
    # a printable first packet is exempt even if random bytes follow in the next segment
    flows, _ = run(profile(rules), handshake(sport=8388) + segments(b"HELLO WORLD" + blob, [11], sport=8388))
    assert flows[0].facts.fet.exemption is not None
    assert flows[0].verdict is None


def test_flows_expire_by_packet_time():
    prof = profile("rules: []", "  udp_timeout: 5.0")
    packets = [(0.0, build.ipv4_udp(C, S, 5000, 53, b"x")), (100.0, build.ipv4_udp(C, S, 5001, 53, b"y"))]
    decoder = Decoder()
    engine = Engine(prof)
    ended = []
    for i, (ts, data) in enumerate(packets, 1):
        ended += engine.process(decoder.decode(Frame(ts, RAW, data, len(data), i)))
    assert [f.client_port for f in ended] == [5000]
    assert ended[0].end_reason == "timeout"


def test_dns_forge_answers_every_query_on_one_socket():
    """glibc sends A and AAAA back to back from one socket; each query is a decision of its own."""
    import dns.message

    rules = (
        "lists:\n  blocked: {kind: domain, items: [blocked.test]}\nrules:\n  - id: forge\n"
        "    action: dns-forge\n    when: {dns.qname: {in_list: blocked}}\n"
    )
    prof = profile(rules)
    a = dns.message.make_query("blocked.test", "A", id=1).to_wire()
    aaaa = dns.message.make_query("blocked.test", "AAAA", id=2).to_wire()
    answer = dns.message.make_response(dns.message.from_wire(a)).to_wire()
    packets = [
        (0.0, build.ipv4_udp(C, S, 5353 + 30000, 53, a)),
        (0.01, build.ipv4_udp(S, C, 53, 5353 + 30000, answer)),
        (0.02, build.ipv4_udp(C, S, 5353 + 30000, 53, aaaa)),
    ]
    decoder = Decoder()
    engine = Engine(prof)
    decided = []
    for i, (ts, data) in enumerate(packets, 1):
        step = engine.step(decoder.decode(Frame(ts, RAW, data, len(data), i)))
        decided.append(step.decided_now)
    assert decided == [True, False, True]
    assert step.flow.inspecting


def test_a_flow_without_data_holds_no_dissection_state():
    """Facts and reassembly buffers are allocated when the first data arrives, not on the handshake."""
    prof = profile(HOST_RULES)
    flows, _ = run(prof, handshake())
    (flow,) = flows
    assert flow.facts is None and flow.streams == [None, None]
    assert flow.app_proto == "unknown" and flow.syn_seq == [1000, 5000]
    req = b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n"
    flows, _ = run(prof, handshake() + [(0.1, build.ipv4_tcp(C, S, 40000, 80, 1001, 5001, PSH | ACK, req))])
    (flow,) = flows
    assert flow.facts.http.host == "ok.test" and flow.streams[0].bytes == req and flow.streams[1] is None


def test_no_facts_seen_is_what_empty_facts_show():
    from chokepoint.dissect.dispatch import new_facts
    from chokepoint.engine import _NO_FACTS_SEEN, _facts_seen

    assert _facts_seen(new_facts()) == _NO_FACTS_SEEN


def test_match_input_is_built_in_field_order():
    """Engine.match_input passes the network and per-packet facts positionally."""
    from dataclasses import fields

    from chokepoint.policy.input import MatchInput

    assert [f.name for f in fields(MatchInput)][:11] == [
        "transport",
        "client_ip",
        "server_ip",
        "client_port",
        "server_port",
        "direction",
        "packet_index_in_flow",
        "tcp_header_len",
        "payload",
        "data_packet_index_c2s",
        "local_hour",
    ]


def test_flow_init_sets_every_field_to_its_declared_default():
    """Flow's hand-written __init__ agrees with its dataclass field declarations."""
    from dataclasses import MISSING, fields

    from chokepoint.flow.flow import Flow

    flow = Flow(7, (6, b"a", 1, b"b", 2), 6, 4, b"a", 1, b"b", 2, 1.0, 2.0, client_text="x", server_text="y")
    positional = ("id", "key", "proto", "ip_version", "client_ip", "client_port", "server_ip", "server_port")
    for f in fields(Flow):
        value = getattr(flow, f.name)
        if f.name in positional or f.name in ("first_ts", "last_ts", "client_text", "server_text"):
            continue
        expected = f.default_factory() if f.default_factory is not MISSING else f.default
        assert value == expected, f.name
    assert (flow.first_ts, flow.last_ts, flow.client_text, flow.server_text) == (1.0, 2.0, "x", "y")
    assert Flow(1, None, 6, 4, b"", 0, b"", 0, 0.0, 0.0).pkts is not flow.pkts


def test_a_rule_on_the_encapsulation_picks_the_customer_s_vlan(tmp_path):
    """``encap: vlan:100`` blocks the flows that arrive on VLAN 100 and nothing else; EVE shows the stack."""
    from chokepoint.backends.offline import analyze_capture
    from chokepoint.packet.pcap import CaptureWriter
    from chokepoint.policy import load_rules_text

    req = b"GET / HTTP/1.1\r\nHost: ok.test\r\n\r\n"
    path = tmp_path / "vlans.pcap"
    with CaptureWriter(path, linktype=1) as writer:
        for vid, cport in ((100, 40001), (200, 40002)):
            for ts, ip in build.tcp_conversation(C, S, cport, 80, [req], [b"HTTP/1.1 200 OK\r\n\r\n"], 1.0):
                writer.write(ts, build.ethernet(build.pppoe_session(ip, 0x1A2B), 0x8864, vlans=[(0x8100, vid)]))
    prof = load_rules_text("rules:\n  - {id: customer, action: drop, when: {encap: vlan:100}}\n")
    records = {r["src_port"]: r for r in analyze_capture(str(path), prof).records}
    assert records[40001]["chokepoint"]["rule"] == "customer" and records[40002]["chokepoint"]["rule"] is None
    assert records[40001]["encap"] == ["vlan:100", "pppoe:0x1a2b"] and records[40002]["encap"][0] == "vlan:200"
