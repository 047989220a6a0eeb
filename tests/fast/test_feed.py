"""Reading captures in blocks: whatever the block size and wherever records straddle blocks, and whatever damage
a file has, the fast path reads the frames the reference reader reads and reports damage in the same words,
at the same byte offset and frame number."""

from __future__ import annotations

import struct
import tempfile
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.backends.offline import analyze_capture
from chokepoint.fast import feed
from chokepoint.packet.pcap import CaptureFormatError, CaptureWriter
from chokepoint.packet.samples import demo_packets
from chokepoint.policy import load_profile
from tests._corpus import capture_paths, frames_of, mutations
from tests.fast.test_equivalence import compared, explain
from tests.packet.test_pcap import _block, _epb, _idb, _option, _shb


def built_pcapng(bo: str) -> bytes:
    """Every pcapng block kind (as tests/packet/test_pcap.py builds them) from the demo capture's packets."""
    packets = [data for _ts, data in demo_packets()]
    other = ">" if bo == "<" else "<"
    blocks = [_shb(bo), _idb(bo, 101, _option(bo, 9, b"\x09")), _idb(bo, 101, _option(bo, 9, b"\x94"))]
    for i, data in enumerate(packets[:20]):
        ticks = 1_600_000_000_123_456_789 + i * 10_000_000 if i % 2 == 0 else (1_600_000_000 + i) << 20
        blocks.append(_epb(bo, i % 2, ticks, data, len(data)))
    blocks.append(_block(bo, 0x0BAD, b"unknown block, skipped"))
    blocks.append(_block(bo, 3, struct.pack(bo + "I", len(packets[20])) + packets[20]))  # SPB
    blocks.append(
        _block(
            bo, 2, struct.pack(bo + "HHIIII", 0, 0, 0, 1_000_000_000, len(packets[21]), len(packets[21])) + packets[21]
        )
    )
    blocks += [_shb(other), _idb(other, 101)]
    blocks += [_epb(other, 0, 42_000_000 + i, data, len(data)) for i, data in enumerate(packets[22:])]
    return b"".join(blocks)


@cache
def classic_pcap(byteorder: str, nanosecond: bool) -> bytes:
    """The demo capture's packets as a classic pcap in ``byteorder``, micro- or nanosecond timestamps."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "demo.pcap"
        with CaptureWriter(path, linktype=101, byteorder=byteorder, nanosecond=nanosecond) as writer:
            for ts, data in demo_packets():
                writer.write(ts, data)
        return path.read_bytes()


def samples() -> dict[str, bytes]:
    out = {"built-le.pcapng": built_pcapng("<"), "built-be.pcapng": built_pcapng(">")}
    out["demo.pcap"] = classic_pcap("<", False)
    out["demo-be-ns.pcap"] = classic_pcap(">", True)
    for path in capture_paths():
        if path.name in ("http.pcapng", "dns.pcap", "tls_ech.pcapng", "quic_t50.pcap"):
            out[path.name] = path.read_bytes()
    return out


def compare(path: Path) -> None:
    profile = load_profile("gfw")
    try:
        reference = analyze_capture(str(path), profile, engine="reference")
    except CaptureFormatError as error:
        with pytest.raises(CaptureFormatError) as raised:
            analyze_capture(str(path), profile, engine="fast")
        assert str(raised.value) == str(error)
        return
    fast = analyze_capture(str(path), profile, engine="fast")
    assert compared(fast) == compared(reference) and fast.lines() == reference.lines(), explain(reference, fast)


@pytest.mark.parametrize("block_size", [1, 5, 17, 100, 4096])
def test_any_block_size_reads_the_same(tmp_path, monkeypatch, block_size):
    monkeypatch.setattr(feed, "BLOCK_SIZE", block_size)
    for name, content in samples().items():
        path = tmp_path / name
        path.write_bytes(content)
        compare(path)


def test_the_built_pcapng_reads_its_frames(tmp_path):
    path = tmp_path / "built.pcapng"
    path.write_bytes(built_pcapng("<"))
    result = analyze_capture(str(path), load_profile("demo"))
    assert (result.frames, result.truncated) == (len(demo_packets()), False)
    assert result.engine["packets"] == result.frames


@st.composite
def damaged(draw):
    content = draw(st.sampled_from(sorted(_seeds().items())))
    name, raw = content
    return name, draw(mutations([raw], max_edits=4)), draw(st.sampled_from([3, 64, 4096, 1 << 20]))


@cache
def _seeds() -> dict[str, bytes]:
    out = {"built-le.pcapng": built_pcapng("<"), "built-be.pcapng": built_pcapng(">")}
    out["demo.pcap"] = classic_pcap("<", False)
    out["demo-be-ns.pcap"] = classic_pcap(">", True)
    out.update({p.name: p.read_bytes() for p in capture_paths() if p.name in ("dns.pcap", "tls_ech.pcapng")})
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(damaged())
def test_damaged_files_read_and_report_the_same(tmp_path, sample):
    name, content, block_size = sample
    path = tmp_path / name
    path.write_bytes(content)
    old = feed.BLOCK_SIZE
    feed.BLOCK_SIZE = block_size
    try:
        compare(path)
    finally:
        feed.BLOCK_SIZE = old


def test_frames_of_a_real_capture_are_all_walked(tmp_path):
    paths = [p for p in capture_paths() if p.suffix == ".pcapng"]
    if not paths:
        pytest.skip("../shared/data not found")
    for path in paths:
        result = analyze_capture(str(path), load_profile("gfw"))
        assert result.frames == len(frames_of(path))
