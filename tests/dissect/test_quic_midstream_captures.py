"""Captures of QUIC flows that begin mid-connection, through the whole engine to EVE: a real aioquic session
(client and server in memory, framed as UDP) cut where a late capture would begin, and a Google QUIC Q046 flow
built to the wire layout (no Q046 implementation is packaged anywhere now) that begins after the client's
first Initial, as in the flows of issue 12."""

from __future__ import annotations

import random

import pytest

from chokepoint.backends.offline import analyze_capture
from chokepoint.dissect.dispatch import C2S
from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.policy import load_profile
from tests.dissect.test_quic_midstream import late, session

CLIENT, SERVER, CPORT = "192.0.2.1", "198.51.100.1", 50000
Q046 = b"Q046"


def write(path, log, t0=1_700_000_000.0) -> str:
    writer = CaptureWriter(path, linktype=101)
    for i, (direction, datagram) in enumerate(log):
        if direction == C2S:
            raw = build.ipv4_udp(CLIENT, SERVER, CPORT, 443, datagram)
        else:
            raw = build.ipv4_udp(SERVER, CLIENT, 443, CPORT, datagram)
        writer.write(t0 + i * 0.001, raw)
    writer.close()
    return str(path)


def one_flow(path) -> dict:
    (record,) = analyze_capture(path, load_profile("gfw")).records
    return record


def test_an_aioquic_flow_picked_up_after_the_handshake(tmp_path):
    record = one_flow(write(tmp_path / "late.pcap", late(session())))
    assert record["app_proto"] == "quic" and record["partial"] is True
    assert record["quic"] == {"evidence": "short-header"} and "sni" not in record["quic"]
    assert record["chokepoint"]["partial"] == "quic: no client Initial decrypted (short-header)"


def test_an_aioquic_flow_picked_up_at_its_handshake_packets_keeps_the_version(tmp_path):
    log = session()
    second_client = [i for i, (dr, _) in enumerate(log) if dr == C2S][1]
    record = one_flow(write(tmp_path / "hs.pcap", log[second_client:]))
    assert record["app_proto"] == "quic" and record["partial"] is True and record["quic"]["version"] == "V-1"


def test_the_whole_aioquic_flow_has_its_sni_and_is_not_partial(tmp_path):
    record = one_flow(write(tmp_path / "all.pcap", session()))
    assert record["quic"]["sni"] == "mid.example" and "partial" not in record


def q046_flow(rng: random.Random) -> list[tuple[int, bytes]]:
    """A Q046 connection after the client's first Initial (QUIC Wire Layout, Q046 headers): the client's 0-RTT
    long headers (type 0b01, 4-byte packet numbers, 8-byte connection ID, encrypted payload with its 12-byte
    tag), then short headers both ways: the client's carry the connection ID, the server's none."""
    cid = rng.randbytes(8)
    log: list[tuple[int, bytes]] = []
    for pn in range(2, 5):
        header = bytes([0xD3]) + Q046 + bytes([0x50]) + cid + pn.to_bytes(4, "big")
        log.append((C2S, header + rng.randbytes(rng.randint(80, 400)) + rng.randbytes(12)))
    for pn in range(5, 15):
        log.append((1, bytes([0x40]) + pn.to_bytes(1, "big") + rng.randbytes(rng.randint(40, 1300))))
        log.append((C2S, bytes([0x40]) + cid + pn.to_bytes(1, "big") + rng.randbytes(rng.randint(30, 60))))
    return log


@pytest.mark.parametrize("start", [0, 3], ids=["from-0-rtt", "short-headers-only"])
def test_a_q046_flow_without_its_first_initial_is_quic(tmp_path, start):
    log = q046_flow(random.Random(46))[start:]
    record = one_flow(write(tmp_path / "q046.pcap", log))
    assert record["app_proto"] == "quic" and record["partial"] is True and "sni" not in record["quic"]
    if start == 0:
        assert record["quic"] == {"version": "Q046", "evidence": "long-header"}
    else:
        assert record["quic"] == {"evidence": "short-header"}


def test_random_udp_on_443_stays_unknown(tmp_path):
    rng = random.Random(7)
    log = [(i % 2, rng.randbytes(rng.randint(30, 1200))) for i in range(24)]
    assert one_flow(write(tmp_path / "random.pcap", log))["app_proto"] == "unknown"
