"""TCP connect probe, recorded as an OONI df-005 `tcp_connect` entry.

A censor's answer to a SYN shows up here: an injected RST as `connection_refused` (the kernel cannot tell
it from a closed port), a dropped SYN as `generic_timeout_error`, an ICMP unreachable as
`host_unreachable` / `network_unreachable`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from chokepoint.probe.measurement import TCPConnect, failure_from_exception
from chokepoint.probe.probes.common import ProbeContext, ProbeError, family_of, ip_literal

__all__ = ["Connection", "connect"]


@dataclass(frozen=True, slots=True)
class Connection:
    """The df-005 record and, when it succeeded, the connected socket (the caller closes it)."""

    record: TCPConnect
    sock: socket.socket | None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def connect(
    ctx: ProbeContext, ip: str, port: int, *, tags: Iterable[str] = ("depth=0",), transaction_id: int | None = None
) -> Connection:
    """Connect to `ip`:`port` within the context's timeout."""
    address = ip_literal(ip)
    if address is None or not 0 < port < 65536:
        raise ProbeError(f"cannot connect to {ip!r} port {port!r}: not an IP address and port")
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    t0 = ctx.clock.now()
    sock = socket.socket(family_of(address), socket.SOCK_STREAM)
    try:
        sock.settimeout(ctx.timeout)
        sock.connect((address, port))
    except OSError as exc:
        sock.close()
        record = TCPConnect(
            address, port, failure_from_exception(exc), False, ctx.clock.now(), tuple(tags), txid, extra={"t0": t0}
        )
        return Connection(record, None)
    record = TCPConnect(address, port, None, True, ctx.clock.now(), tuple(tags), txid, extra={"t0": t0})
    return Connection(record, sock)
