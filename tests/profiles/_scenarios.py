"""Captures for the profile conformance tests, built from real client bytes.

Application payloads come from real implementations at test time: TLS ClientHellos from Python's ssl
(OpenSSL, via ``chokepoint.packet.samples.tls_client_hello``), QUIC Initials from aioquic, DNS queries from
dnspython. Only the TCP/IP framing is built here, with ``chokepoint.packet.build``. A capture is written as a
pcap and analysed by ``chokepoint.backends.offline.analyze_capture`` (what ``chokepoint analyze`` does); the
decision packet can also be replayed through the engine to plan the enforcement (``decide``).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.message
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from chokepoint.backends.offline import analyze_capture
from chokepoint.enforce import Plan, Stamper, plan
from chokepoint.engine import Engine
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import CaptureWriter, Frame
from chokepoint.packet.record import ACK, FIN, PSH, SYN, Packet
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy.provenance import Example

RAW = 101  # LINKTYPE_RAW: bare IP packets
CLIENT = "192.0.2.10"  # inside: lists/emulated-inside.txt holds 192.0.2.0/24 (RFC 5737 TEST-NET-1)
SERVER = "203.0.113.10"  # outside (RFC 5737 TEST-NET-3)
DAY = 1_717_372_800.0  # 2024-06-03 00:00:00 UTC: the day every capture happens on
DEFAULT_PORT = {"dns": 53, "tls": 443, "http": 80, "quic": 443}
#: TCP options on data segments when an example asks for them: NOP, NOP, timestamps (RFC 7323): 12 bytes,
#: a 32-byte header, as Linux sends by default.
TIMESTAMPS = b"\x01\x01\x08\x0a" + (123456).to_bytes(4, "big") + (654321).to_bytes(4, "big")
MSS = b"\x02\x04\x05\xb4"

Packets = list[tuple[float, bytes]]


# ------------------------------------------------------------------------------------------ real payloads


def dns_query(name: str, qid: int = 4242, rdtype: str = "A") -> bytes:
    return dns.message.make_query(name, rdtype, id=qid).to_wire()


def http_request(host: str, path: str = "/") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n").encode()


def quic_initials(sni: str, server: str, version: int = 1) -> list[bytes]:
    """The client's first flight from aioquic (version 1 or 2, RFC 9369)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sni, supported_versions=[version])
    conn = QuicConnection(configuration=config)
    conn.connect((server, 443), now=0.0)
    return [data for data, _addr in conn.datagrams_to_send(now=0.0)]


def split_tls_records(hello: bytes) -> bytes:
    """The ClientHello's handshake message cut into two TLS records (RFC 8446 5.1 allows it; the GFW does not
    reassemble records)."""
    assert hello[0] == 0x16 and int.from_bytes(hello[3:5], "big") == len(hello) - 5, "one record expected"
    body = hello[5:]
    cut = len(body) // 2
    head = hello[:3]
    return head + cut.to_bytes(2, "big") + body[:cut] + head + (len(body) - cut).to_bytes(2, "big") + body[cut:]


