"""The client's side of an interception: a TLS server session on memory BIOs, so the ClientHello bytes
already read while peeking are replayed into it."""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from chokepoint.backends.intercept.common import CHUNK


class TlsServerSide:
    """The client's TLS session, terminated with a forged certificate over an ``ssl.SSLObject`` (memory BIOs),
    so the ClientHello bytes already read while peeking are replayed into it."""

    def __init__(
        self, context: ssl.SSLContext, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, received: bytes
    ) -> None:
        self._in, self._out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self._in.write(received)
        self.tls = context.wrap_bio(self._in, self._out, server_side=True)
        self.reader, self.writer = reader, writer
        self._eof = False

    async def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _fill(self) -> None:
        data = await self.reader.read(CHUNK)
        if data:
            self._in.write(data)
        else:
            self._eof = True
            self._in.write_eof()

    async def handshake(self) -> None:
        """Raises ``ssl.SSLError`` when the client refuses (an alert such as unknown_ca) or hangs up."""
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                await self._flush()
                if self._eof:
                    raise ssl.SSLEOFError("the client closed the connection during the handshake") from None
                await self._fill()
        await self._flush()

    async def read(self) -> bytes:
        """Plaintext from the client; b"" at its close_notify or end of stream."""
        while True:
            try:
                data = self.tls.read(CHUNK)
            except ssl.SSLWantReadError:
                await self._flush()
                if self._eof:
                    return b""
                await self._fill()
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""
            await self._flush()
            return data

    async def write(self, data: bytes) -> None:
        self.tls.write(data)
        await self._flush()

    async def close(self) -> None:
        with contextlib.suppress(ssl.SSLError):
            self.tls.unwrap()
        with contextlib.suppress(OSError):
            await self._flush()
