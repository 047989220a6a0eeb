"""Plans: verdict -> trigger/flow handling, injections at the right sequence numbers, residual blocks.

Sequence numbers are checked against what the endpoints themselves send next (in connections built around real
payloads, and in the real nDPI captures), through an RFC 5961 receiver model: a RST resets a synchronized
connection only when SEG.SEQ == RCV.NXT, and a SYN-SENT one only when its ACK acknowledges the SYN.
"""

from __future__ import annotations

import random

import dns.message
import pytest

from chokepoint.enforce.craft import Stamper
from chokepoint.enforce.personality import DEFAULT, parse_personality, preset
from chokepoint.enforce.plan import Plan, plan, reply_numbers, seg_len
from chokepoint.engine import Engine
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key
from chokepoint.packet import build
from chokepoint.packet.record import ACK, FIN, PSH, RST, SYN, TCP, UDP
from chokepoint.policy import load_profile
from chokepoint.policy.verdict import Action, Verdict
from tests.enforce._wire import client_hello, decode, flows_of, read, real_packets

CLIENT, SERVER = "198.18.0.2", "198.19.0.10"
CLIENT6, SERVER6 = "2001:db8:0:1::2", "2001:db8:0:2::10"
GET = b"GET /forbidden HTTP/1.1\r\nHost: blocked.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def _verdict(action: Action, **params) -> Verdict:
    return Verdict(action, f"rule-{action.value}", params=tuple(params.items()))


class Conn:
    """A TCP connection built around real payload bytes, decoded packet by packet; ``index`` picks a trigger."""

    def __init__(self, request: bytes, response: bytes = RESPONSE, v6: bool = False):
        client, server = (CLIENT6, SERVER6) if v6 else (CLIENT, SERVER)
        self.raws = [
            raw
            for _ts, raw in build.tcp_conversation(
                client, server, 40000, 443, [request], [response], 1.0, client_isn=4294967000, server_isn=77
            )
        ]
        self.pkts = [decode(raw) for raw in self.raws]
        first = self.pkts[0]
        self.flow = Flow.from_first_packet(1, flow_key(first), first)

    def data(self, c2s: bool) -> int:
        """Index of the first data packet in a direction."""
        src = self.flow.client_ip if c2s else self.flow.server_ip
        return next(i for i, p in enumerate(self.pkts) if p.payload and p.src == src)

    def next_seq(self, i: int, from_client: bool) -> int:
        """Sequence number of the next packet this side sends after packet ``i`` (its SND.NXT then)."""
        src = self.flow.client_ip if from_client else self.flow.server_ip
        return next(p.seq for p in self.pkts[i + 1 :] if p.src == src)

    def plan(self, i: int, verdict: Verdict, personality=DEFAULT, **kw) -> Plan:
        pkt = self.pkts[i]
        return plan(
            verdict,
            self.flow,
            pkt,
            self.raws[i],
            self.flow.direction_of(pkt),
            personality,
            Stamper(random.Random(1)),
            100.0,
            **kw,
        )


def _accepts(rst, rcv_nxt: int) -> bool:
    """RFC 5961 §3.2 for a synchronized receiver."""
    return bool(rst.flags & RST) and rst.seq == rcv_nxt


def _by_target(p: Plan) -> dict[str, list]:
    out: dict[str, list] = {"client": [], "server": []}
    for inj in p.injections:
        out[inj.to].append(read(inj.packet))
    return out


