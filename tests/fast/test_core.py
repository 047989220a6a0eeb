"""The core, compiled and pure-Python, against each other and against the reference path, on mutated frames.

Frames of the real captures (every link type and protocol in there) are damaged by ``tests._corpus.mutations``
(truncated, spliced, bits flipped, bytes set, patched in the headers), given timestamps that may go backwards,
and walked as one classic pcap block by the compiled core, by the pure-Python core and frame by frame by
the reference decoder and ``Engine.step``, with a small table and short timeouts so that expiry and eviction
happen. All three must write the same EVE lines and count the same things; no exception may escape.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import fields
from functools import cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint import fast
from chokepoint.backends.offline import _eve_line
from chokepoint.engine import Engine
from chokepoint.flow.flow import Flow
from chokepoint.flow.key import flow_key, shard_of
from chokepoint.packet import build
from chokepoint.packet.decode import Decoder
from chokepoint.packet.pcap import MAX_FRAME, Frame
from chokepoint.packet.record import ACK, FIN, PSH, RST, SYN
from chokepoint.policy import load_rules_text
from tests._corpus import capture_paths, frames_of, mutations

RULES = """
engine:
  max_flows: 3
  tcp_timeout: 3
  tcp_closed_timeout: 1
  udp_timeout: 2
  other_timeout: 2
  inspect_max_packets: 4
  ip_fragment_reassembly: true
lists:
  names: {kind: domain, items: [google.com, example.com, ntop.org]}
rules:
  - {id: log-tls, action: log, when: {app_proto: tls}}
  - {id: names, action: reset, when: {domain: {in_list: names}}}
  - {id: quic, action: drop, when: {all: [{transport: udp}, {app_proto: quic}]}}
  - {id: late, action: drop, params: {after_s: 0.5, min_bytes: 300}, when: {all: [{app_proto: unknown}, {transport: tcp}]}}
"""


@cache
def profile():
    return load_rules_text(RULES)


@cache
def corpus() -> tuple[tuple[int, tuple[Frame, ...]], ...]:
    """(link type, frames) of each real capture whose frames share one link type."""
    out = []
    for path in capture_paths():
        frames = frames_of(path)
        if frames and len({f.linktype for f in frames}) == 1:
            out.append((frames[0].linktype, frames))
    return tuple(out)


_STATE_FIELDS = tuple(f.name for f in fields(Flow) if f.name not in ("facts", "streams", "state"))


def state(flow: Flow) -> tuple:
    """Everything a flow holds when it ends: its EVE line, every field, what its reassemblers kept."""
    streams = tuple(None if s is None else (s.base, s.bytes, s.overlaps, s.gaps_dropped) for s in flow.streams)
    return (_eve_line(flow, "t")[2], repr([getattr(flow, name) for name in _STATE_FIELDS]), streams)


def run_core(module, linktype: int, frames: list[tuple[float, bytes]], shard: int = 0, shards: int = 1):
    """EVE lines and counters of ``frames`` walked as one pcap block by ``module``'s core."""
    prof = profile()
    decoder = Decoder(prof.engine.ip_fragment_reassembly, prof.engine.ip_fragment_limit)
    engine = Engine(prof)
    core = module.Core(engine, decoder, shard, shards)
    block = b"".join(
        struct.pack("<IIII", int(ts), round((ts % 1) * 1e6) % 1_000_000, len(data), len(data)) + data
        for ts, data in frames
    )
    assert core.walk_pcap(block, 0, True, 1e6, linktype, MAX_FRAME) == len(block)
    core.finish()
    lines = sorted(state(flow) for flow in core.ended)
    counters = {**{k: v for k, v in engine.counters.items() if v}, **{k: v for k, v in core.counters().items() if v}}
    return lines, counters, dict(+decoder.counters), core.frames, core.decoded


def run_reference(linktype: int, frames: list[tuple[float, bytes]], shard: int = 0, shards: int = 1):
    prof = profile()
    decoder = Decoder(prof.engine.ip_fragment_reassembly, prof.engine.ip_fragment_limit)
    engine = Engine(prof)
    ended, decoded = [], 0
    for index, (ts, data) in enumerate(frames, 1):
        sec, usec = int(ts), round((ts % 1) * 1e6) % 1_000_000
        pkt = decoder.decode(Frame(sec + usec / 1e6, linktype, data, len(data), index))
        if pkt is None:
            continue
        decoded += 1
        if shards > 1 and shard_of(flow_key(pkt), shards) != shard:
            continue
        ended.extend(engine.process(pkt))
    ended.extend(engine.finish())
    lines = sorted(state(flow) for flow in ended)
    counters = {
        **{k: v for k, v in engine.counters.items() if v},
        **{k: v for k, v in engine.table.counters.items() if v},
    }
    return lines, counters, dict(+decoder.counters), len(frames), decoded


