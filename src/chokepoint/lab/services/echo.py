"""TCP and UDP echo (RFC 862): whatever arrives goes straight back ("unknown protocol" and
fully-encrypted-traffic tests, which need a server that never interprets the bytes)."""

from __future__ import annotations

import asyncio
import logging

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 300.0
READ_SIZE = 64 * 1024


async def handle_echo_tcp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Echo until the client closes its side (or goes idle), then close ours."""
    try:
        while data := await asyncio.wait_for(reader.read(READ_SIZE), IDLE_TIMEOUT):
            writer.write(data)
            await writer.drain()
    except OSError as exc:  # resets and idle timeouts end only this connection
        log.debug("echo/tcp %s: %r", writer.get_extra_info("peername"), exc)
    finally:
        writer.close()


class EchoUdpProtocol(asyncio.DatagramProtocol):
    """Every datagram is sent back to its source from the address it arrived on."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("echo/udp: %s", exc)
