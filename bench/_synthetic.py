"""A seeded synthetic capture for the throughput benchmarks (same flow mix as the research notes'
gen_pcap.py: HTTP 25 %, TLS 30 %, DNS 25 %, random TCP 10 %, random UDP 10 %), with real TLS
ClientHellos from the local OpenSSL and real DNS messages from dnspython."""

from __future__ import annotations

import random
from pathlib import Path

from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.packet.samples import dns_exchange, tls_client_hello

LINKTYPE_ETHERNET = 1


def write_synthetic(path: Path, flows: int, seed: int = 1) -> int:
    """Write ``flows`` flows to ``path``; returns the number of packets."""
    rng = random.Random(seed)
    hellos = [tls_client_hello(f"site{i}.example.com") for i in range(64)]
    t = 1_700_000_000.0
    count = 0
    with CaptureWriter(path, linktype=LINKTYPE_ETHERNET) as writer:
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