@st.composite
def captures(draw):
    """A window of consecutive frames of one capture (so that they share flows), some of them damaged,
    with the capture's own time steps, sometimes stretched or reversed (expiry, eviction, clocks that
    go backwards)."""
    link, frames = draw(st.sampled_from(corpus()))
    count = draw(st.integers(1, 40))
    start = draw(st.integers(0, max(0, len(frames) - count)))
    window = frames[start : start + count]
    datas = [f.data for f in frames]
    out = []
    ts = 1_700_000_000.0
    previous = window[0].ts
    for frame in window:
        data = frame.data
        if draw(st.integers(0, 3)) == 0:
            data = draw(mutations([data], others=datas, max_edits=3, within=96))
        step = max(0.0, frame.ts - previous)
        previous = frame.ts
        ts += draw(st.sampled_from((step, step, step, 0.0, 1.5, 4.0, -0.3)))
        out.append((ts, data[:MAX_FRAME]))
    return link, out


@pytest.mark.shared_data
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(captures(), st.sampled_from([(0, 1), (1, 3)]))
def test_compiled_pure_and_reference_agree(capture, sharding):
    if not corpus():
        pytest.skip("../shared/data not found")
    link, frames = capture
    shard, shards = sharding
    want = run_reference(link, frames, shard, shards)
    assert run_core(fast.load(compiled=False), link, frames, shard, shards) == want
    compiled = fast.load()
    if fast.is_compiled(compiled):
        assert run_core(compiled, link, frames, shard, shards) == want


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 6]),
    st.sampled_from([6, 17, 1]),
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 65535),
    st.integers(0, 65535),
    st.integers(2, 7),
)
def test_shard_is_the_reference_crc(version, proto, a, b, pa, pb, shards):
    """The core's CRC-32 shard of a flow key is ``chokepoint.flow.key.shard_of``'s (zlib)."""
    size = 4 if version == 4 else 16
    a, b = a[:size], b[:size]
    key = (proto, a, pa, b, pb)
    want = shard_of(key, shards)
    assert zlib.crc32(a + b + pa.to_bytes(2, "big") + pb.to_bytes(2, "big") + bytes((proto,))) % shards == want
    for module in {fast.load(compiled=False), fast.load()}:
        core = module.Core(Engine(profile()), Decoder(), 0, shards)
        hi = [int.from_bytes(x[:-8], "big") if size == 16 else 0 for x in (a, b)]
        lo = [int.from_bytes(x[-8:], "big") if size == 16 else int.from_bytes(x, "big") for x in (a, b)]
        assert core.shard_of(version, proto, hi[0], lo[0], pa, hi[1], lo[1], pb) == want


@st.composite
def handshakes(draw):
    """TCP and UDP packets between a few endpoints with any flags, sequence numbers, payload sizes and time
    steps (equal times too): the TCP state machine, sequence arithmetic, timeouts and evictions."""
    endpoints = [("192.0.2.1", 40000), ("192.0.2.2", 40001), ("2001:db8::1", 40002)]
    servers = [("203.0.113.5", 80), ("203.0.113.6", 443), ("2001:db8::5", 443)]
    ts = 1_700_000_000.0
    out = []
    flags = st.sampled_from(
        [SYN, SYN | ACK, ACK, PSH | ACK, FIN | ACK, RST, RST | ACK, 0, FIN, SYN | FIN]
    ) | st.integers(0, 0xFFF)
    for _ in range(draw(st.integers(1, 40))):
        (c, cport), (srv, sport) = draw(st.sampled_from(endpoints)), draw(st.sampled_from(servers))
        if (":" in c) != (":" in srv):
            continue
        from_client = draw(st.booleans())
        src, dst, sp, dp = (c, srv, cport, sport) if from_client else (srv, c, sport, cport)
        payload = draw(st.sampled_from([b"", b"", b"x", b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", bytes(40)]))
        if draw(st.integers(0, 4)) == 0:
            seg = (build.ipv6_udp if ":" in c else build.ipv4_udp)(src, dst, sp, dp, payload)
        else:
            seq = draw(st.sampled_from([0, 1000, 1001, 1040, 0xFFFFFFF0, 0x7FFFFFFF])) if draw(st.booleans()) else 1001
            make = build.ipv6_tcp if ":" in c else build.ipv4_tcp
            seg = make(src, dst, sp, dp, seq, 0, draw(flags), payload)
        ts += draw(st.sampled_from((0.0, 0.0, 0.001, 0.999, 1.0, 2.0, 3.0, 11.0, -0.5)))
        out.append((ts, seg))
    return 101, out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(handshakes())
def test_flow_state_machines_agree(capture):
    link, frames = capture
    want = run_reference(link, frames)
    assert run_core(fast.load(compiled=False), link, frames) == want
    compiled = fast.load()
    if fast.is_compiled(compiled):
        assert run_core(compiled, link, frames) == want
