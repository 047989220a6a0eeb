"""Property tests of the whole engine: real captures with mutated payloads never raise, whatever the bytes.

Frames are taken from the real third-party captures (every dissector's protocol is in there), their
application payloads are mutated (flipped, truncated, spliced), and the packets are fed through the
decoder and the engine with the `gfw` profile. Malformed input must be counted, never raised.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.backends.offline import analyze_capture
from chokepoint.engine import Engine
from chokepoint.output.eve import flow_to_eve
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import open_capture
from chokepoint.policy import load_profile
from tests._corpus import NDPI_PCAPS

SHARED = NDPI_PCAPS
CAPTURES = (
    "chrome.pcap",
    "quic-29.pcap",
    "gquic.pcap",
    "dns.pcap",
    "http.pcapng",
    "openvpn.pcap",
    "wireguard.pcap",
    "ipsec_isakmp_esp.pcap",
    "socks.pcap",
    "ssh.pcap",
    "pptp.pcap",
    "shadowsocks.pcap",
    "tls_ech.pcapng",
    "quic_frags_ch_in_multiple_packets.pcapng",
    "tor.pcap",
)


@lru_cache(maxsize=1)
def packets():
    if not SHARED.is_dir():
        pytest.skip(f"../shared/data not found: {SHARED} (real captures are needed for this test)")
    decoder = Decoder()
    out = []
    for name in CAPTURES:
        with open_capture(SHARED / name) as reader:
            for i, frame in enumerate(reader):
                pkt = decoder.decode(frame)
                if pkt is not None and pkt.payload:
                    out.append(pkt)
                if i > 300:
                    break
    return out


@lru_cache(maxsize=1)
def gfw():
    return load_profile("gfw")


def mutate(payload: bytes, op: int, at: int, value: int) -> bytes:
    if not payload:
        return payload
    at %= len(payload)
    if op == 0:
        return payload[:at] + bytes([value]) + payload[at + 1 :]
    if op == 1:
        return payload[:at]
    if op == 2:
        return payload[at:] + payload[:at]
    return payload[:at] + bytes([value]) * 40 + payload[at:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    picks=st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 255)),
        min_size=1,
        max_size=60,
    )
)
def test_mutated_real_packets_never_raise(picks):
    pool = packets()
    engine = Engine(gfw())
    flows = []
    for n, (which, op, at, value) in enumerate(picks):
        original = pool[which % len(pool)]
        pkt = type(original)(**{f: getattr(original, f) for f in original.__slots__})
        pkt.payload = mutate(original.payload, op, at, value)
        pkt.ts = float(n)
        flows.extend(engine.process(pkt))
    flows.extend(engine.finish())
    for flow in flows:
        flow_to_eve(flow, "gfw")  # the output side copes with whatever facts were found


@pytest.mark.parametrize("name", CAPTURES)
def test_every_capture_analyses_cleanly(name):
    path = SHARED / name
    if not path.exists():
        pytest.skip(f"../shared/data not found: {path}")
    result = analyze_capture(str(path), gfw())
    assert result.records and not result.truncated
    assert sum(r["flow"]["pkts_toserver"] + r["flow"]["pkts_toclient"] for r in result.records) == result.packets
