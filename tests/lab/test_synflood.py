"""``lab.synflood``: the flood's packets are SYNs from distinct sources with valid checksums, and only to the lab's
addresses (the flood through the inline censor is tests/backends/test_flood_inline.py)."""

from __future__ import annotations

import pytest

from chokepoint.lab.synflood import HEADER, SynBatch, tcp_checksum

SERVER_IP = "198.19.0.2"  # an address in the lab's range (the NetPath server of tests/backends)


def test_synflood_packets_are_distinct_syns_with_valid_checksums():
    batch = SynBatch(SERVER_IP, 80, 16)
    batch.fill()
    batch.fill()
    sources = set()
    for i in range(16):
        packet = bytes(batch.buffer[i * HEADER : (i + 1) * HEADER])
        src, dst = int.from_bytes(packet[12:16], "big"), int.from_bytes(packet[16:20], "big")
        segment = packet[20:36] + b"\0\0" + packet[38:]
        assert tcp_checksum(src, dst, segment) == int.from_bytes(packet[36:38], "big")
        assert packet[33] == 0x02 and int.from_bytes(packet[22:24], "big") == 80  # SYN to port 80
        sources.add(src)
    assert len(sources) == 16
    with pytest.raises(ValueError, match="only the lab"):
        SynBatch("192.0.2.1", 80, 1)
