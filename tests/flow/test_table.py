from dataclasses import replace

from chokepoint.flow.flow import C2S, S2C, TcpState
from chokepoint.flow.table import FlowTable
from chokepoint.packet.record import ACK, FIN, RST, SYN, TCP, UDP, Packet
from chokepoint.settings import EngineSettings

A = bytes([10, 0, 0, 1])
B = bytes([10, 0, 0, 2])


def pkt(ts, src, dst, sport, dport, proto=TCP, flags=0, payload=b""):
    return Packet(
        ts=ts, ip_version=4, src=src, dst=dst, proto=proto, sport=sport, dport=dport, tcp_flags=flags, payload=payload
    )


def test_both_directions_share_one_flow_and_the_syn_sender_is_the_client():
    table = FlowTable(EngineSettings())
    f1, created = table.lookup(pkt(0, A, B, 40000, 443, flags=SYN))
    f2, created2 = table.lookup(pkt(0.1, B, A, 443, 40000, flags=SYN | ACK))
    assert created and not created2 and f1 is f2
    assert (f1.client_ip, f1.client_port, f1.server_port) == (A, 40000, 443)
    assert f1.direction_of(pkt(0.1, B, A, 443, 40000)) == S2C


def test_synack_seen_first_makes_its_receiver_the_client():
    table = FlowTable(EngineSettings())
    flow, _ = table.lookup(pkt(0, B, A, 443, 40000, flags=SYN | ACK))
    assert (flow.client_ip, flow.client_port) == (A, 40000)


def test_tcp_state_machine():
    table = FlowTable(EngineSettings())
    flow, _ = table.lookup(pkt(0, A, B, 1, 2, flags=SYN))
    flow.update_tcp(pkt(0, A, B, 1, 2, flags=SYN), C2S)
    assert flow.tcp_state is TcpState.SYN_SENT
    flow.update_tcp(pkt(0, B, A, 2, 1, flags=SYN | ACK), S2C)
    assert flow.tcp_state is TcpState.SYN_RECEIVED
    flow.update_tcp(pkt(0, A, B, 1, 2, flags=ACK), C2S)
    assert flow.tcp_state is TcpState.ESTABLISHED
    flow.update_tcp(pkt(0, A, B, 1, 2, flags=FIN | ACK), C2S)
    assert flow.tcp_state is TcpState.CLOSING
    flow.update_tcp(pkt(0, B, A, 2, 1, flags=FIN | ACK), S2C)
    assert flow.tcp_state is TcpState.CLOSED
    other, _ = table.lookup(pkt(0, A, B, 3, 4, flags=SYN))
    other.update_tcp(pkt(0, B, A, 4, 3, flags=RST), S2C)
    assert other.closed and other.rst_seen


def test_idle_timeouts_per_transport_use_packet_time():
    table = FlowTable(EngineSettings(tcp_timeout=100, udp_timeout=10))
    tcp, _ = table.lookup(pkt(0, A, B, 1, 2))
    udp, _ = table.lookup(pkt(0, A, B, 5, 53, proto=UDP))
    assert list(table.expire(5)) == []
    expired = list(table.expire(11))
    assert expired == [udp] and udp.end_reason == "timeout"
    assert list(table.expire(101)) == [tcp]
    assert len(table) == 0 and table.counters["flows_expired"] == 2


def test_closed_tcp_flows_move_to_the_short_timeout():
    table = FlowTable(EngineSettings(tcp_timeout=300, tcp_closed_timeout=5))
    flow, _ = table.lookup(pkt(0, A, B, 1, 2, flags=SYN))
    flow.update_tcp(pkt(0, A, B, 1, 2, flags=RST), C2S)
    table.reclassify(flow)
    assert [f.id for f in table.expire(6)] == [flow.id]


def test_activity_refreshes_lru_order():
    table = FlowTable(EngineSettings(udp_timeout=10))
    first, _ = table.lookup(pkt(0, A, B, 1, 53, proto=UDP))
    second, _ = table.lookup(pkt(1, A, B, 2, 53, proto=UDP))
    table.lookup(pkt(9, A, B, 1, 53, proto=UDP))
    first.last_ts = 9
    assert list(table.expire(11.5)) == [second]


def test_lru_bound_evicts_the_least_recently_active_and_counts_it():
    table = FlowTable(EngineSettings(max_flows=2))
    a, _ = table.lookup(pkt(0, A, B, 1, 2))
    b, _ = table.lookup(pkt(1, A, B, 3, 4, proto=UDP))
    table.lookup(pkt(2, A, B, 5, 6))
    assert len(table) == 2
    assert table.pop_evicted() == [a] and a.end_reason == "evicted"
    assert table.counters["flows_evicted"] == 1


def test_drain_returns_everything_oldest_first():
    table = FlowTable(EngineSettings())
    table.lookup(pkt(5, A, B, 1, 2))
    table.lookup(pkt(1, A, B, 3, 4))
    assert [f.first_ts for f in table.drain()] == [1, 5]
    assert len(table) == 0


def test_seq_end_tracks_the_highest_byte_per_direction_with_wraparound():
    table = FlowTable(EngineSettings())
    flow, _ = table.lookup(pkt(0, A, B, 1, 2, flags=SYN))
    syn = Packet(ts=0, ip_version=4, src=A, dst=B, proto=TCP, sport=1, dport=2, tcp_flags=SYN, seq=0xFFFFFFFF)
    flow.advance_seq(syn, C2S)
    assert flow.seq_end[C2S] == 0
    data = Packet(ts=0, ip_version=4, src=A, dst=B, proto=TCP, sport=1, dport=2, tcp_flags=ACK, seq=0, payload=b"abc")
    flow.advance_seq(data, C2S)
    assert flow.seq_end[C2S] == 3
    flow.advance_seq(replace(data, payload=b"a"), C2S)  # a retransmission does not move it back
    assert flow.seq_end[C2S] == 3 and flow.seq_end[S2C] is None
