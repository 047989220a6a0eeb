"""Decapsulation: what a gateway in an operator's core unwraps before it sees a subscriber's IP packet.

Every encapsulation the decoder knows is one step here, from a layer at an offset to the next layer (pure
functions, no state); :meth:`chokepoint.packet.decode.Decoder._descend` is the one loop that walks them, for
link-level wrappers (from an EtherType or a PPP link) and for IP tunnels (from an IP protocol or a UDP port)
alike. Each step that wraps adds a label to the packet's ``encap`` stack (EVE ``encap``, policy field ``encap``),
outermost first; the flow key is the innermost 5-tuple.

| step | where | label | next |
|---|---|---|---|
| 802.1Q C-tag (0x8100) | EtherType | ``vlan:<vid>`` | EtherType |
| 802.1ad S-tag (0x88a8; 0x9100 pre-standard QinQ) | EtherType | ``qinq:<vid>`` | EtherType |
| MPLS (0x8847, 0x8848; RFC 3032) | EtherType, GRE, PPP 0x0281 | ``mpls:<label>`` per label | IPv4/IPv6 by the first nibble after the bottom of stack; 0: a pseudo-wire control word (RFC 4385) and Ethernet (RFC 4448), label ``pw`` |
| PPPoE session (0x8864; RFC 2516) | EtherType | ``pppoe:0x<session>`` | PPP |
| PPP (RFC 1661; protocol-field compression) | PPPoE, GRE, link types 9/50/204 | ``ppp`` on a PPP link only | 0x0021 IPv4, 0x0057 IPv6, 0x0281 MPLS |
| GRE version 0 (RFC 2784, key and sequence RFC 2890) | IP protocol 47 | ``gre`` or ``gre:<key>`` | 0x0800, 0x86dd, 0x6558 (transparent Ethernet bridging), 0x8847/0x8848, 0x880b |
| VXLAN (RFC 7348) | UDP port 4789 | ``vxlan:<vni>`` | Ethernet |
| GTP-U (3GPP TS 29.281) G-PDU | UDP port 2152 | ``gtpu:0x<teid>`` | IPv4/IPv6 by the first nibble, after the optional fields and extension headers |
| IPv4 / IPv6 in IPv4 / IPv6 (RFC 2003, RFC 4213, RFC 2473) | IP protocols 4 and 41 | ``4in4``, ``6in4``, ``4in6``, ``6in6`` | IPv4/IPv6 |

GRE version 1 (PPTP's enhanced GRE, RFC 2637) carries PPP that is normally compressed or encrypted: it stays a
GRE flow (``app_proto`` ``gre``), as do GRE payloads of other protocol types. A UDP datagram on 4789 or 2152 that
is not VXLAN / a GTP-U G-PDU stays an ordinary datagram (GTP-U signalling: echo, error indication, end marker).
A malformed wrapper (too short, bad version, reserved bits, inner version that does not match) raises
:class:`Malformed` with a reason the decoder counts (``encap-malformed:<reason>``); more than
:data:`MAX_DEPTH` labels is ``encap-too-deep``. Both skip the frame.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ETH_IPV4",
    "ETH_IPV6",
    "GTPU_PORT",
    "MAX_DEPTH",
    "MAX_GTP_EXTENSIONS",
    "VXLAN_PORT",
    "Layer",
    "Malformed",
    "NotWrapped",
    "Unsupported",
    "link_labels",
    "reinsert_vlan",
    "step",
]

ETH_IPV4, ETH_IPV6 = 0x0800, 0x86DD
ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD = 0x8100, 0x88A8, 0x9100
ETH_MPLS, ETH_MPLS_MULTICAST = 0x8847, 0x8848
ETH_PPPOE_SESSION = 0x8864
ETH_PPP = 0x880B
ETH_TEB = 0x6558
PPP_IPV4, PPP_IPV6, PPP_MPLS = 0x0021, 0x0057, 0x0281
VXLAN_PORT = 4789
GTPU_PORT = 2152
#: Labels a packet may carry; deeper stacks are counted (``encap-too-deep``) and skipped.
MAX_DEPTH = 8
#: GTP-U extension headers walked before giving up (``encap-malformed:gtpu-extensions``).
MAX_GTP_EXTENSIONS = 8


class Layer(IntEnum):
    """What starts at an offset: the value that goes with it is an EtherType (ETHERTYPE) or unused."""

    ETHERNET = 1  # a 14-byte Ethernet header
    ETHERTYPE = 2  # the payload of an EtherType (the value)
    PPP = 3  # a PPP protocol field
    PPP_HDLC = 4  # RFC 1662 framing: 0xff 0x03 (optional), then PPP
    MPLS = 5  # a label stack entry
    GRE = 6
    VXLAN = 7
    GTPU = 8
    IPV4 = 9
    IPV6 = 10


class Malformed(ValueError):
    """A wrapper that cannot be decoded; ``reason`` names the counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unsupported(ValueError):
    """A protocol we do not decapsulate (an EtherType or PPP protocol); ``reason`` names the counter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotWrapped(Exception):
    """Not an encapsulation after all (GRE of another kind, UDP on a tunnel port that is not one): the outer
    packet is the packet."""


_TAGS = {ETH_VLAN: "vlan", ETH_QINQ: "qinq", ETH_QINQ_OLD: "qinq"}


def step(layer: Layer, value: int, data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    """One step from ``layer`` at ``off`` (``data[:end]`` is what the outer layers allow): the next layer, its
    value, its offset, and the label this step adds (None when it adds none)."""
    if layer is Layer.ETHERTYPE:
        return _ethertype(value, data, off, end)
    if layer is Layer.ETHERNET:
        if end - off < 14:
            raise Malformed("ethernet-truncated")
        return Layer.ETHERTYPE, (data[off + 12] << 8) | data[off + 13], off + 14, None
    if layer is Layer.PPP_HDLC:
        if end - off >= 2 and data[off] == 0xFF and data[off + 1] == 0x03:
            off += 2
        return Layer.PPP, 0, off, None
    if layer is Layer.PPP:
        return _ppp(data, off, end)
    if layer is Layer.MPLS:
        return _mpls(data, off, end)
    if layer is Layer.GRE:
        return _gre(data, off, end)
    if layer is Layer.VXLAN:
        return _vxlan(data, off, end)
    if layer is Layer.GTPU:
        return _gtpu(data, off, end)
    raise ValueError(f"no step from {layer!r}")  # IPv4/IPv6 are the decoder's


def _ethertype(ethertype: int, data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    if ethertype == ETH_IPV4:
        return Layer.IPV4, 0, off, None
    if ethertype == ETH_IPV6:
        return Layer.IPV6, 0, off, None
    tag = _TAGS.get(ethertype)
    if tag is not None:
        if end - off < 4:
            raise Malformed("vlan-truncated")
        return (
            Layer.ETHERTYPE,
            (data[off + 2] << 8) | data[off + 3],
            off + 4,
            f"{tag}:{((data[off] << 8) | data[off + 1]) & 0x0FFF}",
        )
    if ethertype == ETH_PPPOE_SESSION:
        if end - off < 8:
            raise Malformed("pppoe-truncated")
        if data[off] != 0x11 or data[off + 1] != 0:  # version 1, type 1; code 0 in the session stage
            raise Malformed("pppoe-header")
        length = (data[off + 4] << 8) | data[off + 5]
        if length < 2 or length > end - off - 6:
            raise Malformed("pppoe-length")
        return Layer.PPP, 0, off + 6, f"pppoe:0x{(data[off + 2] << 8) | data[off + 3]:04x}"
    if ethertype in (ETH_MPLS, ETH_MPLS_MULTICAST):
        return Layer.MPLS, 0, off, None
    if ethertype == ETH_TEB:
        return Layer.ETHERNET, 0, off, None
    if ethertype == ETH_PPP:
        return Layer.PPP, 0, off, None
    if ethertype < 0x0600:  # an 802.3 length field (or SLL's 802.2 marker): LLC frames (STP, CDP, ...)
        raise Unsupported("llc-frame")
    raise Unsupported(f"unsupported-ethertype:0x{ethertype:04x}")


def _ppp(data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    if end - off < 1:
        raise Malformed("ppp-truncated")
    if data[off] & 1:  # protocol-field compression (RFC 1661 section 6.5): one byte
        protocol, off = data[off], off + 1
    elif end - off < 2:
        raise Malformed("ppp-truncated")
    else:
        protocol, off = (data[off] << 8) | data[off + 1], off + 2
    if protocol == PPP_IPV4:
        return Layer.IPV4, 0, off, None
    if protocol == PPP_IPV6:
        return Layer.IPV6, 0, off, None
    if protocol == PPP_MPLS:
        return Layer.MPLS, 0, off, None
    raise Unsupported(f"unsupported-ppp-protocol:0x{protocol:04x}")


def _mpls(data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    """One label stack entry; the step after the bottom of the stack chooses the payload by its first nibble."""
    if end - off < 4:
        raise Malformed("mpls-truncated")
    entry = int.from_bytes(data[off : off + 4], "big")
    label = f"mpls:{entry >> 12}"
    off += 4
    if not entry & 0x100:  # not the bottom of the stack: another entry follows
        return Layer.MPLS, 0, off, label
    if end - off < 1:
        raise Malformed("mpls-payload-truncated")
    nibble = data[off] >> 4
    if nibble == 4:
        return Layer.IPV4, 0, off, label
    if nibble == 6:
        return Layer.IPV6, 0, off, label
    if nibble == 0:  # a pseudo-wire control word, then the Ethernet frame it carries
        if end - off < 4 + 14:
            raise Malformed("mpls-pw-truncated")
        return Layer.ETHERNET, 0, off + 4, label
    raise Malformed("mpls-payload")


def _gre(data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    if end - off < 4:
        raise Malformed("gre-truncated")
    flags = (data[off] << 8) | data[off + 1]
    version = flags & 0x0007
    if version != 0:
        raise NotWrapped  # version 1: PPTP's enhanced GRE (RFC 2637), a GRE flow of its own
    if flags & 0x4FF8:  # routing present, strict source route, recursion, other reserved0 bits (RFC 2784 2.3)
        raise Malformed("gre-reserved")
    protocol = (data[off + 2] << 8) | data[off + 3]
    pos = off + 4
    checksum, key, sequence = flags & 0x8000, flags & 0x2000, flags & 0x1000
    if checksum:
        pos += 4
    label = "gre"
    if key:
        if end - pos < 4:
            raise Malformed("gre-truncated")
        label = f"gre:{int.from_bytes(data[pos : pos + 4], 'big')}"
        pos += 4
    if sequence:
        pos += 4
    if pos > end:
        raise Malformed("gre-truncated")
    if protocol == ETH_IPV4:
        return Layer.IPV4, 0, pos, label
    if protocol == ETH_IPV6:
        return Layer.IPV6, 0, pos, label
    if protocol in (ETH_TEB, ETH_MPLS, ETH_MPLS_MULTICAST, ETH_PPP):
        return Layer.ETHERTYPE, protocol, pos, label
    raise NotWrapped


def _vxlan(data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    if end - off < 8 + 14 or not data[off] & 0x08:  # the I flag says the VNI is valid (RFC 7348 section 5)
        raise NotWrapped
    vni = (data[off + 4] << 16) | (data[off + 5] << 8) | data[off + 6]
    return Layer.ETHERNET, 0, off + 8, f"vxlan:{vni}"


def _gtpu(data: bytes, off: int, end: int) -> tuple[Layer, int, int, str | None]:
    if end - off < 8:
        raise NotWrapped
    flags, message = data[off], data[off + 1]
    if flags >> 5 != 1 or not flags & 0x10 or message != 0xFF:  # GTPv1, protocol type GTP, a G-PDU
        raise NotWrapped  # GTP' (type 0), or signalling: echo, error indication, end marker, ...
    length = (data[off + 2] << 8) | data[off + 3]
    if length > end - off - 8:
        raise Malformed("gtpu-length")
    stop = off + 8 + length
    teid = int.from_bytes(data[off + 4 : off + 8], "big")
    pos = off + 8
    if flags & 0x07:  # E, S or PN: sequence number, N-PDU number and next extension type are all present
        if stop - pos < 4:
            raise Malformed("gtpu-truncated")
        next_type = data[pos + 3]
        pos += 4
        for _ in range(MAX_GTP_EXTENSIONS):
            if not next_type:
                break
            if stop - pos < 4 or not data[pos]:
                raise Malformed("gtpu-extension")
            size = data[pos] * 4
            if stop - pos < size:
                raise Malformed("gtpu-extension")
            next_type = data[pos + size - 1]
            pos += size
        else:
            raise Malformed("gtpu-extensions")
    if pos >= stop:
        raise Malformed("gtpu-empty")
    nibble = data[pos] >> 4
    label = f"gtpu:0x{teid:08x}"
    if nibble == 4:
        return Layer.IPV4, 0, pos, label
    if nibble == 6:
        return Layer.IPV6, 0, pos, label
    raise Malformed("gtpu-payload")


def link_labels(data: bytes, off: int, ethertype: int) -> tuple[str, ...]:
    """The labels of the link-level wrappers from an EtherType at ``off`` down to IPv4/IPv6 (the decoder's own
    steps, for a caller that walked those headers itself); raises like :func:`step`."""
    labels: list[str] = []
    layer, value, end = Layer.ETHERTYPE, ethertype, len(data)
    while layer not in (Layer.IPV4, Layer.IPV6):
        layer, value, off, label = step(layer, value, data, off, end)
        if label is not None:
            labels.append(label)
    return tuple(labels)


#: ``struct tpacket_auxdata`` (linux/if_packet.h): status, len, snaplen, mac, net, vlan_tci, vlan_tpid.
_AUXDATA_SIZE = 20
_TP_STATUS_VLAN_VALID, _TP_STATUS_VLAN_TPID_VALID = 0x10, 0x40


def reinsert_vlan(frame: bytes, auxdata: bytes) -> bytes:
    """An Ethernet frame read from an ``AF_PACKET`` socket with its 802.1Q/802.1ad tag put back: Linux moves a
    received frame's outer tag into the packet's metadata before packet sockets see it and reports it in
    ``PACKET_AUXDATA`` (``tp_vlan_tci``, ``tp_vlan_tpid``); libpcap puts it back the same way. Unchanged when
    the auxdata has no tag or the frame is too short."""
    if len(auxdata) < _AUXDATA_SIZE or len(frame) < 12:
        return frame
    status = int.from_bytes(auxdata[0:4], "little")
    if not status & _TP_STATUS_VLAN_VALID:
        return frame
    tci = int.from_bytes(auxdata[16:18], "little")
    tpid = int.from_bytes(auxdata[18:20], "little") if status & _TP_STATUS_VLAN_TPID_VALID else ETH_VLAN
    return frame[:12] + tpid.to_bytes(2, "big") + tci.to_bytes(2, "big") + frame[12:]
