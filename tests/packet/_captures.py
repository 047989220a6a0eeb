"""Independent record walkers for the packet-layer tests: just enough of each capture format to cross-check
``chokepoint.packet.pcap`` (the oracle of its tests, so deliberately not built on it). Everything else the tests
need from the real corpus (where it is, frames, nDPI's counts) is in ``tests/_corpus.py``."""

from __future__ import annotations

import struct

# -- independent walkers: just enough of each format to cross-check the readers --------------------------


def classic_records(raw: bytes) -> list[tuple[int, int, bytes, int, float]]:
    """(start, end, data, orig_len, ts) of each record of a little-endian microsecond pcap."""
    assert raw[:4] == b"\xd4\xc3\xb2\xa1"
    out, pos = [], 24
    while pos + 16 <= len(raw):
        sec, usec, caplen, orig = struct.unpack("<IIII", raw[pos : pos + 16])
        out.append((pos, pos + 16 + caplen, raw[pos + 16 : pos + 16 + caplen], orig, sec + usec / 1e6))
        pos += 16 + caplen
    return out


def pcapng_blocks(raw: bytes) -> list[tuple[int, int, int]]:
    """(start, end, type) of each block of a little-endian pcapng file."""
    out, pos = [], 0
    while pos + 12 <= len(raw):
        btype, length = struct.unpack("<II", raw[pos : pos + 8])
        out.append((pos, pos + length, btype))
        pos += length
    return out


def pcapng_packets(raw: bytes) -> list[tuple[int, int, bytes, int]]:
    """(start, end, data, orig_len) of each Enhanced Packet Block (the only packet block in the real files)."""
    out = []
    for start, end, btype in pcapng_blocks(raw):
        assert btype in (0x0A0D0D0A, 1, 5, 6, 10), btype  # SHB IDB ISB EPB DSB
        if btype == 6:
            caplen, orig = struct.unpack("<II", raw[start + 20 : start + 28])
            out.append((start, end, raw[start + 28 : start + 28 + caplen], orig))
    return out
