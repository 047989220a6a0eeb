"""HTTP/1.1 (RFC 9112) server for the lab origin app, in clear or over TLS.

Deliberately small: request line + headers (at most 64 KiB, 100 fields), request bodies by
Content-Length or chunked coding (read and discarded), persistent connections, HEAD. Anything that
breaks the grammar gets a 400 and the connection is closed; a client that disconnects or goes idle
only ends its own connection.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging

from chokepoint.lab.services import app

log = logging.getLogger(__name__)

MAX_HEAD = 64 * 1024
MAX_FIELDS = 100
IDLE_TIMEOUT = 30.0
BODY_TIMEOUT = 60.0
#: StreamReader buffer limit: one header line may not exceed it.
STREAM_LIMIT = MAX_HEAD
_HEX = frozenset(b"0123456789abcdefABCDEF")
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class BadRequest(Exception):
    """The client broke the HTTP/1.1 grammar; answered with 400 and a closed connection."""


async def handle_connection(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, scheme: str = "http"
) -> None:
    """Serve requests on one connection until close, error or idleness."""
    peer = writer.get_extra_info("peername")
    try:
        while True:
            try:
                head = await asyncio.wait_for(_read_head(reader), IDLE_TIMEOUT)
                if head is None:
                    return
                request, headers = head
                if any(v.strip().lower() == "100-continue" for v in headers.get("expect", [])):
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                await asyncio.wait_for(_discard_body(reader, headers), BODY_TIMEOUT)
            except BadRequest as exc:
                log.info("%s %s: bad request: %s", scheme, peer, exc)
                await _send(writer, app.error_response(400, str(exc)), head_only=False, keep_alive=False)
                return
            keep_alive = _keep_alive(request.protocol, headers)
            response = await app.respond(request)
            log.info(
                "%s %s %s %s host=%r -> %d", scheme, peer, request.method, request.target, request.host, response.status
            )
            await _send(
                writer,
                response,
                head_only=request.method == "HEAD",
                keep_alive=keep_alive,
                http10=request.protocol == "HTTP/1.0",
            )
            if not keep_alive:
                return
    except (asyncio.IncompleteReadError, OSError) as exc:  # OSError: resets, timeouts, TLS alerts
        log.debug("%s %s: connection ended: %r", scheme, peer, exc)
    finally:
        writer.close()


async def _readline(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("line too long") from exc


async def _read_head(reader: asyncio.StreamReader) -> tuple[app.Request, dict[str, list[str]]] | None:
    """Request line and header fields; ``None`` on a clean EOF before any byte."""
    lines: list[bytes] = []
    total = 0
    while True:
        try:
            line = await _readline(reader)
        except asyncio.IncompleteReadError as exc:
            if not lines and not exc.partial.strip():
                return None
            raise
        total += len(line)
        if total > MAX_HEAD:
            raise BadRequest("request head too large")
        line = line.rstrip(b"\r\n")
        if not lines and not line:
            continue  # RFC 9112 2.2: ignore at least one empty line before the request line
        if not line:
            break
        lines.append(line)
        if len(lines) > MAX_FIELDS + 1:
            raise BadRequest("too many header fields")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN or not parts[1]:
        raise BadRequest("malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise BadRequest("unsupported HTTP version")
    if any(byte < 0x21 or byte >= 0x7F for byte in target):
        raise BadRequest("malformed request target")
    headers: dict[str, list[str]] = {}
    for raw in lines[1:]:
        name, sep, value = raw.partition(b":")
        if not sep or not name or not set(name) <= _TOKEN:
            raise BadRequest("malformed header field")
        headers.setdefault(name.decode("ascii").lower(), []).append(value.strip(b" \t").decode("latin-1"))
    hosts = headers.get("host", [])
    if len(hosts) > 1:
        raise BadRequest("more than one Host header")
    request = app.Request(
        method=method.decode("ascii"),
        target=target.decode("ascii"),
        host=hosts[0] if hosts else "",
        protocol=version.decode("ascii"),
    )
    return request, headers


async def _discard_body(reader: asyncio.StreamReader, headers: dict[str, list[str]]) -> None:
    if "transfer-encoding" in headers:
        codings = [c.strip().lower() for v in headers["transfer-encoding"] for c in v.split(",")]
        if codings[-1:] != ["chunked"]:
            raise BadRequest("unsupported transfer coding")
        await _discard_chunked(reader)
        return
    lengths = {v.strip() for v in headers.get("content-length", [])}
    if not lengths:
        return
    if len(lengths) != 1:
        raise BadRequest("conflicting Content-Length")
    text = lengths.pop()
    if not (text.isascii() and text.isdigit()):
        raise BadRequest("malformed Content-Length")
    await _skip(reader, int(text))


async def _skip(reader: asyncio.StreamReader, count: int) -> None:
    """Read and drop ``count`` bytes without buffering them all."""
    while count:
        chunk = await reader.read(min(count, 1 << 16))
        if not chunk:
            raise asyncio.IncompleteReadError(b"", count)
        count -= len(chunk)


async def _discard_chunked(reader: asyncio.StreamReader) -> None:
    while True:
        size_text = (await _readline(reader)).split(b";", 1)[0].strip()
        if not size_text or not set(size_text) <= _HEX or len(size_text) > 16:
            raise BadRequest("malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            while (await _readline(reader)).strip():  # trailer fields
                pass
            return
        await _skip(reader, size)
        if await reader.readexactly(2) != b"\r\n":
            raise BadRequest("chunk not followed by CRLF")


def _keep_alive(protocol: str, headers: dict[str, list[str]]) -> bool:
    tokens = {t.strip().lower() for v in headers.get("connection", []) for t in v.split(",")}
    if protocol == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def _send(
    writer: asyncio.StreamWriter, response: app.Response, *, head_only: bool, keep_alive: bool, http10: bool = False
) -> None:
    lines = [f"HTTP/1.1 {response.status} {response.reason}", f"Date: {email.utils.formatdate(usegmt=True)}"]
    lines += [f"{name}: {value}" for name, value in response.headers]
    if response.has_body:
        lines.append(f"Content-Length: {response.length}")
    if not keep_alive:
        lines.append("Connection: close")
    elif http10:
        lines.append("Connection: keep-alive")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if response.has_body and not head_only:
        if response.stream is None:
            writer.write(response.body)
        else:
            async for chunk in response.stream():
                writer.write(chunk)
                await writer.drain()
    await writer.drain()
