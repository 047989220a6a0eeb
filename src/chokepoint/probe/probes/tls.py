"""TLS handshake probe (OpenSSL through Python's ssl), recorded as an OONI df-006 `tls_handshakes` entry,
and the SNI comparison of OONI's sni_blocking (ts-024): the same address handshaken once with the real SNI
and once with a control SNI, each on a fresh TCP connection.

The certificate is verified against the system store plus the context's CA file (the lab CA), so a
censor's forged certificate is `ssl_unknown_authority` / `ssl_invalid_hostname`; an injected RST during the
handshake is `connection_reset`, a dropped ClientHello `generic_timeout_error`, a close `eof_error`.
`cipher_suite` is OpenSSL's name (TLS 1.3 names equal IANA's; TLS 1.2 names are OpenSSL's, where OONI
writes Go's IANA-style names). `peer_certificates` holds the leaf only (Python 3.11 exposes no chain).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from chokepoint.probe.measurement import TCPConnect, TLSHandshake, failure_from_exception
from chokepoint.probe.probes import tcp
from chokepoint.probe.probes.common import ProbeContext, ip_literal, peer_endpoint, tls_client_context

__all__ = ["DEFAULT_ALPN", "Secured", "SniComparison", "compare_sni", "handshake"]

DEFAULT_ALPN = ("http/1.1",)


@dataclass(frozen=True, slots=True)
class Secured:
    """The df-006 record and, when the handshake succeeded, the TLS socket (the caller closes it)."""

    record: TLSHandshake
    sock: ssl.SSLSocket | None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def handshake(
    ctx: ProbeContext,
    sock: socket.socket,
    server_name: str,
    *,
    alpn: tuple[str, ...] = DEFAULT_ALPN,
    tags: Iterable[str] = ("depth=0",),
    transaction_id: int | None = None,
    context: ssl.SSLContext | None = None,
) -> Secured:
    """Handshake over the connected `sock` with SNI `server_name` (none for an IP literal, whose
    certificate is then checked against the address). On failure `sock` is closed."""
    txid = ctx.transaction_id() if transaction_id is None else transaction_id
    address = peer_endpoint(sock)
    context = context or tls_client_context(ctx.cafile, alpn)
    t0 = ctx.clock.now()
    try:
        sock.settimeout(ctx.timeout)
        secured = context.wrap_socket(sock, server_hostname=server_name or None, do_handshake_on_connect=False)
    except (OSError, ValueError) as exc:  # ValueError: a server name OpenSSL refuses
        sock.close()
        return Secured(
            TLSHandshake(
                address,
                server_name,
                failure_from_exception(exc),
                t=ctx.clock.now(),
                tags=tuple(tags),
                transaction_id=txid,
                extra={"t0": t0},
            ),
            None,
        )
    try:
        secured.do_handshake()
    except OSError as exc:  # ssl.SSLError, resets and timeouts are all OSErrors
        secured.close()
        return Secured(
            TLSHandshake(
                address,
                server_name,
                failure_from_exception(exc),
                t=ctx.clock.now(),
                tags=tuple(tags),
                transaction_id=txid,
                extra={"t0": t0},
            ),
            None,
        )
    cipher = secured.cipher()
    leaf = secured.getpeercert(binary_form=True)
    record = TLSHandshake(
        address,
        server_name,
        None,
        "tcp",
        cipher[0] if cipher else "",
        secured.selected_alpn_protocol() or "",
        False,
        (leaf,) if leaf else None,
        secured.version() or "",
        ctx.clock.now(),
        tuple(tags),
        txid,
        {"t0": t0},
    )
    return Secured(record, secured)


@dataclass(frozen=True, slots=True)
class SniComparison:
    """OONI sni_blocking: the same endpoint with the real SNI (`target`) and a control SNI (`control`).
    A handshake is None when its TCP connect failed."""

    target_connect: TCPConnect
    target: TLSHandshake | None
    control_connect: TCPConnect
    control: TLSHandshake | None

    @property
    def sni_blocked(self) -> bool:
        """The control handshake succeeded where the real one failed: the SNI made the difference."""
        return (
            self.control is not None
            and self.control.failure is None
            and (self.target is None or self.target.failure is not None)
            and self.target_connect.failure is None
        )


def _one(
    ctx: ProbeContext, ip: str, port: int, server_name: str, tags: tuple[str, ...], alpn: tuple[str, ...]
) -> tuple[TCPConnect, TLSHandshake | None]:
    txid = ctx.transaction_id()
    connection = tcp.connect(ctx, ip, port, tags=tags, transaction_id=txid)
    if connection.sock is None:
        return connection.record, None
    secured = handshake(ctx, connection.sock, server_name, alpn=alpn, tags=tags, transaction_id=txid)
    secured.close()
    return connection.record, secured.record


def compare_sni(
    ctx: ProbeContext,
    ip: str,
    port: int,
    server_name: str,
    control_name: str,
    *,
    alpn: tuple[str, ...] = DEFAULT_ALPN,
    depth: int = 0,
    control_first: bool = True,
) -> SniComparison:
    """Handshake with the control SNI and with the real SNI, each on its own connection. The control
    goes first by default, so a residual block triggered by the real SNI cannot spoil it."""
    real_tags = (f"depth={depth}", "sni=target")
    control_tags = (f"depth={depth}", "sni=control")
    order = [("control", control_name, control_tags), ("target", server_name, real_tags)]
    if not control_first:
        order.reverse()
    results = {}
    for which, name, tags in order:
        results[which] = _one(ctx, ip_literal(ip) or ip, port, name, tags, alpn)
    return SniComparison(results["target"][0], results["target"][1], results["control"][0], results["control"][1])