# ------------------------------------------------------------------------------------------------- resets


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("drop_trigger", [True, False])
def test_reset_on_a_client_request_lands_at_both_rcv_nxt(v6, drop_trigger):
    conn = Conn(client_hello("blocked.example"), v6=v6)
    i = conn.data(c2s=True)
    trigger = conn.pkts[i]
    personality = parse_personality({"drop_trigger": drop_trigger})
    p = conn.plan(i, _verdict(Action.RESET), personality)
    assert p.drop_trigger is drop_trigger and p.flow_action == ("drop" if drop_trigger else "allow")
    got = _by_target(p)
    (to_client,), (to_server,) = got["client"], got["server"]
    # the client's RCV.NXT is the server's next sequence number
    assert _accepts(to_client, conn.next_seq(i, from_client=False))
    assert (to_client.src, to_client.sport, to_client.dport) == (read(conn.raws[1]).src, 443, 40000)
    # the server's RCV.NXT: after the ClientHello if it got it, before it if the censor dropped it
    expected = conn.next_seq(i, from_client=True) if not drop_trigger else trigger.seq
    assert _accepts(to_server, expected)
    assert expected == (trigger.seq + (0 if drop_trigger else len(trigger.payload))) % 2**32
    assert to_client.flags == to_server.flags == RST | ACK
    assert to_client.ack == (trigger.seq + len(trigger.payload)) % 2**32 and to_server.ack == trigger.ack
    assert to_client.version == (6 if v6 else 4)


@pytest.mark.parametrize("drop_trigger", [True, False])
def test_reset_on_a_server_response_lands_at_both_rcv_nxt(drop_trigger):
    conn = Conn(GET, RESPONSE)
    i = conn.data(c2s=False)
    trigger = conn.pkts[i]
    p = conn.plan(i, _verdict(Action.RESET), parse_personality({"drop_trigger": drop_trigger}))
    got = _by_target(p)
    (to_client,), (to_server,) = got["client"], got["server"]
    assert _accepts(to_server, conn.next_seq(i, from_client=True))  # the server sent it: SEG.ACK
    assert to_server.sport == 40000 and to_server.dport == 443
    expected = trigger.seq if drop_trigger else conn.next_seq(i, from_client=False)
    assert _accepts(to_client, expected)


def test_reset_flags_r_sends_no_ack_and_the_same_seq():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    ra = _by_target(conn.plan(i, _verdict(Action.RESET, flags="RA")))
    r = _by_target(conn.plan(i, _verdict(Action.RESET, flags="R")))
    for side in ("client", "server"):
        assert r[side][0].flags == RST and r[side][0].ack == 0
        assert r[side][0].seq == ra[side][0].seq


def test_reset_after_data_in_both_directions():
    """Later turns of a longer connection: the numbers follow the data already exchanged."""
    turns = [b"A" * 700, b"B" * 1300, GET]
    raws = [
        raw for _ts, raw in build.tcp_conversation(CLIENT, SERVER, 40001, 80, turns, [b"x" * 999, b"y" * 3, b""], 1.0)
    ]
    pkts = [decode(raw) for raw in raws]
    flow = Flow.from_first_packet(1, flow_key(pkts[0]), pkts[0])
    checked = 0
    for i, pkt in enumerate(pkts):
        if not pkt.payload:
            continue
        direction = flow.direction_of(pkt)
        p = plan(_verdict(Action.RESET), flow, pkt, raws[i], direction, DEFAULT, Stamper(random.Random(0)), 1.0)
        got = _by_target(p)
        sender_is_client = direction == 0
        receiver_key = "server" if sender_is_client else "client"
        sender_key = "client" if sender_is_client else "server"
        peer_next = next(q.seq for q in pkts[i + 1 :] if q.src != pkt.src)
        assert _accepts(got[sender_key][0], peer_next)
        assert _accepts(got[receiver_key][0], pkt.seq)  # dropped inline
        checked += 1
    assert checked == 5


def test_reset_on_syn_and_syn_ack_uses_acceptable_acks():
    conn = Conn(GET)
    syn, synack = conn.pkts[0], conn.pkts[1]
    assert syn.tcp_flags == SYN and synack.tcp_flags == SYN | ACK
    got = _by_target(conn.plan(0, _verdict(Action.RESET, flags="R")))
    to_client = got["client"][0]  # the client is in SYN-SENT: RST+ACK acknowledging its SYN
    assert to_client.flags == RST | ACK and to_client.seq == 0 and to_client.ack == (syn.seq + 1) % 2**32
    to_server = got["server"][0]  # no ACK number known: a bare RST at ISN + 1 (SYN-RECEIVED) or dropped
    assert to_server.flags == RST and to_server.seq == syn.seq
    got = _by_target(conn.plan(1, _verdict(Action.RESET, flags="R")))
    assert got["client"][0].flags == RST | ACK and got["client"][0].ack == synack.ack  # acknowledges its SYN
    assert got["server"][0].seq == synack.ack and got["server"][0].flags == RST


