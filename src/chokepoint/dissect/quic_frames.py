"""QUIC frames of a client's first flight: IETF Initial frames (RFC 9000 §19, §12.4) and the Google QUIC
frames (Chromium "QUIC Wire Layout", Q039+ big-endian layout; CRYPTO frames of type 0x08 in Q050/T05x)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from chokepoint.dissect.errors import Malformed
from chokepoint.dissect.quic_versions import take, varint

__all__ = [
    "GQUIC_CRYPTO_STREAM",
    "AckFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "Frame",
    "GquicAckFrame",
    "GquicStreamFrame",
    "PaddingFrame",
    "PingFrame",
    "parse_frames",
    "parse_gquic_frames",
]

GQUIC_CRYPTO_STREAM = 1


@dataclass(frozen=True, slots=True)
class PaddingFrame:
    length: int


@dataclass(frozen=True, slots=True)
class PingFrame:
    pass


@dataclass(frozen=True, slots=True)
class AckFrame:
    """ACK (RFC 9000 §19.3): ranges are (gap, length) pairs after the first range."""

    largest_acknowledged: int
    ack_delay: int
    first_range: int
    ranges: tuple[tuple[int, int], ...]
    ecn_counts: tuple[int, int, int] | None


@dataclass(frozen=True, slots=True)
class CryptoFrame:
    """CRYPTO (RFC 9000 §19.6); also Google's CRYPTO frame (type 0x08) in Q050/T050/T051."""

    offset: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ConnectionCloseFrame:
    """CONNECTION_CLOSE of type 0x1c (RFC 9000 §19.19), the only variant allowed in Initials."""

    error_code: int
    frame_type: int
    reason: bytes


@dataclass(frozen=True, slots=True)
class GquicStreamFrame:
    """A Google QUIC STREAM frame (stream 1 carries the CHLO before Q050)."""

    stream_id: int
    offset: int
    data: bytes
    fin: bool


@dataclass(frozen=True, slots=True)
class GquicAckFrame:
    largest_acknowledged: int


Frame = PaddingFrame | PingFrame | AckFrame | CryptoFrame | ConnectionCloseFrame | GquicStreamFrame | GquicAckFrame


_NON_ZERO = re.compile(rb"[^\x00]")


def _end_of_zeros(buf: bytes | memoryview, pos: int, end: int) -> int:
    """Position of the first non-zero byte at or after ``pos`` (PADDING runs), or ``end``."""
    match = _NON_ZERO.search(buf, pos, end)
    return match.start() if match else end


def parse_frames(payload: bytes | memoryview) -> tuple[Frame, ...]:
    """Decode the frames of an IETF Initial packet's plaintext (RFC 9000 §19, §12.4).

    Only PADDING, PING, ACK, CRYPTO and CONNECTION_CLOSE (0x1c) may appear in an Initial packet; any
    other type, a truncated frame or an empty payload is Malformed.
    """
    buf = payload
    end = len(buf)
    if end == 0:
        raise Malformed("QUIC: Initial packet without frames (RFC 9000 §12.4)")
    frames: list[Frame] = []
    pos = 0
    while pos < end:
        frame_type, pos = varint(buf, pos, end, "frame type")
        if frame_type == 0x00:
            run_start = pos - 1
            pos = _end_of_zeros(buf, pos, end)
            frames.append(PaddingFrame(pos - run_start))
        elif frame_type == 0x01:
            frames.append(PingFrame())
        elif frame_type in (0x02, 0x03):
            largest, pos = varint(buf, pos, end, "ACK largest")
            delay, pos = varint(buf, pos, end, "ACK delay")
            count, pos = varint(buf, pos, end, "ACK range count")
            first_range, pos = varint(buf, pos, end, "ACK first range")
            if count > (end - pos) // 2:
                raise Malformed(f"QUIC: ACK range count {count} exceeds the payload")
            ranges = []
            for _ in range(count):
                gap, pos = varint(buf, pos, end, "ACK gap")
                length, pos = varint(buf, pos, end, "ACK range")
                ranges.append((gap, length))
            ecn = None
            if frame_type == 0x03:
                ect0, pos = varint(buf, pos, end, "ECT0")
                ect1, pos = varint(buf, pos, end, "ECT1")
                ce, pos = varint(buf, pos, end, "ECN-CE")
                ecn = (ect0, ect1, ce)
            frames.append(AckFrame(largest, delay, first_range, tuple(ranges), ecn))
        elif frame_type == 0x06:
            offset, pos = varint(buf, pos, end, "CRYPTO offset")
            length, pos = varint(buf, pos, end, "CRYPTO length")
            data, pos = take(buf, pos, length, end, "CRYPTO data")
            frames.append(CryptoFrame(offset, data))
        elif frame_type == 0x1C:
            code, pos = varint(buf, pos, end, "CONNECTION_CLOSE error")
            closed_type, pos = varint(buf, pos, end, "CONNECTION_CLOSE frame type")
            reason_len, pos = varint(buf, pos, end, "CONNECTION_CLOSE reason length")
            reason, pos = take(buf, pos, reason_len, end, "CONNECTION_CLOSE reason")
            frames.append(ConnectionCloseFrame(code, closed_type, reason))
        else:
            raise Malformed(f"QUIC: frame type 0x{frame_type:x} not allowed in an Initial (RFC 9000 §12.4)")
    return tuple(frames)


