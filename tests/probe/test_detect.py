"""Attribution (``chokepoint detect``): injected packets found in captures and named after the right preset.

Captures are built at test time: a real-looking connection (``chokepoint.packet.build.tcp_conversation``) around a
real TLS ClientHello from Python's ssl module, real DNS messages from dnspython and a real HTTP request, with the
server 12 hops away (SYN-ACK TTL 52); the censor's packets are the ``chokepoint.enforce.plan`` output for each
personality preset, placed right after the trigger (an inline censor also drops the trigger and what would have
followed it). Which presets a finding must name first is derived from the preset data: the presets whose
relevant section is the same cannot be told apart. The real nDPI captures in ../shared/data (no censor there)
must give no finding.
"""

from __future__ import annotations

import json
import random
import struct
from functools import cache
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from chokepoint.cli import app
from chokepoint.enforce.craft import Stamper
from chokepoint.enforce.personality import PRESETS, Personality, parse_personality, preset
from chokepoint.enforce.plan import Plan, plan
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import CaptureWriter, Frame
from chokepoint.packet.record import RST, TCP
from chokepoint.packet.samples import tls_client_hello, write_demo_capture
from chokepoint.policy.verdict import Action, Verdict
from chokepoint.probe.detect import (
    Detector,
    detect_captures,
    flag_text,
    initial_ttl,
    recover_seed_keys,
    tsg_relation,
)
from tests._corpus import NDPI_PCAPS, capture_paths, frames_of, mutations, not_found, packets
from tests.probe._shared import FINGERPRINTS_DIR, fingerprint_db, require

CLIENT, SERVER, RESOLVER = "198.18.0.2", "203.0.113.80", "198.51.100.53"
CLIENT6, SERVER6 = "2001:db8:1::2", "2001:db8:2::80"
SERVER_TTL = 52
GET = b"GET /forbidden HTTP/1.1\r\nHost: blocked.example\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
LINKTYPE_RAW = 101


@cache
def _hello() -> bytes:
    return tls_client_hello("blocked.example")


def _with_ttl(raw: bytes, ttl: int) -> bytes:
    """The packet with another IPv4 TTL (header checksum redone) or IPv6 hop limit."""
    data = bytearray(raw)
    if data[0] >> 4 == 6:
        data[7] = ttl
        return bytes(data)
    data[8] = ttl
    data[10:12] = b"\0\0"
    ihl = (data[0] & 0x0F) * 4
    data[10:12] = struct.pack("!H", build.checksum(bytes(data[:ihl])))
    return bytes(data)


def _decode(raw: bytes, index: int = 1):
    return Decoder().decode(Frame(0.0, LINKTYPE_RAW, raw, len(raw), index))


def _write(path: Path, packets: list[tuple[float, bytes]]) -> Path:
    with CaptureWriter(path, linktype=LINKTYPE_RAW) as writer:
        for ts, raw in packets:
            writer.write(ts, raw)
    return path


class Censored:
    """A TCP connection with a censor's plan applied to its first client data segment."""

    def __init__(
        self,
        personality: Personality,
        action: Action = Action.RESET,
        *,
        request: bytes | None = None,
        response: bytes = b"",
        mode: str = "inline",
        seed: int = 1,
        v6: bool = False,
        port: int = 443,
        client_isn: int = 7_000,
    ):
        client, server = (CLIENT6, SERVER6) if v6 else (CLIENT, SERVER)
        conv = build.tcp_conversation(
            client,
            server,
            40000,
            port,
            [request or _hello()],
            [response] if response else [],
            1000.0,
            client_isn=client_isn,
            server_isn=90_000,
        )
        server_bytes = build.address(server)
        src = slice(8, 24) if v6 else slice(12, 16)
        self.conversation = [(ts, _with_ttl(raw, SERVER_TTL) if raw[src] == server_bytes else raw) for ts, raw in conv]
        pkts = [_decode(raw, i) for i, (_ts, raw) in enumerate(self.conversation, 1)]
        flow = Flow.from_first_packet(1, flow_key(pkts[0]), pkts[0])
        self.trigger = next(i for i, p in enumerate(pkts) if p.payload)
        self.plan: Plan = plan(
            Verdict(action, "rule"),
            flow,
            pkts[self.trigger],
            self.conversation[self.trigger][1],
            0,
            personality,
            Stamper(random.Random(seed)),
            0.0,
            mode=mode,
        )
        ts = self.conversation[self.trigger][0]
        self.packets = self.conversation[: self.trigger + 1]
        self.packets += [(ts + 0.0001 * (k + 1), inj.packet) for k, inj in enumerate(self.plan.injections)]
        #: capture indexes (1-based) of the injected packets
        self.injected = set(range(self.trigger + 2, self.trigger + 2 + len(self.plan.injections)))
        if not self.plan.drop_trigger:  # the real conversation goes on behind an on-path censor
            self.packets += [(t + 0.01, raw) for t, raw in self.conversation[self.trigger + 1 :]]

    def write(self, path: Path) -> Path:
        return _write(path, self.packets)

    def detect(self, tmp_path: Path, **kw):
        return detect_captures([self.write(tmp_path / "censored.pcap")], **kw)