def test_ack_based_seq_misses_rcv_nxt_when_the_trigger_was_dropped():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    trigger = conn.pkts[i]
    exact = _by_target(conn.plan(i, _verdict(Action.RESET)))
    naive = _by_target(conn.plan(i, _verdict(Action.RESET), parse_personality({"reset": {"seq": "ack-based"}})))
    assert _accepts(exact["server"][0], trigger.seq)
    assert naive["server"][0].seq == trigger.seq + len(trigger.payload)  # in the window, not exact: challenge ACK
    assert not _accepts(naive["server"][0], trigger.seq)
    assert naive["client"][0].seq == exact["client"][0].seq


def test_count_targets_and_identical_copies():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    p = conn.plan(i, _verdict(Action.RESET, count=3, targets="client"))
    assert [inj.to for inj in p.injections] == ["client"] * 3
    assert len({inj.packet for inj in p.injections}) == 1  # GFW type II: three identical RST+ACKs
    fresh = conn.plan(
        i, _verdict(Action.RESET, count=3, targets="server"), parse_personality({"reset": {"identical": False}})
    )
    assert [inj.to for inj in fresh.injections] == ["server"] * 3
    assert len({read(inj.packet).ip_id for inj in fresh.injections}) == 3
    assert len({read(inj.packet).seq for inj in fresh.injections}) == 1


def test_gfw_type_ii_personality_on_the_wire():
    conn = Conn(client_hello("blocked.example"))
    i = conn.data(c2s=True)
    p = conn.plan(i, _verdict(Action.RESET), preset("gfw-type-ii"))
    assert p.drop_trigger is False and p.flow_action == "allow"  # on-path: the trigger goes through
    walls = [read(inj.packet) for inj in p.injections]
    assert len(walls) == 6 and all(w.flags == RST | ACK and w.df and w.ttl == 255 for w in walls)
    assert p.residual is not None and p.residual.seconds == 180 and p.residual.action == "reset"
    to_server = [w for w, inj in zip(walls, p.injections) if inj.to == "server"][0]
    assert _accepts(to_server, conn.next_seq(i, from_client=True))  # delivered trigger counted


def test_henan_payload_and_client_only():
    conn = Conn(client_hello("blocked.example"))
    p = conn.plan(conn.data(c2s=True), _verdict(Action.RESET), preset("henan"))
    (only,) = p.injections
    w = read(only.packet)
    assert only.to == "client" and w.payload == bytes.fromhex("01020304050607080900")
    assert (w.ip_id, w.df, w.ttl) == (1, False, 58) and p.residual is None


def test_forwarded_state_covers_data_in_flight():
    """The server sent more than the client had acknowledged when its request left: with the censor's own
    record of what it forwarded, the RST to the client still hits RCV.NXT."""
    conn = Conn(GET)
    i = conn.data(c2s=True)
    trigger = conn.pkts[i]
    in_flight_end = (trigger.ack + 2920) % 2**32
    p = conn.plan(i, _verdict(Action.RESET), forwarded=(trigger.seq, in_flight_end))
    got = _by_target(p)
    assert got["client"][0].seq == in_flight_end and got["server"][0].seq == trigger.seq
    retrans = conn.plan(i, _verdict(Action.RESET), forwarded=((trigger.seq + 5000) % 2**32, None))
    assert _by_target(retrans)["server"][0].seq == (trigger.seq + 5000) % 2**32  # an old segment as trigger


