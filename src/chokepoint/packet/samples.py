"""The bundled demo capture, generated on demand from real client libraries.

Every application payload comes from a real implementation at generation time: TLS ClientHellos from
Python's ``ssl`` (OpenSSL), QUIC Initials from aioquic, DNS messages from dnspython. Only the TCP/IP
framing around them is built here. Addresses are from the documentation ranges (RFC 5737, RFC 3849).
"""

from __future__ import annotations

import random
import ssl
from pathlib import Path

import dns.message
import dns.rrset

from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter

CLIENT = "192.0.2.10"
RESOLVER = "192.0.2.53"
WEB = "203.0.113.10"
OTHER = "203.0.113.20"
SSH_SERVER = "203.0.113.22"
PROXY = "203.0.113.30"
BLOCKED_NET_HOST = "198.51.100.7"
VPN = "203.0.113.40"
LINKTYPE_RAW = 101


def tls_client_hello(sni: str, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> bytes:
    """A real ClientHello (all TLS records of it) from the local OpenSSL."""
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(list(alpn))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        conn.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def quic_initial(sni: str, server: str) -> list[bytes]:
    """The client's first flight (Initial datagrams) from aioquic."""
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], server_name=sni)
    conn = QuicConnection(configuration=config)
    conn.connect((server, 443), now=0.0)
    return [data for data, _addr in conn.datagrams_to_send(now=0.0)]


def dns_exchange(name: str, answer_ip: str, qid: int) -> tuple[bytes, bytes]:
    query = dns.message.make_query(name, "A", id=qid)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text(name + ".", 300, "IN", "A", answer_ip))
    return query.to_wire(), response.to_wire()