def _only(report, kind: str):
    found = [f for f in report.findings if f.kind == kind]
    assert len(found) == 1, report.message()
    assert len(report.findings) == 1, [f.summary for f in report.findings]
    ranks = [(c.mismatches, -c.score) for c in found[0].candidates]
    assert ranks == sorted(ranks)  # fewest mismatches first, then the most specific match
    assert sorted(n for c in found[0].candidates for n in c.personalities) == sorted(PRESETS)
    return found[0]


def _same(name: str, section) -> set[str]:
    """Presets whose ``section`` (a function of a Personality) equals ``name``'s: indistinguishable there."""
    return {other for other in PRESETS if section(preset(other)) == section(preset(name))}


# ---------------------------------------------------------------------------------------------- resets


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("name", list(PRESETS))
def test_reset_of_every_preset_is_found_and_named_first(tmp_path, name, seed):
    conn = Censored(preset(name), seed=seed)
    finding = _only(conn.detect(tmp_path), "rst")
    assert {p.index for p in finding.packets} == conn.injected  # every injected RST, nothing else
    best = finding.candidates[0]
    assert best.consistent
    assert set(best.personalities) == _same(name, lambda p: (p.reset, p.drop_trigger))
    assert all(other.mismatches > 0 for other in finding.candidates[1:])  # every other preset is ruled out
    assert (finding.client, finding.client_port, finding.server, finding.server_port) == (CLIENT, 40000, SERVER, 443)
    trigger = conn.trigger + 1
    assert any(f"TLS ClientHello, SNI blocked.example (#{trigger})" in e for e in finding.evidence)


def test_gfw_type_ii_fingerprint_names_the_burst_and_the_tsg_key(tmp_path):
    conn = Censored(preset("gfw-type-ii"))
    finding = _only(conn.detect(tmp_path), "rst")
    fp = dict(finding.fingerprint)
    assert fp["count"] == "3 to the client (identical), 3 to the server (identical)"
    assert fp["flags"] == "RA" and fp["df"] == "DF" and fp["ttl"] == "255 (initial 255, 0 hops)"
    assert fp["tsg_keys"].startswith("k = 13 fits 2 distinct")
    for p in finding.packets:
        assert {"ttl", "continued", "tsg"} <= set(p.signals)  # on-path: both ends went on talking
        assert tsg_relation(p.ip_id, p.window, build.address(CLIENT), build.address(SERVER))
    assert "burst of 3 identical RSTs toward the client within 0.2 ms" in finding.evidence
    checks = {c.field: c for c in finding.candidates[0].checks}
    assert checks["ip_id+window"].ok and checks["count"].ok and checks["trigger"].observed == "delivered"


def test_henan_payload_and_packetlogic_constants_are_reported(tmp_path):
    henan = _only(Censored(preset("henan")).detect(tmp_path), "rst")
    (rst,) = henan.packets
    assert (rst.flags, rst.ip_id, rst.df, rst.ttl, rst.payload) == ("RA", 1, False, 58, bytes(range(1, 10)) + b"\0")
    assert "payload" in rst.signals and henan.candidates[0].personalities == ("henan",)
    pl = _only(Censored(preset("packetlogic")).detect(tmp_path), "rst")
    assert {(p.ip_id, p.window) for p in pl.packets} == {(13330, 32120)}
    assert all("constant" in p.signals for p in pl.packets)
    assert any("IP ID 13330 (0x3412), an injector constant" in e for e in pl.evidence)


