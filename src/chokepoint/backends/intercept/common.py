"""What the intercept proxy's modules share: its files, ports, timeouts and error."""

from __future__ import annotations

#: Where the proxy listens in the censor namespace (redirected connections arrive here).
DEFAULT_PORT = 14443
DEFAULT_INTERCEPT_PORTS: tuple[tuple[int, int], ...] = ((443, 443),)
CA_CERT_FILE = "censor-ca.pem"
CA_KEY_FILE = "censor-ca.key"
STATS_FILE = "intercept-stats.json"
EVENTS_FILE = "events.jsonl"

PEEK_TIMEOUT = 10.0  # seconds to wait for a complete ClientHello
PEEK_MAX = 16384  # client bytes read before deciding anyway (a ClientHello is far smaller)
UPSTREAM_TIMEOUT = 5.0  # connect to the original destination
HANDSHAKE_TIMEOUT = 10.0  # each TLS handshake (server side and client side)
HOLD_SECONDS = 120.0  # how long a dropped connection is held open without an answer
CHUNK = 65536
STATS_INTERVAL = 1.0
CACHE_SIZE = 1024

Address = tuple[str, int]


class InterceptError(Exception):
    """The intercept proxy cannot start (bad profile, port in use, no CA) or did not come up."""
