from chokepoint.flow.key import flow_key, ip_text, shard_of
from chokepoint.packet.record import TCP, Packet

A, B = bytes([192, 0, 2, 1]), bytes([203, 0, 113, 9])


def test_both_directions_have_one_key_and_one_shard():
    forward = Packet(ts=0, ip_version=4, src=A, dst=B, proto=TCP, sport=40000, dport=443)
    backward = Packet(ts=0, ip_version=4, src=B, dst=A, proto=TCP, sport=443, dport=40000)
    assert flow_key(forward) == flow_key(backward)
    assert all(shard_of(flow_key(forward), n) == shard_of(flow_key(backward), n) for n in (2, 3, 7))


def test_shards_are_stable_and_spread():
    keys = [(6, A, p, B, 443) for p in range(1000, 3000)]
    shards = [shard_of(k, 4) for k in keys]
    assert shards == [shard_of(k, 4) for k in keys]  # no salted hash()
    assert all(300 < shards.count(s) < 700 for s in range(4))


def test_ip_text():
    assert ip_text(A) == "192.0.2.1" and ip_text(bytes(15) + b"\x01") == "::1"
