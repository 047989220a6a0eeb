"""Frame -> :class:`~chokepoint.packet.record.Packet`: link layer, IPv4/IPv6, TCP/UDP/ICMP headers.

The hot path of the engine. :meth:`Decoder.decode` never raises on frame content: a frame it cannot or will
not decode returns ``None`` and is counted in ``Decoder.counters`` under a reason; a few notes are counted on
frames that still decode ("ip-fragment", "ip-payload-truncated", "ipv4-total-length-zero").

Link types (tcpdump.org LINKTYPE_* values): 0 NULL/loopback (host byte order of the capturing machine,
either is accepted), 1 Ethernet, 9 PPP and 50 PPP in HDLC-like framing (RFC 1661/1662), 204 PPP with a
direction byte, 12/14/101 raw IP, 108 OpenBSD loopback (network byte order), 113 Linux cooked SLL, 276 SLL2,
228/229 raw IPv4/IPv6.

Encapsulations (VLAN/QinQ tags, MPLS, PPPoE, PPP, GRE, VXLAN, GTP-U, IP-in-IP) are unwrapped by
:meth:`Decoder._descend`, the one loop over the steps of :mod:`chokepoint.packet.decap`, for link-level wrappers
and IP tunnels alike; the Packet is the innermost one, with the labels of what was unwrapped in ``encap``.

Layers: IPv4 (RFC 791; options skipped, Ethernet padding cut by Total Length), IPv6 (RFC 8200; hop-by-hop,
routing, destination options, fragment, AH (RFC 4302) and the RFC 6564-shaped mobility/HIP/shim6 headers are
walked to the upper layer), TCP (RFC 9293), UDP (RFC 768), ICMP (RFC 792) and ICMPv6 (RFC 4443): an ICMP
``payload`` is what follows the 8-byte header. Any other protocol (GRE, ESP, AH over IPv4, ...) gives a
Packet with ports 0 and the IP payload.

Fragments: with reassembly off, the offset-0 fragment is decoded with what it carries ("ip-fragment") and
later ones are skipped ("ip-fragment-non-first"); with it on, see :mod:`chokepoint.packet.fragments`.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import cast

from chokepoint.packet import decap
from chokepoint.packet.decap import Layer
from chokepoint.packet.fragments import FragmentReassembler, Reassembled
from chokepoint.packet.pcap import Frame
from chokepoint.packet.record import ICMP, ICMPV6, TCP, UDP, Packet
from chokepoint.settings import EngineSettings

_IPV4 = struct.Struct("!BBHHHBB2x4s4s").unpack_from  # ver/ihl tos len id frag ttl proto (csum) src dst
_IPV6 = struct.Struct("!4xHBB16s16s").unpack_from  # (ver/tc/flow) plen nh hlim src dst
_TCP = struct.Struct("!HHIIBBH").unpack_from  # sport dport seq ack off flags window
_PORTS = struct.Struct("!HHH").unpack_from  # sport dport length (UDP)
_FRAG6 = struct.Struct("!BxHI").unpack_from  # nh offset/flags ident

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
#: IP protocols that carry another packet: IPv4 (4), IPv6 (41), GRE (47).
_IP_TUNNELS = frozenset((4, 41, 47))
_TUNNEL_PORTS = frozenset((decap.VXLAN_PORT, decap.GTPU_PORT))

_AF_INET = 2
_AF_INET6 = frozenset((10, 24, 28, 30))  # Linux, NetBSD/OpenBSD, FreeBSD, macOS (libpcap BSD_AFNUM_INET6_*)

_IPV6_HOPOPTS, _IPV6_ROUTING, _IPV6_FRAGMENT, _IPV6_DSTOPTS = 0, 43, 44, 60
_IPV6_AH = 51
_IPV6_GENERIC_EXT = frozenset((_IPV6_HOPOPTS, _IPV6_ROUTING, _IPV6_DSTOPTS, 135, 139, 140))

_MF, _DF, _OFFSET_MASK = 0x2000, 0x4000, 0x1FFF


class Decoder:
    """Decodes frames into Packets; holds the fragment reassembler (when enabled) and the skip counters."""

    def __init__(
        self,
        settings_fragment_reassembly: bool = False,
        fragment_limit: int = 64,
        *,
        fragment_timeout: float = 30.0,
        max_pending_fragments: int = 1024,
    ) -> None:
        self.counters: Counter[str] = Counter()
        self.reassembler: FragmentReassembler | None = None
        if settings_fragment_reassembly:
            self.reassembler = FragmentReassembler(
                self.counters, fragment_limit, max_pending_fragments, fragment_timeout
            )
        self._link = {
            0: self._null,
            108: self._loop,
            113: self._sll,
            276: self._sll2,
            12: self._raw,
            14: self._raw,
            101: self._raw,
            228: self._raw,
            229: self._raw,
            9: self._ppp_link,
            50: self._ppp_link,
            204: self._ppp_link,
        }

    @classmethod
    def from_settings(cls, settings: EngineSettings) -> Decoder:
        """A decoder configured by a profile's engine settings."""
        return cls(settings.ip_fragment_reassembly, settings.ip_fragment_limit)

    def decode(self, frame: Frame) -> Packet | None:
        """Decode one frame, or count why not and return None."""
        data = frame.data
        if frame.linktype == 1:
            if len(data) < 14:
                self.counters["truncated-ethernet-header"] += 1
                return None
            ethertype = (data[12] << 8) | data[13]
            if ethertype == ETH_IPV4:
                return self._ipv4(frame, data, 14)
            return self._ethertype(frame, data, 14, ethertype)
        link = self._link.get(frame.linktype)
        if link is None:
            self.counters[f"unsupported-linktype:{frame.linktype}"] += 1
            return None
        return link(frame, data)

    # -- link layer -------------------------------------------------------------------------------------

    def _ethertype(self, frame: Frame, data: bytes, off: int, ethertype: int) -> Packet | None:
        """The payload of an EtherType at ``off``: IPv4/IPv6 at once, anything else through :meth:`_descend`."""
        if ethertype == ETH_IPV4:
            return self._ipv4(frame, data, off)
        if ethertype == ETH_IPV6:
            return self._ipv6(frame, data, off)
        return self._descend(frame, data, off, len(data), Layer.ETHERTYPE, ethertype, ())

    def _descend(
        self, frame: Frame, data: bytes, off: int, end: int, layer: Layer, value: int, encap: tuple[str, ...]
    ) -> Packet | None:
        """Unwrap from ``layer`` at ``off`` down to an IP header (:mod:`chokepoint.packet.decap`), collecting the
        labels; the one place that decapsulates. Malformed or too deep: counted and skipped."""
        labels = list(encap)
        while True:
            try:
                layer, value, off, label = decap.step(layer, value, data, off, end)
            except decap.Unsupported as exc:
                self.counters[exc.reason] += 1
                return None
            except decap.Malformed as exc:
                self.counters[f"encap-malformed:{exc.reason}"] += 1
                return None
            if label is not None:
                labels.append(label)
                if len(labels) > decap.MAX_DEPTH:
                    self.counters["encap-too-deep"] += 1
                    return None
            if layer is Layer.IPV4:
                return self._ipv4(frame, data, off, tuple(labels), end)
            if layer is Layer.IPV6:
                return self._ipv6(frame, data, off, tuple(labels), end)

    def _ppp_link(self, frame: Frame, data: bytes) -> Packet | None:
        """Link types 9/50 (PPP, optionally in HDLC-like framing) and 204 (a direction byte first)."""
        off = 1 if frame.linktype == 204 else 0
        if len(data) <= off:
            self.counters["truncated-ppp-header"] += 1
            return None
        return self._descend(frame, data, off, len(data), Layer.PPP_HDLC, 0, ("ppp",))

    def _sll(self, frame: Frame, data: bytes) -> Packet | None:
        if len(data) < 16:
            self.counters["truncated-sll-header"] += 1
            return None
        return self._ethertype(frame, data, 16, (data[14] << 8) | data[15])

    def _sll2(self, frame: Frame, data: bytes) -> Packet | None:
        if len(data) < 20:
            self.counters["truncated-sll2-header"] += 1
            return None
        return self._ethertype(frame, data, 20, (data[0] << 8) | data[1])

    def _null(self, frame: Frame, data: bytes) -> Packet | None:
        if len(data) < 4:
            self.counters["truncated-loopback-header"] += 1
            return None
        family = int.from_bytes(data[:4], "little")
        if family > 0xFFFF:  # written by a big-endian host
            family = int.from_bytes(data[:4], "big")
        return self._family(frame, data, family)

    def _loop(self, frame: Frame, data: bytes) -> Packet | None:
        if len(data) < 4:
            self.counters["truncated-loopback-header"] += 1
            return None
        return self._family(frame, data, int.from_bytes(data[:4], "big"))

    def _family(self, frame: Frame, data: bytes, family: int) -> Packet | None:
        if family == _AF_INET:
            return self._ipv4(frame, data, 4)
        if family in _AF_INET6:
            return self._ipv6(frame, data, 4)
        # Keep the counter's key space small: real address families are below 256.
        self.counters[f"unsupported-loopback-family:{family if family < 256 else 'other'}"] += 1
        return None

    def _raw(self, frame: Frame, data: bytes) -> Packet | None:
        if not data:
            self.counters["truncated-ip-header"] += 1
            return None
        version = data[0] >> 4
        if version == 4:
            return self._ipv4(frame, data, 0)
        if version == 6:
            return self._ipv6(frame, data, 0)
        self.counters["bad-ip-version"] += 1
        return None

    # -- network layer ----------------------------------------------------------------------------------

    def _ipv4(self, frame: Frame, data: bytes, off: int, encap: tuple[str, ...] = (), limit: int = -1) -> Packet | None:
        captured = (len(data) if limit < 0 else limit) - off
        if captured < 20:
            self.counters["truncated-ipv4-header"] += 1
            return None
        vihl, _tos, total, ip_id, frag, ttl, proto, src, dst = _IPV4(data, off)
        if vihl >> 4 != 4:
            self.counters["bad-ip-version"] += 1
            return None
        header_len = (vihl & 0x0F) << 2
        if header_len < 20:
            self.counters["bad-ipv4-header-length"] += 1
            return None
        if header_len > captured:
            self.counters["truncated-ipv4-header"] += 1
            return None
        if total < header_len:
            if total:
                self.counters["bad-ipv4-total-length"] += 1
                return None
            # Zero Total Length: segmentation offload captured before the NIC filled it in.
            self.counters["ipv4-total-length-zero"] += 1
            total = captured
        if total > captured:
            self.counters["ip-payload-truncated"] += 1
            end = off + captured
        else:
            end = off + total  # cuts Ethernet padding and trailers
        df = bool(frag & _DF)
        if frag & (_MF | _OFFSET_MASK):
            frag_offset = (frag & _OFFSET_MASK) << 3
            reassembler = self.reassembler
            if reassembler is not None:
                done = reassembler.add(
                    (4, src, dst, proto, ip_id),
                    frame.ts,
                    frag_offset,
                    bool(frag & _MF),
                    data[off + header_len : end],
                    (ttl, df, header_len),
                    frame.orig_len,
                    65535 - header_len,
                )
                if done is None:
                    self.counters["ip-fragment-held"] += 1
                    return None
                ttl, df, header_len = done.head
                payload = done.payload
                return self._transport(
                    frame,
                    4,
                    src,
                    dst,
                    proto,
                    ttl,
                    ip_id,
                    df,
                    header_len + len(payload),
                    payload,
                    0,
                    len(payload),
                    done.fragments,
                    done.frame_len,
                    encap,
                )
            if frag_offset:
                self.counters["ip-fragment-non-first"] += 1
                return None
            self.counters["ip-fragment"] += 1
        return self._transport(
            frame, 4, src, dst, proto, ttl, ip_id, df, total, data, off + header_len, end, 1, frame.orig_len, encap
        )

    def _ipv6(self, frame: Frame, data: bytes, off: int, encap: tuple[str, ...] = (), limit: int = -1) -> Packet | None:
        captured = (len(data) if limit < 0 else limit) - off
        if captured < 40:
            self.counters["truncated-ipv6-header"] += 1
            return None
        if data[off] >> 4 != 6:
            self.counters["bad-ip-version"] += 1
            return None
        payload_len, nh, hop_limit, src, dst = _IPV6(data, off)
        if payload_len == 0:
            payload_len = captured - 40  # a jumbogram (RFC 2675) or offload: trust the capture
        if payload_len > captured - 40:
            self.counters["ip-payload-truncated"] += 1
            end = off + captured
        else:
            end = off + 40 + payload_len
        ip_len = 40 + payload_len
        pos = off + 40
        ident = 0
        is_fragment = False
        while True:
            if nh in _IPV6_GENERIC_EXT or nh == _IPV6_AH:
                if pos + 2 > end:
                    self.counters["truncated-ipv6-extension-header"] += 1
                    return None
                length = (data[pos + 1] + 2) << 2 if nh == _IPV6_AH else (data[pos + 1] + 1) << 3
                nh = data[pos]
                pos += length
                if pos > end:
                    self.counters["truncated-ipv6-extension-header"] += 1
                    return None
                continue
            if nh != _IPV6_FRAGMENT:
                break
            if pos + 8 > end:
                self.counters["truncated-ipv6-extension-header"] += 1
                return None
            if is_fragment:
                self.counters["ipv6-nested-fragment-header"] += 1
                return None
            next_nh, offset_flags, ident = _FRAG6(data, pos)
            frag_offset = offset_flags & 0xFFF8
            more = bool(offset_flags & 1)
            is_fragment = True
            if not frag_offset and not more:
                self.counters["ipv6-atomic-fragment"] += 1  # RFC 6946: a whole datagram
                nh, pos = next_nh, pos + 8
                continue
            reassembler = self.reassembler
            if reassembler is not None:
                unfragmentable = pos - off
                done = reassembler.add(
                    (6, src, dst, ident),
                    frame.ts,
                    frag_offset,
                    more,
                    data[pos + 8 : end],
                    (next_nh, hop_limit, unfragmentable),
                    frame.orig_len,
                    65535 + 40 - unfragmentable,
                )
                if done is None:
                    self.counters["ip-fragment-held"] += 1
                    return None
                nh, hop_limit, unfragmentable = done.head
                return self._ipv6_reassembled(frame, src, dst, hop_limit, ident, nh, unfragmentable, done, encap)
            if frag_offset:
                self.counters["ip-fragment-non-first"] += 1
                return None
            self.counters["ip-fragment"] += 1
            nh, pos = next_nh, pos + 8
        return self._transport(
            frame, 6, src, dst, nh, hop_limit, ident, False, ip_len, data, pos, end, 1, frame.orig_len, encap
        )

    def _ipv6_reassembled(
        self,
        frame: Frame,
        src: bytes,
        dst: bytes,
        hop_limit: int,
        ident: int,
        nh: int,
        unfragmentable: int,
        done: Reassembled,
        encap: tuple[str, ...] = (),
    ) -> Packet | None:
        """Walk the extension headers inside a reassembled IPv6 fragmentable part, then the transport."""
        payload = done.payload
        end = len(payload)
        pos = 0
        while nh in _IPV6_GENERIC_EXT or nh == _IPV6_AH:
            if pos + 2 > end:
                self.counters["truncated-ipv6-extension-header"] += 1
                return None
            length = (payload[pos + 1] + 2) << 2 if nh == _IPV6_AH else (payload[pos + 1] + 1) << 3
            nh = payload[pos]
            pos += length
            if pos > end:
                self.counters["truncated-ipv6-extension-header"] += 1
                return None
        if nh == _IPV6_FRAGMENT:
            self.counters["ipv6-nested-fragment-header"] += 1
            return None
        return self._transport(
            frame,
            6,
            src,
            dst,
            nh,
            hop_limit,
            ident,
            False,
            unfragmentable + end,
            payload,
            pos,
            end,
            done.fragments,
            done.frame_len,
            encap,
        )

    # -- transport layer --------------------------------------------------------------------------------

    def _transport(
        self,
        frame: Frame,
        version: int,
        src: bytes,
        dst: bytes,
        proto: int,
        ttl: int,
        ip_id: int,
        df: bool,
        ip_len: int,
        data: bytes,
        pos: int,
        end: int,
        fragments: int,
        frame_len: int,
        encap: tuple[str, ...] = (),
    ) -> Packet | None:
        """Decode the transport header in ``data[pos:end]`` and build the Packet; a tunnel (IP in IP, GRE, VXLAN,
        GTP-U) goes on to :meth:`_descend` instead."""
        available = end - pos
        if proto in _IP_TUNNELS or (
            proto == UDP and available >= 8 and ((data[pos + 2] << 8) | data[pos + 3]) in _TUNNEL_PORTS
        ):
            inner = self._tunnel(frame, version, proto, data, pos, end, encap)
            if inner is not _NOT_A_TUNNEL:
                return cast("Packet | None", inner)
        if proto == TCP:
            if available < 20:
                self.counters["truncated-tcp-header"] += 1
                return None
            sport, dport, seq, ack, data_offset, flags, window = _TCP(data, pos)
            header_len = (data_offset >> 4) << 2
            if header_len < 20:
                self.counters["bad-tcp-header-length"] += 1
                return None
            if header_len > available:
                self.counters["truncated-tcp-header"] += 1
                return None
            flags |= (data_offset & 0x0F) << 8  # AE and the reserved bits (record.AE, record.RESERVED)
            return Packet(
                frame.ts,
                version,
                src,
                dst,
                TCP,
                sport,
                dport,
                data[pos + header_len : end],
                ttl,
                ip_id,
                df,
                ip_len,
                flags,
                seq,
                ack,
                window,
                header_len,
                -1,
                -1,
                frame_len,
                fragments,
                frame.index,
                encap,
            )
        if proto == UDP:
            if available < 8:
                self.counters["truncated-udp-header"] += 1
                return None
            sport, dport, length = _PORTS(data, pos)
            if length > available or length == 0:
                stop = end  # the capture or the first fragment is shorter; or a jumbogram (RFC 2675)
            elif length < 8:
                self.counters["bad-udp-length"] += 1
                return None
            else:
                stop = pos + length
            return Packet(
                frame.ts,
                version,
                src,
                dst,
                UDP,
                sport,
                dport,
                data[pos + 8 : stop],
                ttl,
                ip_id,
                df,
                ip_len,
                0,
                0,
                0,
                0,
                0,
                -1,
                -1,
                frame_len,
                fragments,
                frame.index,
                encap,
            )
        if proto == ICMP or proto == ICMPV6:
            if available < 8:
                self.counters["truncated-icmp-header"] += 1
                return None
            return Packet(
                frame.ts,
                version,
                src,
                dst,
                proto,
                0,
                0,
                data[pos + 8 : end],
                ttl,
                ip_id,
                df,
                ip_len,
                0,
                0,
                0,
                0,
                0,
                data[pos],
                data[pos + 1],
                frame_len,
                fragments,
                frame.index,
                encap,
            )
        return Packet(
            frame.ts,
            version,
            src,
            dst,
            proto,
            0,
            0,
            data[pos:end],
            ttl,
            ip_id,
            df,
            ip_len,
            0,
            0,
            0,
            0,
            0,
            -1,
            -1,
            frame_len,
            fragments,
            frame.index,
            encap,
        )

    def _tunnel(
        self, frame: Frame, version: int, proto: int, data: bytes, pos: int, end: int, encap: tuple[str, ...]
    ) -> Packet | None | object:
        """The packet inside an IP tunnel whose payload is ``data[pos:end]``, or :data:`_NOT_A_TUNNEL` when the
        outer packet is the packet (GRE of another kind, a UDP datagram on a tunnel port that is not one)."""
        if proto == 4 or proto == 41:
            inner = 4 if proto == 4 else 6
            if pos >= end or data[pos] >> 4 != inner:
                self.counters[f"encap-malformed:{inner}in{version}"] += 1
                return None
            if len(encap) >= decap.MAX_DEPTH:
                self.counters["encap-too-deep"] += 1
                return None
            labels = (*encap, f"{inner}in{version}")
            return (
                self._ipv4(frame, data, pos, labels, end) if inner == 4 else self._ipv6(frame, data, pos, labels, end)
            )
        if proto == 47:
            layer, start = Layer.GRE, pos
        else:
            layer = Layer.VXLAN if ((data[pos + 2] << 8) | data[pos + 3]) == decap.VXLAN_PORT else Layer.GTPU
            start = pos + 8
        try:
            return self._descend(frame, data, start, end, layer, 0, encap)
        except decap.NotWrapped:
            return _NOT_A_TUNNEL


#: :meth:`Decoder._tunnel`'s answer when the outer packet is not a tunnel after all.
_NOT_A_TUNNEL = object()
