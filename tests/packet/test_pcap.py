"""Capture readers and writer, over the real nDPI captures, truncated copies of them, and pcapng files built
here from their frames (both byte orders, several interfaces, every packet block kind)."""

from __future__ import annotations

import struct
from functools import cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.packet.pcap import CaptureFormatError, CaptureWriter, Frame, open_capture
from tests._corpus import capture_params, capture_path, capture_paths, frames_of, mutations

from ._captures import classic_records, pcapng_blocks, pcapng_packets

CLASSIC = "dns_doh.pcap"  # 142 Ethernet frames, little-endian, microseconds
PCAPNG = "http_ua_splitted_in_two_pkts.pcapng"  # 115 EPBs
SLL_PCAPNG = "tls_heur__vmess-tcp-tls.pcapng"  # link type 113
MULTI_IDB = "dns-google-nsid.pcapng"  # three interfaces


@pytest.mark.parametrize("path", capture_params())
def test_real_capture_yields_every_record(path: Path) -> None:
    raw = path.read_bytes()
    with open_capture(path) as reader:
        frames = list(reader)
        assert (reader.truncated, reader.error) == (False, None)
        assert reader.position == len(raw)
    if raw[:4] == b"\n\r\r\n":
        assert reader.format == "pcapng"
        expected = [(data, orig) for _start, _end, data, orig in pcapng_packets(raw)]
    else:
        assert reader.format == "pcap"
        records = classic_records(raw)
        expected = [(data, orig) for _start, _end, data, orig, _ts in records]
        assert [f.ts for f in frames] == pytest.approx([r[4] for r in records], abs=1e-6)
    assert frames, "every real capture has frames"
    assert [(f.data, f.orig_len) for f in frames] == expected
    assert [f.index for f in frames] == list(range(1, len(frames) + 1))
    assert all(len(f.data) <= f.orig_len for f in frames)
    assert {f.linktype for f in frames} <= {1, 113}


def test_per_interface_link_types_of_real_pcapng() -> None:
    assert {f.linktype for f in frames_of(SLL_PCAPNG)} == {113}
    # A capture on three interfaces: the reader must keep all three IDBs of the section.
    raw = capture_path(MULTI_IDB).read_bytes()
    assert sum(1 for _s, _e, btype in pcapng_blocks(raw) if btype == 1) == 3
    assert len(frames_of(MULTI_IDB)) == len(pcapng_packets(raw))


def test_pcapng_timestamps_follow_if_tsresol() -> None:
    """The real captures' EPB ticks divided by their interface's resolution (read independently here)."""
    for name in (PCAPNG, MULTI_IDB, "quic-33.pcapng"):
        raw = capture_path(name).read_bytes()
        resolutions: list[int] = []
        expected: list[float] = []
        for start, end, btype in pcapng_blocks(raw):
            if btype == 0x0A0D0D0A:
                resolutions = []
            elif btype == 1:
                units, pos = 1_000_000, start + 16
                while pos + 4 <= end - 4:
                    code, length = struct.unpack("<HH", raw[pos : pos + 4])
                    if code == 0:
                        break
                    if code == 9:
                        value = raw[pos + 4]
                        units = 2 ** (value & 0x7F) if value & 0x80 else 10**value
                    pos += 4 + (length + 3) // 4 * 4
                resolutions.append(units)
            elif btype == 6:
                iface, high, low = struct.unpack("<III", raw[start + 8 : start + 20])
                expected.append(((high << 32) | low) / resolutions[iface])
        assert [f.ts for f in frames_of(name)] == expected


