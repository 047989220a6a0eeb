"""What every probe shares: the measurement clock, transaction ids, targets, TLS contexts and tags.

Timings follow OONI's archival format (ooni/probe-cli `model/archival.go`): every event carries `t0`
(when the operation started) and `t` (when it ended), in seconds since the measurement's zero time.
Tags follow Web Connectivity v0.5 (ts-017 extensions): `depth=N` on every event, `fetch_body=true|false`
on endpoints, `classic` on what the system resolver returned and the endpoints built from it.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_TIMEOUT",
    "Clock",
    "ProbeContext",
    "ProbeError",
    "Target",
    "ascii_hostname",
    "endpoint_tags",
    "family_of",
    "ip_literal",
    "join_host_port",
    "parse_host_port",
    "parse_target",
    "peer_endpoint",
    "tls_client_context",
]

DEFAULT_TIMEOUT = 10.0
_DEFAULT_PORTS = {"http": 80, "https": 443}


class ProbeError(Exception):
    """The probe cannot run at all (bad target, bad argument, missing privilege). Never used for a
    network outcome: those are recorded as OONI failure strings."""


@dataclass(slots=True)
class Clock:
    """Seconds since the measurement's zero time (monotonic), rounded to microseconds."""

    zero: float = field(default_factory=time.monotonic)

    def now(self) -> float:
        return round(time.monotonic() - self.zero, 6)


@dataclass(slots=True)
class ProbeContext:
    """Per-measurement state handed to every probe: the clock, the next transaction id, the timeout
    applied to each network operation, and the CA file trusted in addition to the system store."""

    timeout: float = DEFAULT_TIMEOUT
    cafile: str | None = None
    clock: Clock = field(default_factory=Clock)
    _next_id: int = 1

    def __post_init__(self) -> None:
        if not self.timeout > 0:
            raise ProbeError(f"the timeout must be a positive number of seconds, not {self.timeout!r}")

    def transaction_id(self) -> int:
        """A fresh id; operations on one connection (TCP, TLS, HTTP) share it, as in OONI."""
        value = self._next_id
        self._next_id += 1
        return value


@dataclass(frozen=True, slots=True)
class Target:
    """A URL to measure: scheme (http/https), host (name or IP literal), port, and path with query."""

    url: str
    scheme: str
    host: str
    port: int
    path: str

    @property
    def default_port(self) -> bool:
        return self.port == _DEFAULT_PORTS[self.scheme]

    @property
    def authority(self) -> str:
        """The Host header / :authority value for this target."""
        return self.authority_for(self.host)

    def authority_for(self, host: str) -> str:
        """The Host header value a request for `host` on this target's port carries."""
        name = f"[{host}]" if ":" in host else host
        return name if self.default_port else f"{name}:{self.port}"

    def with_url(self, url: str) -> Target:
        """A redirect target, resolved against this one."""
        return parse_target(url, base=self)


def ip_literal(host: str) -> str | None:
    """The normalised address when `host` is an IP literal, else None."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


def ascii_hostname(host: str) -> str | None:
    """The lowercase ASCII (IDNA, RFC 3490 punycode) form of a host name, or None when it is not one:
    labels of letters, digits, hyphens (and underscores, common in practice), at most 63 bytes each."""
    if not host or len(host) > 253:
        return None
    try:
        ascii_host = host.lower().encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return ascii_host


def parse_target(text: str, *, base: Target | None = None) -> Target:
    """Parse a probe target: an http(s) URL, or a bare host (measured as `https://HOST/`). Host names are
    lowercased and IDNA-encoded (`яндекс.рф` -> `xn--d1acpjx3f.xn--p1ai`), as OONI measures them.

    Raises `ProbeError` for anything that is not a measurable URL (other schemes, no host, a bad port).
    With `base`, a relative URL (a redirect's Location) is resolved against it (RFC 3986 §5.2, simplified
    to absolute, scheme-relative and absolute-path references).
    """
    text = text.strip()
    if not text:
        raise ProbeError("empty target")
    if base is not None:
        if text.startswith("//"):
            text = f"{base.scheme}:{text}"
        elif text.startswith("/"):
            text = f"{base.scheme}://{base.authority}{text}"
        elif "://" not in text:
            directory = base.path.split("?", 1)[0].rsplit("/", 1)[0]
            text = f"{base.scheme}://{base.authority}{directory}/{text}"
    elif "://" not in text:
        text = f"https://{text}/" if "/" not in text else f"https://{text}"
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ProbeError(f"{text!r} is not a valid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise ProbeError(f"{text!r}: user information in the URL is not supported")
    if scheme not in _DEFAULT_PORTS:
        raise ProbeError(f"{text!r}: only http and https URLs can be measured, not {parts.scheme or 'none'!r}")
    host = (parts.hostname or "").rstrip(".")
    literal = ip_literal(host)
    name = literal or ascii_hostname(host)
    if name is None:
        raise ProbeError(f"{text!r}: no valid host name")
    if port == 0:
        raise ProbeError(f"{text!r}: port 0 cannot be measured")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    port = port or _DEFAULT_PORTS[scheme]
    target = Target("", scheme, name, port, path)
    url = f"{scheme}://{target.authority}{path}"
    return Target(url, scheme, name, port, path)


def join_host_port(host: str, port: int) -> str:
    """Go's net.JoinHostPort: IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """ "IP", "IP:PORT" or "[IPv6]:PORT" -> (ip, port); raises ProbeError for anything else."""
    host, port = text.strip(), default_port
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise ProbeError(f"{text!r} is not an address[:port]")
            port = _port(rest[1:], text)
    elif host.count(":") == 1:
        host, port_text = host.split(":")
        port = _port(port_text, text)
    address = ip_literal(host)
    if address is None:
        raise ProbeError(f"{text!r}: {host!r} is not an IP address")
    return address, port


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ProbeError(f"{where!r}: bad port {text!r}")
    return int(text)


def endpoint_tags(depth: int, *, classic: bool, fetch_body: bool) -> tuple[str, ...]:
    """OONI's endpoint tags (see the QA measurements in ooni/probe-cli minipipeline testdata)."""
    tags = ["classic"] if classic else []
    if depth == 0:
        tags.append("tcptls_experiment")
    tags += [f"depth={depth}", f"fetch_body={'true' if fetch_body else 'false'}"]
    return tuple(tags)


def tls_client_context(cafile: str | None, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A verifying client context: the system trust store plus `cafile` (the lab CA) when given."""
    context = ssl.create_default_context()
    if cafile:
        try:
            context.load_verify_locations(cafile=cafile)
        except (OSError, ssl.SSLError) as exc:
            raise ProbeError(f"cannot load the CA file {cafile}: {exc}") from None
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def peer_endpoint(sock: socket.socket) -> str:
    """ "ip:port" of a connected TCP/UDP socket's peer, "" for anything else (unix sockets, unconnected)."""
    try:
        peer = sock.getpeername()
    except OSError:
        return ""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and isinstance(peer, tuple):
        return join_host_port(peer[0], peer[1])
    return ""


def family_of(address: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in address else socket.AF_INET