def test_reply_numbers_in_real_captures():
    """For every data segment of real TCP captures: a forged segment toward the receiver lands where the sender's
    next segment really starts; toward the sender, where the receiver's data (as seen so far) ends."""
    checked = {"receiver": 0, "sender": 0, "sender_without_state": 0}
    for name in ("443-curl.pcap", "ssh.pcap", "socks.pcap", "http_connect.pcap", "signal.pcap"):
        items = [x for x in real_packets(name) if x[0].proto == TCP]
        for _flow, seen in flows_of(items).values():
            if not any(p.tcp_flags & SYN for p, _r, _d in seen):
                continue
            for i, (pkt, _raw, d) in enumerate(seen):
                if not pkt.payload or not pkt.tcp_flags & ACK:
                    continue
                later = [q for q, _r, dd in seen[i + 1 :] if dd == d and q.seq != pkt.seq]
                if later:
                    assert reply_numbers(pkt, to_sender=False, delivered=True)[0] == later[0].seq
                    checked["receiver"] += 1
                peer = [q for q, _r, dd in seen[:i] if dd != d]
                if peer:
                    ends = [(q.seq + seg_len(q)) % 2**32 for q in peer]
                    end = max(ends, key=lambda e: (e - ends[0]) % 2**32)
                    own_ends = [(q.seq + seg_len(q)) % 2**32 for q, _r, dd in seen[:i] if dd == d]
                    own = max(own_ends, key=lambda e: (e - own_ends[0]) % 2**32) if own_ends else None
                    seq, _ack = reply_numbers(pkt, to_sender=True, delivered=True, forwarded=(own, end))
                    assert seq == end
                    checked["sender"] += 1
                    checked["sender_without_state"] += reply_numbers(pkt, to_sender=True, delivered=True)[0] == end
    assert checked["receiver"] > 400 and checked["sender"] > 400
    # without the censor's forwarded state the trigger's ACK is right unless data was in flight toward its sender
    assert checked["sender_without_state"] > 0.7 * checked["sender"]


# ----------------------------------------------------------------------------------------------- dns-forge


def _udp_query(name: str, rdtype: str, v6: bool = False, edns: bool = False):
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    client, resolver = ("2001:db8:0:1::2", "2001:db8:0:2::53") if v6 else ("198.18.0.2", "198.19.0.53")
    raw = (build.ipv6_udp if v6 else build.ipv4_udp)(client, resolver, 53999, 53, query.to_wire())
    pkt = decode(raw)
    return query, raw, pkt, Flow.from_first_packet(1, flow_key(pkt), pkt)


@pytest.mark.parametrize("mode", ["inline", "mirror"])
@pytest.mark.parametrize("dns_mode", ["race", "replace"])
def test_dns_forge_udp(mode, dns_mode):
    query, raw, pkt, flow = _udp_query("www.blocked.example", "A", edns=True)
    personality = parse_personality({"dns": {"mode": dns_mode, "flags": 0x8180, "copy_query_edns": True}})
    p = plan(
        _verdict(Action.DNS_FORGE, answers=["203.0.113.1", "203.0.113.2"], ttl=300),
        flow,
        pkt,
        raw,
        0,
        personality,
        Stamper(random.Random(3)),
        5.0,
        mode=mode,
    )
    replace = dns_mode == "replace" and mode == "inline"
    assert p.drop_trigger is replace and p.flow_action == "inspect"  # every UDP query is answered on its own
    (inj,) = p.injections
    assert inj.to == "client" and inj.what == "dns"
    w = read(inj.packet)
    assert (w.src, w.dst, w.sport, w.dport) == ("198.19.0.53", "198.18.0.2", 53, 53999)
    answer = dns.message.from_wire(w.payload)
    assert query.is_response(answer) and answer.flags == 0x8180 and answer.edns == 0
    (rrset,) = answer.answer
    assert rrset.ttl == 300 and len(rrset) == 1 and rrset[0].address in ("203.0.113.1", "203.0.113.2")
    assert p.residual is None


