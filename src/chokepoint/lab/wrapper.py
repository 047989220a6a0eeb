"""``python -m chokepoint.lab.wrapper gre|vlan ...``: the user-space ends of a wrapped lab link (lab/wrap.py).

The lab kernel has neither the 802.1Q VLAN driver nor GRE tunnels (``ip link add ... type vlan`` and ``ip tunnel
add ... mode gre`` both fail), but it has TUN/TAP and raw sockets, which is all an endpoint needs; the censor in
between is an ordinary router that forwards what it gets:

- ``gre``: a TUN device carrying the namespace's inner address; every IP packet the kernel routes into it leaves
  as a GRE packet (RFC 2784, key RFC 2890) to ``--remote`` over a raw IPv4 socket (the kernel writes the outer
  header), and every GRE packet from ``--remote`` with the key has its inner packet written back to the TUN;
- ``vlan``: a TAP device carrying the addresses the link had; every frame the kernel sends to it leaves on
  ``--link`` with an 802.1Q tag (VLAN ``--vid``), and every frame tagged with that VLAN received on ``--link`` (the
  tag comes back from packet-socket metadata, :func:`chokepoint.packet.decap.reinsert_vlan`) enters the TAP
  untagged. Untagged frames on ``--link`` are ignored.

Started by ``lab up --wrap`` through ``LabState.start`` (so ``lab down`` stops it); ``--addr``/``--route`` are
configured on the device once it exists, then ``ready`` is printed. Runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import select
import signal
import socket
import struct
import sys

from chokepoint.lab import system
from chokepoint.packet.decap import ETH_VLAN, reinsert_vlan

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_TAP, IFF_NO_PI = 0x0001, 0x0002, 0x1000
ETH_P_ALL = 0x0003
SOL_PACKET, PACKET_AUXDATA, PACKET_IGNORE_OUTGOING = 263, 8, 23
GRE_PROTO = 47
GRE_KEY_FLAG = 0x2000
BUFFER = 1 << 16


def open_tun(name: str, tap: bool) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), (IFF_TAP if tap else IFF_TUN) | IFF_NO_PI))
    return fd


def configure(device: str, addresses: list[str], routes: list[str], mtu: int | None = None) -> None:
    commands = [["link", "set", device, "up", *(["mtu", str(mtu)] if mtu else [])]]
    commands += [["addr", "add", addr, "dev", device, *(["nodad"] if ":" in addr else [])] for addr in addresses]
    commands += [["route", "replace", *route.split()] for route in routes]
    system.ip_batch(commands)


def gre_packet(inner: bytes, key: int) -> bytes:
    protocol = 0x0800 if inner[0] >> 4 == 4 else 0x86DD
    return struct.pack("!HHI", GRE_KEY_FLAG, protocol, key) + inner


def gre_inner(outer: bytes, key: int) -> bytes | None:
    """The inner packet of an IPv4/GRE packet as a raw socket returns it, or None when it is not ours."""
    header = (outer[0] & 0x0F) * 4
    gre = outer[header:]
    if len(gre) < 8 or int.from_bytes(gre[:2], "big") != GRE_KEY_FLAG or int.from_bytes(gre[4:8], "big") != key:
        return None
    return gre[8:]


def run_gre(args: argparse.Namespace, stop: list[bool]) -> None:
    tun = open_tun(args.device, tap=False)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, GRE_PROTO)
    configure(args.device, args.addr, args.route, args.mtu)
    print("ready", flush=True)
    while not stop[0]:
        readable, _, _ = select.select([tun, raw], [], [], 0.2)
        if tun in readable:
            inner = os.read(tun, BUFFER)
            if inner and inner[0] >> 4 in (4, 6):
                raw.sendto(gre_packet(inner, args.key), (args.remote, 0))
        if raw in readable:
            outer, (source, _) = raw.recvfrom(BUFFER)
            inner = gre_inner(outer, args.key) if source == args.remote else None
            if inner:
                os.write(tun, inner)


def run_vlan(args: argparse.Namespace, stop: list[bool]) -> None:
    tap = open_tun(args.device, tap=True)
    link = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    link.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    link.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
    link.bind((args.link, ETH_P_ALL))
    configure(args.device, args.addr, args.route)
    tag = struct.pack("!HH", ETH_VLAN, args.vid & 0x0FFF)
    print("ready", flush=True)
    while not stop[0]:
        readable, _, _ = select.select([tap, link], [], [], 0.2)
        if tap in readable:
            frame = os.read(tap, BUFFER)
            if len(frame) >= 14:
                link.send(frame[:12] + tag + frame[12:])
        if link in readable:
            frame, ancillary, _flags, _addr = link.recvmsg(BUFFER, socket.CMSG_SPACE(20))
            for level, kind, aux in ancillary:
                if level == SOL_PACKET and kind == PACKET_AUXDATA:
                    frame = reinsert_vlan(frame, aux)
            if len(frame) >= 18 and frame[12:14] == tag[:2] and frame[14:16] == tag[2:]:
                os.write(tap, frame[:12] + frame[16:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.lab.wrapper", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    gre = sub.add_parser("gre")
    gre.add_argument("--remote", required=True)
    gre.add_argument("--key", type=int, required=True)
    gre.add_argument("--mtu", type=int, default=None)
    vlan = sub.add_parser("vlan")
    vlan.add_argument("--link", required=True)
    vlan.add_argument("--vid", type=int, required=True)
    for p in (gre, vlan):
        p.add_argument("--device", required=True)
        p.add_argument("--addr", action="append", default=[], help="address/prefix for the device (repeatable)")
        p.add_argument("--route", action="append", default=[], help="a route, as 'ip route replace' takes it")
    args = parser.parse_args(argv)
    stop = [False]
    signal.signal(signal.SIGTERM, lambda *_: stop.__setitem__(0, True))
    try:
        (run_gre if args.kind == "gre" else run_vlan)(args, stop)
    except (OSError, system.CommandError) as exc:
        print(f"wrapper: {exc}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
