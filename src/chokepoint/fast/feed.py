"""Read a capture in large blocks and walk them with the core; the rare pcapng blocks go through the reference
reader's own code (:class:`chokepoint.packet.pcap.PcapngReader`), so damage is reported in the same words at
the same byte offset and frame number as when the capture is read frame by frame."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from chokepoint.fast.core import STOP_BLOCK, STOP_ERROR
from chokepoint.packet.pcap import MAX_BLOCK, MAX_FRAME, CaptureReader, Frame, PcapngReader, PcapReader

#: Bytes read from the file at a time.
BLOCK_SIZE = 4 << 20

_SHB = b"\x0a\x0d\x0d\x0a"
_BOM = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_EPB, _PB, _SPB, _IDB = 6, 2, 3, 1
_NEED = -1  # a block is not whole in the buffer yet
_END = -2  # nothing left


def feed(reader: CaptureReader, core: Any, flush: Callable[[], None], progress: Callable[[int], None] | None) -> None:
    """Walk every record of an opened capture through ``core`` (``chokepoint.fast.core.Core``), calling
    ``flush`` after each block (the flows that ended meanwhile) and ``progress`` with the bytes read. Damage is
    recorded on ``reader`` (``truncated``, ``error``) as the reference iteration would record it."""
    if reader.truncated:
        return
    if isinstance(reader, PcapReader):
        _pcap(reader, core, flush, progress)
    else:
        assert isinstance(reader, PcapngReader)
        _pcapng(reader, core, flush, progress)
    reader.frames_read = core.frames


def _pcap(reader: PcapReader, core: Any, flush: Callable[[], None], progress: Callable[[int], None] | None) -> None:
    stream = reader.stream
    base = stream.tell()  # file offset of buf[0]
    buf, pos = b"", 0
    little = reader.byteorder == "<"
    limit = max(MAX_FRAME, min(reader.snaplen, MAX_BLOCK))
    units = float(reader.units)
    while True:
        chunk = stream.read(BLOCK_SIZE)
        if chunk:
            buf, base, pos = buf[pos:] + chunk, base + pos, 0
        pos = core.walk_pcap(buf, pos, little, units, reader.linktype, limit)
        flush()
        if progress is not None:
            progress(stream.tell())
        if core.stop == STOP_ERROR:
            reader.frames_read = core.frames
            reader.stop_at(base + pos, core.error_what)
            return
        if not chunk:
            break
    rest = len(buf) - pos
    if rest:
        reader.frames_read = core.frames
        if rest < 16:
            reader.stop_at(base + pos, f"short record header ({rest} of 16 bytes)")
        else:
            (caplen,) = struct.unpack_from(reader.byteorder + "I", buf, pos + 8)
            reader.stop_at(base + pos, f"short record ({rest - 16} of {caplen} captured bytes)")


def _pcapng(reader: PcapngReader, core: Any, flush: Callable[[], None], progress: Callable[[int], None] | None) -> None:
    stream = reader.stream
    base = stream.tell()
    buf, pos = b"", 0
    eof = False
    while True:
        pos = core.walk_pcapng(buf, pos, reader.byteorder == "<", reader.interfaces)
        if core.stop == STOP_BLOCK or eof:
            used = _block(reader, core, buf, pos, base, eof)
            if used > 0:
                pos += used
                continue
            if used == _END:
                break
        flush()
        if reader.truncated:
            break
        chunk = stream.read(BLOCK_SIZE)
        if progress is not None:
            progress(stream.tell())
        if chunk:
            buf, base, pos = buf[pos:] + chunk, base + pos, 0
        else:
            eof = True
    flush()


def _block(reader: PcapngReader, core: Any, buf: bytes, pos: int, base: int, eof: bool) -> int:
    """The block at ``buf[pos:]``, read as ``PcapngReader`` reads it: bytes consumed, ``_NEED`` (not whole
    yet), or ``_END`` (end of input or damage, recorded on the reader)."""
    avail = len(buf) - pos
    offset = base + pos
    reader.frames_read = core.frames

    def damaged(what: str) -> int:
        reader.stop_at(offset, what)
        return _END

    def short(what: str) -> int:
        return damaged(what) if eof else _NEED

    if avail < 8:
        if not avail:
            return _END if eof else _NEED
        return short(f"short block header ({avail} of 8 bytes)")
    bo = reader.byteorder
    if buf[pos : pos + 4] == _SHB:
        if avail < 12:
            return short("short section header block")
        bo = _BOM.get(buf[pos + 8 : pos + 12], "")
        if not bo:
            return damaged("section header block with a bad byte-order magic")
        reader.byteorder = bo
        reader.interfaces = []
        (total,) = struct.unpack_from(bo + "I", buf, pos + 4)
        if total < 28 or total % 4 or total > MAX_BLOCK:
            return damaged(f"section header block with implausible length {total}")
        if avail < total:
            return short(f"block of {total} bytes runs past the end of the file")
        (major,) = struct.unpack_from(bo + "H", buf, pos + 12)
        if major != 1:
            return damaged(f"unsupported pcapng major version {major}")
        btype = 0x0A0D0D0A
    else:
        btype, total = struct.unpack_from(bo + "II", buf, pos)
        if total < 12 or total % 4 or total > MAX_BLOCK:
            return damaged(f"block type {btype:#x} with implausible length {total}")
        if avail < total:
            return short(f"block of {total} bytes runs past the end of the file")
    body = buf[pos + 8 : pos + total]
    if struct.unpack_from(bo + "I", body, len(body) - 4)[0] != total:
        return damaged(f"block type {btype:#x}: trailing length differs from {total}")
    if btype == _EPB and total >= 32:  # the reader's inline case
        iface, ts_high, ts_low, caplen, orig_len = struct.unpack_from(bo + "IIIII", body)
        if iface < len(reader.interfaces) and caplen <= total - 32:
            linktype, _snaplen, units, tsoffset = reader.interfaces[iface]
            ts = ((ts_high << 32) | ts_low) / units + tsoffset
            core.frame(Frame(ts, linktype, body[20 : 20 + caplen], orig_len, core.frames + 1))
            return total
    if btype in (_EPB, _PB, _SPB):
        frame = reader.read_packet_block(btype, body, bo, core.frames + 1)
        if isinstance(frame, str):
            return damaged(frame)
        core.frame(frame)
    elif btype == _IDB:
        error = reader.read_interface(body, bo)
        if error:
            return damaged(error)
    return total