def test_dns_forge_aaaa_v6_pool_and_other_types():
    query, raw, pkt, flow = _udp_query("blocked.example", "AAAA", v6=True)
    personality = parse_personality({"dns": {"answers": ["192.0.2.9", "2001:db8::bad"]}})
    p = plan(_verdict(Action.DNS_FORGE), flow, pkt, raw, 0, personality, Stamper(random.Random(0)), 0.0)
    answer = dns.message.from_wire(read(p.injections[0].packet).payload)
    assert query.is_response(answer) and [r.address for r in answer.answer[0]] == ["2001:db8::bad"]
    query, raw, pkt, flow = _udp_query("blocked.example", "HTTPS")
    p = plan(_verdict(Action.DNS_FORGE), flow, pkt, raw, 0, personality, Stamper(random.Random(0)), 0.0)
    answer = dns.message.from_wire(read(p.injections[0].packet).payload)
    assert query.is_response(answer) and answer.answer == [] and answer.rcode() == 0  # NODATA


def test_dns_forge_over_tcp():
    query = dns.message.make_query("blocked.example", "A")
    wire = query.to_wire()
    conn = Conn(len(wire).to_bytes(2, "big") + wire)
    i = conn.data(c2s=True)
    p = conn.plan(i, _verdict(Action.DNS_FORGE, answers=["192.0.2.1"]))
    (inj,) = p.injections
    w = read(inj.packet)
    assert w.flags == PSH | ACK and w.seq == conn.next_seq(i, from_client=False)
    assert w.ack == (conn.pkts[i].seq + len(conn.pkts[i].payload)) % 2**32
    length = int.from_bytes(w.payload[:2], "big")
    assert length == len(w.payload) - 2
    answer = dns.message.from_wire(w.payload[2:])
    assert query.is_response(answer) and answer.answer[0][0].address == "192.0.2.1"


def test_dns_forge_on_real_capture_queries():
    queries = [(p, raw) for p, raw in real_packets("dns.pcap") if p.proto == UDP and p.dport == 53]
    assert queries
    for pkt, raw in queries:
        flow = Flow.from_first_packet(1, flow_key(pkt), pkt)
        p = plan(
            _verdict(Action.DNS_FORGE, answers=["192.0.2.1", "2001:db8::1"]),
            flow,
            pkt,
            raw,
            0,
            preset("tsg"),
            Stamper(random.Random(0)),
            0.0,
            mode="mirror",
        )
        w = read(p.injections[0].packet)
        assert dns.message.from_wire(pkt.payload).is_response(dns.message.from_wire(w.payload))
        assert w.payload[2:4] == b"\x81\x80" and not p.drop_trigger


def test_dns_forge_without_a_question_drops():
    raw = build.ipv4_udp(CLIENT, "198.19.0.53", 5000, 53, b"\x00\x01garbage")
    pkt = decode(raw)
    flow = Flow.from_first_packet(1, flow_key(pkt), pkt)
    p = plan(_verdict(Action.DNS_FORGE), flow, pkt, raw, 0, DEFAULT, Stamper(random.Random(0)), 0.0)
    assert p.injections == () and p.drop_trigger and p.flow_action == "drop" and "DNS question" in p.notes[0]


# ----------------------------------------------------------------------------------------------- blockpage


@pytest.mark.parametrize("mode", ["inline", "mirror"])
def test_blockpage_in_place_of_the_server_answer(mode):
    conn = Conn(GET)
    i = conn.data(c2s=True)
    trigger = conn.pkts[i]
    p = conn.plan(i, _verdict(Action.BLOCKPAGE, status=302, location="http://warning.example/"), mode=mode)
    assert p.drop_trigger is (mode == "inline") and p.flow_action == "drop"
    pages = [read(inj.packet) for inj in p.injections if inj.what == "blockpage"]
    assert all(inj.to == "client" for inj in p.injections if inj.what == "blockpage")
    assert pages[0].seq == conn.next_seq(i, from_client=False)  # the client's RCV.NXT
    assert all(w.ack == (trigger.seq + len(trigger.payload)) % 2**32 for w in pages)
    assert pages[-1].flags & FIN and pages[-1].sport == 443
    body = b"".join(w.payload for w in pages)
    assert body.startswith(b"HTTP/1.1 302 Found\r\n") and b"\r\nLocation: http://warning.example/\r\n" in body
    (rst,) = [read(inj.packet) for inj in p.injections if inj.what == "rst"]
    expected = trigger.seq if mode == "inline" else conn.next_seq(i, from_client=True)
    assert [inj.to for inj in p.injections if inj.what == "rst"] == ["server"] and _accepts(rst, expected)


