"""Packet builders for tests and the demo capture: correct headers and checksums, not a hot path.

IP packets are returned without a link header; wrap them with :func:`ethernet` (or :func:`linux_sll`,
:func:`linux_sll2`, :func:`loopback`) to write them to a capture. Addresses are text ("192.0.2.1", "2001:db8::1")
or packed bytes. Checksums: RFC 1071; pseudo-headers RFC 9293 §3.1 / RFC 768 (IPv4) and RFC 8200 §8.1 (IPv6).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable, Sequence

from chokepoint.packet.record import ACK, FIN, ICMPV6, PSH, SYN, TCP, UDP

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_PPPOE_SESSION = 0x0800, 0x86DD, 0x8100, 0x8864
CLIENT_MAC = bytes.fromhex("020000000001")
SERVER_MAC = bytes.fromhex("020000000002")


def address(value: str | bytes) -> bytes:
    """Packed 4- or 16-byte address from text or bytes."""
    if isinstance(value, bytes):
        if len(value) not in (4, 16):
            raise ValueError(f"a packed address has 4 or 16 bytes, not {len(value)}")
        return value
    return ipaddress.ip_address(value).packed


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def pseudo_header(src: bytes, dst: bytes, proto: int, length: int) -> bytes:
    """The IPv4 (RFC 9293 §3.1) or IPv6 (RFC 8200 §8.1) pseudo-header that transport checksums cover."""
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, length)
    return src + dst + struct.pack("!IxxxB", length, proto)


def tcp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    window: int = 65535,
    options: bytes = b"",
    urgent: int = 0,
) -> bytes:
    """A TCP segment with its checksum over the IPv4/IPv6 pseudo-header; options are padded with EOL.
    ``flags`` may use bits 8-11 (AE and the reserved bits, ``record.AE``/``record.RESERVED``): they go to the
    low nibble of the data-offset byte."""
    src_b, dst_b = address(src), address(dst)
    options += b"\0" * (-len(options) % 4)
    header_len = 20 + len(options)
    if header_len > 60:
        raise ValueError("TCP options longer than 40 bytes")
    if not 0 <= flags <= 0xFFF:
        raise ValueError(f"TCP flags 0x{flags:x} do not fit in 12 bits")
    header = (
        struct.pack(
            "!HHIIBBHHH",
            sport,
            dport,
            seq & 0xFFFFFFFF,
            ack & 0xFFFFFFFF,
            (header_len // 4) << 4 | flags >> 8,
            flags & 0xFF,
            window,
            0,
            urgent,
        )
        + options
    )
    segment = header + payload
    csum = checksum(pseudo_header(src_b, dst_b, TCP, len(segment)) + segment)
    return segment[:16] + struct.pack("!H", csum) + segment[18:]


def udp(src: str | bytes, dst: str | bytes, sport: int, dport: int, payload: bytes = b"") -> bytes:
    """A UDP datagram with its checksum (0 is sent as 0xFFFF, RFC 768)."""
    src_b, dst_b = address(src), address(dst)
    datagram = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    csum = checksum(pseudo_header(src_b, dst_b, UDP, len(datagram)) + datagram) or 0xFFFF
    return datagram[:6] + struct.pack("!H", csum) + datagram[8:]


def icmp(
    type_: int,
    code: int,
    rest: bytes = b"\0\0\0\0",
    body: bytes = b"",
    src: str | bytes | None = None,
    dst: str | bytes | None = None,
) -> bytes:
    """An ICMP message (ICMPv6 when ``src``/``dst`` are given and IPv6: its checksum covers a pseudo-header)."""
    message = struct.pack("!BBH", type_, code, 0) + rest + body
    prefix = b""
    if src is not None and dst is not None and len(address(src)) == 16:
        prefix = pseudo_header(address(src), address(dst), ICMPV6, len(message))
    csum = checksum(prefix + message)
    return message[:2] + struct.pack("!H", csum) + message[4:]


def ipv4(
    src: str | bytes,
    dst: str | bytes,
    proto: int,
    payload: bytes,
    ttl: int = 64,
    ip_id: int = 0,
    df: bool = False,
    options: bytes = b"",
    tos: int = 0,
    more_fragments: bool = False,
    frag_offset: int = 0,
) -> bytes:
    """An IPv4 packet with a valid header checksum; ``options`` are padded with EOL; offset in bytes."""
    if frag_offset % 8:
        raise ValueError("fragment offset must be a multiple of 8 bytes")
    options += b"\0" * (-len(options) % 4)
    header_len = 20 + len(options)
    if header_len > 60:
        raise ValueError("IPv4 options longer than 40 bytes")
    flags = (0x4000 if df else 0) | (0x2000 if more_fragments else 0) | (frag_offset // 8)
    header = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x40 | header_len // 4,
            tos,
            header_len + len(payload),
            ip_id,
            flags,
            ttl,
            proto,
            0,
            address(src),
            address(dst),
        )
        + options
    )
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + payload


def ipv6(
    src: str | bytes,
    dst: str | bytes,
    next_header: int,
    payload: bytes,
    hop_limit: int = 64,
    traffic_class: int = 0,
    flow_label: int = 0,
) -> bytes:
    """An IPv6 packet; ``payload`` starts with the header ``next_header`` names (extension or upper layer)."""
    first = (6 << 28) | (traffic_class << 20) | flow_label
    return struct.pack("!IHBB", first, len(payload), next_header, hop_limit) + address(src) + address(dst) + payload


def ipv4_tcp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
    df: bool = True,
    window: int = 65535,
    options: bytes = b"",
) -> bytes:
    """An IPv4 packet carrying one TCP segment (``options`` are TCP options)."""
    segment = tcp(src, dst, sport, dport, seq, ack, flags, payload, window, options)
    return ipv4(src, dst, TCP, segment, ttl=ttl, ip_id=ip_id, df=df)


def ipv4_udp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    payload: bytes = b"",
    ttl: int = 64,
    ip_id: int = 0,
    df: bool = False,
) -> bytes:
    """An IPv4 packet carrying one UDP datagram."""
    return ipv4(src, dst, UDP, udp(src, dst, sport, dport, payload), ttl=ttl, ip_id=ip_id, df=df)


def ipv6_tcp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    hop_limit: int = 64,
    window: int = 65535,
    options: bytes = b"",
) -> bytes:
    """An IPv6 packet carrying one TCP segment."""
    return ipv6(src, dst, TCP, tcp(src, dst, sport, dport, seq, ack, flags, payload, window, options), hop_limit)


def ipv6_udp(
    src: str | bytes,
    dst: str | bytes,
    sport: int,
    dport: int,
    payload: bytes = b"",
    hop_limit: int = 64,
) -> bytes:
    """An IPv6 packet carrying one UDP datagram."""
    return ipv6(src, dst, UDP, udp(src, dst, sport, dport, payload), hop_limit)


def ip_ethertype(ip_packet: bytes) -> int:
    """The EtherType for an IP packet, from its version nibble."""
    version = ip_packet[0] >> 4 if ip_packet else 0
    if version == 4:
        return ETH_IPV4
    if version == 6:
        return ETH_IPV6
    raise ValueError(f"not an IP packet (version {version})")


def ethernet(
    payload: bytes,
    ethertype: int | None = None,
    src: bytes = CLIENT_MAC,
    dst: bytes = SERVER_MAC,
    vlans: Sequence[tuple[int, int]] = (),
) -> bytes:
    """An Ethernet II frame; ``ethertype`` defaults from the IP version; ``vlans`` is (TPID, VLAN id) outer
    first (802.1Q 0x8100, 802.1ad 0x88a8)."""
    if ethertype is None:
        ethertype = ip_ethertype(payload)
    header = dst + src
    for tpid, vid in vlans:
        header += struct.pack("!HH", tpid, vid & 0x0FFF)
    return header + struct.pack("!H", ethertype) + payload


def pppoe_session(ip_packet: bytes, session_id: int = 1) -> bytes:
    """A PPPoE session-stage payload (RFC 2516) carrying an IP packet: put it in :func:`ethernet` with
    EtherType 0x8864."""
    ppp_protocol = 0x0021 if ip_ethertype(ip_packet) == ETH_IPV4 else 0x0057
    return struct.pack("!BBHHH", 0x11, 0, session_id, len(ip_packet) + 2, ppp_protocol) + ip_packet


def mpls(payload: bytes, labels: Sequence[int], *, pseudowire: bool = False, ttl: int = 64) -> bytes:
    """An MPLS label stack (RFC 3032), outermost label first, bottom-of-stack set on the last; ``pseudowire``:
    ``payload`` is an Ethernet frame behind a zero control word (RFC 4385, RFC 4448). EtherType 0x8847."""
    if not labels:
        raise ValueError("an MPLS stack has at least one label")
    stack = b"".join(
        struct.pack("!I", (label & 0xFFFFF) << 12 | (0x100 if i == len(labels) - 1 else 0) | ttl)
        for i, label in enumerate(labels)
    )
    return stack + (b"\0\0\0\0" if pseudowire else b"") + payload


def ppp(ip_packet: bytes, *, hdlc: bool = False, compressed: bool = False, direction: int | None = None) -> bytes:
    """A PPP frame (RFC 1661) for link types 9/50 (``hdlc``: 0xff 0x03 first, RFC 1662; ``compressed``: a
    one-byte protocol field) or, with ``direction`` (0 received, 1 sent), link type 204."""
    protocol = 0x21 if ip_ethertype(ip_packet) == ETH_IPV4 else 0x57
    field = bytes([protocol]) if compressed else struct.pack("!H", protocol)
    framed = (b"\xff\x03" if hdlc or direction is not None else b"") + field + ip_packet
    return framed if direction is None else bytes([direction]) + framed


def gre(
    payload: bytes,
    protocol: int | None = None,
    *,
    key: int | None = None,
    sequence: int | None = None,
    checksum_present: bool = False,
    version: int = 0,
) -> bytes:
    """A GRE header (RFC 2784; key and sequence number RFC 2890) and its payload; ``protocol`` defaults from
    the IP version (0x6558 for an Ethernet frame: transparent Ethernet bridging). IP protocol 47."""
    if protocol is None:
        protocol = ip_ethertype(payload)
    flags = (0x8000 if checksum_present else 0) | (0x2000 if key is not None else 0)
    flags |= (0x1000 if sequence is not None else 0) | (version & 7)
    header = struct.pack("!HH", flags, protocol)
    if checksum_present:
        header += struct.pack("!HH", checksum(header + payload), 0)
    if key is not None:
        header += struct.pack("!I", key)
    if sequence is not None:
        header += struct.pack("!I", sequence)
    return header + payload


def vxlan(frame: bytes, vni: int) -> bytes:
    """A VXLAN header (RFC 7348: the I flag, a 24-bit VNI) and the Ethernet frame it carries: a UDP payload
    for port 4789."""
    return struct.pack("!B3xI", 0x08, (vni & 0xFFFFFF) << 8) + frame


def gtpu(
    ip_packet: bytes, teid: int, *, sequence: int | None = None, extensions: Sequence[tuple[int, bytes]] = ()
) -> bytes:
    """A GTP-U G-PDU (3GPP TS 29.281: version 1, protocol type GTP, message 0xff) carrying an IP packet: a UDP
    payload for port 2152. ``extensions``: (type, content) pairs, each content padded to 4n - 2 bytes."""
    optional = b""
    flags = 0x30
    if sequence is not None or extensions:
        flags |= (0x02 if sequence is not None else 0) | (0x04 if extensions else 0)
        optional = struct.pack("!HBB", sequence or 0, 0, extensions[0][0] if extensions else 0)
        for i, (_, content) in enumerate(extensions):
            content += b"\0" * (-(len(content) + 2) % 4)
            following = extensions[i + 1][0] if i + 1 < len(extensions) else 0
            optional += bytes([(len(content) + 2) // 4]) + content + bytes([following])
    body = optional + ip_packet
    return struct.pack("!BBHI", flags, 0xFF, len(body), teid & 0xFFFFFFFF) + body


def ip_in_ip(inner: bytes, outer_src: str | bytes, outer_dst: str | bytes) -> bytes:
    """``inner`` (IPv4 or IPv6) in an IPv4 or IPv6 packet (by the outer addresses): protocol 4 for IPv4
    inside (RFC 2003, RFC 2473), 41 for IPv6 inside (RFC 4213, RFC 2473)."""
    proto = 4 if ip_ethertype(inner) == ETH_IPV4 else 41
    if len(address(outer_src)) == 4:
        return ipv4(outer_src, outer_dst, proto, inner)
    return ipv6(outer_src, outer_dst, proto, inner)


def linux_sll(
    payload: bytes,
    protocol: int | None = None,
    packet_type: int = 0,
    arphrd: int = 1,
    link_address: bytes = CLIENT_MAC,
) -> bytes:
    """A Linux cooked-mode (SLL, link type 113) header before ``payload`` (``arphrd`` 1 is Ethernet,
    772 loopback)."""
    if protocol is None:
        protocol = ip_ethertype(payload)
    return struct.pack("!HHH8sH", packet_type, arphrd, len(link_address), link_address, protocol) + payload


def linux_sll2(payload: bytes, protocol: int | None = None, ifindex: int = 1, packet_type: int = 0) -> bytes:
    """A Linux cooked-mode v2 (SLL2, link type 276) header before ``payload``."""
    if protocol is None:
        protocol = ip_ethertype(payload)
    return struct.pack("!HHIHBB8s", protocol, 0, ifindex, 1, packet_type, 6, CLIENT_MAC + b"\0\0") + payload


def loopback(payload: bytes, family: int | None = None, byteorder: str = "<") -> bytes:
    """A BSD loopback header (link type 0 in host order ``byteorder``; 108 uses ``">"``)."""
    if family is None:
        family = 2 if ip_ethertype(payload) == ETH_IPV4 else 24
    return struct.pack(byteorder + "I", family) + payload


def fragment_ipv4(ip_packet: bytes, mtu: int) -> list[bytes]:
    """Split an IPv4 packet into fragments of at most ``mtu`` bytes (RFC 791 §3.2): options whose copy bit
    is set go into every fragment, the rest only into the first. A packet that fits is returned alone."""
    header_len = (ip_packet[0] & 0x0F) * 4
    total = struct.unpack_from("!H", ip_packet, 2)[0]
    if total <= mtu:
        return [ip_packet]
    src, dst = ip_packet[12:16], ip_packet[16:20]
    tos, ip_id, frag, ttl, proto = ip_packet[1], *struct.unpack_from("!HHBB", ip_packet, 4)
    if frag & 0x4000:
        raise ValueError("the packet has DF set")
    base_offset, more_after = (frag & 0x1FFF) * 8, bool(frag & 0x2000)
    options = ip_packet[20:header_len]
    copied = _copied_options(options)
    data = ip_packet[header_len:total]
    fragments = []
    pos = 0
    while pos < len(data):
        opts = options if pos == 0 else copied
        room = (mtu - 20 - len(opts) - (-len(opts) % 4)) // 8 * 8
        if room <= 0:
            raise ValueError(f"MTU {mtu} leaves no room for fragment data")
        chunk = data[pos : pos + room]
        last = pos + len(chunk) >= len(data)
        fragments.append(
            ipv4(
                src,
                dst,
                proto,
                chunk,
                ttl=ttl,
                ip_id=ip_id,
                options=opts,
                tos=tos,
                more_fragments=more_after or not last,
                frag_offset=base_offset + pos,
            )
        )
        pos += len(chunk)
    return fragments


def _copied_options(options: bytes) -> bytes:
    """The IPv4 options with the copied flag (0x80) set."""
    kept = b""
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == 0:
            break
        if kind == 1:
            pos += 1
            continue
        length = options[pos + 1] if pos + 1 < len(options) else 0
        if length < 2:
            break
        if kind & 0x80:
            kept += options[pos : pos + length]
        pos += length
    return kept


def fragment_ipv6(ip_packet: bytes, mtu: int, ident: int) -> list[bytes]:
    """Split an IPv6 packet into fragments of at most ``mtu`` bytes (RFC 8200 §4.5). The unfragmentable part
    is the fixed header and a leading hop-by-hop header; everything after goes into the fragments."""
    next_header = ip_packet[6]
    unfragmentable = 40
    if next_header == 0:
        next_header = ip_packet[40]
        unfragmentable += (ip_packet[41] + 1) * 8
    head = bytearray(ip_packet[:unfragmentable])
    data = ip_packet[unfragmentable:]
    room = (mtu - unfragmentable - 8) // 8 * 8
    if room <= 0:
        raise ValueError(f"MTU {mtu} leaves no room for fragment data")
    fragments = []
    for pos in range(0, len(data), room):
        chunk = data[pos : pos + room]
        more = pos + room < len(data)
        frag_header = struct.pack("!BxHI", next_header, pos | more, ident)
        packet = bytearray(head) + frag_header + chunk
        struct.pack_into("!H", packet, 4, len(packet) - 40)
        if unfragmentable > 40:
            packet[40] = 44
        else:
            packet[6] = 44
        fragments.append(bytes(packet))
    return fragments


def tcp_conversation(
    client: str,
    server: str,
    cport: int,
    sport: int,
    c2s_payloads: Sequence[bytes],
    s2c_payloads: Sequence[bytes],
    start_ts: float,
    *,
    step: float = 0.001,
    client_isn: int = 1000,
    server_isn: int = 5000,
    link: bool = False,
) -> list[tuple[float, bytes]]:
    """A whole TCP connection: handshake, request/response turns with correct seq/ack (each data segment
    acknowledged by the peer), and a client-initiated FIN close. Turn i sends ``c2s_payloads[i]`` then
    ``s2c_payloads[i]`` (empty or missing entries are skipped). Returns (timestamp, packet) pairs: bare IP
    packets like the other builders (write them with link type 101), or Ethernet frames when ``link`` is
    true. IPv6 when the addresses are; packets are ``step`` seconds apart from ``start_ts``."""
    v6 = len(address(client)) == 16
    segment: Callable[..., bytes] = ipv6_tcp if v6 else ipv4_tcp
    out: list[tuple[float, bytes]] = []
    next_ip_id = {True: 1, False: 1}  # per sender

    def send(from_client: bool, seq: int, ack: int, flags: int, payload: bytes = b"") -> None:
        src, dst, sp, dp = (client, server, cport, sport) if from_client else (server, client, sport, cport)
        if v6:
            packet = segment(src, dst, sp, dp, seq, ack, flags, payload)
        else:
            packet = segment(src, dst, sp, dp, seq, ack, flags, payload, ip_id=next_ip_id[from_client])
            next_ip_id[from_client] += 1
        if link:
            macs = (CLIENT_MAC, SERVER_MAC) if from_client else (SERVER_MAC, CLIENT_MAC)
            packet = ethernet(packet, src=macs[0], dst=macs[1])
        out.append((start_ts + len(out) * step, packet))

    c_seq, s_seq = client_isn, server_isn
    send(True, c_seq, 0, SYN)
    send(False, s_seq, c_seq + 1, SYN | ACK)
    c_seq, s_seq = c_seq + 1, s_seq + 1
    send(True, c_seq, s_seq, ACK)
    for turn in range(max(len(c2s_payloads), len(s2c_payloads))):
        request = c2s_payloads[turn] if turn < len(c2s_payloads) else b""
        if request:
            send(True, c_seq, s_seq, PSH | ACK, request)
            c_seq += len(request)
            send(False, s_seq, c_seq, ACK)
        response = s2c_payloads[turn] if turn < len(s2c_payloads) else b""
        if response:
            send(False, s_seq, c_seq, PSH | ACK, response)
            s_seq += len(response)
            send(True, c_seq, s_seq, ACK)
    send(True, c_seq, s_seq, FIN | ACK)
    c_seq += 1
    send(False, s_seq, c_seq, FIN | ACK)
    s_seq += 1
    send(True, c_seq, s_seq, ACK)
    return out