_GQUIC_LEN_CODE = (1, 2, 4, 6)  # ACK length codes (QUIC Wire Layout, "ACK Frame")


def parse_gquic_frames(payload: bytes | memoryview, pn_len: int) -> tuple[Frame, ...]:
    """Decode Google QUIC frames (Q039+ big-endian layout): PADDING, PING, STOP_WAITING, CRYPTO (0x08),
    ACK (0b01ntllmm) and STREAM (0b1fdooossB).  Other types are Malformed here (not expected before
    the handshake completes)."""
    buf = payload
    end = len(buf)
    if end == 0:
        raise Malformed("gQUIC: packet without frames")
    frames: list[Frame] = []
    pos = 0
    while pos < end:
        frame_type = buf[pos]
        pos += 1
        if frame_type & 0x80:  # STREAM
            stream_id_len = (frame_type & 0x03) + 1
            offset_code = (frame_type >> 2) & 0x07
            offset_len = offset_code + 1 if offset_code else 0
            raw_id, pos = take(buf, pos, stream_id_len, end, "gQUIC stream id")
            raw_offset, pos = take(buf, pos, offset_len, end, "gQUIC stream offset")
            if frame_type & 0x20:
                raw_len, pos = take(buf, pos, 2, end, "gQUIC stream data length")
                data_len = int.from_bytes(raw_len, "big")
            else:
                data_len = end - pos
            data, pos = take(buf, pos, data_len, end, "gQUIC stream data")
            frames.append(
                GquicStreamFrame(
                    int.from_bytes(raw_id, "big"), int.from_bytes(raw_offset, "big"), data, bool(frame_type & 0x40)
                )
            )
        elif frame_type & 0x40:  # ACK
            largest_len = _GQUIC_LEN_CODE[(frame_type >> 2) & 0x03]
            block_len = _GQUIC_LEN_CODE[frame_type & 0x03]
            raw_largest, pos = take(buf, pos, largest_len, end, "gQUIC ACK largest")
            _, pos = take(buf, pos, 2, end, "gQUIC ACK delay")
            blocks = 0
            if frame_type & 0x20:
                raw_blocks, pos = take(buf, pos, 1, end, "gQUIC ACK block count")
                blocks = raw_blocks[0]
            _, pos = take(buf, pos, block_len + blocks * (1 + block_len), end, "gQUIC ACK blocks")
            raw_ts, pos = take(buf, pos, 1, end, "gQUIC ACK timestamp count")
            if raw_ts[0]:
                _, pos = take(buf, pos, 5 + (raw_ts[0] - 1) * 3, end, "gQUIC ACK timestamps")
            frames.append(GquicAckFrame(int.from_bytes(raw_largest, "big")))
        elif frame_type == 0x00:
            run_start = pos - 1
            pos = _end_of_zeros(buf, pos, end)
            frames.append(PaddingFrame(pos - run_start))
        elif frame_type == 0x07:
            frames.append(PingFrame())
        elif frame_type == 0x06:  # STOP_WAITING: least-unacked delta, packet-number sized
            _, pos = take(buf, pos, pn_len, end, "gQUIC STOP_WAITING")
        elif frame_type == 0x08:
            offset, pos = varint(buf, pos, end, "gQUIC CRYPTO offset")
            length, pos = varint(buf, pos, end, "gQUIC CRYPTO length")
            data, pos = take(buf, pos, length, end, "gQUIC CRYPTO data")
            frames.append(CryptoFrame(offset, data))
        else:
            raise Malformed(f"gQUIC: frame type 0x{frame_type:02x} not handled in a client's first packets")
    return tuple(frames)