def test_an_inline_censor_is_told_from_an_on_path_one_by_where_the_rst_lands(tmp_path):
    inline = _only(Censored(preset("tsg")).detect(tmp_path), "rst")  # TSG preset: inline
    on_path = _only(Censored(parse_personality({"based_on": "tsg", "drop_trigger": False})).detect(tmp_path), "rst")
    observed = {f: {c.field: c for c in f.candidates[0].checks}["trigger"].observed for f in (inline, on_path)}
    assert observed == {inline: "dropped", on_path: "delivered"}
    assert not any("continued" in p.signals for p in inline.packets)  # nothing follows an inline drop
    assert all("continued" in p.signals for p in on_path.packets)


def test_ipv6_reset_is_found_by_hop_limit(tmp_path):
    conn = Censored(preset("gfw-type-iii"), v6=True)
    finding = _only(conn.detect(tmp_path), "rst")
    assert {p.index for p in finding.packets} == conn.injected
    assert all(p.ip_id is None and p.df is None and p.ttl == 255 for p in finding.packets)
    assert "gfw-type-iii" in finding.candidates[0].personalities


def test_residual_reset_on_a_new_connection_over_the_same_ports_is_its_own_finding(tmp_path):
    first = Censored(preset("gfw-type-i"))
    again = Censored(preset("gfw-type-i"), seed=9, client_isn=123_456)
    later = [(ts + 5.0, raw) for ts, raw in again.packets]  # well within the flow's idle timeout
    report = detect_captures([_write(tmp_path / "two.pcap", first.packets + later)])
    assert [f.kind for f in report.findings] == ["rst", "rst"]
    assert dict(report.counters)["tcp_connections"] == 2


def test_a_clean_connection_and_a_normal_reset_are_not_findings(tmp_path):
    conv = build.tcp_conversation(CLIENT, SERVER, 40000, 443, [_hello()], [b"\x16\x03\x03\x00\x02hi"], 1.0)
    conv = [(ts, _with_ttl(raw, SERVER_TTL) if raw[12:16] == build.address(SERVER) else raw) for ts, raw in conv]
    last = _decode(conv[-2][1])  # the server's FIN: the client answers a late segment with a plain RST
    reset = build.ipv4_tcp(CLIENT, SERVER, 40000, 443, last.ack, 0, RST, window=0, ttl=64, ip_id=0)
    report = detect_captures([_write(tmp_path / "clean.pcap", conv + [(9.0, reset)])])
    assert report.findings == ()
    assert report.message().startswith("nothing found: no injected packets in 1 capture")
    assert dict(report.counters)["rst_examined"] == 1


# ------------------------------------------------------------------------------------------- blockpages


@pytest.mark.parametrize("mode", ["inline", "mirror"])
@pytest.mark.parametrize("name", ["linux", "packetlogic"])
def test_blockpage_is_found_and_named(tmp_path, name, mode):
    conn = Censored(preset(name), Action.BLOCKPAGE, request=GET, response=OK, mode=mode, port=80)
    finding = _only(conn.detect(tmp_path), "blockpage")
    assert {p.index for p in finding.packets} == conn.injected
    assert set(finding.candidates[0].personalities) == _same(name, lambda p: p.blockpage)
    assert finding.candidates[0].consistent
    status = preset(name).blockpage.status
    assert finding.packets[0].to_json()["status"] == status
    if mode == "mirror":  # the real 200 raced the blockpage to the same sequence number
        assert any("different bytes at the same sequence number" in e for e in finding.evidence)


def test_packetlogic_redirect_carries_its_constants_and_fin(tmp_path):
    conn = Censored(preset("packetlogic"), Action.BLOCKPAGE, request=GET, mode="inline", port=80)
    finding = _only(conn.detect(tmp_path), "blockpage")
    page = finding.packets[0]
    assert (page.flags, page.ip_id, page.window) == ("FPA", 13330, 32120)
    assert page.to_json()["location"] == preset("packetlogic").blockpage.location
    checks = {c.field: c for c in finding.candidates[0].checks}
    assert checks["close"].observed == "fin" and checks["location"].ok