def cut(data: bytes, pieces: int) -> list[bytes]:
    """``data`` in ``pieces`` nearly equal, non-empty parts."""
    pieces = max(1, min(pieces, len(data)))
    step = -(-len(data) // pieces)
    return [data[i : i + step] for i in range(0, len(data), step)]


# -------------------------------------------------------------------------------------------------- framing


def tcp_flow(
    client: str,
    server: str,
    cport: int,
    sport: int,
    c2s: Sequence[bytes],
    t0: float,
    *,
    options: bytes = b"",
    s2c: Sequence[bytes] = (),
    step: float = 0.01,
) -> Packets:
    """Handshake (SYN with MSS), the client's data segments (each acknowledged by the server; ``options`` on
    every segment after the SYN), then the server's data, then a FIN from the client."""
    out: Packets = []
    c_seq, s_seq = 1000, 5000

    def send(from_client: bool, seq: int, ack: int, flags: int, payload: bytes = b"", opts: bytes = options) -> None:
        src, dst, sp, dp = (client, server, cport, sport) if from_client else (server, client, sport, cport)
        segment = build.ipv6_tcp if ":" in client else build.ipv4_tcp
        out.append((t0 + len(out) * step, segment(src, dst, sp, dp, seq, ack, flags, payload, options=opts)))

    send(True, c_seq, 0, SYN, opts=MSS)
    send(False, s_seq, c_seq + 1, SYN | ACK, opts=MSS)
    c_seq, s_seq = c_seq + 1, s_seq + 1
    send(True, c_seq, s_seq, ACK)
    for data in c2s:
        send(True, c_seq, s_seq, PSH | ACK, data)
        c_seq += len(data)
        send(False, s_seq, c_seq, ACK)
    for data in s2c:
        send(False, s_seq, c_seq, PSH | ACK, data)
        s_seq += len(data)
        send(True, c_seq, s_seq, ACK)
    send(True, c_seq, s_seq, FIN | ACK)
    return out


def udp_flow(
    client: str,
    server: str,
    cport: int,
    sport: int,
    c2s: Sequence[bytes],
    t0: float,
    s2c: Sequence[bytes] = (),
    step: float = 0.01,
) -> Packets:
    segment = build.ipv6_udp if ":" in client else build.ipv4_udp
    out = [(t0 + i * step, segment(client, server, cport, sport, d)) for i, d in enumerate(c2s)]
    out += [(t0 + (len(c2s) + i) * step, segment(server, client, sport, cport, d)) for i, d in enumerate(s2c)]
    return out


def start_time(local_time: str, utc_offset_s: int) -> float:
    """A timestamp on ``DAY`` whose wall clock at ``utc_offset_s`` reads ``local_time`` ("HH:MM"; noon when
    empty)."""
    hh, mm = map(int, (local_time or "12:00").split(":"))
    return DAY + (hh * 3600 + mm * 60 - utc_offset_s) % 86400


# ------------------------------------------------------------------------------------------------ examples


def example_packets(ex: Example, profile: Any, *, seed: int = 0, client_port: int | None = None) -> Packets:
    """One flow reproducing ``ex`` (client, server and ports from the example or the defaults)."""
    rng = random.Random(f"{profile.name}/{ex.id}/{seed}")
    client = ex.client_ip or CLIENT
    server = ex.server_ip or SERVER
    port = ex.port or DEFAULT_PORT.get(ex.protocol, 443)
    cport = client_port or ex.client_port or rng.randint(40000, 60000)
    t0 = start_time(ex.local_time, profile.meta.utc_offset_s)
    if ex.duration_s and ex.protocol in ("tcp", "udp"):  # a sustained sender: chunks at send_kbps
        size = ex.payload_random or len(ex.payloads[0])
        interval = size * 8 / (ex.send_kbps * 1000)
        chunks = [rng.randbytes(size) for _ in range(max(1, int(ex.duration_s / interval)))]
        if ex.protocol == "udp":
            return udp_flow(client, server, cport, port, chunks, t0, step=interval)
        return tcp_flow(client, server, cport, port, chunks, t0, step=interval / 2)  # data + the server's ACK
    if ex.protocol == "dns":
        return udp_flow(client, server, cport, port, [dns_query(ex.target, rng.randint(1, 0xFFFF))], t0)
    if ex.protocol == "quic":
        datagrams = quic_initials(ex.target, server, ex.quic_version)
        if ex.prelude == "dummy-udp":
            datagrams = [rng.randbytes(64)] + datagrams
        return udp_flow(client, server, cport, port, datagrams, t0)
    if ex.protocol == "udp":
        datagrams = list(ex.payloads) or [rng.randbytes(ex.payload_random)]
        return udp_flow(client, server, cport, port, datagrams, t0)
    if ex.protocol == "tls":
        hello = tls_client_hello(ex.target)
        data = [split_tls_records(hello) if ex.tls_record_split else hello]
    elif ex.protocol == "http":
        data = [http_request(ex.target, ex.path)]
    else:  # tcp
        data = list(ex.payloads) or [rng.randbytes(ex.payload_random)]
    if len(data) == 1 and ex.packets > 1:
        data = cut(data[0], ex.packets)
    return tcp_flow(client, server, cport, port, data, t0, options=TIMESTAMPS if ex.tcp_options else b"")


def write_capture(path: Path, packets: Iterable[tuple[float, bytes]]) -> Path:
    with CaptureWriter(path, linktype=RAW) as writer:
        for ts, data in sorted(packets, key=lambda p: p[0]):
            writer.write(ts, data)
    return path


def analyze(
    profile: Any, packets: Iterable[tuple[float, bytes]], tmp_path: Path, name: str = "capture"
) -> list[dict[str, Any]]:
    """EVE flow records of ``packets`` analysed with ``profile`` (the offline backend, as the CLI runs it)."""
    result = analyze_capture(str(write_capture(tmp_path / f"{name}.pcap", packets)), profile)
    assert not result.truncated and result.error is None
    return result.records


def outcome(record: dict[str, Any]) -> tuple[str, str | None, list[str]]:
    """(verdict, rule, log rules) of one EVE record."""
    cp = record["chokepoint"]
    return cp["verdict"], cp["rule"], [log["rule"] for log in cp.get("logs", [])]


# ------------------------------------------------------------------------------------- decision and plan


@dataclass
class Decision:
    """The packet on which the engine decided, and the flow at that moment."""

    flow: Any
    pkt: Packet
    raw: bytes
    direction: int

    @property
    def verdict(self):
        return self.flow.verdict

    def plan(self, personality: Any, *, seed: int = 1, mode: str = "inline") -> Plan:
        return plan(
            self.verdict,
            self.flow,
            self.pkt,
            self.raw,
            self.direction,
            personality,
            Stamper(random.Random(seed)),
            self.pkt.ts,
            mode=mode,
        )


def decide(
    profile: Any, packets: Iterable[tuple[float, bytes]], *, rng: random.Random | None = None
) -> Decision | None:
    """Run ``packets`` through a fresh engine; the first terminal decision, or None."""
    decoder = Decoder.from_settings(profile.engine)
    engine = Engine(profile, rng=rng)
    for index, (ts, raw) in enumerate(sorted(packets, key=lambda p: p[0]), 1):
        pkt = decoder.decode(Frame(ts, RAW, raw, len(raw), index))
        if pkt is None:  # an IP fragment held for reassembly (or dropped by the fragment limit)
            continue
        step = engine.step(pkt)
        if step.decided_now:
            return Decision(step.flow, pkt, raw, step.direction)
    return None


class AlwaysRng(random.Random):
    """An engine RNG under which every probabilistic rule fires (random() is always 0)."""

    def random(self) -> float:
        return 0.0


def read(packet: bytes) -> Packet:
    """An injected packet decoded by the project's decoder."""
    pkt = Decoder().decode(Frame(0.0, RAW, packet, len(packet), 1))
    assert pkt is not None, "an injected packet does not decode"
    return pkt


# ----------------------------------------------------------------------------------------- shared captures

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def shared_capture(name: str) -> Path:
    """A real capture of the nDPI test suite in ../shared/data (skips the test when the folder is absent)."""
    import pytest

    path = SHARED_DATA / "ndpi" / "pcap" / name
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path} (the shared data folder beside the checkout)")
    return path