def test_blockpage_close_with_rst_and_no_server_reset():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    personality = parse_personality({"blockpage": {"close": "rst", "reset_server": False}})
    p = conn.plan(i, _verdict(Action.BLOCKPAGE), personality)
    walls = [read(inj.packet) for inj in p.injections]
    assert all(inj.to == "client" for inj in p.injections)
    assert walls[-1].flags == RST | ACK
    assert walls[-1].seq == walls[0].seq + sum(len(w.payload) for w in walls)
    assert b"403 Forbidden" in walls[0].payload


def test_blockpage_needs_tcp():
    query, raw, pkt, flow = _udp_query("blocked.example", "A")
    p = plan(_verdict(Action.BLOCKPAGE), flow, pkt, raw, 0, DEFAULT, Stamper(random.Random(0)), 0.0)
    assert p.injections == () and p.flow_action == "drop" and p.notes


# -------------------------------------------------------------------------------------------- icmp, others


def test_icmp_unreachable_to_the_sender():
    conn = Conn(GET, v6=True)
    p = conn.plan(0, _verdict(Action.ICMP_UNREACHABLE))
    (inj,) = p.injections
    w = read(inj.packet)
    assert inj.to == "client" and (w.icmp_type, w.icmp_code) == (1, 1) and w.dst == CLIENT6
    assert w.payload == conn.raws[0] and p.drop_trigger
    conn4 = Conn(GET)
    routed = parse_personality({"icmp": {"source": "198.18.0.1"}})
    p4 = conn4.plan(0, _verdict(Action.ICMP_UNREACHABLE, code=10), routed)
    w4 = read(p4.injections[0].packet)
    assert (w4.icmp_type, w4.icmp_code, w4.src, w4.dst) == (3, 10, "198.18.0.1", CLIENT)
    assert w4.payload == conn4.raws[0][:28]
    mismatched = conn.plan(0, _verdict(Action.ICMP_UNREACHABLE), routed)
    assert read(mismatched.injections[0].packet).src == SERVER6 and mismatched.notes


def test_drop_direction_and_reset_on_udp():
    conn = Conn(GET)
    i = conn.data(c2s=False)
    p = conn.plan(i, _verdict(Action.DROP, direction="c2s"))
    assert (p.flow_action, p.drop_direction, p.drop_trigger) == ("drop", "c2s", False)  # an s2c trigger passes
    assert conn.plan(conn.data(c2s=True), _verdict(Action.DROP, direction="c2s")).drop_trigger
    mirror = conn.plan(i, _verdict(Action.DROP), mode="mirror")
    assert not mirror.drop_trigger and "mirror mode cannot drop" in mirror.notes
    _q, raw, pkt, flow = _udp_query("x.example", "A")
    udp = plan(_verdict(Action.RESET), flow, pkt, raw, 0, DEFAULT, Stamper(random.Random(0)), 0.0)
    assert udp.injections == () and udp.flow_action == "drop" and "non-TCP" in udp.notes[0]


def test_throttle_delay_allow_log():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    t = conn.plan(i, _verdict(Action.THROTTLE, rate_kbps=137.6))
    assert (t.flow_action, t.throttle_kbps, t.throttle_burst_bytes, t.drop_trigger) == ("throttle", 138, 15000, False)
    assert conn.plan(i, _verdict(Action.THROTTLE)).throttle_kbps == 140  # the personality's rate
    d = conn.plan(i, _verdict(Action.DELAY, delay_ms=300, jitter_ms=25))
    assert (d.flow_action, d.delay_ms, d.delay_jitter_ms) == ("delay", 300, 25)
    assert conn.plan(i, _verdict(Action.ALLOW)).flow_action == "allow"
    log = conn.plan(i, _verdict(Action.LOG))
    assert log.flow_action is None and log.injections == () and not log.drop_trigger


# ------------------------------------------------------------------------------------------------ residual


