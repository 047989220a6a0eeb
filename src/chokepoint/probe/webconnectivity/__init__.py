"""Web Connectivity classification: OONI's `blocking`/`accessible` and Chokepoint's technique list.

The OONI part reproduces the "classic" analysis engine of Web Connectivity v0.5 (ooni/probe-cli
`internal/experiment/webconnectivitylte/analysisclassic.go`, `analysisext.go`, `analysishttpdiff.go` over
`internal/minipipeline`), which emits the v0.4-compatible keys of ts-017 (ooni/spec
`nettests/ts-017-web-connectivity.md`) plus the v0.5 bit flags:

1. The observations (df-002 DNS, df-005 TCP, df-006 TLS, df-001 HTTP) are flattened into one record per DNS
   answer / endpoint and cross-referenced with the test helper's view (`control`).
2. "Classic" keeps only getaddrinfo lookups and the endpoints that fetched the body, which approximates
   what v0.4 measured. `dns_consistency` is "consistent" when every resolved address set intersects the
   control's by IP or ASN (bogons are not special here) and no lookup failed unexpectedly.
3. The observations are linearised (latest redirect first; HTTP, TLS, TCP, DNS; successes before failures)
   and the first informative one decides: a final (2xx/4xx/5xx) response over TLS is success; over cleartext
   it is success unless the HTTP diff says otherwise (status codes equal and one of body proportion > 0.7,
   a shared uncommon header, no differing title word of >= 5 bytes); a failure is "http-failure", "tcp_ip"
   or "dns" unless the control failed the same way (site down: blocking false, accessible false).
   Any string verdict becomes "dns" when DNS is inconsistent.
4. `x_blocking_flags` (DNS 1, TCP/IP 2, TLS 4, HTTP 8, HTTP diff 16, success 32), `x_dns_flags`
   (bogon 1, unexpected failure 2, unexpected addresses 4) and `x_null_null_flags` (expected DNS/TCP/TLS
   failure 1/2/4, successful HTTPS without control 8, resolved what the control says does not exist 16)
   come from the same records without the classic filter.

Observations must carry OONI's LTE tags (`depth=N` on every event, `fetch_body=true|false` on endpoints),
as OONI's analysis ignores untagged lookups and endpoints. Addresses are mapped to ASNs with the ASNs the
probe recorded in its answers and the test helper's `ip_info` (OONI uses its bundled GeoIP database).

Chokepoint's finer list names the technique per layer, using the control as the expectation: dns-nxdomain,
dns-bogon (a bogon answer the control did not get; when the control's own answers are bogons, as in a
private deployment like the lab, only loopback/unspecified answers or another bogon range of the same family
count), dns-forged (answers disjoint from the control's by IP and ASN and not TLS-validated, a known
censor answer, or any answer for a name the control finds nonexistent), dns-failure; tcp-refused,
tcp-dropped (timeout), tcp-reset, tcp-unreachable; tls-reset, tls-dropped, tls-eof, tls-mitm (a certificate
error where the control's handshake succeeded); http-reset, http-dropped, http-eof, http-failure,
http-blockpage (a blocking fingerprint; false-positive signatures are checked first, but a blockpage
signature with a longer pattern matching the same page wins), http-diff; throttled
(probe rate < `throttle_ratio` x control rate) and residual (with its duration), both from
`test_keys.x_chokepoint`. A reset is attributed to injection only by inference: the control's same
operation succeeded.
"""

from __future__ import annotations

from chokepoint.probe.webconnectivity.addresses import is_bogon
from chokepoint.probe.webconnectivity.pipeline import annotate, classify
from chokepoint.probe.webconnectivity.results import (
    BLOCKING_DNS,
    BLOCKING_HTTP_DIFF,
    BLOCKING_HTTP_FAILURE,
    BLOCKING_TCP_IP,
    BlockingFlag,
    DNSFlag,
    NullNullFlag,
    Technique,
    TechniqueKind,
    WebConnectivityResult,
)

__all__ = [
    "BLOCKING_DNS",
    "BLOCKING_HTTP_DIFF",
    "BLOCKING_HTTP_FAILURE",
    "BLOCKING_TCP_IP",
    "BlockingFlag",
    "DNSFlag",
    "NullNullFlag",
    "Technique",
    "TechniqueKind",
    "WebConnectivityResult",
    "annotate",
    "classify",
    "is_bogon",
]
