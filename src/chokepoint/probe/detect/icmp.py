"""The ICMP finder: administratively-prohibited unreachables, and unreachables from a middle hop."""

from __future__ import annotations

from chokepoint.enforce.personality import Personality
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key, ip_text
from chokepoint.packet.record import ICMPV6, TCP, UDP, Packet
from chokepoint.probe.detect.fields import MAX_HOPS, TTL_JUMP, _ttl_text
from chokepoint.probe.detect.finder import _Finder
from chokepoint.probe.detect.ranking import _finding, _fingerprint, _ip_checks, _rank
from chokepoint.probe.detect.report import Check
from chokepoint.probe.detect.state import _Baseline, _baseline, _Conn, _Obs


class _IcmpFinder(_Finder):
    """The ICMP finder's part of :class:`~chokepoint.probe.detect.detector.Detector` (its flow table and
    presets)."""

    def _icmp(self, pkt: Packet) -> None:
        v6 = pkt.proto == ICMPV6
        if pkt.icmp_type != (1 if v6 else 3):
            return
        self.counters["icmp_unreachables"] += 1
        quoted = _quoted(pkt.payload, v6)
        if quoted is None:
            self.counters["icmp_unquoted"] += 1
            return
        qsrc, qdst, qproto, qsport, qdport = quoted
        admin = pkt.icmp_code == 1 if v6 else pkt.icmp_code in (9, 10, 13)
        middle = pkt.src != qdst
        if not admin and not middle:
            return
        probe = Packet(pkt.ts, pkt.ip_version, qsrc, qdst, qproto, qsport, qdport)
        flow = self.table.index.get(flow_key(probe))
        if flow is None:
            flow = Flow.from_first_packet(0, flow_key(probe), probe)
        state = flow.state.get("detect")
        dst_side = flow.direction_of(probe) ^ 1
        base = _Baseline(None, None, "")
        if isinstance(state, _Conn):
            base = _baseline(state.sides[dst_side], ("client", "server")[dst_side])
        tags = []
        evidence = []
        code_text = f"ICMP{'v6' if v6 else ''} type {pkt.icmp_type} code {pkt.icmp_code}"
        if admin:
            tags.append("admin-prohibited")
            evidence.append(f"#{pkt.index}: {code_text}, administratively prohibited")
        if middle:
            tags.append("middle-hop")
            evidence.append(f"#{pkt.index}: sent by {ip_text(pkt.src)}, a hop before {ip_text(qdst)}")
        elif base.ttl is not None and abs(pkt.ttl - base.ttl) >= TTL_JUMP:
            tags.append("ttl")
            evidence.append(
                f"#{pkt.index}: TTL {_ttl_text(pkt.ttl)} where {ip_text(qdst)}'s {base.source} had "
                f"{_ttl_text(base.ttl)}"
            )
        claimed = "middle hop" if middle else ("client", "server")[dst_side]
        details = (
            ("icmp_type", pkt.icmp_type),
            ("icmp_code", pkt.icmp_code),
            ("quoted", f"{ip_text(qsrc)}:{qsport} -> {ip_text(qdst)}:{qdport} proto {qproto}"),
        )
        obs = [_Obs(pkt, claimed, base.hops if not middle else MAX_HOPS, flow, tags, details)]
        fingerprint = _fingerprint(obs, flow, tcp=False)
        fingerprint.insert(0, ("icmp", f"{code_text} from {'a middle hop' if middle else 'the destination'}"))
        candidates = _rank({name: _icmp_checks(p, obs[0], qdst, v6) for name, p in self.presets.items()})
        summary = f"{code_text} about {ip_text(qsrc)} -> {ip_text(qdst)}:{qdport} from {ip_text(pkt.src)}"
        self.findings.append(_finding("icmp", flow, summary, obs, evidence, fingerprint, candidates))


def _icmp_checks(personality: Personality, o: _Obs, quoted_dst: bytes, v6: bool) -> list[Check]:
    style = personality.icmp
    code = style.code6 if v6 else style.code
    checks = [Check("icmp_code", str(code), str(o.pkt.icmp_code), o.pkt.icmp_code == code, 2 if code else 1)]
    if style.source == "destination":
        ok = o.pkt.src == quoted_dst
        checks.append(Check("source", "the unreachable destination", ip_text(o.pkt.src), ok, 1))
    else:
        ok = ip_text(o.pkt.src) == style.source
        checks.append(Check("source", style.source, ip_text(o.pkt.src), ok, 3))
    checks += _ip_checks(style.ip, [o], tcp=False)
    return checks


def _quoted(payload: bytes, v6: bool) -> tuple[bytes, bytes, int, int, int] | None:
    """(src, dst, proto, sport, dport) of the packet an ICMP error quotes (ports 0 when not quoted)."""
    data = bytes(payload)
    if v6:
        if len(data) < 40 or data[0] >> 4 != 6:
            return None
        proto, src, dst, pos = data[6], data[8:24], data[24:40], 40
    else:
        if len(data) < 20 or data[0] >> 4 != 4:
            return None
        ihl = (data[0] & 0x0F) * 4
        if ihl < 20 or len(data) < ihl:
            return None
        proto, src, dst, pos = data[9], data[12:16], data[16:20], ihl
    sport = dport = 0
    if proto in (TCP, UDP) and len(data) >= pos + 4:
        sport, dport = int.from_bytes(data[pos : pos + 2], "big"), int.from_bytes(data[pos + 2 : pos + 4], "big")
    return src, dst, proto, sport, dport
