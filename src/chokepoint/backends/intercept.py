"""TLS interception (``tls-intercept``): a transparent proxy that re-signs listed sites with the censor's own CA.

Modelled on Kazakhstan, July-August 2019 (Raman, Evdokimov, Wustrow, Halderman, Ensafi, "Investigating Large
Scale HTTPS Interception in Kazakhstan", IMC 2020; Censored Planet, "Kazakhstan's HTTPS Interception", 2019):
connections whose ClientHello named a listed SNI were terminated by the censor with a certificate issued by the
root "Qaznet Trust Network"; its subject names were copied from the real server's certificate, not from the SNI.
Clients without the root failed the handshake; clients that had installed it saw the censor's issuer.

Design (inline lab only; a mirror censor sees a copy and cannot terminate anything):

1. Redirect. When the profile has ``tls-intercept`` rules, the censor daemon starts this proxy as a child
   process in the censor namespace and the kernel program (:mod:`chokepoint.backends.kernel`) redirects the
   client side's new TCP connections to the ports (and destinations) those rules can match - a top-level
   ``server_port`` / ``server_ip`` condition, else port 443 (the lab's choice: the measurements were of HTTPS
   on 443; whether other ports were intercepted is not documented) - with ``nat PREROUTING REDIRECT``. Nothing
   else goes through the proxy; the rest of the traffic keeps the NFQUEUE path. A separate process, not a
   thread of the daemon: a compiled policy is not safe for concurrent use (one hyperscan scratch per database).
2. Peek. For each connection the proxy reads the original destination (``SO_ORIGINAL_DST``), connects to it
   (a refused or unreachable server ends the client's connection with an RST), and reads the client's bytes
   until its ClientHello is complete (reassembled across segments and records), the bytes are not TLS, the
   server speaks first, or :data:`PEEK_TIMEOUT` passes. The bytes are then fed to a private :class:`Engine` of
   the same profile as the TCP segments an inline censor would have seen (:class:`FlowDecider`: a synthetic
   handshake, then the client's bytes in MSS-sized segments), so the decision is the one the packet path
   reaches for a client that segments normally. A socket does not show the client's real segments, so
   segmentation tricks that defeat a profile's engine on the packet path (tiny segments past the inspection
   budget, no reassembly) do not defeat it through the proxy.
3. Act on the verdict. ``tls-intercept``: complete a TLS handshake with the real server first (the client's SNI
   and ALPN offer, no verification), read its certificate, issue a leaf from the censor's CA whose subject and
   subjectAltName are COPIED from it (the rest - key, serial, validity, extensions - is the CA's own; whether
   the 2019 forgeries copied more is UNVERIFIED), terminate the client's TLS with it (offering only the ALPN
   the server selected) and relay plaintext between the two sessions. No verdict, ``allow`` or ``log``: splice
   the bytes untouched to the original destination. ``reset``: an RST to the client (the proxy's own socket,
   not a crafted packet). ``drop`` and the other blocking actions: the connection is held silently
   (:data:`HOLD_SECONDS`). ``throttle``/``delay`` are not enforced here (spliced, noted in the event).
4. Record. Each enforced verdict writes an ``event_type: "chokepoint"`` record to ``events.jsonl`` (appended
   whole, beside the daemon's) with ``enforced_by: "intercept-proxy"``; an interception adds the real and the
   forged certificate's names and whether the client accepted the forgery. Counters go to
   ``intercept-stats.json`` every second.

Deviations a measurement could see: the proxy completes the client's TCP handshake before the server's, and
its upstream connection comes from the censor's own address (198.19.0.1 in the lab), not the client's.
The censor CA (``censor-ca.pem`` / ``censor-ca.key`` in the state directory) is separate from the lab CA the
client trusts. If the daemon dies (``kill -9``) the proxy dies with it while the redirect stays in the kernel:
connections to the redirected ports are then refused (fail-closed for them) until ``lab down``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import hashlib
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chokepoint.backends.kernel import Redirect
from chokepoint.dissect import tls
from chokepoint.dissect.errors import Malformed, NeedMoreData, NotThisProtocol
from chokepoint.engine import Engine
from chokepoint.output.eve import eve_timestamp, flow_id
from chokepoint.packet.record import ACK, PSH, SYN, TCP, Packet
from chokepoint.policy.conditions import AllOf, Atom
from chokepoint.policy.verdict import Action, Verdict

#: Where the proxy listens in the censor namespace (redirected connections arrive here).
DEFAULT_PORT = 14443
DEFAULT_INTERCEPT_PORTS: tuple[tuple[int, int], ...] = ((443, 443),)
CA_CERT_FILE = "censor-ca.pem"
CA_KEY_FILE = "censor-ca.key"
STATS_FILE = "intercept-stats.json"
EVENTS_FILE = "events.jsonl"
#: The censor root's names: the 2019 root's common name, an organisation that says it is the lab's imitation.
CA_COMMON_NAME = "Qaznet Trust Network"
CA_ORGANIZATION = "Chokepoint lab censor CA (imitation)"
CA_COUNTRY = "KZ"
CA_DAYS = 1.0
BACKDATE = datetime.timedelta(hours=1)

PEEK_TIMEOUT = 10.0  # seconds to wait for a complete ClientHello
PEEK_MAX = 16384  # client bytes read before deciding anyway (a ClientHello is far smaller)
UPSTREAM_TIMEOUT = 5.0  # connect to the original destination
HANDSHAKE_TIMEOUT = 10.0  # each TLS handshake (server side and client side)
HOLD_SECONDS = 120.0  # how long a dropped connection is held open without an answer
CHUNK = 65536
MSS = 1448  # synthetic segments fed to the engine (Ethernet MSS with timestamps)
STATS_INTERVAL = 1.0
_CACHE_SIZE = 1024

# linux/netfilter_ipv4.h SO_ORIGINAL_DST, linux/netfilter_ipv6/ip6_tables.h IP6T_SO_ORIGINAL_DST
SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
_TCPI_OPT_TIMESTAMPS = 1
_CLIENT_ISN, _SERVER_ISN = 0x1000, 0x8000

Address = tuple[str, int]


class InterceptError(Exception):
    """The intercept proxy cannot start (bad profile, port in use, no CA) or did not come up."""


# ---------------------------------------------------------------------------------------- the censor CA


@dataclass(frozen=True, slots=True)
class Forged:
    """A leaf issued by the censor CA for a real server certificate."""

    certificate: x509.Certificate
    cert_pem: bytes
    key_pem: bytes
    fingerprint: str  # SHA-256 of the DER, hex


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class CensorCA:
    """The censor's root ("Qaznet Trust Network"-like) and the forgeries it issues (cached per copied names).

    Separate from the lab CA (:mod:`chokepoint.lab.ca`): the lab's client trusts the lab CA, not this one."""

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: ec.EllipticCurvePrivateKey,
        *,
        leaf_days: float = CA_DAYS,
        cache_size: int = _CACHE_SIZE,
    ) -> None:
        if certificate.public_key().public_numbers() != private_key.public_key().public_numbers():
            raise InterceptError("the censor CA certificate does not match its private key")
        self.certificate = certificate
        self.private_key = private_key
        self.leaf_days = leaf_days
        self._ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())
        self._cache: OrderedDict[bytes, Forged] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def create(cls, *, common_name: str = CA_COMMON_NAME, days: float = CA_DAYS, **options: Any) -> CensorCA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, CA_COUNTRY),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, CA_ORGANIZATION),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key, **options)

    @classmethod
    def load_or_create(cls, directory: str | os.PathLike, **options: Any) -> CensorCA:
        """``censor-ca.pem`` / ``censor-ca.key`` in ``directory``, created (and saved) if absent or expired."""
        directory = Path(directory)
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            try:
                certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
                key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            except (OSError, ValueError) as exc:
                raise InterceptError(f"the censor CA in {directory} is unreadable: {exc}") from exc
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise InterceptError(f"the censor CA key in {directory} is not an EC key")
            if certificate.not_valid_after_utc > _now():
                return cls(certificate, key, **{k: v for k, v in options.items() if k != "days"})
        ca = cls.create(**options)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(key_path, ca.key_pem, 0o600)
        _write_atomic(cert_path, ca.cert_pem, 0o644)
        return ca

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def forge(self, real: x509.Certificate) -> Forged:
        """A leaf with ``real``'s subject and subjectAltName (copied as they are, criticality included),
        signed by this CA; cached per (subject, SAN) while valid."""
        try:
            san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        except x509.ExtensionNotFound:
            san = None
        cache_key = real.subject.public_bytes() + (san.value.public_bytes() if san is not None else b"")
        cached = self._cache.get(cache_key)
        if cached is not None and cached.certificate.not_valid_after_utc > _now():
            self._cache.move_to_end(cache_key)
            return cached
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(real.subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(min(now + datetime.timedelta(days=self.leaf_days), self.certificate.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=False,
                    crl_sign=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski), critical=False)
        )
        if san is not None:
            builder = builder.add_extension(san.value, critical=san.critical)
        certificate = builder.sign(self.private_key, hashes.SHA256())
        der = certificate.public_bytes(serialization.Encoding.DER)
        forged = Forged(
            certificate,
            certificate.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            hashlib.sha256(der).hexdigest(),
        )
        self._cache[cache_key] = forged
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return forged


