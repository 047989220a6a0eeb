"""A SYN flood from distinct spoofed sources, for the lab's flood measurements (``bench/inline_flood.py``).

``python -m chokepoint.lab.synflood DST PORT --rate N --seconds S [--sources 10.0.0.0/8] [--batch 256]``, run in
the lab's client namespace (root: a raw socket). Every packet is a TCP SYN from the next address of
``--sources`` (and a source port that changes with it), so each one is a new flow to the censor, never
answered (the censor has no route back to the spoofed sources). Destinations are limited to the lab's
benchmark range (198.18.0.0/15, RFC 2544): this is a lab load generator, not a tool for other networks.

Speed without scapy: a batch of ``--batch`` packets lives in one ``bytearray``; per packet only the source
address, source port and TCP checksum are rewritten in place (the checksum incrementally, from the header's
fixed words), and the whole batch goes out in one ``sendmmsg(2)`` call (through ``ctypes``) on an
``IPPROTO_RAW`` socket (the kernel fills in the IP checksum and length). About 300-600k packets/s on one
core here. Pacing is open loop: batches are sent whenever the total is behind ``rate * elapsed``
(``--rate 0``: as fast as possible). The last line of output is JSON: packets sent, send errors, seconds, rate.
"""

from __future__ import annotations

import argparse
import ctypes
import ipaddress
import json
import os
import socket
import struct
import sys
import time

#: The lab's addresses (RFC 2544 benchmarking range): the only destinations accepted.
LAB_RANGE = ipaddress.ip_network("198.18.0.0/15")
HEADER = 40  # IPv4 (20) + TCP (20), no options
_SYN = 0x02
_WINDOW = 64240
_SEQ = 0x5EED0000


class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.POINTER(_IOVec)),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _fold(total: int) -> int:
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def tcp_checksum(src: int, dst: int, segment: bytes) -> int:
    """The TCP checksum of ``segment`` (its checksum field zero) between IPv4 addresses ``src`` and ``dst``."""
    data = struct.pack("!IIBBH", src, dst, 0, socket.IPPROTO_TCP, len(segment)) + segment
    if len(data) % 2:
        data += b"\0"
    return ~_fold(sum(struct.unpack(f"!{len(data) // 2}H", data))) & 0xFFFF


class SynBatch:
    """``size`` SYN packets to ``dst:port`` in one buffer, refilled from the next sources by :meth:`fill`."""

    def __init__(self, dst: str, port: int, size: int, sources: str = "10.0.0.0/8") -> None:
        address = ipaddress.ip_address(dst)
        if address.version != 4 or address not in LAB_RANGE:
            raise ValueError(f"destination {dst}: only the lab's IPv4 addresses ({LAB_RANGE}) are accepted")
        net = ipaddress.ip_network(sources)
        if net.version != 4 or net.num_addresses < 256:
            raise ValueError(f"sources {sources}: an IPv4 network of at least 256 addresses")
        self.dst, self.port, self.size = int(address), port, size
        self.first, self.count = int(net.network_address) + 1, net.num_addresses - 2
        self.next = 0
        self.buffer = bytearray(HEADER * size)
        # IPv4: version/IHL, TOS, length (kernel), id (kernel), DF, TTL 64, TCP, checksum (kernel), src, dst
        ip = struct.pack("!BBHHHBBHII", 0x45, 0, HEADER, 0, 0x4000, 64, socket.IPPROTO_TCP, 0, 0, self.dst)
        # TCP: sport (per packet), dport, seq, ack, offset 5 words, SYN, window, checksum (per packet), urgent
        tcp = struct.pack("!HHIIBBHHH", 0, port, _SEQ, 0, 5 << 4, _SYN, _WINDOW, 0, 0)
        for i in range(size):
            self.buffer[i * HEADER : (i + 1) * HEADER] = ip + tcp
        # the checksum's sum over everything but the source address and port
        fixed = struct.unpack("!10H", tcp)
        self._base = (self.dst >> 16) + (self.dst & 0xFFFF) + socket.IPPROTO_TCP + 20 + sum(fixed)

    def fill(self) -> None:
        """Rewrite every packet of the buffer with the next source address and port."""
        buf, base, first, count = self.buffer, self._base, self.first, self.count
        pack = struct.pack_into
        n = self.next
        for i in range(self.size):
            src = first + n % count
            sport = 1024 + (n * 7919) % 64000
            total = base + (src >> 16) + (src & 0xFFFF) + sport
            total = (total & 0xFFFF) + (total >> 16)
            total = (total & 0xFFFF) + (total >> 16)
            offset = i * HEADER
            pack("!I", buf, offset + 12, src)
            pack("!H", buf, offset + 20, sport)
            pack("!H", buf, offset + 36, ~total & 0xFFFF)
            n += 1
        self.next = n