@pytest.mark.shared_data
def test_blockpage_matching_a_real_fingerprint_is_named(tmp_path):
    db = fingerprint_db()
    row = next(fp for fp in db.http if fp.scope == "prod" and fp.location == "body" and fp.pattern_type == "contains")
    body = f"<html><body>{row.pattern}</body></html>".encode()
    censor = parse_personality(
        {"based_on": "linux", "blockpage": {"body": body.decode(), "ttl": SERVER_TTL, "reset_server": False}}
    )
    conn = Censored(censor, Action.BLOCKPAGE, request=GET, port=80)
    finding = _only(conn.detect(tmp_path, fingerprints=db), "blockpage")
    assert "fingerprint" in finding.packets[0].signals
    assert finding.packets[0].to_json()["fingerprint"] == row.name
    assert not conn.detect(tmp_path).findings  # same TTL as the server, no fingerprints: nothing to go on


# ------------------------------------------------------------------------------------------------ DNS


def _dns_capture(
    path: Path,
    personality: Personality,
    *,
    mode: str = "mirror",
    rd: bool = True,
    seed: int = 1,
    qname: str = "www.twitter.com",
) -> tuple[Path, Plan]:
    query = dns.message.make_query(qname, "A", id=4242)
    if not rd:
        query.flags &= ~dns.flags.RD
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text(qname + ".", 300, "IN", "A", "104.244.42.1"))
    sent = build.ipv4_udp(CLIENT, RESOLVER, 53000, 53, query.to_wire(), ttl=64, ip_id=7)
    real = build.ipv4_udp(RESOLVER, CLIENT, 53, 53000, answer.to_wire(), ttl=57, ip_id=999)
    pkt = _decode(sent)
    flow = Flow.from_first_packet(1, flow_key(pkt), pkt)
    the_plan = plan(
        Verdict(Action.DNS_FORGE, "rule"), flow, pkt, sent, 0, personality, Stamper(random.Random(seed)), 0.0, mode=mode
    )
    packets = [(1.0, sent)] + [(1.001 + k * 0.0001, i.packet) for k, i in enumerate(the_plan.injections)]
    if not the_plan.drop_trigger:
        packets.append((1.02, real))
    return _write(path, packets), the_plan


def _dns_behaviour(p: Personality, query_flags: int):
    """What a forged answer from ``p`` looks like for a query with these flags (A record asked)."""
    s = p.dns
    flags = s.flags if s.flags is not None else 0x8000 | (query_flags & 0x7900) | 0x0080
    pool = tuple(a for a in s.answers if "." in a)
    return flags, s.answer_ttl if pool else None, pool, s.compression if pool else None, s.ip


@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("name", list(PRESETS))
def test_dns_race_of_every_preset_is_found_and_named_first(tmp_path, name, rd):
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", preset(name), rd=rd)
    finding = _only(detect_captures([path]), "dns")
    (forged,) = finding.packets
    assert forged.index == 2 and "race" in forged.signals
    query_flags = 0x0100 if rd else 0
    expected = {
        n for n in PRESETS if _dns_behaviour(preset(n), query_flags) == _dns_behaviour(preset(name), query_flags)
    }
    assert set(finding.candidates[0].personalities) == expected
    assert finding.candidates[0].consistent
    if not rd:  # a fixed 0x8180 (TSG, GFW injector 2) sets RD although the query did not
        assert ("gfw-type-ii" in expected) == (name in ("gfw-type-ii", "tsg"))


@pytest.mark.parametrize("name", ["iran", "turkmenistan"])
def test_a_lone_forged_answer_from_a_known_pool_is_found(tmp_path, name):
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", preset(name), mode="inline")
    assert the_plan.drop_trigger  # replace mode: the query never reaches the resolver
    finding = _only(detect_captures([path]), "dns")
    assert finding.packets[0].signals == ("bogus-answer",)
    assert finding.candidates[0].personalities == (name,)


