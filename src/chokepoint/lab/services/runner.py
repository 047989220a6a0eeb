"""Start every lab service of one role in one asyncio loop, report readiness, stop on SIGTERM.

Roles: ``server`` (HTTP, HTTPS, HTTP/3, echo on the web addresses; DNS on the DNS addresses) and
``control`` (DNS only: the control resolver outside the censor's path, same answers). Each service
binds every configured address separately, so UDP answers leave from the address that was asked and
an HTTPS client without SNI gets a certificate for the address it connected to. When everything is
bound, a JSON "ready file" lists the endpoints (``launch`` and the tests wait for it).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import ipaddress
import json
import logging
import os
import resource
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from chokepoint.lab.ca import LabCA
from chokepoint.lab.services import echo, h3, http1, resolver
from chokepoint.lab.services.certs import TlsContexts

log = logging.getLogger(__name__)

ROLES = ("server", "control")
#: IPv6 addresses can be "tentative" for a moment after they are added (RFC 4862 DAD): retry binding.
BIND_RETRY_SECONDS = 5.0
SSL_HANDSHAKE_TIMEOUT = 10.0
LISTEN_BACKLOG = 1024


class ServicesError(RuntimeError):
    """A service could not start (bad option, address not available, port in use, CA unusable)."""


@dataclass(frozen=True, slots=True)
class ServicesConfig:
    role: str
    state_dir: Path
    web_addresses: tuple[str, ...] = ()
    dns_addresses: tuple[str, ...] = ()
    http_port: int = 80
    https_port: int = 443
    quic_port: int = 443  # 0: no HTTP/3
    dns_port: int = 53
    echo_ports: tuple[int, ...] = (7, 9000)
    dns_map: Path | None = None
    ca_days: float = 1.0
    ready_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Endpoint:
    service: str  # http, https, h3, dns, echo
    transport: str  # tcp or udp
    address: str
    port: int


@dataclass(slots=True)
class Services:
    """The running services of one role; ``start()`` binds everything, ``close()`` releases it."""

    config: ServicesConfig
    endpoints: list[Endpoint] = field(default_factory=list)
    _closers: list[Callable[[], Awaitable[None] | None]] = field(default_factory=list)

    async def start(self) -> list[Endpoint]:
        config = self.config
        if config.role not in ROLES:
            raise ServicesError(f"unknown role {config.role!r}; expected one of {', '.join(ROLES)}")
        for address in (*config.web_addresses, *config.dns_addresses):
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise ServicesError(f"bind address {address!r} is not an IP address") from None
        _raise_fd_limit()
        try:
            table = resolver.AnswerTable.load(config.dns_map) if config.dns_map else resolver.AnswerTable()
        except resolver.DnsMapError as exc:
            raise ServicesError(str(exc)) from exc
        responder = resolver.DnsResponder(table)
        try:
            for address in config.dns_addresses:
                await self._udp("dns", address, config.dns_port, functools.partial(resolver.DnsUdpProtocol, responder))
                await self._tcp("dns", address, config.dns_port, functools.partial(resolver.handle_dns_tcp, responder))
            if config.web_addresses:
                await self._start_web()
        except BaseException:
            await self.close()
            raise
        if config.ready_file is not None:
            _write_json(
                config.ready_file,
                {"role": config.role, "pid": os.getpid(), "endpoints": [asdict(e) for e in self.endpoints]},
            )
        return self.endpoints

    async def _start_web(self) -> None:
        config = self.config
        try:
            ca = LabCA.load_or_create(config.state_dir, days=config.ca_days)
        except (OSError, ValueError) as exc:
            raise ServicesError(f"lab CA in {config.state_dir}: {exc}") from exc
        contexts = TlsContexts(ca)
        h3.check_aioquic_hooks()
        for address in config.web_addresses:
            await self._tcp(
                "http", address, config.http_port, functools.partial(http1.handle_connection, scheme="http")
            )
            await self._tcp(
                "https",
                address,
                config.https_port,
                functools.partial(http1.handle_connection, scheme="https"),
                ssl_context=contexts.listener_context(address),
            )
            if config.quic_port:
                sock = await _bind(address, config.quic_port, socket.SOCK_DGRAM)
                server = await h3.serve_h3(sock, ca, ca.leaf(address))
                self._closers.append(server.close)
                self.endpoints.append(Endpoint("h3", "udp", address, sock.getsockname()[1]))
            for port in config.echo_ports:
                await self._tcp("echo", address, port, echo.handle_echo_tcp)
                await self._udp("echo", address, port, echo.EchoUdpProtocol)

    async def _tcp(self, service: str, address: str, port: int, handler, *, ssl_context=None) -> None:
        sock = await _bind(address, port, socket.SOCK_STREAM)
        options = {"ssl": ssl_context, "ssl_handshake_timeout": SSL_HANDSHAKE_TIMEOUT} if ssl_context else {}
        server = await asyncio.start_server(
            handler, sock=sock, limit=http1.STREAM_LIMIT, backlog=LISTEN_BACKLOG, **options
        )
        self._closers.append(server.close)
        self.endpoints.append(Endpoint(service, "tcp", address, sock.getsockname()[1]))

    async def _udp(self, service: str, address: str, port: int, factory) -> None:
        sock = await _bind(address, port, socket.SOCK_DGRAM)
        transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(factory, sock=sock)
        self._closers.append(transport.close)
        self.endpoints.append(Endpoint(service, "udp", address, sock.getsockname()[1]))

    async def close(self) -> None:
        while self._closers:
            result = self._closers.pop()()
            if result is not None:
                await result
        if self.config.ready_file is not None:
            self.config.ready_file.unlink(missing_ok=True)


async def _bind(address: str, port: int, kind: int) -> socket.socket:
    """A non-blocking socket bound to ``address:port`` (TCP: SO_REUSEADDR; IPv6: V6ONLY)."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    what = f"{'tcp' if kind == socket.SOCK_STREAM else 'udp'} {address} port {port}"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BIND_RETRY_SECONDS
    while True:
        sock = socket.socket(family, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)
            sock.bind((address, port))
            return sock
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRNOTAVAIL and family == socket.AF_INET6 and loop.time() < deadline:
                await asyncio.sleep(0.1)
                continue
            raise ServicesError(f"cannot bind {what}: {exc.strerror or exc}") from exc


def _raise_fd_limit() -> None:
    """Several hundred listening sockets plus connections: lift the soft fd limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d: %s", soft, exc)


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


async def run(config: ServicesConfig, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set, or until SIGTERM/SIGINT when no event is given."""
    loop = asyncio.get_running_loop()
    if stop is None:
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
    services = Services(config)
    endpoints = await services.start()
    log.info(
        "%s services ready: %d endpoints on %s",
        config.role,
        len(endpoints),
        ", ".join(sorted({e.address for e in endpoints})),
    )
    try:
        await stop.wait()
    finally:
        log.info("%s services stopping", config.role)
        await services.close()
