"""Capture factories for the detector's tests: a real-looking connection with a censor preset's plan applied, DNS
exchanges with forged answers, and the checks every finder's test shares.
"""

from __future__ import annotations

import random
import struct
from functools import cache
from pathlib import Path

import dns.flags
import dns.message
import dns.rrset

from chokepoint.enforce.craft import Stamper
from chokepoint.enforce.personality import PRESETS, Personality, preset
from chokepoint.enforce.plan import Plan, plan
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import CaptureWriter, Frame
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.verdict import Action, Verdict
from chokepoint.probe.detect import detect_captures

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