def test_a_lone_plausible_forged_answer_is_out_of_reach(tmp_path):
    """An inline censor that replaces the query and answers NOERROR without records leaves one well-formed
    answer: nothing in the capture tells it from the resolver's (a control measurement would)."""
    path, _ = _dns_capture(tmp_path / "dns.pcap", preset("linux"), mode="inline")
    report = detect_captures([path])
    assert report.findings == () and dict(report.counters)["dns_responses"] == 1


def test_retransmitted_identical_answers_are_no_race(tmp_path):
    query = dns.message.make_query("www.example.org", "A", id=9)
    answer = dns.message.make_response(query)
    answer.answer.append(dns.rrset.from_text("www.example.org.", 300, "IN", "A", "93.184.216.34"))
    packets = [
        (1.0, build.ipv4_udp(CLIENT, RESOLVER, 5300, 53, query.to_wire())),
        (1.5, build.ipv4_udp(CLIENT, RESOLVER, 5300, 53, query.to_wire())),
    ]
    packets += [
        (t, build.ipv4_udp(RESOLVER, CLIENT, 53, 5300, answer.to_wire(), ttl=57, ip_id=i))
        for i, t in enumerate((1.6, 1.7))
    ]
    assert detect_captures([_write(tmp_path / "dup.pcap", packets)]).findings == ()


@pytest.mark.shared_data
def test_a_known_gfw_poison_address_is_named_by_its_fingerprint(tmp_path):
    db = fingerprint_db()
    censor = parse_personality({"based_on": "linux", "dns": {"answers": ["8.7.198.45"]}})
    path, _ = _dns_capture(tmp_path / "dns.pcap", censor, mode="inline")
    finding = _only(detect_captures([path], fingerprints=db), "dns")
    assert any("8.7.198.45 is a known forged answer (ooni.cn_0, CN)" in e for e in finding.evidence)
    assert detect_captures([path]).findings == ()  # without the fingerprints: a plausible lone answer


# ----------------------------------------------------------------------------------------------- ICMP


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


# ----------------------------------------------------------------------------------- TSG generator


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    key=st.integers(2, 64),
    client=st.binary(min_size=4, max_size=4),
    server=st.binary(min_size=4, max_size=4),
)
def test_tsg_relation_holds_exactly_for_the_generator_s_key(seed, key, client, server):
    style = parse_personality({"reset": {"ip_id": "tsg", "window": "tsg", "tsg": {"seed_key": key}}}).reset.ip
    stamper = Stamper(random.Random(seed))
    a, b = (stamper.stamp(style, sip=client, dip=server) for _ in range(2))
    assert tsg_relation(a.ip_id, a.window, client, server, key)
    samples = [(s.ip_id, s.window, client, server) for s in (a, b)]
    keys = recover_seed_keys(samples, keys=range(1, 257))
    assert key in keys
    if (a.ip_id, a.window) != (b.ip_id, b.window):
        assert len(keys) <= 2  # two independent samples pin k down (a rare second k fits by chance)


@settings(max_examples=300, deadline=None)
@given(ip_id=st.integers(0, 0xFFFF), window=st.integers(0, 0xFFFF), pick=st.booleans())
def test_tsg_relation_accepts_what_the_enforcer_s_generator_makes_and_nothing_else(ip_id, window, pick):
    """The oracle is ``chokepoint.enforce.craft.Stamper`` pinned to the one ``val`` the window allows."""
    sip, dip = build.address(CLIENT), build.address(SERVER)
    val = window - int.from_bytes(dip, "big") % 13
    made = None
    if 1 <= val <= 65535 // 13:
        style = parse_personality({"reset": {"ip_id": "tsg", "window": "tsg", "tsg": {"val": [val, val]}}}).reset.ip
        made = Stamper(random.Random(0)).stamp(style, sip=sip, dip=dip)
        if pick:  # half the examples are the generator's own output
            ip_id = made.ip_id
    generated = made is not None and (made.ip_id, made.window) == (ip_id, window)
    assert tsg_relation(ip_id, window, sip, dip) == generated


def test_helpers():
    assert [initial_ttl(t) for t in (1, 52, 64, 65, 118, 128, 200, 255)] == [64, 64, 64, 128, 128, 128, 255, 255]
    assert flag_text(0x14) == "RA" and flag_text(0x19) == "FPA" and flag_text(0x12) == "SA"


# ------------------------------------------------------------------------------- real captures, no censor


