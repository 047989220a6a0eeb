"""QUIC Initial dissection: the per-flow reassembly of a client's first flight into its ClientHello / CHLO.

Formats:
- IETF QUIC v1: RFC 9000 §17.2 (long header), §16 (variable-length integers), §19 (frames), §12.2
  (coalesced packets), §12.4 (frames allowed in Initial packets); protection RFC 9001 (quic_crypto.py).
- QUIC v2: RFC 9369 §3.2 (long-header packet types: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00).
- Version-independent properties (Version Negotiation, connection-ID lengths): RFC 8999.
- IETF drafts >= 22 and Facebook mvfst (0xfaceb00x) share the v1 header layout.  Older drafts (4-bit
  connection-ID lengths in one byte, other salts) are refused with UnsupportedVersion; none is in the data.
- Google QUIC (Chromium "QUIC Wire Layout" and "QUIC Crypto" design docs, as read by Wireshark's
  packet-gquic.c and nDPI's protocols/quic.c): Q039..Q043 use the public header (flags, 8-byte connection
  ID, version, packet number) and Q046 a long header with 4-bit connection-ID lengths; both carry
  "null-encrypted" payloads behind a 12-byte FNV-1a-128 hash, Google frames, and the CHLO on stream 1.
  Q050 (CHLO) and T050/T051 (TLS 1.3) use the invariant long header, Initial keys with Google's salts,
  and Google frames with CRYPTO frames of type 0x08.

Version names follow nDPI's ``ndpi_quic_version2str`` ("V-1", "V-2", "Draft-29", "MVFST-27", "Q046", ...)
so results compare directly with nDPI's output.

The parts live in their own modules and are re-exported here, so callers import from ``dissect.quic``:
``quic_versions`` (versions, varints), ``quic_header`` (long headers, the engine's prefix test),
``quic_frames`` (IETF and gQUIC frames), ``quic_packets`` (Initial decryption, gQUIC null encryption),
``quic_handshake`` (gQUIC CHLO, transport parameters) and ``quic_crypto`` (keys and protection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.dissect.quic_crypto import InitialProtection, UnsupportedVersion
from chokepoint.dissect.quic_frames import (
    GQUIC_CRYPTO_STREAM,
    AckFrame,
    ConnectionCloseFrame,
    CryptoFrame,
    Frame,
    GquicAckFrame,
    GquicStreamFrame,
    PaddingFrame,
    PingFrame,
    parse_frames,
    parse_gquic_frames,
)
from chokepoint.dissect.quic_handshake import (
    GOOGLE_USER_AGENT_PARAMETER,
    MAX_GQUIC_ENTRIES,
    TRANSPORT_PARAMETER_EXTENSIONS,
    GquicHandshakeMessage,
    gquic_message_length,
    parse_gquic_handshake_message,
    parse_transport_parameters,
)
from chokepoint.dissect.quic_header import (
    GQUIC_HASH_LEN,
    MAX_CID_LEN,
    HeaderFormat,
    PacketType,
    QuicLongHeader,
    is_quic_initial_prefix,
    iter_long_headers,
    parse_long_header,
)
from chokepoint.dissect.quic_packets import QuicInitialPacket, decrypt_initial, open_gquic_null, open_protected
from chokepoint.dissect.quic_versions import (
    OLDEST_GQUIC_PUBLIC,
    Q046,
    carries_tls,
    is_gquic_version,
    is_known_version,
    uses_varint_transport_parameters,
    version_name,
)

if TYPE_CHECKING:
    from chokepoint.dissect.tls import ClientHello

__all__ = [
    "GOOGLE_USER_AGENT_PARAMETER",
    "GQUIC_CRYPTO_STREAM",
    "GQUIC_HASH_LEN",
    "MAX_CID_LEN",
    "MAX_GQUIC_ENTRIES",
    "OLDEST_GQUIC_PUBLIC",
    "Q046",
    "TRANSPORT_PARAMETER_EXTENSIONS",
    "AckFrame",
    "ConnectionCloseFrame",
    "CryptoFrame",
    "Frame",
    "GquicAckFrame",
    "GquicHandshakeMessage",
    "GquicStreamFrame",
    "HeaderFormat",
    "InitialAssembler",
    "PacketType",
    "PaddingFrame",
    "PingFrame",
    "QuicInfo",
    "QuicInitialPacket",
    "QuicLongHeader",
    "UnsupportedVersion",
    "decrypt_initial",
    "gquic_message_length",
    "is_gquic_version",
    "is_known_version",
    "is_quic_initial_prefix",
    "parse_frames",
    "parse_gquic_frames",
    "parse_gquic_handshake_message",
    "parse_long_header",
    "parse_transport_parameters",
    "version_name",
]


@dataclass(frozen=True, slots=True)
class QuicInfo:
    """What a censor learns from a client's Initial packets once its ClientHello/CHLO is complete.

    ``initial_size`` is the UDP payload length of the first datagram holding an Initial (policy knobs
    such as "inspect only Initials >= 1200 bytes" read it); ``datagrams``/``packets`` count what was
    needed to complete the hello.
    """

    version: int
    version_name: str
    dcid: bytes
    scid: bytes
    sni: str | None
    alpn: tuple[str, ...]
    ja4: str | None
    user_agent: str | None
    client_hello: ClientHello | GquicHandshakeMessage
    initial_size: int
    is_gquic: bool
    datagrams: int
    packets: int
    transport_parameters: tuple[tuple[int, bytes], ...] = ()
    transport_parameters_error: str | None = None


_MAX_KEY_SETS = 4  # Initial key sets an assembler keeps (first DCID, post-Retry DCID, ...)


class InitialAssembler:
    """Reassemble a client's crypto stream across Initial packets and datagrams (one per flow,
    client-to-server direction).

    ``feed(datagram)`` returns a :class:`QuicInfo` once, on the datagram that completes the
    ClientHello (or gQUIC CHLO), and None before and after.  It raises the typed errors of the
    datagram it was given and keeps its state, so the caller can count and carry on.  CRYPTO data may
    arrive out of order; overlapping bytes keep their first value (differences are counted in
    ``conflicting_bytes``).  Memory is bounded by ``max_crypto_bytes`` and ``max_fragments``.
    """

    def __init__(self, *, max_crypto_bytes: int = (1 << 16) + 4, max_fragments: int = 64) -> None:
        self.max_crypto_bytes = max_crypto_bytes
        self.max_fragments = max_fragments
        self.version: int | None = None
        self.dcid: bytes | None = None
        self.scid: bytes | None = None
        self.initial_size: int | None = None
        self.datagrams = 0
        self.packets = 0
        self.conflicting_bytes = 0
        self.info: QuicInfo | None = None
        self.done = False
        self._contiguous = bytearray()
        self._pending: dict[int, bytes] = {}
        self._protections: dict[tuple[int, bytes], InitialProtection] = {}
        self._key_cids: list[tuple[int, bytes]] = []
        self._largest_pn = -1

    @property
    def buffered_bytes(self) -> int:
        return len(self._contiguous) + sum(len(chunk) for chunk in self._pending.values())

    def feed(self, datagram: bytes) -> QuicInfo | None:
        if self.done:
            return None
        self.datagrams += 1
        opened = self._open_datagram(datagram)
        if not opened:
            return None
        version = opened[0].header.version
        if self.version is not None and version != self.version:
            self._reset_stream()  # a new attempt after Version Negotiation
        if self.version is None or version != self.version:
            self.version = version
            self.dcid = opened[0].header.dcid
            self.scid = opened[0].header.scid
        if self.initial_size is None:
            self.initial_size = len(datagram)
        for packet in opened:
            self.packets += 1
            self._largest_pn = max(self._largest_pn, packet.packet_number)
            for frame in packet.frames:
                if isinstance(frame, CryptoFrame):
                    self._add(frame.offset, frame.data)
                elif isinstance(frame, GquicStreamFrame) and frame.stream_id == GQUIC_CRYPTO_STREAM:
                    self._add(frame.offset, frame.data)
        return self._complete()

    # -- decryption ------------------------------------------------------------------------

    def _protection(self, version: int, cid: bytes) -> InitialProtection:
        key = (version, cid)
        protection = self._protections.get(key)
        if protection is None:
            if len(self._protections) >= _MAX_KEY_SETS:
                self._protections.pop(next(iter(self._protections)))
            protection = InitialProtection.for_initial(version, cid, is_client=True)
            self._protections[key] = protection
        return protection

    def _open_datagram(self, datagram: bytes) -> list[QuicInitialPacket]:
        opened: list[QuicInitialPacket] = []
        for offset, header in iter_long_headers(datagram):
            if header.packet_type is not PacketType.INITIAL:
                continue
            packet = memoryview(datagram)[offset : offset + header.packet_size]
            if header.header_format is not HeaderFormat.IETF:
                opened.append(open_gquic_null(packet, header, is_client=True))
                continue
            # Keys come from the DCID of the client's first Initial, or of its first Initial after a
            # Retry (RFC 9001 §5.2); later Initials may carry the server's chosen CID instead.  Try the
            # CIDs that worked before (newest first), then the packet's own DCID.
            candidates = [cid for version, cid in self._key_cids if version == header.version]
            if header.dcid not in candidates:
                candidates.append(header.dcid)
            for index, cid in enumerate(candidates):
                try:
                    packet_opened = open_protected(
                        packet, header, self._protection(header.version, cid), self._largest_pn
                    )
                except Malformed:
                    if index == len(candidates) - 1:
                        raise
                    continue
                self._remember_key_cid(header.version, cid)
                opened.append(packet_opened)
                break
        return opened

    def _remember_key_cid(self, version: int, cid: bytes) -> None:
        entry = (version, cid)
        if entry in self._key_cids:
            self._key_cids.remove(entry)
        self._key_cids.insert(0, entry)
        del self._key_cids[_MAX_KEY_SETS:]

    # -- reassembly ------------------------------------------------------------------------

    def _reset_stream(self) -> None:
        self._contiguous.clear()
        self._pending.clear()
        self._largest_pn = -1

    def _add(self, offset: int, data: bytes) -> None:
        end = offset + len(data)
        if end > self.max_crypto_bytes:
            raise Malformed(f"QUIC: crypto data up to offset {end} exceeds {self.max_crypto_bytes} bytes")
        if offset > len(self._contiguous):
            held = self._pending.get(offset)
            if held is None:
                if len(self._pending) >= self.max_fragments:
                    raise Malformed(f"QUIC: more than {self.max_fragments} out-of-order crypto fragments")
                if self.buffered_bytes + len(data) > self.max_crypto_bytes:
                    raise Malformed(f"QUIC: more than {self.max_crypto_bytes} crypto bytes buffered")
                self._pending[offset] = data
            else:  # same offset again: first copy wins, a longer copy only extends it
                self._count_conflicts(held, data)
                if len(data) > len(held):
                    self._pending[offset] = held + data[len(held) :]
            return
        if self.buffered_bytes + max(0, end - len(self._contiguous)) > self.max_crypto_bytes:
            raise Malformed(f"QUIC: more than {self.max_crypto_bytes} crypto bytes buffered")
        self._merge(offset, data)
        while self._pending:
            have = len(self._contiguous)
            ready = sorted(start for start in self._pending if start <= have)
            if not ready:
                break
            for start in ready:
                self._merge(start, self._pending.pop(start))

    def _count_conflicts(self, held: bytes | bytearray, data: bytes) -> None:
        self.conflicting_bytes += sum(1 for a, b in zip(held, data) if a != b)

    def _merge(self, offset: int, data: bytes) -> None:
        """Append ``data`` at ``offset`` <= len(contiguous); bytes already held win."""
        have = len(self._contiguous)
        overlap = min(have - offset, len(data))
        if overlap > 0:
            self._count_conflicts(self._contiguous[offset : offset + overlap], data[:overlap])
        if len(data) > overlap:
            self._contiguous += data[overlap:]

    def _complete(self) -> QuicInfo | None:
        """Build the QuicInfo when the hello is complete; a broken hello ends the assembler."""
        try:
            info = self._try_complete()
        except Malformed:
            self.done = True
            raise
        if info is not None:
            self.info = info
            self.done = True
        return info

    def _try_complete(self) -> QuicInfo | None:
        stream = self._contiguous
        if not stream or self.version is None:
            return None
        tls = carries_tls(self.version)
        if tls:
            if stream[0] != 0x01:
                raise Malformed(f"QUIC: crypto stream starts with handshake type {stream[0]}, not ClientHello")
            if len(stream) < 4:
                return None
            total = 4 + int.from_bytes(stream[1:4], "big")
        else:
            if len(stream) >= 4 and bytes(stream[:4]) != b"CHLO":
                raise Malformed(f"gQUIC: crypto stream starts with {bytes(stream[:4])!r}, not CHLO")
            try:
                total = gquic_message_length(stream)
            except NeedMoreData:
                return None
        if total > self.max_crypto_bytes:
            raise Malformed(f"QUIC: hello of {total} bytes exceeds {self.max_crypto_bytes}")
        if len(stream) < total:
            return None
        return self._build_info(self.version, bytes(stream[:total]), tls)

    def _build_info(self, version: int, message: bytes, tls: bool) -> QuicInfo:
        dcid = self.dcid or b""
        scid = self.scid or b""
        initial_size = self.initial_size or 0
        if not tls:
            try:
                chlo = parse_gquic_handshake_message(message)
            except NeedMoreData as exc:
                raise Malformed(f"gQUIC CHLO inconsistent: {exc}") from None
            return QuicInfo(
                version=version,
                version_name=version_name(version),
                dcid=dcid,
                scid=scid,
                sni=chlo.sni,
                alpn=(),
                ja4=None,
                user_agent=chlo.user_agent,
                client_hello=chlo,
                initial_size=initial_size,
                is_gquic=True,
                datagrams=self.datagrams,
                packets=self.packets,
            )
        from chokepoint.dissect.fingerprint import ja4_for  # imported lazily: TLS lives in its own module
        from chokepoint.dissect.tls import parse_client_hello_message

        try:
            hello = parse_client_hello_message(message)
        except (NotThisProtocol, NeedMoreData) as exc:
            raise Malformed(f"QUIC: ClientHello unreadable: {exc}") from None
        params: tuple[tuple[int, bytes], ...] = ()
        params_error = None
        user_agent = None
        for ext_type, ext_data in hello.extensions:
            if ext_type in TRANSPORT_PARAMETER_EXTENSIONS:
                try:
                    params = parse_transport_parameters(ext_data, varint_ids=uses_varint_transport_parameters(version))
                except Malformed as exc:  # kept apart: a quirky extension must not hide the SNI
                    params_error = str(exc)
                break
        for param_id, value in params:
            if param_id == GOOGLE_USER_AGENT_PARAMETER:
                user_agent = value.decode("utf-8", "replace")
        return QuicInfo(
            version=version,
            version_name=version_name(version),
            dcid=dcid,
            scid=scid,
            sni=hello.sni,
            alpn=hello.alpn,
            ja4=ja4_for(hello, transport="q"),
            user_agent=user_agent,
            client_hello=hello,
            initial_size=initial_size,
            is_gquic=is_gquic_version(version),
            datagrams=self.datagrams,
            packets=self.packets,
            transport_parameters=params,
            transport_parameters_error=params_error,
        )
