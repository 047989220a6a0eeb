"""Raw IP sockets that put crafted packets on the wire (the censor's injector).

IPv4: ``socket(AF_INET, SOCK_RAW, IPPROTO_RAW)``, which implies ``IP_HDRINCL`` (raw(7)): the packet is sent
as built, with any source address. Linux still fills in the IPv4 total length and header checksum and, if
the packet's IP ID is **0**, a kernel-chosen IP ID (``raw_send_hdrinc``). Censors that send IP ID 0 (the
GFW's type-I injector, IEEE S&P 2025) are therefore sent below IP: an IPv4 packet with ID 0 whose
destination is a directly connected neighbour with a known link address (``/proc/net/arp``) goes out
through an ``AF_PACKET`` socket on that interface, byte for byte; without one it falls back to the raw
socket (counted as ``ipid0-kernel-filled``).
IPv6: ``socket(AF_INET6, SOCK_RAW, IPPROTO_RAW)``, which implies ``IPV6_HDRINCL`` (Linux >= 4.5; raw(7),
ipv6(7)); the hop limit, flow label and source are sent as built.

The injected packets leave through the censor's OUTPUT path (never FORWARD), so they are not queued to
the censor itself. Needs CAP_NET_RAW in the censor's network namespace.
"""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass


class InjectError(OSError):
    """A packet could not be injected (not an IP packet, or the kernel refused it)."""


@dataclass(frozen=True, slots=True)
class Sent:
    """One injected packet: the IP version, the destination it was routed to and the bytes sent."""

    version: int
    destination: str
    size: int


def destination_of(packet: bytes) -> tuple[int, str]:
    """(IP version, destination address as text) of a full IP packet; ``InjectError`` when it is none."""
    if not packet:
        raise InjectError("empty packet")
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return 4, socket.inet_ntop(socket.AF_INET, packet[16:20])
    if version == 6 and len(packet) >= 40:
        return 6, socket.inet_ntop(socket.AF_INET6, packet[24:40])
    raise InjectError(f"not a complete IPv4/IPv6 header (version {version}, {len(packet)} bytes)")


class Injector:
    """Sends full IP packets; one raw socket per family, opened on first use, counted per family."""

    def __init__(self, *, arp_table: str = "/proc/net/arp") -> None:
        self._sockets: dict[int, socket.socket] = {}
        self._link: socket.socket | None = None
        self._arp_table = arp_table
        self.counters: Counter[str] = Counter()

    def _socket(self, version: int) -> socket.socket:
        sock = self._sockets.get(version)
        if sock is None:
            family = socket.AF_INET if version == 4 else socket.AF_INET6
            sock = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self._sockets[version] = sock
        return sock

    def send(self, packet: bytes) -> Sent:
        """Inject one IP packet; raises ``InjectError`` (counted) when it cannot be sent."""
        version, dst = destination_of(packet)
        if version == 4 and packet[4:6] == b"\0\0":
            neighbour = self.neighbour(dst)
            if neighbour is not None:
                return self._send_link(packet, dst, *neighbour)
            self.counters["ipid0-kernel-filled"] += 1
        try:
            sock = self._socket(version)
            sent = sock.sendto(packet, (dst, 0))
        except OSError as exc:
            self.counters[f"error-v{version}"] += 1
            raise InjectError(exc.errno, f"inject to {dst}: {exc.strerror or exc}") from exc
        self.counters[f"sent-v{version}"] += 1
        return Sent(version, dst, sent)

    def neighbour(self, dst: str) -> tuple[str, bytes] | None:
        """(interface, link address) of a complete ARP entry for ``dst``, or None."""
        try:
            with open(self._arp_table, encoding="ascii") as table:
                lines = table.read().splitlines()[1:]
        except OSError:
            return None
        for line in lines:
            fields = line.split()  # IP address, HW type, Flags, HW address, Mask, Device
            if len(fields) >= 6 and fields[0] == dst and int(fields[2], 16) & 0x2:
                try:
                    return fields[5], bytes.fromhex(fields[3].replace(":", ""))
                except ValueError:
                    return None
        return None

    def _send_link(self, packet: bytes, dst: str, iface: str, mac: bytes) -> Sent:
        try:
            if self._link is None:
                self._link = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(0x0800))
            sent = self._link.sendto(packet, (iface, 0x0800, 0, 0, mac))
        except OSError as exc:
            self.counters["error-link"] += 1
            raise InjectError(exc.errno, f"inject to {dst} on {iface}: {exc.strerror or exc}") from exc
        self.counters["sent-v4-link"] += 1
        return Sent(4, dst, sent)

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        if self._link is not None:
            self._link.close()
            self._link = None

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["InjectError", "Injector", "Sent", "destination_of"]