def cert_names(certificate: x509.Certificate) -> dict[str, Any]:
    """Subject, issuer (RFC 4514 text) and subjectAltName entries of a certificate, for the event log."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n.value) for n in san]
    except x509.ExtensionNotFound:
        names = []
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "san": names,
    }


# ----------------------------------------------------------------------------------- which flows to redirect


def intercept_rules(policy: Any) -> list[Any]:
    """The compiled policy's ``tls-intercept`` rules."""
    return [rule for rule in policy.rules if rule.action is Action.TLS_INTERCEPT]


def _top_atoms(condition: Any) -> list[Atom]:
    if isinstance(condition, Atom):
        return [condition]
    if isinstance(condition, AllOf):
        return [c for c in condition.children if isinstance(c, Atom)]
    return []


def redirect_for(policy: Any, listen_port: int = DEFAULT_PORT) -> Redirect | None:
    """What the kernel must send to the proxy: the ports and destinations the intercept rules can match (a
    top-level ``server_port``/``server_ip`` ``in`` condition of each; otherwise port 443 and any destination),
    or None when the policy intercepts nothing."""
    rules = intercept_rules(policy)
    if not rules:
        return None
    ports: set[tuple[int, int]] = set()
    destinations: set[str] = set()
    any_destination = False
    for rule in rules:
        atoms = _top_atoms(rule.when)
        rule_ports = {tuple(r) for a in atoms if a.field == "server_port" and a.op == "in" for r in a.value}
        rule_dests = {d for a in atoms if a.field == "server_ip" and a.op == "in" for d in a.value}
        ports |= rule_ports or set(DEFAULT_INTERCEPT_PORTS)
        destinations |= rule_dests
        any_destination = any_destination or not rule_dests
    return Redirect(listen_port, tuple(sorted(ports)), () if any_destination else tuple(sorted(destinations)))