@pytest.mark.parametrize(
    ("scope", "key"),
    [
        ("3-tuple", (CLIENT, None, SERVER, 443)),
        ("4-tuple", (CLIENT, 40000, SERVER, 443)),
        ("server", (None, None, SERVER, 443)),
        ("client-server", (CLIENT, None, SERVER, None)),
    ],
)
def test_residual_scopes(scope, key):
    conn = Conn(GET)
    p = conn.plan(
        conn.data(c2s=True),
        _verdict(Action.RESET, residual_s=90, residual_scope="3-tuple"),
        parse_personality({"residual": {"scope": scope, "rearm": True}}),
    )
    r = p.residual
    assert r.scope == "3-tuple" and (r.client_ip, r.client_port, r.server_ip, r.server_port) == (
        CLIENT,
        None,
        SERVER,
        443,
    )  # the rule's scope wins
    p = conn.plan(
        conn.data(c2s=True),
        _verdict(Action.DROP),
        parse_personality({"residual": {"scope": scope, "seconds": 30, "rearm": True}}),
    )
    r = p.residual
    assert (r.client_ip, r.client_port, r.server_ip, r.server_port) == key
    assert (r.proto, r.seconds, r.expires_at, r.rearm, r.action) == (TCP, 30, 130.0, True, "drop")


def test_residual_actions_by_mode_and_protocol():
    conn = Conn(GET)
    i = conn.data(c2s=True)
    assert conn.plan(i, _verdict(Action.RESET, residual_s=60)).residual.action == "reset"
    assert conn.plan(i, _verdict(Action.DROP, residual_s=60)).residual.action == "drop"
    assert conn.plan(i, _verdict(Action.DROP, residual_s=60), mode="mirror").residual.action == "reset"
    assert conn.plan(i, _verdict(Action.RESET)).residual is None
    _q, raw, pkt, flow = _udp_query("x.example", "A")
    udp = plan(_verdict(Action.DROP, residual_s=180), flow, pkt, raw, 0, DEFAULT, Stamper(random.Random(0)), 0.0)
    assert udp.residual.action == "drop" and udp.residual.proto == UDP
    mirrored = plan(
        _verdict(Action.DROP, residual_s=180), flow, pkt, raw, 0, DEFAULT, Stamper(random.Random(0)), 0.0, mode="mirror"
    )
    assert mirrored.residual is None and any("residual" in n for n in mirrored.notes)
    # a personality residual does not attach to DNS forging unless the rule asks
    forged = plan(
        _verdict(Action.DNS_FORGE, answers=["192.0.2.1"]),
        flow,
        pkt,
        raw,
        0,
        parse_personality({"residual": {"seconds": 60}}),
        Stamper(random.Random(0)),
        0.0,
    )
    assert forged.residual is None


# ------------------------------------------------------------------------------------------- with the engine


def test_engine_verdicts_on_real_payloads_become_plans():
    """The demo profile decides on a real ClientHello, a real DNS query and a real HTTP request; the plans are
    what the rules ask."""
    engine = Engine(load_profile("demo"))
    gen = Stamper(random.Random(9))
    conversations = [
        build.tcp_conversation(CLIENT, SERVER, 41000, 443, [client_hello("example-blocked.test")], [b""], 1.0),
        [
            (
                2.0,
                build.ipv4_udp(
                    CLIENT, "198.19.0.53", 41001, 53, dns.message.make_query("example-blocked.test", "A").to_wire()
                ),
            )
        ],
    ]
    plans = []
    for conversation in conversations:
        for ts, raw in conversation:
            pkt = decode(raw)
            pkt.ts = ts
            step = engine.step(pkt)
            if step.decided_now:
                plans.append(plan(step.flow.verdict, step.flow, pkt, raw, step.direction, DEFAULT, gen, ts))
                break
    reset, forge = plans
    assert reset.action is Action.RESET and [i.to for i in reset.injections] == ["client", "server"]
    assert forge.action is Action.DNS_FORGE
    answer = dns.message.from_wire(read(forge.injections[0].packet).payload)
    assert answer.answer[0][0].address == "192.0.2.1"


# ------------------------------------------------------------------------- parallel injectors, AE/RE bits