def client_hellos(name: str) -> list[bytes]:
    """TCP payloads of a shared capture that parse as a whole TLS ClientHello (real third-party bytes)."""
    from chokepoint.dissect.errors import DissectError
    from chokepoint.dissect.tls import parse_client_hello_records
    from chokepoint.packet.pcap import open_capture

    decoder = Decoder()
    out = []
    with open_capture(shared_capture(name)) as reader:
        for frame in reader:
            pkt = decoder.decode(frame)
            if pkt is None or pkt.proto != 6 or pkt.payload[:1] != b"\x16":
                continue
            try:
                parse_client_hello_records(pkt.payload)
            except DissectError:
                continue
            out.append(pkt.payload)
    return out


def fingerprint_patterns(kind: str, name: str) -> str:
    """The pattern of one row of OONI's blocking fingerprints (../shared/data/fingerprints), by row name."""
    import csv

    import pytest

    path = SHARED_DATA / "fingerprints" / f"fingerprints_{kind}.csv"
    if not path.is_file():
        pytest.skip(f"../shared/data not found: {path}")
    with path.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["name"] == name:
                return row["pattern"]
    raise KeyError(name)


# ------------------------------------------------------------------------------------ injected-packet checks


def tsg_generated(ip_id: int, window: int, sip: bytes, dip: bytes, k: int = 13, top: int = 65535) -> bool:
    """Whether (IP ID, window) fit the TSG signature-mode generator with key ``k`` (geedge.report:
    ``win = val + (dip mod k)``, ``ipid = M - val*k + (sip mod win)``): recover val from the window, check the
    IP ID."""
    val = window - int.from_bytes(dip, "big") % k
    return val >= 1 and ip_id == (top - val * k + int.from_bytes(sip, "big") % window) & 0xFFFF


def quic_client_hello(sni: str, server: str, version: int = 1) -> tuple[bytes, bytes, bytes]:
    """(ClientHello, DCID, SCID) of aioquic's first Initial: the real handshake bytes, to re-protect."""
    from chokepoint.dissect.quic import decrypt_initial

    (initial, *_rest) = decrypt_initial(quic_initials(sni, server, version)[0])
    return b"".join(f.data for f in initial.crypto_frames), initial.header.dcid, initial.header.scid


def protect_initials(hello: bytes, dcid: bytes, scid: bytes, pieces: int = 1, version: int = 1) -> list[bytes]:
    """Client Initial packets (RFC 9000 17.2.2) carrying ``hello`` in ``pieces`` CRYPTO frames, one per
    datagram, WITHOUT padding (so below the 1200 bytes RFC 9000 14.1 asks of a client), protected with
    aioquic's Initial keys (RFC 9001 5)."""
    from aioquic.quic.crypto import CryptoPair

    pair = CryptoPair()
    pair.setup_initial(cid=dcid, is_client=True, version=version)
    type_bits = 0x10 if version == 0x6B3343CF else 0x00
    out = []
    offset = 0
    for pn, chunk in enumerate(cut(hello, pieces)):
        frame = b"\x06" + (0x80000000 | offset).to_bytes(4, "big") + (0x4000 | len(chunk)).to_bytes(2, "big") + chunk
        offset += len(chunk)
        length = 2 + len(frame) + 16
        header = (
            bytes([0xC0 | type_bits | 0x01])
            + version.to_bytes(4, "big")
            + bytes([len(dcid)])
            + dcid
            + bytes([len(scid)])
            + scid
            + b"\x00"
            + (0x4000 | length).to_bytes(2, "big")
            + pn.to_bytes(2, "big")
        )
        out.append(pair.encrypt_packet(header, frame, pn))
    return out
