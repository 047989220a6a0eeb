"""Test helpers for the packet layer: where the real captures are, independent tiny record walkers, nDPI's
per-flow counts. Reads ../shared/data beside the checkout; never copies anything from it."""

from __future__ import annotations

import ipaddress
import re
import struct
from functools import lru_cache
from pathlib import Path

import pytest

from chokepoint.packet.pcap import Frame, open_capture

SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
NDPI_PCAPS = SHARED_DATA / "ndpi" / "pcap"
NDPI_RESULTS = SHARED_DATA / "ndpi" / "result"
MISSING = f"../shared/data not found: {NDPI_PCAPS} holds the nDPI captures these tests read"


def ndpi_pcaps() -> list[Path]:
    return sorted(p for p in NDPI_PCAPS.iterdir() if p.is_file()) if NDPI_PCAPS.is_dir() else []


def require(name: str) -> Path:
    path = NDPI_PCAPS / name
    if not path.is_file():
        pytest.skip(f"{MISSING} ({name})")
    return path


def pcap_params() -> list:
    """One pytest param per real capture, or a single skipped param when the data is absent."""
    paths = ndpi_pcaps()
    if not paths:
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="no-shared-data")]
    return [pytest.param(p, id=p.name) for p in paths]


@lru_cache(maxsize=None)
def frames_of(name: str) -> tuple[Frame, ...]:
    with open_capture(require(name)) as reader:
        return tuple(reader)


def sample_frames(per_file: int = 40) -> list[Frame]:
    """Up to ``per_file`` frames of every real capture (seeds for property tests)."""
    out: list[Frame] = []
    for path in ndpi_pcaps():
        out.extend(frames_of(path.name)[:per_file])
    return out


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


# -- nDPI's own view of each capture --------------------------------------------------------------------

_FLOW = re.compile(
    r"^\s+\d+\s+(\w+)\s+(\S+):(\d+)\s+<?->\s+(\S+):(\d+)\s.*?"
    r"\[(\d+) pkts/(\d+) bytes <?-> (\d+) pkts/(\d+) bytes\]"
)
IP_PROTOCOLS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPV6": 58}


def flow_key(proto: int, a: bytes | str, a_port: int, b: bytes | str, b_port: int) -> tuple:
    return (proto, frozenset({(ipaddress.ip_address(a), a_port), (ipaddress.ip_address(b), b_port)}))


def ndpi_flows(name: str) -> dict[tuple, tuple[int, int]]:
    """Per bidirectional flow: (packets, bytes) as nDPI's ndpiReader counted them."""
    result = NDPI_RESULTS / f"{name}.out"
    if not result.is_file():
        pytest.skip(f"{MISSING} ({result.name})")
    flows: dict[tuple, tuple[int, int]] = {}
    for line in result.read_text().splitlines():
        match = _FLOW.match(line)
        if not match:
            continue
        proto, a, a_port, b, b_port, p1, b1, p2, b2 = match.groups()
        if proto not in IP_PROTOCOLS:
            continue
        key = flow_key(IP_PROTOCOLS[proto], a.strip("[]"), int(a_port), b.strip("[]"), int(b_port))
        packets, octets = flows.get(key, (0, 0))
        flows[key] = (packets + int(p1) + int(p2), octets + int(b1) + int(b2))
    return flows