@pytest.mark.shared_data
def test_real_captures_give_no_findings():
    """The nDPI captures hold normal teardowns (bursts of client RSTs answering late segments, RSTs with DF and
    IP ID unlike the host's other packets, a server's three identical RSTs): weak signals only, no finding."""
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    report = detect_captures(paths)
    assert report.findings == (), [f.summary for f in report.findings]
    rsts = sum(1 for path in paths for p in packets(path) if p.proto == TCP and p.tcp_flags & RST)
    assert rsts > 10 and dict(report.counters)["rst_examined"] == rsts
    with_fingerprints = detect_captures(paths, fingerprints=fingerprint_db())
    assert with_fingerprints.findings == ()


@pytest.mark.shared_data
def test_http_manipulated_capture_has_no_injection():
    """Its client sends obfuscated requests with odd TTLs (143, 190); the server's answers are its own."""
    path = NDPI_PCAPS / "http-manipulated.pcap"
    if not path.is_file():
        pytest.skip(not_found(path))
    report = detect_captures([path])
    assert report.findings == () and dict(report.counters)["http_responses"] >= 2


# ---------------------------------------------------------------------------------- captures and CLI


def test_capture_without_relevant_traffic_says_nothing_found(tmp_path):
    demo = write_demo_capture(tmp_path / "demo.pcap")
    result = CliRunner().invoke(app, ["detect", str(demo)])
    assert result.exit_code == 0, result.output
    assert "nothing found: no injected packets in 1 capture" in result.output
    report = detect_captures([demo])
    assert report.findings == () and dict(report.counters)["tcp_connections"] >= 5


def test_truncated_capture_is_read_up_to_the_damage(tmp_path):
    conn = Censored(preset("gfw-type-ii"))
    path = conn.write(tmp_path / "cut.pcap")
    data = path.read_bytes()
    path.write_bytes(data[:-30])  # the last record loses its tail
    report = detect_captures([path])
    assert report.truncated and "short record" in report.captures[0].error
    assert _only(report, "rst").candidates[0].personalities == ("gfw-type-ii",)
    result = CliRunner().invoke(app, ["detect", str(path)])
    assert result.exit_code == 3
    assert "processed" in result.output and "up to the damage" in result.output


def test_cli_json_has_one_object_per_finding(tmp_path):
    path = Censored(preset("henan")).write(tmp_path / "henan.pcap")
    result = CliRunner().invoke(app, ["detect", "--format", "json", str(path)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (finding,) = doc["findings"]
    assert finding["kind"] == "rst" and finding["flow"]["server_port"] == 443
    assert finding["packets"][0]["payload_hex"] == "01020304050607080900"
    best = finding["candidates"][0]
    assert best["personalities"] == ["henan"] and best["consistent"] and best["score"] > 0
    assert "IEEE S&P 2025" in best["cite"][0]
    assert {c["result"] for c in best["checks"]} <= {"match", "n/a"}
    table = CliRunner().invoke(app, ["detect", str(path)])
    assert table.exit_code == 0 and "Injected packets" in table.output
    assert "henan: score" in table.output and "1 finding (1 rst) in 1 capture" in table.output


def test_cli_rejects_a_file_that_is_no_capture(tmp_path):
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not a capture\n")
    result = CliRunner().invoke(app, ["detect", str(bogus)])
    assert result.exit_code == 2 and "not a pcap or pcapng capture" in result.output
    assert CliRunner().invoke(app, ["detect", str(tmp_path / "missing.pcap")]).exit_code == 2


# ---------------------------------------------------------------------------------------------- fuzzing


def _seed_packets() -> list[bytes]:
    out = []
    for name in ("gfw-type-ii", "henan", "packetlogic"):
        out += [raw for _ts, raw in Censored(preset(name)).packets]
    out += [
        raw
        for _ts, raw in Censored(
            preset("packetlogic"), Action.BLOCKPAGE, request=GET, response=OK, mode="mirror", port=80
        ).packets
    ]
    out += [raw for _ts, raw in Censored(preset("linux"), Action.ICMP_UNREACHABLE).packets]
    return out


_SEEDS = _seed_packets()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutations(_SEEDS), min_size=1, max_size=24))
def test_damaged_packets_never_raise(raws):
    detector = Detector()
    decoder = Decoder(settings_fragment_reassembly=True)
    for i, raw in enumerate(raws, 1):
        pkt = decoder.decode(Frame(1000.0 + i * 0.001, LINKTYPE_RAW, raw, len(raw), i))
        if pkt is not None:
            detector.feed(pkt)
    for finding in detector.finish():
        json.dumps(finding.to_json())