def demo_packets(seed: int = 7) -> list[tuple[float, bytes]]:
    """(timestamp, raw IP packet) of every flow in the demo, in time order."""
    rng = random.Random(seed)
    t = 1_700_000_000.0
    packets: list[tuple[float, bytes]] = []

    def conversation(server: str, port: int, c2s: list[bytes], s2c: list[bytes]) -> None:
        nonlocal t
        packets.extend(build.tcp_conversation(CLIENT, server, rng.randint(32768, 60999), port, c2s, s2c, t))
        t += 1.0

    def udp(server: str, port: int, c2s: list[bytes], s2c: list[bytes]) -> None:
        nonlocal t
        sport = rng.randint(32768, 60999)
        for i, payload in enumerate(c2s):
            packets.append((t + i * 0.01, build.ipv4_udp(CLIENT, server, sport, port, payload)))
        for i, payload in enumerate(s2c):
            packets.append((t + 0.02 + i * 0.01, build.ipv4_udp(server, CLIENT, port, sport, payload)))
        t += 1.0

    for qid, (name, ip) in enumerate((("example-blocked.test", WEB), ("www.example.org", OTHER)), 1):
        udp(RESOLVER, 53, *map(lambda b: [b], dns_exchange(name, ip, qid)))
    conversation(WEB, 443, [tls_client_hello("example-blocked.test")], [])
    conversation(OTHER, 443, [tls_client_hello("www.example.org")], [])
    conversation(
        WEB,
        80,
        [b"GET / HTTP/1.1\r\nHost: example-blocked.test\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    )
    conversation(
        OTHER,
        80,
        [
            b"GET /search?q=forbidden-keyword HTTP/1.1\r\nHost: www.example.org\r\n"
            b"User-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
        ],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    )
    conversation(
        OTHER,
        80,
        [b"GET /index.html HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"],
        [b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"],
    )
    udp(WEB, 443, quic_initial("example-blocked.test", WEB), [])
    conversation(SSH_SERVER, 22, [b"SSH-2.0-OpenSSH_9.6\r\n"], [b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"])
    conversation(PROXY, 8388, [rng.randbytes(400)], [rng.randbytes(120)])
    conversation(BLOCKED_NET_HOST, 443, [tls_client_hello("cdn.example.net")], [])
    initiation = bytes([1, 0, 0, 0]) + rng.randbytes(144)
    response = bytes([2, 0, 0, 0]) + rng.randbytes(4) + initiation[4:8] + rng.randbytes(80)
    udp(VPN, 51820, [initiation], [response])
    packets.sort(key=lambda p: p[0])
    return packets


def write_demo_capture(path: Path, seed: int = 7) -> Path:
    with CaptureWriter(path, linktype=LINKTYPE_RAW) as writer:
        for ts, data in demo_packets(seed):
            writer.write(ts, data)
    return path


def write_mixed_capture(path: Path, flows: int, seed: int = 1) -> int:
    """A seeded mix of short flows (the benchmarks' capture: HTTP 25 %, TLS 30 %, DNS 25 %, random TCP 10 %,
    random UDP 10 %, as in the research notes' gen_pcap.py), Ethernet-framed, 2 ms apart, with real TLS
    ClientHellos from the local OpenSSL and real DNS messages from dnspython. Writes ``flows`` flows to
    ``path``; returns the number of packets."""
    rng = random.Random(seed)
    hellos = [tls_client_hello(f"site{i}.example.com") for i in range(64)]
    t = 1_700_000_000.0
    count = 0
    with CaptureWriter(path, linktype=1) as writer:
        for n in range(flows):
            client = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            server = f"198.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            cport = rng.randrange(1024, 65535)
            kind = rng.random()
            if kind < 0.25:
                req = (
                    f"GET /page/{n} HTTP/1.1\r\nHost: www{n % 500}.example.net\r\n"
                    f"User-Agent: bench\r\nAccept: */*\r\n\r\n"
                ).encode()
                pkts = build.tcp_conversation(
                    client,
                    server,
                    cport,
                    80,
                    [req],
                    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"],
                    t,
                    link=True,
                )
            elif kind < 0.55:
                pkts = build.tcp_conversation(
                    client,
                    server,
                    cport,
                    443,
                    [rng.choice(hellos)],
                    [rng.randbytes(1200), rng.randbytes(900)],
                    t,
                    link=True,
                )
            elif kind < 0.80:
                q, r = dns_exchange(f"host{n % 1000}.example.org", server, n & 0xFFFF)
                pkts = [
                    (t, build.ethernet(build.ipv4_udp(client, server, cport, 53, q))),
                    (t + 0.01, build.ethernet(build.ipv4_udp(server, client, 53, cport, r))),
                ]
            elif kind < 0.90:
                pkts = build.tcp_conversation(
                    client,
                    server,
                    cport,
                    rng.choice((8080, 5222, 9000)),
                    [rng.randbytes(300)],
                    [rng.randbytes(600)],
                    t,
                    link=True,
                )
            else:
                pkts = [
                    (t + i * 0.01, build.ethernet(build.ipv4_udp(client, server, cport, 27015, rng.randbytes(200))))
                    for i in range(4)
                ]
            for ts, frame in pkts:
                writer.write(ts, frame)
            count += len(pkts)
            t += 0.002
    return count


def write_wrapped_copy(
    source: Path,
    path: Path,
    *,
    vlans: tuple[tuple[int, int], ...] = ((0x8100, 100),),
    pppoe_session: int | None = 0x1A2B,
) -> int:
    """A copy of an Ethernet capture with every IP frame wrapped as an operator's access network carries it:
    VLAN tags (TPID, VLAN id; outer first) and, when ``pppoe_session`` is set, a PPPoE session header (RFC 2516).
    Frames that are not IPv4/IPv6 over Ethernet are copied as they are. Returns the number of frames."""
    from chokepoint.packet.pcap import open_capture

    count = 0
    with open_capture(source) as reader, CaptureWriter(path, linktype=1) as writer:
        for frame in reader:
            data = frame.data
            if frame.linktype == 1 and len(data) >= 14 and data[12:14] in (b"\x08\x00", b"\x86\xdd"):
                ip = data[14:]
                if pppoe_session is not None:
                    ip_packet = ip[: _ip_length(ip)]
                    data = build.ethernet(
                        build.pppoe_session(ip_packet, pppoe_session),
                        build.ETH_PPPOE_SESSION,
                        data[6:12],
                        data[:6],
                        vlans,
                    )
                else:
                    data = build.ethernet(ip, build.ip_ethertype(ip), data[6:12], data[:6], vlans)
            writer.write(frame.ts, data, frame.orig_len + len(data) - len(frame.data))
            count += 1
    return count


def _ip_length(ip: bytes) -> int:
    """An IP packet's own length (Ethernet padding left out)."""
    if ip[0] >> 4 == 4:
        return int.from_bytes(ip[2:4], "big")
    return 40 + int.from_bytes(ip[4:6], "big")
