"""TLS-in-TLS: an encapsulated TLS handshake inside a TLS connection (Trojan, VLESS/VMess over TLS, ...).

Xue, Kallitsis, Houmansadr and Ensafi, "Fingerprinting Obfuscated Proxy Traffic with Encapsulated TLS Handshakes",
USENIX Security 2024: whatever a proxy wraps around it, the inner TLS handshake of a proxied HTTPS connection
shows through the outer connection's sizes and timing. After the outer handshake, the traffic is cut into bursts
(runs of data in one direction) and consecutive bursts client→server, server→client, client→server are compared
with the shape of a TLS handshake: a ClientHello, the server's flight, the client's Finished, each grown by the
encapsulation overhead (the paper reports 20 to 60 bytes per message for the proxies it studied; the first message
also carries the proxy's own request header). nDPI implements the same idea (ntop/nDPI PR #2553, "TLS-in-TLS"
heuristic, off by default).

Here (the features of the paper; ranges and thresholds set on traffic of the real programs):

- **Where the app phase starts.** Client side: right after the client's outer Finished record, found in its
  reassembled stream (the record after its ChangeCipherSpec, or its first application-data record in TLS 1.3
  without one); server side: from the first client app-phase byte on (the server's handshake flight and any
  0.5-RTT data before it are not part of the inner exchange).
- **Bursts** of the first :data:`MAX_EVENTS` app-phase data segments (retransmissions dropped by their offset).
- **The 3-gram** of the first :data:`WINDOWS` windows that start with a client burst: ``(c1, s1, c2)``.
  A window matches when

  - ``c1`` is a ClientHello plus overhead: :data:`CH_RANGE` bytes in at most :data:`MAX_CH_SEGMENTS` segments;
  - ``s1`` is a server's handshake flight plus overhead: :data:`SERVER_FLIGHT_RANGE` bytes;
  - ``c2`` is a client's Finished (TLS 1.3: ChangeCipherSpec + Finished; TLS 1.2: ClientKeyExchange + CCS +
    Finished) plus overhead, with at most a first request coalesced: :data:`FINISHED_RANGE` bytes;
  - timing is recorded, not tested: the gap between ``c1`` and ``s1`` and its ratio to the outer handshake's round
    trip (ClientHello to the server's first answer). The paper uses that an inner handshake costs the proxy a
    second leg to the destination; in the lab, where the destination is next to the proxy and the round trip is
    mostly the servers' own work, a threshold on it rejected real Trojan flows, so it is left to analysts (EVE
    ``chokepoint.tls_in_tls.gap_rtt``).

Measured (``bench/tls_in_tls_rates.py --rounds 10``, :data:`MEASURED`): detection 78/80 = 97.5 % of lab HTTPS
fetches through trojan and v2ray (curl and Chromium), 1/1 encapsulated flow of ../shared/data; false positives
4/20 = 20 % of direct lab curl/Chromium TLS flows (Chromium's page + favicon over one HTTP/1.1 connection: a
request, a response and a second request of handshake-like sizes) and 0/37 = 0 % of the ordinary TLS flows of
../shared/data/ndpi. HTTP/1.1 keep-alive from a browser is the known weakness; the lab's sites speak HTTP/1.1
only, the real captures mostly HTTP/2. Whether the GFW's blocking of TLS-based proxies in October 2022 used this is
not established (net4people/bbs #129 reports point to client TLS fingerprints as well): profiles may use the
``tls_in_tls`` field only as an ``uncertain:`` knob.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CH_RANGE",
    "FINISHED_RANGE",
    "MAX_CH_SEGMENTS",
    "MAX_EVENTS",
    "MAX_FINISHED_SEGMENTS",
    "MEASURED",
    "SERVER_FLIGHT_RANGE",
    "WINDOWS",
    "Burst",
    "TlsInTls",
    "TlsShape",
    "client_app_start",
]

#: App-phase data segments kept per flow (both directions).
MAX_EVENTS = 40
#: Windows (starting at a client burst) compared with the handshake shape.
WINDOWS = 3
#: A ClientHello (Go ~250, OpenSSL/NSS/BoringSSL 517, with a post-quantum key share ~1.8 kB) plus overhead.
CH_RANGE = (240, 2300)
MAX_CH_SEGMENTS = 3
#: A server's first flight with a certificate: ServerHello (~90-130), ChangeCipherSpec (6), EncryptedExtensions,
#: Certificate (a single small EC certificate is ~350), CertificateVerify (~80-260), Finished (~53-69), overhead.
SERVER_FLIGHT_RANGE = (600, 16000)
#: A client's second flight (TLS 1.3: CCS 6 + Finished ~58-74; TLS 1.2: ClientKeyExchange + CCS + Finished) plus
#: overhead, with the first request the client may send right after its Finished coalesced.
FINISHED_RANGE = (60, 1500)
MAX_FINISHED_SEGMENTS = 3

#: Rates measured by ``bench/tls_in_tls_rates.py --rounds 10`` (2026-12-07; docs/detectors.md has the details).
MEASURED = (
    "detection: 78/80 = 97.5 % of lab HTTPS fetches through trojan 1.16 and v2ray 4.34 (VMess and VLESS over TLS, "
    "VMess over WebSocket over TLS) by curl 7.88 and Chromium 156, 1/1 encapsulated flow of ../shared/data; "
    "false positives: 4/20 = 20 % of direct lab curl/Chromium TLS flows (all four: Chromium fetching a page and "
    "its favicon over one HTTP/1.1 connection, request/response/request of handshake-like sizes), 0/37 = 0 % of "
    "the ordinary TLS flows of ../shared/data/ndpi"
)

_MOD = 1 << 32


@dataclass(frozen=True, slots=True)
class Burst:
    direction: int  # 0 client->server, 1 server->client
    size: int
    segments: int
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TlsInTls:
    """The detector's finding: the matching window's bursts and which of them it was (0-based)."""

    window: int
    client_hello: int
    server_flight: int
    finished: int
    gap: float  # seconds from the end of the ClientHello burst to the server's flight
    gap_rtt: float | None  # that gap over the outer handshake's round trip

    def to_json(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "bursts": [self.client_hello, self.server_flight, self.finished],
            "gap_ms": round(self.gap * 1000, 3),
            "gap_rtt": None if self.gap_rtt is None else round(self.gap_rtt, 2),
        }


@dataclass(slots=True)
class TlsShape:
    """Per-flow state: the data segments seen since the ClientHello, until :meth:`evaluate` decides."""

    events: list[tuple[float, int, int, int]] = field(default_factory=list)  # (ts, direction, offset, length)
    client_start: int | None = None  # c2s stream offset where the app phase starts
    ch_time: float | None = None  # when the ClientHello was sent (its last segment)
    rtt: float | None = None  # ClientHello -> first server data
    high: list[int] = field(default_factory=lambda: [0, 0])  # highest offset end seen per direction
    done: bool = False
    result: TlsInTls | None = None

    def add(self, ts: float, direction: int, offset: int, length: int) -> None:
        """One data segment; ``offset`` from the first byte of its direction (mod 2^32)."""
        end = offset + length
        if offset < _MOD // 2 and end <= self.high[direction]:
            return  # a retransmission
        self.high[direction] = max(self.high[direction], end)
        if direction == 0 and self.ch_time is None and self.client_start is None:
            self.ch_time = ts
        elif direction == 1 and self.rtt is None and self.ch_time is not None:
            self.rtt = ts - self.ch_time
        if len(self.events) < MAX_EVENTS:
            self.events.append((ts, direction, offset, length))

    def bursts(self) -> list[Burst]:
        """App-phase bursts (empty until the client's app-phase start is known)."""
        start = self.client_start
        if start is None:
            return []
        out: list[Burst] = []
        begun = False
        for ts, direction, offset, length in self.events:
            if direction == 0:
                if offset + length <= start:
                    continue
                length -= max(0, start - offset)
                begun = True
            elif not begun:
                continue
            if out and out[-1].direction == direction:
                last = out[-1]
                out[-1] = Burst(direction, last.size + length, last.segments + 1, last.start, ts)
            else:
                out.append(Burst(direction, length, 1, ts, ts))
        return out

    def evaluate(self, final: bool = False) -> TlsInTls | None:
        """Compare the first windows with the handshake shape; ``done`` once decided (a match, the windows
        spent, or ``final``: no more segments will come)."""
        if self.done:
            return self.result
        bursts = self.bursts()
        client_bursts = [i for i, b in enumerate(bursts) if b.direction == 0]
        exhausted = final or len(self.events) >= MAX_EVENTS  # no more segments will come (or be kept)
        for n, i in enumerate(client_bursts[:WINDOWS]):
            if i + 2 >= len(bursts) or (i + 3 == len(bursts) and not exhausted):
                if exhausted:
                    break
                return None  # the window is not complete yet, or its last burst may still grow
            match = self._match(n, bursts[i], bursts[i + 1], bursts[i + 2])
            if match is not None:
                self.done, self.result = True, match
                return match
        if len(client_bursts) >= WINDOWS or exhausted:
            self.done = True
        return None

    def _match(self, n: int, c1: Burst, s1: Burst, c2: Burst) -> TlsInTls | None:
        if not (CH_RANGE[0] <= c1.size <= CH_RANGE[1] and c1.segments <= MAX_CH_SEGMENTS):
            return None
        if not SERVER_FLIGHT_RANGE[0] <= s1.size <= SERVER_FLIGHT_RANGE[1]:
            return None
        if not (FINISHED_RANGE[0] <= c2.size <= FINISHED_RANGE[1] and c2.segments <= MAX_FINISHED_SEGMENTS):
            return None
        gap = s1.start - c1.end
        return TlsInTls(n, c1.size, s1.size, c2.size, gap, None if not self.rtt else gap / self.rtt)


def client_app_start(records: tuple[tuple[int, int], ...]) -> int | None:
    """Offset just after the client's outer Finished record, from the (content type, length) of its records
    from the start of its stream: the record after its first ChangeCipherSpec, or (TLS 1.3 without the
    compatibility CCS) its first application-data record. None while that record has not arrived."""
    pos = 0
    after_ccs = False
    for i, (content_type, length) in enumerate(records):
        pos += 5 + length
        if i == 0:
            continue  # the ClientHello
        if after_ccs or (content_type == 23 and not any(t == 20 for t, _ in records[:i])):
            return pos
        if content_type == 20:
            after_ccs = True
    return None