def _cut_points(boundaries: list[int], records: list[tuple[int, int]], size: int) -> set[int]:
    """Offsets inside the header, inside a record header, inside record data, at boundaries, near the end."""
    cuts = {6, 13, size - 1}
    for start, end in records[:: max(1, len(records) // 6)]:
        cuts.update({start + 3, start + 17, (start + end) // 2, end})
    cuts.update(b for b in boundaries[:3])
    return {c for c in cuts if 4 <= c < size}


@pytest.mark.parametrize("name", [CLASSIC, PCAPNG])
def test_truncated_copies_yield_the_prefix(name: str, tmp_path: Path) -> None:
    raw = capture_path(name).read_bytes()
    full = frames_of(name)
    if name.endswith(".pcapng"):
        records = [(s, e) for s, e, _d, _o in pcapng_packets(raw)]
        units = [(s, e) for s, e, _t in pcapng_blocks(raw)]
    else:
        records = [(s, e) for s, e, _d, _o, _t in classic_records(raw)]
        units = [(0, 24)] + records
    boundaries = [end for _start, end in units]
    cuts = _cut_points(boundaries, records, len(raw))
    assert len(cuts) > 15
    for cut in sorted(cuts):
        copy = tmp_path / f"cut-{cut}-{name}"
        copy.write_bytes(raw[:cut])
        with open_capture(copy) as reader:
            frames = list(reader)
        complete = sum(1 for _start, end in records if end <= cut)
        assert frames == list(full[:complete]), cut
        if cut in boundaries:
            assert (reader.truncated, reader.error) == (False, None), cut
            continue
        assert reader.truncated, cut
        damaged = next(start for start, end in units if start < cut < end or (start == cut < end))
        assert reader.error is not None and "\n" not in reader.error
        assert str(copy) in reader.error
        assert f"byte offset {damaged} " in reader.error, (cut, reader.error)
        assert f"(frame {complete + 1})" in reader.error, (cut, reader.error)


def _patched(tmp_path: Path, raw: bytes, offset: int, value: bytes, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(raw[:offset] + value + raw[offset + len(value) :])
    return path


def test_garbage_classic_record_length_stops_cleanly(tmp_path: Path) -> None:
    raw = capture_path(CLASSIC).read_bytes()
    start, _end, _data, _orig, _ts = classic_records(raw)[50]
    path = _patched(tmp_path, raw, start + 8, struct.pack("<I", 0x7FFFFFF0), "garbage.pcap")
    with open_capture(path) as reader:
        frames = list(reader)
    assert frames == list(frames_of(CLASSIC)[:50])
    assert reader.truncated
    assert "implausible captured length" in reader.error and f"byte offset {start} (frame 51)" in reader.error


@pytest.mark.parametrize(
    ("length", "message"),
    [
        (0xFFFFFFF0, "implausible length"),
        (13, "implausible length"),
        (8, "implausible length"),
        (None, "trailing length differs"),  # the block's own length + 4: its trailer no longer matches
        (0x00FFFFF0, "runs past the end of the file"),
    ],
)
def test_garbage_pcapng_block_length_stops_cleanly(tmp_path: Path, length: int | None, message: str) -> None:
    raw = capture_path(PCAPNG).read_bytes()
    start, end, _data, _orig = pcapng_packets(raw)[30]
    value = end - start + 4 if length is None else length
    path = _patched(tmp_path, raw, start + 4, struct.pack("<I", value), "garbage.pcapng")
    with open_capture(path) as reader:
        frames = list(reader)
    assert frames == list(frames_of(PCAPNG)[:30])
    assert reader.truncated and message in reader.error
    assert f"byte offset {start} (frame 31)" in reader.error


def test_text_file_is_not_a_capture(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    with pytest.raises(CaptureFormatError) as info:
        open_capture(text)
    message = str(info.value)
    assert str(text) in message and "\n" not in message and "not a pcap or pcapng" in message


@pytest.mark.parametrize("content", [b"", b"\xd4\xc3", b"\n\r\r\nXXXXXXXX", b"\xa1\xb2\xcd\x34" + bytes(20)])
def test_non_captures_raise_format_error(tmp_path: Path, content: bytes) -> None:
    """Empty, cut inside the magic, pcapng magic with a bad byte-order magic, the unsupported Kuznetzov
    'modified pcap' magic."""
    path = tmp_path / "x.bin"
    path.write_bytes(content)
    with pytest.raises(CaptureFormatError, match="x.bin"):
        open_capture(path)


def test_short_classic_header_is_truncation(tmp_path: Path) -> None:
    raw = capture_path(CLASSIC).read_bytes()
    path = tmp_path / "short.pcap"
    path.write_bytes(raw[:10])
    with open_capture(path) as reader:
        assert list(reader) == []
    assert reader.truncated and "short file header (10 of 24 bytes) at byte offset 0 (frame 1)" in reader.error


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("nanosecond", [False, True])
def test_writer_round_trips_real_frames(tmp_path: Path, byteorder: str, nanosecond: bool) -> None:
    frames = frames_of(CLASSIC)
    path = tmp_path / "copy.pcap"
    with CaptureWriter(path, linktype=1, nanosecond=nanosecond, byteorder=byteorder) as writer:
        for frame in frames:
            writer.write(frame.ts, frame.data, frame.orig_len)
    raw = path.read_bytes()
    magic = struct.pack(byteorder + "I", 0xA1B23C4D if nanosecond else 0xA1B2C3D4)
    assert raw[:4] == magic
    sec, frac, caplen, orig = struct.unpack(byteorder + "IIII", raw[24:40])
    assert (caplen, orig) == (len(frames[0].data), frames[0].orig_len)
    assert sec + frac / (1e9 if nanosecond else 1e6) == pytest.approx(frames[0].ts, abs=1e-6)
    with open_capture(path) as reader:
        back = list(reader)
        assert reader.byteorder == byteorder
    assert [(f.data, f.orig_len, f.linktype, f.index) for f in back] == [
        (f.data, f.orig_len, f.linktype, f.index) for f in frames
    ]
    assert [f.ts for f in back] == pytest.approx([f.ts for f in frames], abs=1e-6)


def test_writer_reproduces_a_real_file_byte_for_byte(tmp_path: Path) -> None:
    original = capture_path(CLASSIC).read_bytes()
    path = tmp_path / "copy.pcap"
    snaplen = struct.unpack("<I", original[16:20])[0]
    with CaptureWriter(path, linktype=1, snaplen=snaplen) as writer:
        for frame in frames_of(CLASSIC):
            writer.write(frame.ts, frame.data, frame.orig_len)
    assert path.read_bytes()[24:] == original[24:]


def test_writer_cuts_to_snaplen(tmp_path: Path) -> None:
    data = frames_of(CLASSIC)[5].data
    path = tmp_path / "snap.pcap"
    with CaptureWriter(path, linktype=1, snaplen=40) as writer:
        writer.write(1.5, data)
    with open_capture(path) as reader:
        (frame,) = list(reader)
    assert frame == Frame(1.5, 1, data[:40], len(data), 1)


# -- pcapng files built here from real frames ------------------------------------------------------------


def _block(bo: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    length = len(body) + 12
    return struct.pack(bo + "II", btype, length) + body + struct.pack(bo + "I", length)


def _option(bo: str, code: int, value: bytes) -> bytes:
    return struct.pack(bo + "HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _shb(bo: str) -> bytes:
    return _block(bo, 0x0A0D0D0A, struct.pack(bo + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def _idb(bo: str, linktype: int, options: bytes = b"", snaplen: int = 0) -> bytes:
    if options:
        options += _option(bo, 0, b"")
    return _block(bo, 1, struct.pack(bo + "HHI", linktype, 0, snaplen) + options)


def _epb(bo: str, iface: int, ticks: int, data: bytes, orig: int, options: bytes = b"") -> bytes:
    head = struct.pack(bo + "IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig)
    return _block(bo, 6, head + data + b"\0" * (-len(data) % 4) + options)


@pytest.mark.parametrize("bo", ["<", ">"])
def test_built_pcapng_with_every_block_kind(tmp_path: Path, bo: str) -> None:
    eth = frames_of(CLASSIC)
    sll = frames_of(SLL_PCAPNG)
    other = ">" if bo == "<" else "<"
    raw_ip = eth[7].data[14:]
    content = b"".join(
        [
            _shb(bo),
            _idb(bo, 1, _option(bo, 9, b"\x09")),  # nanoseconds
            _idb(bo, 113, _option(bo, 9, b"\x94") + _option(bo, 14, struct.pack(bo + "q", 1000))),  # 2^-20 s
            _epb(
                bo,
                0,
                1_600_000_000_123_456_789,
                eth[0].data,
                eth[0].orig_len,
                _option(bo, 2, struct.pack(bo + "I", 1)) + _option(bo, 0, b""),
            ),  # epb_flags after the data
            _block(bo, 0x0BAD, b"unknown block, skipped"),
            _epb(bo, 1, 5 << 20, sll[0].data, sll[0].orig_len),
            _block(bo, 3, struct.pack(bo + "I", len(eth[1].data)) + eth[1].data),  # SPB: interface 0
            _block(
                bo,
                2,
                struct.pack(bo + "HHIIII", 0, 0, 0, 1_000_000_000, len(eth[2].data), len(eth[2].data)) + eth[2].data,
            ),  # obsolete Packet Block
            _block(bo, 5, struct.pack(bo + "III", 0, 0, 0)),  # Interface Statistics: skipped
            _shb(other),  # a new section, other byte order: interfaces start again
            _idb(other, 101),
            _epb(other, 0, 42_000_000, raw_ip, len(raw_ip)),
        ]
    )
    path = tmp_path / "built.pcapng"
    path.write_bytes(content)
    with open_capture(path) as reader:
        frames = list(reader)
        assert (reader.truncated, reader.error) == (False, None)
        assert reader.byteorder == other
    assert [(f.linktype, f.data, f.orig_len, f.index) for f in frames] == [
        (1, eth[0].data, eth[0].orig_len, 1),
        (113, sll[0].data, sll[0].orig_len, 2),
        (1, eth[1].data, len(eth[1].data), 3),
        (1, eth[2].data, len(eth[2].data), 4),
        (101, raw_ip, len(raw_ip), 5),
    ]
    assert frames[0].ts == pytest.approx(1_600_000_000.123456789, abs=1e-6)
    assert frames[1].ts == 1005.0
    assert frames[2].ts == 0.0  # an SPB has no timestamp
    assert frames[3].ts == 1.0  # interface 0 counts nanoseconds
    assert frames[4].ts == 42.0


def test_pcapng_packet_for_undeclared_interface_stops(tmp_path: Path) -> None:
    data = frames_of(CLASSIC)[0].data
    path = tmp_path / "bad-iface.pcapng"
    path.write_bytes(_shb("<") + _idb("<", 1) + _epb("<", 0, 1, data, len(data)) + _epb("<", 3, 2, data, len(data)))
    with open_capture(path) as reader:
        frames = list(reader)
    assert len(frames) == 1 and reader.truncated and "undeclared interface 3" in reader.error


# -- property test: mutated real capture files never raise past the reader -------------------------------

SMALL_REAL = ["websocket.pcap", "tls_unidirectional.pcap", "dns.pcap", "http.pcapng", "gquic.pcap"]


@st.composite
def mutated_capture(draw: st.DrawFn) -> bytes:
    paths = {p.name: p for p in capture_paths()}
    names = [n for n in SMALL_REAL if n in paths]
    if not names:
        pytest.skip("../shared/data not found: no real captures to mutate")
    # byte edits, repeated slices (duplicated records and blocks), cuts and splices of another capture
    return draw(mutations([_capture_bytes(paths[name]) for name in names], max_edits=8))


@cache
def _capture_bytes(path: Path) -> bytes:
    return path.read_bytes()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=mutated_capture())
def test_mutated_captures_never_raise(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fuzz.cap"
    path.write_bytes(content)
    try:
        reader = open_capture(path)
    except CaptureFormatError as error:
        assert "\n" not in str(error)
        return
    with reader:
        frames = list(reader)
    assert [f.index for f in frames] == list(range(1, len(frames) + 1))
    assert all(isinstance(f.data, bytes) and isinstance(f.ts, float) for f in frames)
    if reader.truncated:
        assert reader.error and "\n" not in reader.error and "byte offset" in reader.error
