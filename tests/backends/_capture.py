"""Capture IP packets on one interface (AF_PACKET) for the backend tests; run inside a namespace.

``python _capture.py IFACE SECONDS PORT`` prints ``ready``, then one JSON line per IPv4/IPv6 TCP or UDP packet
that has PORT as source or destination port: ``{"t": monotonic, "out": bool, "ip": hex}``, until SECONDS pass.
"""

from __future__ import annotations

import json
import socket
import sys
import time

ETH_P_ALL = 3
PACKET_OUTGOING = 4


def ports(ip: bytes) -> tuple[int, int, int] | None:
    """(protocol, sport, dport) of a TCP/UDP packet without extension headers, else None."""
    if ip[0] >> 4 == 4:
        proto, off = ip[9], (ip[0] & 15) * 4
    elif ip[0] >> 4 == 6:
        proto, off = ip[6], 40
    else:
        return None
    if proto not in (6, 17) or len(ip) < off + 4:
        return None
    return proto, int.from_bytes(ip[off : off + 2], "big"), int.from_bytes(ip[off + 2 : off + 4], "big")


def main() -> None:
    iface, seconds, port = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, ETH_P_ALL))
    deadline = time.monotonic() + seconds
    print("ready", flush=True)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            frame, addr = sock.recvfrom(1 << 17)
        except TimeoutError:
            break
        if frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
            continue
        ip = frame[14:]
        found = ports(ip)
        if found is None or port not in found[1:]:
            continue
        print(json.dumps({"t": time.monotonic(), "out": addr[2] == PACKET_OUTGOING, "ip": ip.hex()}), flush=True)


if __name__ == "__main__":
    main()