def so_original_dst(sock: Any) -> Address:
    """The destination a REDIRECTed connection was sent to, from conntrack (``SO_ORIGINAL_DST``)."""
    if sock.family == socket.AF_INET6:
        raw = sock.getsockopt(socket.IPPROTO_IPV6, IP6T_SO_ORIGINAL_DST, 28)
        port = int.from_bytes(raw[2:4], "big")
        return str(ipaddress.IPv6Address(raw[8:24])), port
    raw = sock.getsockopt(socket.IPPROTO_IP, SO_ORIGINAL_DST, 16)
    return str(ipaddress.IPv4Address(raw[4:8])), int.from_bytes(raw[2:4], "big")


def _tcp_header_len(sock: Any) -> int:
    """Data-segment TCP header length of this connection: 32 with timestamps (RFC 7323), else 20."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except (OSError, AttributeError):
        return 20
    return 32 if len(info) > 5 and info[5] & _TCPI_OPT_TIMESTAMPS else 20


# ------------------------------------------------------------------------------------------------ deciding


class FlowDecider:
    """One proxied connection as the packet path would have seen it, fed to a private engine of the profile:
    a synthetic three-way handshake, then each chunk of bytes as MSS-sized segments in order."""

    def __init__(
        self,
        profile: Any,
        client: Address,
        server: Address,
        *,
        rng: random.Random,
        clock: Callable[[], float] = time.time,
        header_len: int = 20,
    ) -> None:
        self.engine = Engine(profile, rng=rng)
        self.client, self.server = client, server
        self.packed = (ipaddress.ip_address(client[0]).packed, ipaddress.ip_address(server[0]).packed)
        self.version = 6 if len(self.packed[0]) == 16 else 4
        self.clock = clock
        self.header_len = header_len
        self.seq = [_CLIENT_ISN, _SERVER_ISN]
        self.index = 0
        self.flow: Any = None
        self.trigger: Packet | None = None
        self._segment(0, SYN)
        self._segment(1, SYN | ACK)
        self._segment(0, ACK)

    @property
    def verdict(self) -> Verdict | None:
        return self.flow.verdict

    @property
    def inspecting(self) -> bool:
        return self.flow.inspecting

    @property
    def hello(self) -> Any:
        """The dissected ClientHello (``chokepoint.dissect.tls.ClientHello``), once complete."""
        return self.flow.facts.tls if self.flow.facts is not None else None

    def client_data(self, data: bytes) -> None:
        self._data(0, data)

    def server_data(self, data: bytes) -> None:
        self._data(1, data)

    def _data(self, direction: int, data: bytes) -> None:
        for start in range(0, len(data), MSS):
            if not self.flow.inspecting:
                return
            self._segment(direction, PSH | ACK, data[start : start + MSS])

    def _segment(self, direction: int, flags: int, payload: bytes = b"") -> None:
        src, dst = self.packed if direction == 0 else self.packed[::-1]
        ends = (self.client, self.server) if direction == 0 else (self.server, self.client)
        tcp_len = 40 if flags & SYN else self.header_len
        self.index += 1
        pkt = Packet(
            ts=self.clock(),
            ip_version=self.version,
            src=src,
            dst=dst,
            proto=TCP,
            sport=ends[0][1],
            dport=ends[1][1],
            payload=payload,
            ttl=64,
            ip_len=(20 if self.version == 4 else 40) + tcp_len + len(payload),
            tcp_flags=flags,
            seq=self.seq[direction],
            ack=self.seq[1 - direction] if flags & ACK else 0,
            window=65535,
            tcp_header_len=tcp_len,
            index=self.index,
        )
        self.seq[direction] = (self.seq[direction] + len(payload) + (1 if flags & SYN else 0)) % (1 << 32)
        step = self.engine.step(pkt)
        self.flow = step.flow
        if step.decided_now:
            self.trigger = pkt


def hello_state(data: bytes) -> str:
    """``complete`` (a whole ClientHello), ``partial`` (a valid prefix) or ``other`` (not a ClientHello)."""
    try:
        tls.parse_client_hello_records(data)
    except NeedMoreData:
        return "partial"
    except (NotThisProtocol, Malformed):
        return "other"
    return "complete"


# ------------------------------------------------------------------------------------------- the TLS server


class _TlsServerSide:
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


# ----------------------------------------------------------------------------------------------- the proxy


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
            header_len=_tcp_header_len(sock),
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
        down = _TlsServerSide(self._server_context(forged, selected), reader, writer, received)
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
        _write_atomic(key_file, forged.key_pem, 0o600)
        _write_atomic(cert_file, forged.cert_pem, 0o600)
        try:
            context.load_cert_chain(cert_file, key_file)
        finally:
            cert_file.unlink(missing_ok=True)
            key_file.unlink(missing_ok=True)
        if alpn:
            context.set_alpn_protocols([alpn])
        self._contexts[key] = context
        if len(self._contexts) > _CACHE_SIZE:
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


# ------------------------------------------------------------------------------- running it: events, threads


class EventLog:
    """Appends event records to ``events.jsonl`` one whole line per ``write`` (O_APPEND), so the daemon's
    records and the proxy's never interleave."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def __call__(self, record: dict[str, Any]) -> None:
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class ProxyThread:
    """An :class:`InterceptProxy` on its own event loop in a background thread (tests, embedding):
    ``with ProxyThread(proxy, [("127.0.0.1", 0)]) as addresses: ...``."""

    def __init__(self, proxy: InterceptProxy, listen: Sequence[Address]) -> None:
        self.proxy = proxy
        self.listen = list(listen)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="intercept-proxy", daemon=True)

    def __enter__(self) -> list[Address]:
        self.thread.start()
        return asyncio.run_coroutine_threadsafe(self.proxy.start(self.listen), self.loop).result(10)

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the proxy's loop thread (to read its counters consistently)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)


