"""Streaming readers for classic pcap and pcapng captures, and a classic pcap writer.

Formats: classic pcap (draft-ietf-opsawg-pcap; both byte orders, microsecond magic 0xa1b2c3d4 and
nanosecond magic 0xa1b23c4d) and pcapng (draft-ietf-opsawg-pcapng: Section Header Block in either byte
order, Interface Description Block with its own link type and ``if_tsresol``/``if_tsoffset``, Enhanced,
Simple and the obsolete Packet Block; every other block is skipped).

Damage never raises out of iteration: a short header or record, a block length that runs past the end of
the file, or an implausible length stops the iteration after every good frame before it, and sets
``reader.truncated = True`` and ``reader.error`` to a one-line message with the byte offset and frame number.
Only a file that is not a capture at all raises :class:`CaptureFormatError` (from :func:`open_capture`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, NamedTuple

#: Frames larger than this are taken as a corrupt length field (Wireshark's largest standard packet size).
MAX_FRAME = 262_144
#: pcapng blocks larger than this are taken as a corrupt length field.
MAX_BLOCK = 16 * 1024 * 1024

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"

_SHB, _IDB, _PB, _SPB, _EPB = 0x0A0D0D0A, 1, 2, 3, 6
_OPT_END, _OPT_IF_TSRESOL, _OPT_IF_TSOFFSET = 0, 9, 14


class CaptureFormatError(ValueError):
    """The file is not a pcap or pcapng capture (or uses a variant this reader does not support)."""


class Frame(NamedTuple):
    """One captured frame. ``ts`` in seconds since the epoch; ``index`` is 1-based in capture order.

    A NamedTuple rather than a dataclass: one is built per frame on the hot path, and it is immutable.
    """

    ts: float
    linktype: int
    data: bytes
    orig_len: int
    index: int  # type: ignore[assignment]  # a field named like tuple.index (public API, kept)


class CaptureReader:
    """Base of both readers: iterate (once) for :class:`Frame` s; ``truncated``/``error`` report early stops."""

    format: str = ""

    def __init__(self, path: str | os.PathLike[str], stream: BinaryIO) -> None:
        self.path = os.fspath(path)
        self._stream = stream
        self.truncated = False
        self.error: str | None = None
        self.frames_read = 0
        self._closed_at = 0

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    @property
    def stream(self) -> BinaryIO:
        """The open file, positioned after what the reader has consumed (the fast path reads it in blocks)."""
        return self._stream

    @property
    def position(self) -> int:
        """Bytes of the file consumed so far (for progress reports)."""
        if self._stream.closed:
            return self._closed_at
        return self._stream.tell()

    def close(self) -> None:
        if not self._stream.closed:
            self._closed_at = self._stream.tell()
            self._stream.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def stop_at(self, offset: int, what: str) -> None:
        """Reading stops at byte ``offset``: the capture is damaged there (``what``)."""
        self.truncated = True
        self.error = f"{self.path}: {what} at byte offset {offset} (frame {self.frames_read + 1})"


class PcapReader(CaptureReader):
    """Classic pcap. ``linktype``, ``snaplen``, ``byteorder`` and ``units`` (of a second) come from the header."""

    format = "pcap"

    def __init__(self, path: str | os.PathLike[str], stream: BinaryIO, magic: bytes) -> None:
        super().__init__(path, stream)
        self.byteorder, self.units = _PCAP_MAGIC[magic]
        self.linktype = -1
        self.snaplen = 0
        rest = stream.read(20)
        if len(rest) < 20:
            self.stop_at(0, f"short file header ({4 + len(rest)} of 24 bytes)")
            return
        _major, _minor, _zone, _sigfigs, self.snaplen, network = struct.unpack(self.byteorder + "HHiIII", rest)
        # The upper bits carry FCS information (LT_LINKTYPE in libpcap): the link type is the low 26 bits.
        self.linktype = network & 0x03FFFFFF

    def __iter__(self) -> Iterator[Frame]:
        if self.truncated:
            return
        read = self._stream.read
        record = struct.Struct(self.byteorder + "IIII").unpack
        units = self.units
        linktype = self.linktype
        limit = max(MAX_FRAME, min(self.snaplen, MAX_BLOCK))
        offset = self._stream.tell()
        index = self.frames_read
        try:
            while True:
                header = read(16)
                if len(header) < 16:
                    if header:
                        self.stop_at(offset, f"short record header ({len(header)} of 16 bytes)")
                    return
                sec, frac, caplen, orig_len = record(header)
                if caplen > limit:
                    self.stop_at(offset, f"implausible captured length {caplen} (limit {limit})")
                    return
                data = read(caplen)
                if len(data) < caplen:
                    self.stop_at(offset, f"short record ({len(data)} of {caplen} captured bytes)")
                    return
                offset += 16 + caplen
                index += 1
                self.frames_read = index
                yield Frame(sec + frac / units, linktype, data, orig_len, index)
        finally:
            self.frames_read = index


class PcapngReader(CaptureReader):
    """pcapng: sections, interfaces with per-interface link type and time resolution, packet blocks."""

    format = "pcapng"

    def __init__(self, path: str | os.PathLike[str], stream: BinaryIO) -> None:
        super().__init__(path, stream)
        #: Per interface of the current section: (linktype, snaplen, ticks per second, offset seconds).
        self.interfaces: list[tuple[int, int, int, int]] = []
        self.byteorder = "<"

    def __iter__(self) -> Iterator[Frame]:
        read = self._stream.read
        offset = self._stream.tell()
        index = self.frames_read
        bo = self.byteorder
        block_header, epb_header, u32 = _structs(bo)
        try:
            while True:
                head = read(8)
                if len(head) < 8:
                    if head:
                        self.stop_at(offset, f"short block header ({len(head)} of 8 bytes)")
                    return
                if head[:4] == _PCAPNG_SHB:
                    # A new section may switch byte order: read it from the byte-order magic.
                    bom = read(4)
                    if len(bom) < 4:
                        self.stop_at(offset, "short section header block")
                        return
                    if bom == _BOM_LE:
                        bo = "<"
                    elif bom == _BOM_BE:
                        bo = ">"
                    else:
                        self.stop_at(offset, "section header block with a bad byte-order magic")
                        return
                    self.byteorder = bo
                    block_header, epb_header, u32 = _structs(bo)
                    self.interfaces = []
                    (total,) = struct.unpack(bo + "I", head[4:])
                    if total < 28 or total % 4 or total > MAX_BLOCK:
                        self.stop_at(offset, f"section header block with implausible length {total}")
                        return
                    body = read(total - 12)
                    if len(body) < total - 12:
                        self.stop_at(offset, f"block of {total} bytes runs past the end of the file")
                        return
                    major = struct.unpack_from(bo + "H", body)[0]
                    if major != 1:
                        self.stop_at(offset, f"unsupported pcapng major version {major}")
                        return
                    body = bom + body
                    btype = _SHB
                else:
                    btype, total = block_header(head)
                    if total < 12 or total % 4 or total > MAX_BLOCK:
                        self.stop_at(offset, f"block type {btype:#x} with implausible length {total}")
                        return
                    body = read(total - 8)
                    if len(body) < total - 8:
                        self.stop_at(offset, f"block of {total} bytes runs past the end of the file")
                        return
                if u32(body, len(body) - 4)[0] != total:
                    self.stop_at(offset, f"block type {btype:#x}: trailing length differs from {total}")
                    return
                if btype == _EPB and total >= 32:  # the common case, inline
                    iface, ts_high, ts_low, caplen, orig_len = epb_header(body)
                    if iface < len(self.interfaces) and caplen <= total - 32:
                        linktype, _snaplen, units, tsoffset = self.interfaces[iface]
                        index += 1
                        self.frames_read = index
                        yield Frame(
                            ((ts_high << 32) | ts_low) / units + tsoffset,
                            linktype,
                            body[20 : 20 + caplen],
                            orig_len,
                            index,
                        )
                        offset += total
                        continue
                if btype == _EPB or btype == _PB or btype == _SPB:
                    frame_or_error = self.read_packet_block(btype, body, bo, index + 1)
                    if isinstance(frame_or_error, str):
                        self.stop_at(offset, frame_or_error)
                        return
                    index += 1
                    self.frames_read = index
                    yield frame_or_error
                elif btype == _IDB:
                    error = self.read_interface(body, bo)
                    if error:
                        self.stop_at(offset, error)
                        return
                offset += total
        finally:
            self.frames_read = index

    def read_interface(self, body: bytes, bo: str) -> str | None:
        """Record one Interface Description Block (body = everything after the block length); the error, if any."""
        if len(body) < 12:
            return "interface description block too short"
        linktype, _reserved, snaplen = struct.unpack_from(bo + "HHI", body)
        units, tsoffset = 1_000_000, 0
        pos, end = 8, len(body) - 4
        while pos + 4 <= end:
            code, length = struct.unpack_from(bo + "HH", body, pos)
            pos += 4
            if code == _OPT_END:
                break
            if pos + length > end:
                return f"interface option {code} runs past its block"
            if code == _OPT_IF_TSRESOL and length >= 1:
                value = body[pos]
                units = 2 ** (value & 0x7F) if value & 0x80 else 10**value
            elif code == _OPT_IF_TSOFFSET and length >= 8:
                (tsoffset,) = struct.unpack_from(bo + "q", body, pos)
            pos += (length + 3) & ~3
        self.interfaces.append((linktype, snaplen, units, tsoffset))
        return None

    def read_packet_block(self, btype: int, body: bytes, bo: str, index: int) -> Frame | str:
        """Decode an EPB, PB or SPB body into a Frame, or return what is wrong with it."""
        room = len(body) - 4  # minus the trailing block length
        if btype == _SPB:
            if room < 4:
                return "simple packet block too short"
            if not self.interfaces:
                return "simple packet block before any interface description"
            (orig_len,) = struct.unpack_from(bo + "I", body)
            linktype, snaplen, _units, _tsoffset = self.interfaces[0]
            caplen = min(orig_len, room - 4)
            if snaplen:
                caplen = min(caplen, snaplen)
            # The SPB carries no timestamp.
            return Frame(0.0, linktype, body[4 : 4 + caplen], orig_len, index)
        if room < 20:
            return f"packet block type {btype} too short"
        if btype == _EPB:
            iface, ts_high, ts_low, caplen, orig_len = struct.unpack_from(bo + "IIIII", body)
        else:
            iface, _drops, ts_high, ts_low, caplen, orig_len = struct.unpack_from(bo + "HHIIII", body)
        if iface >= len(self.interfaces):
            return f"packet for undeclared interface {iface}"
        if caplen > room - 20:
            return f"captured length {caplen} exceeds its block"
        linktype, _snaplen, units, tsoffset = self.interfaces[iface]
        ts = ((ts_high << 32) | ts_low) / units + tsoffset
        return Frame(ts, linktype, body[20 : 20 + caplen], orig_len, index)


#: struct.Struct.unpack / unpack_from of one format.
_Unpack = Callable[..., tuple[Any, ...]]


def _structs(bo: str) -> tuple[_Unpack, _Unpack, _Unpack]:
    """Unpackers for one byte order: block type and length, EPB header, a 32-bit word at an offset."""
    return struct.Struct(bo + "II").unpack, struct.Struct(bo + "IIIII").unpack_from, struct.Struct(bo + "I").unpack_from


def open_capture(path: str | os.PathLike[str]) -> CaptureReader:
    """Open a pcap or pcapng file, detecting the format from its magic number.

    Raises :class:`CaptureFormatError` (one line, naming the file) when it is neither; ``OSError`` as usual
    when the file cannot be opened.
    """
    stream = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - owned by the reader
    try:
        magic = stream.read(4)
        if magic in _PCAP_MAGIC:
            return PcapReader(path, stream, magic)
        if magic == _PCAPNG_SHB:
            head = stream.read(8)
            # A pcapng file is recognised by its byte-order magic too (a short file is a truncated one).
            if len(head) < 8 or head[4:] in (_BOM_LE, _BOM_BE):
                stream.seek(0)
                return PcapngReader(path, stream)
            magic += head
    except BaseException:
        stream.close()
        raise
    stream.close()
    shown = magic.hex() if magic else "empty file"
    raise CaptureFormatError(f"{os.fspath(path)}: not a pcap or pcapng capture (first bytes {shown})")


class CaptureWriter:
    """Write a classic pcap file (for tests and the demo capture generator, not a hot path)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        linktype: int = 1,
        snaplen: int = MAX_FRAME,
        nanosecond: bool = False,
        byteorder: str = "<",
    ) -> None:
        if byteorder not in ("<", ">"):
            raise ValueError(f"byteorder must be '<' or '>', not {byteorder!r}")
        self.linktype = linktype
        self.snaplen = snaplen
        self._byteorder = byteorder
        self._scale = 1_000_000_000 if nanosecond else 1_000_000
        self._record = struct.Struct(byteorder + "IIII")
        self._stream = open(path, "wb")  # noqa: SIM115 - closed by close()
        magic = 0xA1B23C4D if nanosecond else 0xA1B2C3D4
        self._stream.write(struct.pack(byteorder + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype))

    def write(self, ts: float, data: bytes, orig_len: int | None = None) -> None:
        """Append one frame, cut to the snap length; ``orig_len`` defaults to ``len(data)``."""
        ticks = round(ts * self._scale)
        sec, frac = divmod(ticks, self._scale)
        captured = data[: self.snaplen]
        wire = len(data) if orig_len is None else orig_len
        self._stream.write(self._record.pack(sec, frac, len(captured), wire))
        self._stream.write(captured)

    def close(self) -> None:
        self._stream.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