def test_parallel_injectors_each_send_their_own_resets():
    """gfw-2023: type II's three identical RST+ACKs, then type I's RST and type III's RST+ACK, per target
    (IEEE S&P 2025, table fingerprint), all at the recipient's RCV.NXT."""
    personality = load_profile("gfw-2023").personality
    conn = Conn(client_hello("blocked.example"))
    i = conn.data(c2s=True)
    p = conn.plan(i, _verdict(Action.RESET), personality)
    walls = _by_target(p)
    for target in ("client", "server"):
        got = walls[target]
        assert len(got) == 5
        ii, type_i, type_iii = got[:3], got[3], got[4]
        assert len({(w.l4, w.ip_id, w.ttl) for w in ii}) == 1 and ii[0].flags == RST | ACK and ii[0].df
        assert type_i.flags == RST and not type_i.df and type_i.ip_id == 0 and 55 <= type_i.ttl <= 118
        assert type_iii.flags == RST | ACK and type_iii.df and type_iii.ttl == 255
        assert len({w.seq for w in got}) == 1
    assert _accepts(walls["server"][3], conn.next_seq(i, from_client=True))
    assert p.residual is not None and p.residual.seconds == 180


def test_a_parallel_injector_with_probability_zero_stays_quiet_and_says_so():
    personality = parse_personality(
        {"based_on": "gfw-type-ii", "parallel": [{"preset": "gfw-type-i", "probability": 0.0}]}
    )
    conn = Conn(client_hello("blocked.example"))
    p = conn.plan(conn.data(c2s=True), _verdict(Action.RESET), personality)
    assert len(p.injections) == 6 and any("gfw-type-i did not act" in n for n in p.notes)


def test_pakistan_reset_carries_ae_and_a_reserved_bit_without_ack_or_df():
    conn = Conn(client_hello("www.queerty.com"))
    i = conn.data(c2s=True)
    p = conn.plan(i, _verdict(Action.RESET), load_profile("pakistan").personality)
    walls = [read(inj.packet) for inj in p.injections]
    assert walls and all(w.flags == RST and not w.df for w in walls)
    assert all(decode(inj.packet).tcp_flags == RST | 0x100 | 0x200 for inj in p.injections)
    server = _by_target(p)["server"][0]
    assert _accepts(server, conn.next_seq(i, from_client=True) if not p.drop_trigger else conn.pkts[i].seq)


def test_parallel_dns_injectors_answer_the_same_query_with_their_own_flags():
    """gfw-2023: Injector 2 (0x8180, compressed name) first, then Injectors 1 (0x8580) and 3 (0x8400), neither
    compressing ("Triplet Censors", FOCI 2020; geedge.report), all from the profile's pool."""
    profile = load_profile("gfw-2023")
    query, raw, pkt, flow = _udp_query("www.youtube.com", "A")
    verdict = Verdict(Action.DNS_FORGE, "gfw-dns-inject", params=profile.policy.rule("gfw-dns-inject").params)
    p = plan(verdict, flow, pkt, raw, 0, profile.personality, Stamper(random.Random(2)), 0.0)
    assert [(i.what, i.injector) for i in p.injections] == [("dns", ""), ("dns", "gfw-dns-1"), ("dns", "gfw-dns-3")]
    pool = set(dict(profile.policy.rule("gfw-dns-inject").params)["answers"])
    flags = []
    for inj in p.injections:
        answer = dns.message.from_wire(read(inj.packet).payload)
        assert query.is_response(answer) and {r.address for r in answer.answer[0]} <= pool
        flags.append(answer.flags)
    assert flags == [0x8180, 0x8580, 0x8400]
    payloads = [read(inj.packet).payload for inj in p.injections]
    answer_name_at = len(query.to_wire())  # no EDNS: the answer follows the question
    assert [bool(w[answer_name_at] & 0xC0 == 0xC0) for w in payloads] == [True, False, False]
    tcp = parse_personality({"based_on": "gfw-type-ii", "parallel": [{"preset": "gfw-dns-1"}]})
    assert tcp.parallel[0].reset is None and tcp.parallel[0].dns.flags == 0x8580
