"""A SYN flood from distinct sources through the flow table's memory budget: the compiled core, the pure-Python
core and the reference path evict and expire the same flows and count the same things, and the ordinary
connections caught in the flood keep their flows and verdicts (flows without a handshake are evicted first)."""

from __future__ import annotations

import json
from functools import cache

import pytest

from chokepoint import fast
from chokepoint.backends.offline import analyze_capture
from chokepoint.flow import memcap
from chokepoint.packet import build
from chokepoint.packet.pcap import CaptureWriter
from chokepoint.packet.record import SYN
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import load_rules_text
from tests.fast.test_equivalence import compared, explain

RULES = """
engine:
  flow_memcap_mb: 1
  emergency_new_timeout: 0.1
lists:
  names: {kind: domain, items: [blocked.test]}
rules:
  - {id: names, action: reset, when: {domain: {in_list: names}}}
"""
SYNS = 3000
DATAGRAMS = 500  # unanswered UDP from distinct sources, with a payload (dissection state: charged more)
RATE = 2000.0  # SYNs per second of capture time
NAMES = ("blocked.test", "allowed.test", "blocked.test", "www.allowed.test")


@cache
def profile():
    return load_rules_text(RULES)


@pytest.fixture(scope="module")
def flood(tmp_path_factory):
    """``SYNS`` unanswered SYNs and ``DATAGRAMS`` unanswered datagrams from distinct sources, with four TLS
    connections during the flood."""
    packets = []
    for i in range(SYNS):
        src = f"10.{(i >> 16) & 0xFF}.{(i >> 8) & 0xFF}.{i & 0xFF}"
        packets.append((i / RATE, build.ipv4_tcp(src, "198.51.100.7", 40000 + i % 20000, 80, i * 7919, 0, SYN)))
    for i in range(DATAGRAMS):
        src = f"172.16.{(i >> 8) & 0xFF}.{i & 0xFF}"
        packets.append((i * SYNS / RATE / DATAGRAMS, build.ipv4_udp(src, "198.51.100.8", 30000 + i, 5353, b"q" * 24)))
    for n, name in enumerate(NAMES):
        start = (n + 1) * SYNS / RATE / (len(NAMES) + 1)
        packets += build.tcp_conversation(
            "192.0.2.10", "203.0.113.5", 50000 + n, 443, [tls_client_hello(name)], [b""], start
        )
    packets.sort(key=lambda p: p[0])
    path = tmp_path_factory.mktemp("flood") / "flood.pcap"
    with CaptureWriter(path, linktype=101) as writer:
        for ts, data in packets:
            writer.write(ts, data)
    return path


@pytest.mark.parametrize("engine", ["fast", "pure"])
def test_the_cores_evict_what_the_reference_evicts(flood, engine):
    if engine == "fast" and not fast.is_compiled(fast.load()):
        pytest.skip("the compiled core is not built (make setup builds it); the pure-Python core is checked")
    reference = analyze_capture(str(flood), profile(), engine="reference")
    other = analyze_capture(str(flood), profile(), engine=engine)
    same = compared(reference) == compared(other) and sorted(reference.lines()) == sorted(other.lines())
    assert same, explain(reference, other)


def test_the_flood_is_evicted_and_the_connections_keep_their_verdicts(flood):
    result = analyze_capture(str(flood), profile())
    counters = result.engine
    fits = 1024 * 1024 // memcap.FLOW_BYTES
    assert counters[memcap.EMERGENCIES] >= 1
    assert counters[memcap.EVICTED] == counters[memcap.EVICTED_UNASSURED] > 0
    assert counters[memcap.EXPIRED_EMERGENCY] > 0
    assert counters[memcap.EVICTED] + counters[memcap.EXPIRED_EMERGENCY] >= SYNS + DATAGRAMS - fits
    tls = [r for r in result.records if r["app_proto"] == "tls"]
    assert len(tls) == len(NAMES) and all(r["flow"]["reason"] != "evicted" for r in tls)
    verdicts = sorted((r["tls"]["sni"], r["chokepoint"]["verdict"]) for r in tls)
    assert verdicts == sorted((name, "reset" if name == "blocked.test" else "allow") for name in NAMES)
    stats = json.loads(result.stats_line())["stats"]
    assert stats["flow_table"]["evicted_unassured"] == counters[memcap.EVICTED_UNASSURED]
    assert stats["flows"] == len(result.eve) == SYNS + DATAGRAMS + len(NAMES)