class Sender:
    """One ``sendmmsg`` per batch on a raw socket."""

    def __init__(self, batch: SynBatch) -> None:
        self.batch = batch
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.sendmmsg.argtypes = [ctypes.c_int, ctypes.POINTER(_MMsgHdr), ctypes.c_uint, ctypes.c_int]
        size = batch.size
        self._raw = (ctypes.c_char * len(batch.buffer)).from_buffer(batch.buffer)
        base = ctypes.addressof(self._raw)
        # sockaddr_in: family, port, address, zero padding
        self._name = ctypes.create_string_buffer(
            struct.pack("=H", socket.AF_INET) + struct.pack("!HI", 0, batch.dst) + bytes(8), 16
        )
        self._iov = (_IOVec * size)(*[_IOVec(base + i * HEADER, HEADER) for i in range(size)])
        self._msgs = (_MMsgHdr * size)()
        for i in range(size):
            hdr = self._msgs[i].msg_hdr
            hdr.msg_name = ctypes.cast(self._name, ctypes.c_void_p)
            hdr.msg_namelen = 16
            hdr.msg_iov = ctypes.pointer(self._iov[i])
            hdr.msg_iovlen = 1

    def send(self) -> tuple[int, int]:
        """Send the batch: (packets sent, errno of a short send or 0)."""
        sent = self.libc.sendmmsg(self.sock.fileno(), self._msgs, self.batch.size, 0)
        if sent < 0:
            return 0, ctypes.get_errno()
        return sent, 0 if sent == self.batch.size else ctypes.get_errno()

    def close(self) -> None:
        del self._raw
        self.sock.close()


def flood(dst: str, port: int, rate: float, seconds: float, *, batch: int = 256, sources: str = "10.0.0.0/8") -> dict:
    """Send SYNs at ``rate`` packets/s (0: as fast as possible) for ``seconds``; returns what was sent."""
    packets = SynBatch(dst, port, batch, sources)
    sender = Sender(packets)
    sent = errors = 0
    began = time.perf_counter()
    try:
        while True:
            elapsed = time.perf_counter() - began
            if elapsed >= seconds:
                break
            if rate and sent >= rate * elapsed:
                time.sleep(min(0.002, (sent - rate * elapsed) / rate))
                continue
            packets.fill()
            count, err = sender.send()
            sent += count
            errors += err != 0
    finally:
        sender.close()
    elapsed = time.perf_counter() - began
    return {"sent": sent, "send_errors": errors, "seconds": round(elapsed, 3), "rate": round(sent / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.lab.synflood", description=__doc__.split("\n\n")[0])
    parser.add_argument("dst", help="destination address (in 198.18.0.0/15)")
    parser.add_argument("port", type=int)
    parser.add_argument("--rate", type=float, default=10000.0, help="packets per second (0: as fast as possible)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=256, help="packets per sendmmsg call")
    parser.add_argument("--sources", default="10.0.0.0/8", help="the spoofed sources, one address per packet")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        parser.error("needs root (a raw socket)")
    try:
        result = flood(args.dst, args.port, args.rate, args.seconds, batch=args.batch, sources=args.sources)
    except ValueError as exc:
        parser.error(str(exc))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
