"""The detector: feeds packets through a flow table, keeps per-connection state, and hands finished flows to the
finders (:mod:`.rst`, :mod:`.blockpage`, :mod:`.dns`, :mod:`.icmp`); :func:`detect_captures` runs it over files.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from chokepoint.enforce.personality import DEFAULT, PRESETS, Personality, preset
from chokepoint.flow.flow import S2C, Flow
from chokepoint.flow.table import FlowTable
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import open_capture
from chokepoint.packet.record import ACK, FIN, ICMP, ICMPV6, RST, SYN, TCP, UDP, Packet
from chokepoint.probe.detect.blockpage import _BlockpageFinder
from chokepoint.probe.detect.dns import _DnsFinder
from chokepoint.probe.detect.fields import _MOD, _after
from chokepoint.probe.detect.icmp import _IcmpFinder
from chokepoint.probe.detect.report import CaptureSummary, DetectReport, Finding
from chokepoint.probe.detect.rst import _RstFinder
from chokepoint.probe.detect.state import (
    _HEAD_MAX,
    _MAX_HTTP,
    _MAX_IDS,
    _MAX_RSTS,
    _MAX_SEGMENTS,
    _baseline,
    _Conn,
    _Dns,
    _Http,
    _Rst,
    _Seg,
    _Side,
)
from chokepoint.probe.fingerprints import FingerprintDB
from chokepoint.settings import EngineSettings

#: Flows idle this long (packet time) are finished; closed TCP flows are kept long enough to see who goes on.
SETTINGS = EngineSettings(tcp_timeout=300.0, tcp_closed_timeout=60.0, udp_timeout=120.0, other_timeout=60.0)


class Detector(_RstFinder, _BlockpageFinder, _DnsFinder, _IcmpFinder):
    """Feed decoded packets in capture order, then :meth:`finish`; findings accumulate in ``findings``.

    ``fingerprints``: ooni/blocking-fingerprints signatures for DNS answers and blockpages (optional);
    ``personalities``: preset names to attribute to (default: every preset in :data:`PRESETS`).
    """

    def __init__(
        self, *, fingerprints: FingerprintDB | None = None, personalities: Sequence[str] | None = None
    ) -> None:
        names = list(personalities) if personalities is not None else list(PRESETS)
        self.presets: dict[str, Personality] = {name: preset(name) for name in names}
        self.fingerprints = fingerprints
        self.table = FlowTable(SETTINGS)
        self.findings: list[Finding] = []
        self.counters: Counter[str] = Counter()
        ip_ids = {
            s.ip_id.lo
            for p in self.presets.values()
            for s in (p.reset.ip, p.blockpage.ip, p.icmp.ip, p.dns.ip)
            if s.ip_id.kind == "fixed"
        }
        windows = {
            s.window.lo for p in self.presets.values() for s in (p.reset.ip, p.blockpage.ip) if s.window.kind == "fixed"
        }
        common = {DEFAULT.reset.ip.window.lo, DEFAULT.blockpage.ip.window.lo}
        #: Header values only an injector in the presets uses (0 and 1 are too common to count alone).
        self.rare_ip_ids = frozenset(v for v in ip_ids if v > 1)
        self.rare_windows = frozenset(v for v in windows if v not in common and v > 1)
        self.rare_payloads = frozenset(p.reset.payload for p in self.presets.values() if p.reset.payload)
        self.tsg_seeds = tuple(
            dict.fromkeys(
                s.tsg
                for p in self.presets.values()
                for s in (p.reset.ip, p.blockpage.ip)
                if "tsg" in (s.ip_id.kind, s.window.kind)
            )
        )
        self.dns_pools = frozenset(a for p in self.presets.values() for a in p.dns.answers)
        self.preset_bodies = {p.blockpage.body for p in self.presets.values() if p.blockpage.body}

    def feed(self, pkt: Packet) -> None:
        self.counters["packets"] += 1
        for flow in self.table.expire(pkt.ts):
            self._finish_flow(flow)
        for flow in self.table.pop_evicted():
            self._finish_flow(flow)
        if pkt.proto in (ICMP, ICMPV6):
            self._icmp(pkt)
            return
        if pkt.proto not in (TCP, UDP):
            return
        flow, _new = self.table.lookup(pkt)
        flow.last_ts = max(flow.last_ts, pkt.ts)
        direction = flow.direction_of(pkt)
        if pkt.proto == TCP:
            self._tcp(flow, pkt, direction)
        elif 53 in (pkt.sport, pkt.dport):
            self._dns(flow, pkt, direction)

    def finish(self) -> list[Finding]:
        """Finish every flow still open; returns all findings, in capture order of their first packet."""
        for flow in self.table.drain():
            self._finish_flow(flow)
        self.findings.sort(key=lambda f: f.packets[0].index if f.packets else 0)
        return self.findings

    def _finish_flow(self, flow: Flow) -> None:
        state = flow.state.pop("detect", None)
        if isinstance(state, _Conn):
            self._finish_conn(flow, state)
        elif isinstance(state, _Dns):
            self._finish_dns(flow, state)

    def _tcp(self, flow: Flow, pkt: Packet, direction: int) -> None:
        conn = flow.state.get("detect")
        flags = pkt.tcp_flags
        if conn is None:
            conn = flow.state["detect"] = _Conn()
            self.counters["tcp_connections"] += 1
        elif flags & SYN and not flags & ACK and conn.client_isn is not None and pkt.seq != conn.client_isn:
            self._finish_conn(flow, conn)  # a new connection on the same 5-tuple
            conn = flow.state["detect"] = _Conn()
            self.counters["tcp_connections"] += 1
        flow.update_tcp(pkt, direction)
        self.table.reclassify(flow)
        side = conn.sides[direction]
        if flags & RST:
            self.counters["rst_examined"] += 1
            if len(conn.rsts) < _MAX_RSTS:
                record = _Rst(pkt, direction, conn)
                conn.rsts.append(record)
                side.waiting.append(record)
            if direction == S2C and side.http and side.http[-1].rst is None:
                side.http[-1].rst = pkt
                side.http[-1].open = False
            return
        for record in side.waiting:
            record.next_packet = pkt
        side.waiting.clear()
        if flags & SYN:
            side.hs = side.hs or pkt
            if not flags & ACK:
                conn.client_isn = pkt.seq
        side.ttls[pkt.ttl] += 1
        side.dfs[pkt.df] += 1
        if len(side.ids) < _MAX_IDS and pkt.ip_version == 4:
            side.ids.append(pkt.ip_id)
        side.sent += 1
        side.last_nonrst = pkt.index
        end = (pkt.seq + len(pkt.payload) + bool(flags & SYN) + bool(flags & FIN)) % _MOD
        if side.seq_end is None or _after(side.seq_end, end):
            side.seq_end = end
        if flags & ACK and (side.max_ack is None or _after(side.max_ack, pkt.ack)):
            side.max_ack = pkt.ack
        if pkt.payload:
            self._data(conn, side, pkt, direction)
        elif flags & FIN and direction == S2C and side.http:
            response = side.http[-1]
            if response.open and response.next_seq == pkt.seq:
                response.packets.append(pkt)
                response.fin, response.open = True, False

    def _data(self, conn: _Conn, side: _Side, pkt: Packet, direction: int) -> None:
        side.last_data = pkt
        conn.latest_data = pkt
        seen = side.segments.get(pkt.seq)
        segment = _Seg(pkt.index, pkt.ttl, bytes(pkt.payload[:64]))
        if seen is None:
            if len(side.segments) < _MAX_SEGMENTS:
                side.segments[pkt.seq] = segment
        else:
            n = min(len(seen.head), len(segment.head))
            if seen.head[:n] != segment.head[:n]:
                conn.conflicts.append((direction, seen, segment))
        if direction != S2C:
            return
        starts = pkt.payload.startswith(b"HTTP/1.")
        for response in side.http:
            if starts:
                response.open = False
            elif response.open and response.next_seq == pkt.seq:
                response.packets.append(pkt)
                room = _HEAD_MAX - len(response.head)
                response.head += pkt.payload[: max(room, 0)]
                response.next_seq = (pkt.seq + len(pkt.payload)) % _MOD
                if pkt.tcp_flags & FIN or len(response.head) >= _HEAD_MAX:
                    response.fin = bool(pkt.tcp_flags & FIN)
                    response.open = False
                return
        if starts and len(side.http) < _MAX_HTTP:
            side.http.append(_Http(pkt))
            self.counters["http_responses"] += 1

    def _finish_conn(self, flow: Flow, conn: _Conn) -> None:
        base = (_baseline(conn.sides[0], "client"), _baseline(conn.sides[1], "server"))
        claimed: set[int] = set()  # RSTs that belong to a blockpage finding
        for response in conn.sides[S2C].http:
            finding = self._blockpage_finding(flow, conn, response, base)
            if finding is not None:
                self.findings.append(finding)
                claimed.update(p.index for p in finding.packets)
        records = [r for r in conn.rsts if r.pkt.index not in claimed]
        if records:
            self.findings += self._rst_findings(flow, conn, records, base)


def detect_captures(
    paths: Iterable[str | Path],
    *,
    fingerprints: FingerprintDB | None = None,
    personalities: Sequence[str] | None = None,
) -> DetectReport:
    """Run the detector over captures (each on its own: flows do not span files). A damaged capture is read up
    to the damage (``CaptureSummary.truncated``/``error``); a file that is no capture raises
    ``chokepoint.packet.pcap.CaptureFormatError``."""
    summaries = []
    findings: list[Finding] = []
    counters: Counter[str] = Counter()
    for path in paths:
        detector = Detector(fingerprints=fingerprints, personalities=personalities)
        decoder = Decoder(settings_fragment_reassembly=True)
        frames = packets = 0
        with open_capture(path) as reader:
            for frame in reader:
                frames += 1
                pkt = decoder.decode(frame)
                if pkt is None:
                    continue
                packets += 1
                detector.feed(pkt)
            truncated, error = reader.truncated, reader.error
        findings += detector.finish()
        counters.update(detector.counters)
        summaries.append(CaptureSummary(str(path), frames, packets, truncated, error))
    return DetectReport(tuple(summaries), tuple(findings), tuple(sorted(counters.items())))
