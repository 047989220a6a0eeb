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

from chokepoint.backends.intercept.ca import CA_COMMON_NAME, CensorCA, Forged, cert_names
from chokepoint.backends.intercept.common import (
    CA_CERT_FILE,
    CA_KEY_FILE,
    DEFAULT_PORT,
    EVENTS_FILE,
    HOLD_SECONDS,
    PEEK_MAX,
    PEEK_TIMEOUT,
    STATS_FILE,
    InterceptError,
)
from chokepoint.backends.intercept.decide import (
    MSS,
    FlowDecider,
    hello_state,
    intercept_rules,
    redirect_for,
    so_original_dst,
)
from chokepoint.backends.intercept.process import EventLog, InterceptProcess, ProxyThread, main, serve
from chokepoint.backends.intercept.proxy import InterceptProxy

__all__ = [
    "CA_CERT_FILE",
    "CA_COMMON_NAME",
    "CA_KEY_FILE",
    "CensorCA",
    "DEFAULT_PORT",
    "EVENTS_FILE",
    "EventLog",
    "FlowDecider",
    "Forged",
    "HOLD_SECONDS",
    "InterceptError",
    "InterceptProcess",
    "InterceptProxy",
    "MSS",
    "PEEK_MAX",
    "PEEK_TIMEOUT",
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
