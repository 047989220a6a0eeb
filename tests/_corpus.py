"""Test helpers over the real third-party corpus in ../shared/data (located beside the checkout, never copied in).

One place for what the dissector tests need from it:

* where it is (``SHARED_DATA``, ``capture_path``, ``all_captures``), skipping with ``../shared/data not found: ...``
  when absent (the ``shared_data`` fixture in ``tests/conftest.py`` does the same for a whole test);
* decoded packets of a capture, read with the project's own reader and decoder (``chokepoint.packet.pcap``,
  ``chokepoint.packet.decode``, IP fragments reassembled). The packet-layer tests keep an independent record walker
  in ``tests/packet/_captures.py``: they test that reader;
* bidirectional flows, with each direction's UDP datagrams, TCP segments and rebuilt TCP byte stream;
* nDPI's own labels (``result/<capture>.out``), parsed by ``chokepoint.compare.ndpi``: reference labels at one
  nDPI commit, not ground truth;
* ``mutations``: the one hypothesis strategy that damages real messages for the "only typed errors" properties.

Everything read is cached per process: treat returned objects as read-only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import pytest
from hypothesis import strategies as st

from chokepoint.compare.ndpi import NdpiFlow, parse_ndpi_out
from chokepoint.compare.normalize import FlowKey, flow_key
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import Frame, open_capture
from chokepoint.packet.record import ACK, SYN, TCP, UDP, Packet

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NDPI_PCAPS = SHARED_DATA / "ndpi" / "pcap"
NDPI_RESULTS = SHARED_DATA / "ndpi" / "result"


def not_found(path: Path) -> str:
    """The skip reason for a missing piece of the shared data."""
    return f"../shared/data not found: {path} (the shared data folder beside the checkout)"


def require(path: Path) -> Path:
    """``path`` if it exists, else skip the running test."""
    if not path.exists():
        pytest.skip(not_found(path))
    return path


def capture_path(name: str) -> Path:
    """Path of one nDPI test capture; skips the running test when it is absent."""
    return require(NDPI_PCAPS / name)


def capture_paths() -> list[Path]:
    """Every nDPI test capture, sorted by name; empty when the shared data is absent (for collection time)."""
    return sorted(p for p in NDPI_PCAPS.iterdir() if p.is_file()) if NDPI_PCAPS.is_dir() else []


def all_captures() -> list[Path]:
    """As ``capture_paths``, but skips the running test when there are none."""
    paths = capture_paths()
    if not paths:
        pytest.skip(not_found(NDPI_PCAPS))
    return paths


def capture_params() -> list:
    """One pytest param per capture (id: its name), or a single skipped param when the data is absent."""
    paths = capture_paths()
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=not_found(NDPI_PCAPS)), id="no-shared-data")]
    return [pytest.param(p, id=p.name) for p in paths]


def _path(capture: str | Path) -> Path:
    return capture if isinstance(capture, Path) else capture_path(capture)


# ---------------------------------------------------------------------------------------------- packets


@cache
def _frames(path: Path) -> tuple[Frame, ...]:
    with open_capture(path) as reader:
        return tuple(reader)


def frames_of(capture: str | Path) -> tuple[Frame, ...]:
    """Every frame of a capture as ``chokepoint.packet.pcap`` reads it."""
    return _frames(_path(capture))


def sample_frames(per_file: int = 40) -> list[Frame]:
    """Up to ``per_file`` frames of every capture (seeds for property tests); empty when the data is absent."""
    return [frame for path in capture_paths() for frame in _frames(path)[:per_file]]


@cache
def _packets(path: Path) -> tuple[Packet, ...]:
    decoder = Decoder(settings_fragment_reassembly=True)
    return tuple(p for p in map(decoder.decode, _frames(path)) if p is not None)


def packets(capture: str | Path) -> tuple[Packet, ...]:
    """Every IP packet of a capture in order, decoded by ``chokepoint.packet.decode.Decoder`` with IP fragment
    reassembly on (a datagram sent as fragments appears once, whole, at its last fragment)."""
    return _packets(_path(capture))


@cache
def ip_text(address: bytes) -> str:
    """Canonical text of a packed IPv4/IPv6 address (as nDPI's results and ``chokepoint.compare`` print it)."""
    return ipaddress.ip_address(address).compressed


def packet_key(packet: Packet) -> FlowKey:
    """The direction-free flow key of a packet, comparable with ``NdpiLabel.key`` and ``Flow.key``."""
    return flow_key(packet.proto, ip_text(packet.src), packet.sport, ip_text(packet.dst), packet.dport)


def udp_datagrams(capture: str | Path, port: int | None = None) -> list[Packet]:
    """UDP packets with a payload, in capture order (only those to or from ``port`` when given)."""
    return [
        p for p in packets(capture) if p.proto == UDP and p.payload and (port is None or port in (p.sport, p.dport))
    ]


# ------------------------------------------------------------------------------------------------ flows

_MOD = 1 << 32


@dataclass(slots=True, eq=False)
class Flow:
    """One bidirectional flow. Side A is the client: for TCP the sender of a SYN (else the receiver of a SYN/ACK),
    otherwise the sender of the first packet. Ports are 0 for protocols without them (ESP, GRE, ICMP)."""

    proto: int
    a: tuple[str, int]
    b: tuple[str, int]
    packets: list[tuple[bool, Packet]] = field(default_factory=list)  # (sent by A, packet), capture order
    _streams: dict[bool, bytes] = field(default_factory=dict, repr=False)

    @property
    def client(self) -> tuple[str, int]:
        return self.a

    @property
    def server(self) -> tuple[str, int]:
        return self.b

    @property
    def key(self) -> FlowKey:
        return flow_key(self.proto, self.a[0], self.a[1], self.b[0], self.b[1])

    def payloads(self, from_a: bool = True) -> list[bytes]:
        """Non-empty payloads of one direction in capture order: UDP datagrams, or TCP segments as captured."""
        return [p.payload for d, p in self.packets if d == from_a and p.payload]

    def _base(self, from_a: bool) -> int | None:
        """Sequence number of stream byte 0: the SYN's + 1, else the earliest payload-carrying segment's."""
        sent = [p for d, p in self.packets if d == from_a]
        syn = next((p for p in sent if p.tcp_flags & SYN), None)
        if syn is not None:
            return (syn.seq + 1) % _MOD
        data = [p for p in sent if p.payload]
        if not data:
            return None
        first = data[0].seq
        return min((p.seq for p in data), key=lambda seq: (seq - first + _MOD // 2) % _MOD)

    def segments(self, from_a: bool = True) -> list[bytes]:
        """Payloads of one TCP direction in sequence order, the first copy of each sequence number only."""
        base = self._base(from_a)
        seen: dict[int, bytes] = {}
        for d, p in self.packets:
            if d == from_a and p.payload:
                seen.setdefault(p.seq, p.payload)
        return [seen[seq] for seq in sorted(seen, key=lambda seq: (seq - base) % _MOD)]

    def stream(self, from_a: bool = True) -> bytes:
        """One TCP direction's bytes from the start up to the first hole; where copies overlap the segment that
        starts earlier wins (retransmissions carry the same bytes in clean captures)."""
        if from_a in self._streams:
            return self._streams[from_a]
        base = self._base(from_a)
        pieces = []
        for order, (d, p) in enumerate(self.packets):
            if d != from_a or not p.payload:
                continue
            offset = (p.seq - base) % _MOD
            if offset >= _MOD // 2:  # starts before byte 0 (e.g. data on the SYN): keep what follows it
                offset -= _MOD
            pieces.append((offset, order, p.payload))
        out = bytearray()
        for offset, _order, payload in sorted(pieces):
            if offset > len(out):
                break  # a hole
            if offset + len(payload) > len(out):
                out += payload[len(out) - offset :]
        self._streams[from_a] = bytes(out)
        return self._streams[from_a]

    @property
    def c2s(self) -> bytes:
        return self.stream(True)

    @property
    def s2c(self) -> bytes:
        return self.stream(False)


@cache
def _flows(path: Path) -> tuple[Flow, ...]:
    by_key: dict[tuple, list[Packet]] = {}
    for p in _packets(path):
        by_key.setdefault((p.proto, frozenset({(p.src, p.sport), (p.dst, p.dport)})), []).append(p)
    out = []
    for (proto, _), pkts in by_key.items():
        first = pkts[0]
        client = (first.src, first.sport)
        if proto == TCP:
            syn = next((p for p in pkts if p.tcp_flags & (SYN | ACK) == SYN), None)
            syn_ack = next((p for p in pkts if p.tcp_flags & (SYN | ACK) == SYN | ACK), None)
            if syn is not None:
                client = (syn.src, syn.sport)
            elif syn_ack is not None:
                client = (syn_ack.dst, syn_ack.dport)
        ends = {(p.src, p.sport) for p in pkts} | {(p.dst, p.dport) for p in pkts}
        server = next((end for end in ends if end != client), client)
        flow = Flow(proto, (ip_text(client[0]), client[1]), (ip_text(server[0]), server[1]))
        flow.packets = [((p.src, p.sport) == client, p) for p in pkts]
        out.append(flow)
    return tuple(out)


def read_flows(capture: str | Path, proto: int | None = None) -> list[Flow]:
    """Bidirectional flows of a capture in order of first packet (only those of IP protocol ``proto`` if given)."""
    return [f for f in _flows(_path(capture)) if proto is None or f.proto == proto]


def tcp_flows(capture: str | Path) -> list[Flow]:
    return read_flows(capture, TCP)


def udp_flows(capture: str | Path) -> list[Flow]:
    return read_flows(capture, UDP)


# ------------------------------------------------------------------------------------------ nDPI labels

_GROUPS = re.compile(r"^\t\d+\t\S+ \S+ <?-> \S+ (\[.*\])\s*$")
_COUNTS = re.compile(r"\[(\d+) pkts/(\d+) bytes <?-> (\d+) pkts/(\d+) bytes\]")


@dataclass(frozen=True, slots=True)
class NdpiLabel:
    """One flow line of nDPI's ``result/<capture>.out``: ``chokepoint.compare.ndpi``'s parse of it, every
    ``[Key: value]`` group as printed (``JA3S``, ``User-Agent``, ``Server``, ...) and nDPI's packet/byte counts."""

    flow: NdpiFlow
    fields: Mapping[str, str]
    packets: int
    octets: int

    @property
    def key(self) -> FlowKey:
        return self.flow.key

    @property
    def l4(self) -> str:
        return self.flow.l4

    @property
    def label(self) -> str:
        """``Master[.App]`` as printed, e.g. ``DNS.Google``, ``TLS.Tor``, ``OpenVPN``."""
        return self.flow.label

    @property
    def confidence(self) -> str:
        return self.flow.confidence

    @property
    def hostname(self) -> str | None:
        return self.flow.hostname

    @property
    def user_agent(self) -> str | None:
        return self.fields.get("User-Agent")

    @property
    def server(self) -> str | None:
        """``[Server: ...]``: the HTTP Server field, or the SSH server banner."""
        return self.fields.get("Server")


def _fields(line: str) -> dict[str, str]:
    """``[Key: value]`` groups of a flow line, split at ``][`` (values may hold ``]``); the first of a key wins."""
    match = _GROUPS.match(line)
    out: dict[str, str] = {}
    for group in match[1][1:-1].split("][") if match else ():
        key, sep, value = group.partition(": ")
        if sep:
            out.setdefault(key, value.strip())
    return out


@cache
def _ndpi(path: Path) -> tuple[NdpiLabel, ...]:
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    out = []
    for flow in parse_ndpi_out(path):
        line = lines[flow.line_no - 1].removesuffix("\r")
        counts = _COUNTS.search(line)
        pkts, octets = (int(counts[1]) + int(counts[3]), int(counts[2]) + int(counts[4])) if counts else (0, 0)
        out.append(NdpiLabel(flow, _fields(line), pkts, octets))
    return tuple(out)


def ndpi_flows(capture: str) -> tuple[NdpiLabel, ...]:
    """Every flow line of nDPI's result for a capture, in file order; skips when the file is absent."""
    return _ndpi(require(NDPI_RESULTS / f"{capture}.out"))


def ndpi_labels(capture: str) -> dict[FlowKey, str]:
    """nDPI's ``Master[.App]`` label of each TCP and UDP flow of a capture."""
    return {f.key: f.label for f in ndpi_flows(capture) if f.l4 in ("TCP", "UDP")}


def ndpi_counts(capture: str) -> dict[FlowKey, tuple[int, int]]:
    """(packets, bytes) of each TCP, UDP, ICMP and ICMPv6 flow as nDPI's ndpiReader counted them (both directions;
    the lines of one flow, e.g. per VLAN, added up)."""
    counts: dict[FlowKey, tuple[int, int]] = {}
    for f in ndpi_flows(capture):
        if f.l4 in ("TCP", "UDP", "ICMP", "ICMPV6"):
            pkts, octets = counts.get(f.key, (0, 0))
            counts[f.key] = (pkts + f.packets, octets + f.octets)
    return counts


# ---------------------------------------------------------------------------------------------- fuzzing

_CUTS = ("truncate", "splice")  # positions anywhere
_POINT_EDITS = ("flip", "set", "patch", "insert", "delete", "repeat")  # positions limited by ``within``
_HEADER_BYTES = 64  # where "patch" overwrites: header fields live near the start
# Built once: strategies made afresh on every draw cost more than the drawing itself.
_EDIT = st.sampled_from(_CUTS + _POINT_EDITS + ("extend",))
_BIT = st.integers(0, 7)
_BYTE = st.sampled_from((0x00, 0xFF, 0x7F, 0x80, 0xC0, 0x3F, 0x40, 0x01, 0x0A, 0x0D, 0x20)) | st.integers(0, 255)
_PATCH = st.binary(min_size=1, max_size=8)
_INSERTED = st.binary(min_size=1, max_size=24)
_DELETED = st.integers(1, 16)
_APPENDED = st.binary(min_size=1, max_size=64)


@st.composite
def _mutated(
    draw,
    seeds: st.SearchStrategy[bytes],
    others: st.SearchStrategy[bytes],
    edits: st.SearchStrategy[int],
    within: int | None,
) -> bytes:
    blob = bytearray(draw(seeds))
    for _ in range(draw(edits)):
        edit = draw(_EDIT)
        if edit == "extend":
            blob += draw(_APPENDED)
            continue
        limit = len(blob)
        if edit in _POINT_EDITS and within is not None:
            limit = min(limit, within)
        if edit == "patch":
            limit = min(limit, _HEADER_BYTES)
        at = draw(st.integers(0, limit))
        if edit == "truncate":
            del blob[at:]
        elif edit == "splice":  # the tail of another real message from here on
            other = draw(others)
            blob[at:] = other[draw(st.integers(0, len(other))) :]
        elif edit == "flip" and at < len(blob):
            blob[at] ^= 1 << draw(_BIT)
        elif edit == "set" and at < len(blob):
            blob[at] = draw(_BYTE)
        elif edit == "patch":
            patch = draw(_PATCH)
            blob[at : at + len(patch)] = patch
        elif edit == "insert":
            blob[at:at] = draw(_INSERTED)
        elif edit == "delete":
            del blob[at : at + draw(_DELETED)]
        elif edit == "repeat":  # a copy of a slice put back in: repeated fields, records, blocks
            blob[at:at] = blob[at : draw(st.integers(at, len(blob)))]
    return bytes(blob)


def mutations(
    seeds: Sequence[bytes], *, others: Sequence[bytes] | None = None, max_edits: int = 4, within: int | None = None
) -> st.SearchStrategy[bytes]:
    """Real messages, damaged: a seed with 0 to ``max_edits`` edits. Each edit truncates; splices in the tail of
    another seed (of ``others`` when given); flips a bit; sets a byte to a boundary or any value; overwrites a
    short run in the first 64 bytes; inserts random bytes; deletes a run; repeats a slice; or appends random
    bytes. ``within`` keeps the point edits (all but truncate, splice and append) in the first ``within`` bytes.
    Zero edits gives the seed itself, which must parse as it did."""
    if not seeds:
        raise ValueError("mutations() needs at least one seed")
    seed = st.sampled_from(list(seeds))
    other = seed if others is None else st.sampled_from(list(others))
    return _mutated(seed, other, st.integers(0, max_edits), within)