async def serve(proxy: InterceptProxy, listen: Sequence[Address], stop: asyncio.Event) -> None:
    """Listen, write the stats file every second until ``stop`` is set, then close (stats say not running)."""
    await proxy.start(listen)
    proxy.write_stats()
    print(
        f"intercept: listening on {', '.join(f'[{h}]:{p}' for h, p in proxy.listening)}, "
        f"CA {proxy.ca.certificate.subject.rfc4514_string()}",
        file=sys.stderr,
        flush=True,
    )
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_INTERVAL)
        proxy.write_stats()
    await proxy.close()
    proxy.write_stats(running=False)


def main(argv: list[str] | None = None) -> int:
    """``python -m chokepoint.backends.intercept (--profile NAME | --rules FILE) --state-dir DIR [--port N]
    [--listen ADDR ...] [--seed N] [--clock-offset S] [--param RULE.PARAM=VALUE ...]``: the proxy process (the
    censor daemon starts it with its own clock offset and overrides; see the docstring)."""
    from chokepoint.backends.options import clock_offset, load_policy, param_override

    parser = argparse.ArgumentParser(
        prog="python -m chokepoint.backends.intercept",
        description="Chokepoint TLS-intercepting proxy (tls-intercept rules)",
    )
    parser.add_argument("--profile")
    parser.add_argument("--rules")
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--listen", action="append", help="address to listen on (default 0.0.0.0 and ::)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--clock-offset", type=clock_offset, default=0.0)
    parser.add_argument("--param", type=param_override, action="append", default=[])
    args = parser.parse_args(argv)
    from chokepoint.policy import PolicyError

    try:
        profile = load_policy(args.profile, args.rules, dict(args.param))
    except PolicyError as exc:
        print(f"intercept: profile rejected: {exc}", file=sys.stderr)
        return 1
    args.state_dir.mkdir(parents=True, exist_ok=True)
    ca = CensorCA.load_or_create(args.state_dir)
    events = EventLog(args.state_dir / EVENTS_FILE)
    offset = args.clock_offset
    proxy = InterceptProxy(
        profile,
        ca,
        emit=events,
        seed=args.seed,
        state_dir=args.state_dir,
        clock=(lambda: time.time() + offset) if offset else time.time,
    )
    listen = [(host, args.port) for host in (args.listen or ["0.0.0.0", "::"])]

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(proxy, listen, stop)

    try:
        asyncio.run(run())
    except OSError as exc:
        print(f"intercept: cannot listen on port {args.port}: {exc}", file=sys.stderr)
        return 3
    finally:
        events.close()
    return 0


