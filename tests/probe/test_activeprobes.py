"""Active probes recognised in a capture taken at the server (Alice et al., IMC 2020, 3.2-3.4)."""

from __future__ import annotations

import random
import struct

from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.packet.record import ACK, FIN, PSH, RST, SYN
from chokepoint.probe.activeprobes import find_active_probes, shared_clock

SERVER = "198.19.64.10"


def _ts_option(tsval: int) -> bytes:
    return b"\x01\x01\x08\x0a" + struct.pack("!II", tsval, 0)


def _conn(w, t, client, cport, payload, *, ttl=64, tsval=None, reaction="none"):
    opts = _ts_option(tsval) if tsval is not None else b""
    w.write(t, build.ethernet(build.ipv4_tcp(client, SERVER, cport, 443, 1000, 0, SYN, ttl=ttl, options=opts)))
    w.write(t + 0.001, build.ethernet(build.ipv4_tcp(SERVER, client, 443, cport, 5000, 1001, SYN | ACK)))
    w.write(
        t + 0.002, build.ethernet(build.ipv4_tcp(client, SERVER, cport, 443, 1001, 5001, PSH | ACK, payload, ttl=ttl))
    )
    if reaction == "fin":
        w.write(
            t + 0.01, build.ethernet(build.ipv4_tcp(SERVER, client, 443, cport, 5001, 1001 + len(payload), FIN | ACK))
        )
    elif reaction == "rst":
        w.write(t + 0.01, build.ethernet(build.ipv4_tcp(SERVER, client, 443, cport, 5001, 0, RST)))


def test_replays_random_probes_and_their_fingerprint(tmp_path):
    rng = random.Random(5)
    legit = rng.randbytes(300)
    pcap = tmp_path / "server.pcap"
    with CaptureWriter(pcap) as w:
        _conn(w, 100.0, "198.18.0.2", 40000, legit)  # the real client
        _conn(w, 100.5, "198.18.0.2", 40002, rng.randbytes(250))
        probes = [
            ("R1", legit),
            ("R2", bytes([legit[0] ^ 0xFF]) + legit[1:]),
            ("R4", legit[:16] + bytes([legit[16] ^ 1]) + legit[17:]),
            ("R5", legit[:6] + bytes([legit[6] ^ 1]) + legit[7:16] + bytes([legit[16] ^ 1]) + legit[17:]),
            ("R3", bytes(b ^ 1 for b in legit[:8]) + legit[8:62] + bytes(b ^ 1 for b in legit[62:64]) + legit[64:]),
            ("NR2", rng.randbytes(221)),
            ("NR1", rng.randbytes(49)),
        ]
        for i, (_, payload) in enumerate(probes):
            t = 101.0 + i
            _conn(
                w,
                t,
                f"198.18.64.{10 + i}",
                33000 + i,
                payload,
                ttl=47,
                tsval=int(1000 * t) + 7,
                reaction="fin" if i == 5 else "none",
            )
    report = find_active_probes([pcap])
    assert [p.type for p in report.probes] == [name for name, _ in probes]
    assert all(p.origin == "198.18.0.2:40000" for p in report.probes if p.type.startswith("R"))
    summary = report.summary()
    assert summary["ttl_range"] == [47, 47] and summary["sources"] == 7 and summary["ports_in_32768_60999"] == 1.0
    assert summary["tsval_clock"]["shared"] is True and abs(summary["tsval_clock"]["rate_hz"] - 1000) < 1
    assert report.probes[5].reaction == "fin"
    assert find_active_probes([pcap], servers=["198.19.64.99"]).probes == []


def test_short_random_probes_are_not_replays_of_each_other(tmp_path):
    """Two NR1 probes of the same short length from two prober addresses differ in (nearly) every byte, all of
    them within R3's positions 0-7: they are random probes, not an R3 replay of one another."""
    rng = random.Random(11)
    pcap = tmp_path / "server.pcap"
    with CaptureWriter(pcap) as w:
        for i in range(2):
            _conn(w, 100.0 + i, f"198.18.64.{20 + i}", 34000 + i, rng.randbytes(8), ttl=48)
    assert [(p.type, p.origin) for p in find_active_probes([pcap]).probes] == [("NR1", ""), ("NR1", "")]


def test_independent_clocks_are_not_shared():
    from chokepoint.probe.activeprobes import ProbeFinding

    probes = [
        ProbeFinding(
            "NR2",
            f"198.18.64.{i}",
            33000,
            SERVER,
            443,
            100.0 + i,
            221,
            47,
            random.Random(i).getrandbits(32),
            "timeout",
            0,
        )
        for i in range(6)
    ]
    assert shared_clock(probes)["shared"] is False