@pytest.mark.shared_data
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_damaged_real_frames_never_raise(data):
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    frames = [f for path in paths[:40] for f in frames_of(path)[:30]]
    seeds = [f.data for f in frames if f.linktype == 1]
    chosen = data.draw(st.lists(mutations(seeds), min_size=1, max_size=16))
    detector = Detector()
    decoder = Decoder()
    for i, raw in enumerate(chosen, 1):
        pkt = decoder.decode(Frame(float(i), 1, raw, len(raw), i))
        if pkt is not None:
            detector.feed(pkt)
    detector.finish()


@pytest.mark.shared_data
def test_fingerprint_folder_is_used_by_the_cli(tmp_path):
    require(FINGERPRINTS_DIR)
    path, _ = _dns_capture(
        tmp_path / "dns.pcap",
        parse_personality({"based_on": "linux", "dns": {"answers": ["8.7.198.45"]}}),
        mode="inline",
    )
    without = CliRunner().invoke(app, ["detect", str(path)])
    with_db = CliRunner().invoke(
        app, ["detect", "--format", "json", "--fingerprints", str(FINGERPRINTS_DIR), str(path)]
    )
    assert "nothing found" in without.output
    assert json.loads(with_db.stdout)["findings"][0]["kind"] == "dns"


# ------------------------------------------------------------------------------ several injectors, one trigger


def test_gfw_types_i_ii_iii_resetting_one_connection_are_three_findings(tmp_path):
    """gfw-2023 runs types I and III beside type II (IEEE S&P 2025, table fingerprint): the detector splits the
    RSTs by injector and names each type among the best candidates of its own finding."""
    from chokepoint.policy import load_profile

    conn = Censored(load_profile("gfw-2023").personality)
    report = conn.detect(tmp_path)
    found = [f for f in report.findings if f.kind == "rst"]
    assert len(found) == 3, [f.summary for f in report.findings]
    assert set().union(*({p.index for p in f.packets} for f in found)) == conn.injected
    tops = [set(f.candidates[0].personalities) for f in found]
    assert "gfw-type-ii" in tops[0] and "gfw-type-i" in tops[1] and "gfw-type-iii" in tops[2]
    assert [len(f.packets) for f in found] == [6, 2, 2]
    assert all(any("one of 3 injectors" in e for e in f.evidence) for f in found)


def test_one_injector_with_fresh_copies_stays_one_finding(tmp_path):
    personality = parse_personality(
        {"reset": {"flags": "RA", "count": 3, "identical": False, "ttl": [40, 60], "ip_id": "random"}}
    )
    conn = Censored(personality, seed=4)
    found = [f for f in conn.detect(tmp_path).findings if f.kind == "rst"]
    assert len(found) == 1 and {p.index for p in found[0].packets} == conn.injected


def test_three_dns_injectors_answering_one_query_are_three_findings(tmp_path):
    """gfw-2023's Injectors 2, 1 and 3 race the resolver with different flags: one finding each, each named
    by its own flags and compression. The pool is known to the detector through the fingerprint database or a
    preset; here through a preset-like pool given to the personality under test."""
    from chokepoint.policy import load_profile

    personality = load_profile("gfw-2023").personality
    path, the_plan = _dns_capture(tmp_path / "dns.pcap", personality)
    assert len(the_plan.injections) == 3
    found = [f for f in detect_captures([path]).findings if f.kind == "dns"]
    assert len(found) == 3, [f.summary for f in found]
    assert [f.packets[0].index for f in found] == [2, 3, 4]
    tops = [set(f.candidates[0].personalities) for f in found]
    assert "gfw-type-ii" in tops[0] and "gfw-dns-1" in tops[1] and "gfw-dns-3" in tops[2]
    assert all(any("3 injectors answered" in e for e in f.evidence) for f in found)