# ------------------------------------------------------------------------------------ the daemon's handle


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the censor daemon dies (prctl PR_SET_PDEATHSIG)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM, 0, 0, 0)


class InterceptProcess:
    """The proxy as a child process of the censor daemon (same namespace), started and stopped by it."""

    def __init__(self, proc: subprocess.Popen, state_dir: Path, port: int) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.port = port

    @classmethod
    def start(
        cls,
        state_dir: Path,
        *,
        profile: str | None = None,
        rules: str | None = None,
        port: int = DEFAULT_PORT,
        seed: int | None = None,
        timeout: float = 10.0,
        clock_offset_s: float = 0.0,
        params: dict[str, str] | None = None,
    ) -> InterceptProcess:
        """Start it and wait until it listens (its stats file says running); ``InterceptError`` otherwise."""
        state_dir = Path(state_dir)
        stats = state_dir / STATS_FILE
        stats.unlink(missing_ok=True)
        argv = [
            sys.executable,
            "-m",
            "chokepoint.backends.intercept",
            "--state-dir",
            str(state_dir),
            "--port",
            str(port),
        ]
        argv += ["--rules", rules] if rules else ["--profile", profile or "demo"]
        if seed is not None:
            argv += ["--seed", str(seed)]
        if clock_offset_s:
            argv += ["--clock-offset", repr(float(clock_offset_s))]
        for key, value in (params or {}).items():
            argv += ["--param", f"{key}={value}"]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        handle = cls(proc, state_dir, port)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise InterceptError(f"the intercept proxy exited at start (status {proc.returncode})")
            data = handle.stats()
            if data.get("running") and data.get("pid") == proc.pid:
                return handle
            time.sleep(0.05)
        handle.stop()
        raise InterceptError(f"the intercept proxy did not come up within {timeout:g} s")

    def stats(self) -> dict[str, Any]:
        try:
            return json.loads((self.state_dir / STATS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


__all__ = [
    "CA_CERT_FILE",
    "CA_COMMON_NAME",
    "CA_KEY_FILE",
    "CensorCA",
    "DEFAULT_PORT",
    "EventLog",
    "FlowDecider",
    "Forged",
    "InterceptError",
    "InterceptProcess",
    "InterceptProxy",
    "ProxyThread",
    "STATS_FILE",
    "cert_names",
    "hello_state",
    "intercept_rules",
    "main",
    "redirect_for",
    "serve",
    "so_original_dst",
]


if __name__ == "__main__":
    sys.exit(main())
