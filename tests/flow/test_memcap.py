"""The flow table's memory budget and emergency mode (chokepoint.flow.memcap), on the reference table."""

from __future__ import annotations

from chokepoint.flow import memcap
from chokepoint.flow.flow import C2S, S2C
from chokepoint.flow.table import FlowTable
from chokepoint.packet.record import ACK, SYN, TCP, UDP, Packet
from chokepoint.settings import EngineSettings

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])


def pkt(ts, src, dst, sport, dport, proto=TCP, flags=0):
    return Packet(ts=ts, ip_version=4, src=src, dst=dst, proto=proto, sport=sport, dport=dport, tcp_flags=flags)


def handshake(table: FlowTable, ts: float, port: int):
    flow, _ = table.lookup(pkt(ts, A, B, port, 443, flags=SYN))
    flow.update_tcp(pkt(ts, A, B, port, 443, flags=SYN), C2S)
    flow.update_tcp(pkt(ts, B, A, 443, port, flags=SYN | ACK), S2C)
    flow.update_tcp(pkt(ts, A, B, port, 443, flags=ACK), C2S)
    table.reclassify(flow)
    return flow


def syn(table: FlowTable, ts: float, port: int):
    flow, _ = table.lookup(pkt(ts, A, B, port, 80, flags=SYN))
    flow.update_tcp(pkt(ts, A, B, port, 80, flags=SYN), C2S)
    table.reclassify(flow)
    return flow


def test_a_full_table_evicts_half_open_flows_before_older_established_ones():
    table = FlowTable(EngineSettings(max_flows=3))
    established = handshake(table, 0, 1000)
    udp, _ = table.lookup(pkt(0.5, A, B, 5353, 53, proto=UDP))
    udp.pkts[S2C] = 1  # answered
    table.reclassify(udp)
    first = syn(table, 1, 2000)
    syn(table, 2, 2001)  # the table is full: the half-open flow goes, not the older established one
    assert table.pop_evicted() == [first] and first.end_reason == "evicted"
    assert established.key in table.index and udp.key in table.index
    assert table.emergency and table.counters[memcap.EMERGENCIES] == 1
    assert table.counters[memcap.EVICTED_UNASSURED] == 1 and table.counters[memcap.EVICTED] == 1


def test_without_half_open_flows_the_least_recently_active_goes():
    table = FlowTable(EngineSettings(max_flows=2))
    old = handshake(table, 0, 1000)
    handshake(table, 1, 1001)
    handshake(table, 2, 1002)
    assert table.pop_evicted() == [old]
    assert table.counters[memcap.EVICTED_UNASSURED] == 0 and table.counters[memcap.EVICTED] == 1


def test_the_byte_budget_bounds_the_table_and_data_is_charged():
    table = FlowTable(EngineSettings(flow_memcap_mb=1))
    fits = 1024 * 1024 // memcap.FLOW_BYTES
    for port in range(fits + 10):
        syn(table, port / 1000, 1024 + port)
    assert len(table) == fits and table.used == fits * memcap.FLOW_BYTES
    assert table.counters[memcap.EVICTED_UNASSURED] == 10
    table.charge_data(next(iter(table.index.values())))
    assert table.used == fits * memcap.FLOW_BYTES + memcap.DATA_BYTES


def test_emergency_mode_expires_half_open_flows_sooner_and_ends_when_the_table_recovers():
    table = FlowTable(EngineSettings(max_flows=10, emergency_new_timeout=2, tcp_timeout=300))
    established = handshake(table, 0, 999)
    for port in range(10):
        syn(table, 1, 1000 + port)
    assert table.emergency
    expired = list(table.expire(3.5))
    assert len(expired) == 9 and all(f.end_reason == "timeout" for f in expired)
    assert established.key in table.index
    assert table.counters[memcap.EXPIRED_EMERGENCY] == 9
    assert not table.emergency  # 1 flow left: below RECOVERY of max_flows
    syn(table, 4, 3000)
    assert list(table.expire(10)) == []  # out of emergency: the normal tcp_timeout again


def test_no_emergency_below_the_bounds():
    table = FlowTable(EngineSettings())
    for port in range(100):
        syn(table, 0, 1000 + port)
    assert not table.emergency and not table.counters[memcap.EMERGENCIES]
    assert list(table.expire(100)) == []


def test_unanswered_udp_is_unassured_and_an_answer_makes_it_assured():
    table = FlowTable(EngineSettings(max_flows=3))
    answered, _ = table.lookup(pkt(0, A, B, 5000, 53, proto=UDP))
    answered.pkts[S2C] = 1  # what Engine.step counts for the answer before it reclassifies
    table.reclassify(answered)
    established = handshake(table, 0.5, 1000)
    flood, _ = table.lookup(pkt(1, A, B, 6000, 53, proto=UDP))
    table.lookup(pkt(2, A, B, 6001, 53, proto=UDP))
    assert table.pop_evicted() == [flood]
    assert answered.key in table.index and established.key in table.index
    assert table.counters[memcap.EVICTED_UNASSURED] == 1
