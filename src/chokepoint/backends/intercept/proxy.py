"""The proxy of one censor: accepts redirected connections, peeks at the client's first bytes, asks the
profile, then splices, resets, holds or intercepts (see the package docstring)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import ssl
import struct
import sys
import tempfile
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from chokepoint.backends.intercept.ca import CensorCA, Forged, cert_names
from chokepoint.backends.intercept.common import (
    CA_CERT_FILE,
    CACHE_SIZE,
    CHUNK,
    HANDSHAKE_TIMEOUT,
    HOLD_SECONDS,
    PEEK_MAX,
    PEEK_TIMEOUT,
    STATS_FILE,
    UPSTREAM_TIMEOUT,
    Address,
)
from chokepoint.backends.intercept.decide import FlowDecider, hello_state, so_original_dst, tcp_header_len
from chokepoint.backends.intercept.tls_server import TlsServerSide
from chokepoint.lab.ca import write_atomic
from chokepoint.output.eve import eve_timestamp, flow_id
from chokepoint.policy.verdict import Action, Verdict


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _take(task: asyncio.Task) -> bytes | None:
    """Cancel a pending read; the bytes it got if it completed meanwhile."""
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    if task.cancelled():
        return None
    return task.result() if task.exception() is None else None


def _alpn_offer(hello: Any) -> list[str]:
    """The client's ALPN names that Python's ssl can offer upstream (printable ASCII)."""
    return [name for name in getattr(hello, "alpn", ()) if name and name.isascii() and name.isprintable()]


@dataclass(slots=True)
class _Conn:
    client: Address
    server: Address
    decider: FlowDecider


class InterceptProxy:
    """The proxy of one censor: listens, decides per connection with the profile's policy, splices or
    intercepts (see the module docstring). All of it runs in one asyncio loop.

    ``emit`` gets every event record (the daemon appends them to ``events.jsonl``); ``original_dst`` maps an
    accepted socket to where the client meant to go (``SO_ORIGINAL_DST`` in the lab; tests on loopback pass
    their own)."""

    def __init__(
        self,
        profile: Any,
        ca: CensorCA,
        *,
        emit: Callable[[dict[str, Any]], None] | None = None,
        original_dst: Callable[[Any], Address] = so_original_dst,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        peek_timeout: float = PEEK_TIMEOUT,
        upstream_timeout: float = UPSTREAM_TIMEOUT,
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        hold_seconds: float = HOLD_SECONDS,
        state_dir: Path | None = None,
    ) -> None:
        self.profile = profile
        self.ca = ca
        self.emit = emit
        self.original_dst = original_dst
        self.rng = random.Random(seed)
        self.clock = clock
        self.peek_timeout = peek_timeout
        self.upstream_timeout = upstream_timeout
        self.handshake_timeout = handshake_timeout
        self.hold_seconds = hold_seconds
        self.state_dir = Path(state_dir) if state_dir else None
        self.counters: Counter[str] = Counter()
        self.listening: list[Address] = []
        self._servers: list[asyncio.base_events.Server] = []
        self._contexts: OrderedDict[tuple[str, str | None], ssl.SSLContext] = OrderedDict()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._tasks: set[asyncio.Task] = set()
        self.started = clock()

    # -- lifecycle --------------------------------------------------------------------------------------
    async def start(self, listen: Iterable[Address]) -> list[Address]:
        """Listen on every (host, port) (port 0: any); returns the bound addresses."""
        self._tmp = tempfile.TemporaryDirectory(prefix="cpk-intercept-")
        for host, port in listen:
            server = await asyncio.start_server(self._accepted, host, port, reuse_address=True)
            self._servers.append(server)
            self.listening += [s.getsockname()[:2] for s in server.sockets]
        return self.listening

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            await server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def stats(self, *, running: bool = True) -> dict[str, Any]:
        return {
            "running": running,
            "pid": os.getpid(),
            "profile": self.profile.name,
            "started": self.started,
            "updated": self.clock(),
            "listening": [list(a) for a in self.listening],
            "ca": {
                "subject": self.ca.certificate.subject.rfc4514_string(),
                "file": str(self.state_dir / CA_CERT_FILE) if self.state_dir else None,
            },
            "counters": dict(self.counters),
        }

    def write_stats(self, *, running: bool = True) -> None:
        if self.state_dir is None:
            return
        target = self.state_dir / STATS_FILE
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.stats(running=running), indent=1, sort_keys=True))
        os.replace(tmp, target)

    # -- one connection ---------------------------------------------------------------------------------
    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            await self._connection(reader, writer)
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters["connections"] += 1
        sock = writer.get_extra_info("socket")
        client = tuple(writer.get_extra_info("peername")[:2])
        try:
            server = self.original_dst(sock)
        except OSError as exc:
            self._error("original_dst_errors", f"no original destination for {client}: {exc}")
            _reset(writer)
            return
        if tuple(server) == tuple(writer.get_extra_info("sockname")[:2]):
            self._error("not_redirected", f"{client} connected to the proxy itself")
            _reset(writer)
            return
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(server[0], server[1]), self.upstream_timeout
            )
        except (TimeoutError, OSError):
            self.counters["upstream_connect_errors"] += 1
            _reset(writer)  # the server refused or did not answer: the client's connection ends too
            return
        decider = FlowDecider(
            self.profile,
            client,
            server,
            rng=random.Random(self.rng.getrandbits(64)),
            clock=self.clock,
            header_len=tcp_header_len(sock),
        )
        conn = _Conn(client, server, decider)
        try:
            await self._serve(conn, reader, writer, up_reader, up_writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):  # a reset or timeout on either side
            self.counters["relay_errors"] += 1
            _reset(writer)
            _reset(up_writer)
        finally:
            if not up_writer.is_closing():
                up_writer.close()

    async def _peek(
        self, reader: asyncio.StreamReader, up_reader: asyncio.StreamReader, decider: FlowDecider
    ) -> tuple[bytes, bytes, str]:
        """Client bytes until the decision can be made (a whole ClientHello, or bytes that are not one, or the
        server spoke, or an end, the byte limit or the timeout), then fed to the decider: (client bytes,
        server bytes, why the peek stopped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.peek_timeout
        received, from_server = bytearray(), b""
        up_task = asyncio.ensure_future(up_reader.read(CHUNK))
        c_task: asyncio.Task | None = None
        why = "timeout"
        try:
            while (left := deadline - loop.time()) > 0:
                c_task = asyncio.ensure_future(reader.read(CHUNK))
                done, _ = await asyncio.wait({c_task, up_task}, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                data = c_task.result() if c_task in done else await _take(c_task)
                c_task = None
                if data:
                    received += data
                if up_task.done():
                    from_server = up_task.result()
                    why = "server-first" if from_server else "server-eof"
                    break
                if data == b"":
                    why = "client-eof"
                    break
                if data is None:
                    continue
                state = hello_state(bytes(received))
                if state != "partial":
                    why = state
                    break
                if len(received) >= PEEK_MAX:
                    why = "peek-limit"
                    break
        finally:
            if c_task is not None:
                await _take(c_task)
            if not up_task.done():
                late = await _take(up_task)
                if late:  # the server spoke just as the peek ended: it must reach the client
                    from_server = late
        # The engine gets the bytes as a client's MSS-sized segments: a socket does not show the real ones.
        decider.client_data(bytes(received))
        decider.server_data(from_server)
        return bytes(received), from_server, why

    async def _serve(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        received, from_server, why = await self._peek(reader, up_reader, conn.decider)
        verdict = conn.decider.verdict
        action = verdict.action if verdict is not None else Action.ALLOW
        self.counters[f"verdict:{action.value}"] += 1
        if action is Action.TLS_INTERCEPT and conn.decider.hello is not None and not from_server:
            await self._intercept(conn, verdict, received, reader, writer, up_reader, up_writer)
        elif action is Action.RESET:
            self._record(conn, verdict, "reset", notes=["an RST from the proxy's socket"])
            self.counters["reset"] += 1
            _reset(writer)
            _reset(up_writer)
        elif action in (Action.DROP, Action.BLOCKPAGE, Action.DNS_FORGE, Action.ICMP_UNREACHABLE):
            self._record(
                conn,
                verdict,
                "drop",
                notes=[f"{action.value} enforced by the intercept proxy as a silent hold of {self.hold_seconds:g} s"],
            )
            self.counters["held"] += 1
            _reset(up_writer)
            await self._hold(reader)
        else:
            if verdict is not None and action is not Action.ALLOW:
                note = (
                    "no ClientHello to intercept"
                    if action is Action.TLS_INTERCEPT
                    else f"{action.value} is not enforced by the intercept proxy"
                )
                self._record(conn, verdict, "allow", notes=[f"{note}: spliced untouched"])
            self.counters["spliced"] += 1
            await self._splice(received, from_server, reader, writer, up_reader, up_writer)

    async def _hold(self, reader: asyncio.StreamReader) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.hold_seconds
        with contextlib.suppress(asyncio.TimeoutError, OSError):
            while (left := deadline - loop.time()) > 0:
                if not await asyncio.wait_for(reader.read(CHUNK), left):
                    return

    async def _splice(
        self,
        received: bytes,
        from_server: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        """Both directions byte for byte, half-closes passed on; a reset on one side resets the other."""
        if received:
            up_writer.write(received)
        if from_server:
            writer.write(from_server)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> int:
            moved = 0
            while data := await src.read(CHUNK):
                dst.write(data)
                await dst.drain()
                moved += len(data)
            if dst.can_write_eof() and not dst.is_closing():
                dst.write_eof()
            return moved

        up, down = asyncio.ensure_future(pipe(reader, up_writer)), asyncio.ensure_future(pipe(up_reader, writer))
        done, pending = await asyncio.wait({up, down}, return_when=asyncio.FIRST_EXCEPTION)
        failed = [t for t in done if t.exception() is not None]
        if failed:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            _reset(writer)
            _reset(up_writer)
            return
        self.counters["spliced_bytes"] += len(received) + len(from_server) + up.result() + down.result()

    async def _intercept(
        self,
        conn: _Conn,
        verdict: Verdict,
        received: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        hello = conn.decider.hello
        details: dict[str, Any] = {"sni": hello.sni, "alpn_offered": list(getattr(hello, "alpn", ()))}
        # 1. the real server first: its certificate is what gets copied
        upstream_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        upstream_ctx.check_hostname = False
        upstream_ctx.verify_mode = ssl.CERT_NONE
        offer = _alpn_offer(hello)
        if offer:
            upstream_ctx.set_alpn_protocols(offer)
        try:
            await up_writer.start_tls(
                upstream_ctx, server_hostname=hello.sni or None, ssl_handshake_timeout=self.handshake_timeout
            )
            tls_up = up_writer.get_extra_info("ssl_object")
            real = x509.load_der_x509_certificate(tls_up.getpeercert(binary_form=True))
        except (TimeoutError, OSError, ValueError, TypeError) as exc:
            self.counters["upstream_tls_errors"] += 1
            details.update(outcome="upstream-failed", error=f"{type(exc).__name__}: {exc}")
            self._record(conn, verdict, "intercept", intercept=details)
            _reset(writer)
            return
        selected = tls_up.selected_alpn_protocol()
        forged = self.ca.forge(real)
        details.update(
            upstream=cert_names(real),
            forged=cert_names(forged.certificate)
            | {"sha256": forged.fingerprint, "serial": f"{forged.certificate.serial_number:x}"},
            alpn=selected,
        )
        # 2. the client's handshake, with the forgery
        down = TlsServerSide(self._server_context(forged, selected), reader, writer, received)
        try:
            await asyncio.wait_for(down.handshake(), self.handshake_timeout)
        except (TimeoutError, ssl.SSLError, OSError) as exc:
            self.counters["client_rejected"] += 1
            reason = getattr(exc, "reason", None) or type(exc).__name__
            details.update(outcome="client-rejected", error=str(reason))
            self._record(conn, verdict, "intercept", intercept=details)
            return
        self.counters["intercepted"] += 1
        details.update(outcome="client-accepted", tls_version=down.tls.version())
        self._record(conn, verdict, "intercept", intercept=details)
        # 3. plaintext both ways until either side closes
        moved = Counter()

        async def client_to_server() -> None:
            while data := await down.read():
                up_writer.write(data)
                await up_writer.drain()
                moved["c2s"] += len(data)

        async def server_to_client() -> None:
            while data := await up_reader.read(CHUNK):
                await down.write(data)
                moved["s2c"] += len(data)

        tasks = {asyncio.ensure_future(client_to_server()), asyncio.ensure_future(server_to_client())}
        try:
            done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if task.exception() is not None and not isinstance(task.exception(), (OSError, ssl.SSLError)):
                    raise task.exception()
        finally:
            self.counters["intercepted_bytes"] += moved["c2s"] + moved["s2c"]
            await down.close()
            writer.close()

    def _server_context(self, forged: Forged, alpn: str | None) -> ssl.SSLContext:
        """A server context with the forged leaf (cached); ``load_cert_chain`` wants files, so the PEMs are
        written to the proxy's private temporary directory, loaded and removed."""
        key = (forged.fingerprint, alpn)
        context = self._contexts.get(key)
        if context is not None:
            self._contexts.move_to_end(key)
            return context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tmp = Path(self._tmp.name if self._tmp else tempfile.gettempdir())
        cert_file, key_file = tmp / f"{forged.fingerprint}.pem", tmp / f"{forged.fingerprint}.key"
        write_atomic(key_file, forged.key_pem, 0o600)
        write_atomic(cert_file, forged.cert_pem, 0o600)
        try:
            context.load_cert_chain(cert_file, key_file)
        finally:
            cert_file.unlink(missing_ok=True)
            key_file.unlink(missing_ok=True)
        if alpn:
            context.set_alpn_protocols([alpn])
        self._contexts[key] = context
        if len(self._contexts) > CACHE_SIZE:
            self._contexts.popitem(last=False)
        return context

    # -- events -----------------------------------------------------------------------------------------
    def _record(
        self,
        conn: _Conn,
        verdict: Verdict,
        flow_action: str,
        *,
        notes: Sequence[str] = (),
        intercept: dict[str, Any] | None = None,
    ) -> None:
        flow = conn.decider.flow
        trigger = conn.decider.trigger
        record: dict[str, Any] = {
            "timestamp": eve_timestamp(self.clock()),
            "flow_id": flow_id(flow),
            "event_type": "chokepoint",
            "src_ip": conn.client[0],
            "src_port": conn.client[1],
            "dest_ip": conn.server[0],
            "dest_port": conn.server[1],
            "proto": "TCP",
            "app_proto": flow.app_proto,
            "chokepoint": {
                "profile": self.profile.name,
                "mode": "inline",
                "enforced_by": "intercept-proxy",
                "action": verdict.action.value,
                "rule": verdict.rule_id,
                "reason": verdict.reason,
                "evidence": [e.to_json() for e in verdict.evidence],
                "trigger": {
                    "direction": verdict.direction or "c2s",
                    "packet": trigger.index if trigger is not None else None,
                    "dropped": False,
                },
                "flow_action": flow_action,
                "notes": list(notes),
                "injected": [],
            },
        }
        if intercept is not None:
            record["chokepoint"]["intercept"] = intercept
        self.counters["events"] += 1
        if self.emit is not None:
            self.emit(record)

    def _error(self, counter: str, message: str) -> None:
        self.counters[counter] += 1
        print(f"intercept: {message}", file=sys.stderr, flush=True)
