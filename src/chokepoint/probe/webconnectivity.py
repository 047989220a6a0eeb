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

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from chokepoint.probe.fingerprints import FingerprintDB, FingerprintMatch
from chokepoint.probe.measurement import (
    ChokepointObservations,
    Failure,
    HTTPResponseRecord,
    Measurement,
    WebConnectivityTestKeys,
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

BLOCKING_DNS = "dns"
BLOCKING_TCP_IP = "tcp_ip"
BLOCKING_HTTP_FAILURE = "http-failure"
BLOCKING_HTTP_DIFF = "http-diff"


class BlockingFlag:
    """`x_blocking_flags` bits (webconnectivitylte analysiscore.go)."""

    DNS = 1
    TCP_IP = 2
    TLS = 4
    HTTP = 8
    HTTP_DIFF = 16
    SUCCESS = 32


class DNSFlag:
    """`x_dns_flags` bits."""

    BOGON = 1
    UNEXPECTED_FAILURE = 2
    UNEXPECTED_ADDRS = 4


class NullNullFlag:
    """`x_null_null_flags` bits (why blocking and accessible might both be null)."""

    EXPECTED_DNS_FAILURE = 1
    EXPECTED_TCP_FAILURE = 2
    EXPECTED_TLS_FAILURE = 4
    SUCCESSFUL_HTTPS = 8
    UNEXPECTED_DNS_SUCCESS = 16


class TechniqueKind(StrEnum):
    """Chokepoint's per-layer interference techniques."""

    DNS_NXDOMAIN = "dns-nxdomain"
    DNS_BOGON = "dns-bogon"
    DNS_FORGED = "dns-forged"
    DNS_FAILURE = "dns-failure"
    TCP_REFUSED = "tcp-refused"
    TCP_DROPPED = "tcp-dropped"
    TCP_RESET = "tcp-reset"
    TCP_UNREACHABLE = "tcp-unreachable"
    TCP_FAILURE = "tcp-failure"
    TLS_RESET = "tls-reset"
    TLS_DROPPED = "tls-dropped"
    TLS_EOF = "tls-eof"
    TLS_MITM = "tls-mitm"
    TLS_FAILURE = "tls-failure"
    HTTP_RESET = "http-reset"
    HTTP_DROPPED = "http-dropped"
    HTTP_EOF = "http-eof"
    HTTP_FAILURE = "http-failure"
    HTTP_BLOCKPAGE = "http-blockpage"
    HTTP_DIFF = "http-diff"
    THROTTLED = "throttled"
    RESIDUAL = "residual"

    @property
    def layer(self) -> str:
        return {"dns": "dns", "tcp": "tcp", "tls": "tls", "http": "http"}.get(self.value.split("-")[0], "transport")


@dataclass(frozen=True, slots=True)
class Technique:
    """One detected interference, with the witness that supports it."""

    kind: TechniqueKind
    target: str
    evidence: str
    failure: str | None = None
    fingerprint: FingerprintMatch | None = None
    throughput_ratio: float | None = None
    duration_s: float | None = None

    @property
    def layer(self) -> str:
        return self.kind.layer

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "technique": self.kind.value,
            "layer": self.layer,
            "target": self.target,
            "evidence": self.evidence,
        }
        if self.failure is not None:
            out["failure"] = self.failure
        if self.fingerprint is not None:
            out["fingerprint"] = self.fingerprint.to_json()
        if self.throughput_ratio is not None:
            out["throughput_ratio"] = self.throughput_ratio
        if self.duration_s is not None:
            out["duration_s"] = self.duration_s
        return out


@dataclass(frozen=True, slots=True)
class WebConnectivityResult:
    """OONI's classification keys plus Chokepoint's techniques and every fingerprint that matched."""

    blocking: str | bool | None
    accessible: bool | None
    dns_consistency: str | None
    dns_experiment_failure: str | None
    http_experiment_failure: str | None
    body_proportion: float
    body_length_match: bool | None
    headers_match: bool | None
    status_code_match: bool | None
    title_match: bool | None
    x_blocking_flags: int
    x_dns_flags: int
    x_null_null_flags: int
    techniques: tuple[Technique, ...] = ()
    fingerprint_matches: tuple[FingerprintMatch, ...] = ()

    @property
    def false_positives(self) -> tuple[FingerprintMatch, ...]:
        """Matches of known-benign signatures (scope fp), e.g. a CDN challenge page."""
        return tuple(m for m in self.fingerprint_matches if m.is_false_positive)


# --------------------------------------------------------------------------------------------------
# Addresses
# --------------------------------------------------------------------------------------------------

# ipinfo.io/bogon, as ooni/probe-cli netxlite/bogon.go lists them.
_BOGONS4 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "255.255.255.255/32",
    )
)
_BOGONS6 = tuple(
    ipaddress.ip_network(n)
    for n in (
        "::/128",
        "::1/128",
        "::ffff:0:0/96",
        "::/96",
        "100::/64",
        "2001:10::/28",
        "2001:db8::/32",
        "fc00::/7",
        "fe80::/10",
        "fec0::/10",
        "ff00::/8",
        "2002::/24",
        "2002:a00::/24",
        "2002:7f00::/24",
        "2002:a9fe::/32",
        "2002:ac10::/28",
        "2002:c000::/40",
        "2002:c000:200::/40",
        "2002:c0a8::/32",
        "2002:c612::/31",
        "2002:c633:6400::/40",
        "2002:cb00:7100::/40",
        "2002:e000::/20",
        "2002:f000::/20",
        "2002:ffff:ffff::/48",
        "2001::/40",
        "2001:0:a00::/40",
        "2001:0:7f00::/40",
        "2001:0:a9fe::/48",
        "2001:0:ac10::/44",
        "2001:0:c000::/56",
        "2001:0:c000:200::/56",
        "2001:0:c0a8::/48",
        "2001:0:c612::/47",
        "2001:0:c633:6400::/56",
        "2001:0:cb00:7100::/56",
        "2001:0:e000::/36",
        "2001:0:f000::/36",
        "2001:0:ffff:ffff::/64",
    )
)


def _parse_ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def is_bogon(address: str) -> bool:
    """netxlite.IsBogon: private, reserved, loopback, link-local...; a non-address counts as a bogon."""
    ip = _parse_ip(address)
    if ip is None:
        return True
    if ip.is_loopback or ip.is_link_local:
        return True
    return any(ip in net for net in (_BOGONS6 if ip.version == 6 else _BOGONS4))


def _bogon_network(
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    return next((net for net in (_BOGONS6 if ip.version == 6 else _BOGONS4) if ip in net), None)


def _telling_bogon(address: str, control_addrs: frozenset[str]) -> bool:
    """A bogon answer that says something: not one the control got too, and not in the private range the
    site itself lives in. When the control's own answers are bogons (a private deployment such as the lab,
    RFC 2544 addresses), a bogon of the same range, or of a family the control has no address in, is how
    that network resolves names, not interference; loopback and unspecified answers always tell."""
    ip = _parse_ip(address)
    if ip is None:
        return True
    if not is_bogon(address) or address in control_addrs:
        return False
    if ip.is_loopback or ip.is_unspecified:
        return True
    control_ips = [c for c in (_parse_ip(a) for a in control_addrs) if c is not None]
    private = {_bogon_network(c) for c in control_ips if is_bogon(str(c))}
    if not private:
        return True
    return _bogon_network(ip) not in private and ip.version in {c.version for c in control_ips}


def _only_loopback(addresses: Iterable[str]) -> bool:
    count = 0
    for address in addresses:
        ip = _parse_ip(address)
        if ip is None:
            continue
        if not ip.is_loopback:
            return False
        count += 1
    return count > 0


def _url_hostname(url: str) -> str:
    """Go's url.URL.Hostname(): the host without port or brackets, case preserved."""
    rest = url.split("://", 1)[1] if "://" in url else url
    host = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


# --------------------------------------------------------------------------------------------------
# Flat observations (minipipeline WebObservation) and their container
# --------------------------------------------------------------------------------------------------

_DNS, _TCP, _TLS, _HTTP = 0, 1, 2, 3
_TITLE_RE = re.compile(r"<title>([^<]{1,512})</title>", re.IGNORECASE)


@dataclass(slots=True)
class _Obs:
    type: int
    failure: str | None  # None: unknown; "": success
    transaction_id: int
    tag_depth: int | None = None
    tag_fetch_body: bool | None = None
    dns_transaction_id: int | None = None
    dns_domain: str | None = None
    dns_failure: str | None = None
    dns_query_type: str | None = None
    dns_engine: str | None = None
    dns_addrs: frozenset[str] | None = None
    ip: str | None = None
    ip_bogon: bool | None = None
    endpoint_address: str | None = None
    tcp_failure: str | None = None
    tls_failure: str | None = None
    tls_server_name: str | None = None
    http_url: str | None = None
    http_failure: str | None = None
    http_status: int | None = None
    http_body_length: int | None = None
    http_body_truncated: bool | None = None
    http_header_keys: frozenset[str] | None = None
    http_title: str | None = None
    http_is_final: bool | None = None
    ctl_dns_domain: str | None = None
    ctl_dns_failure: str | None = None
    ctl_dns_addrs: frozenset[str] | None = None
    ctl_tcp_failure: str | None = None
    ctl_tls_failure: str | None = None
    ctl_http_failure: str | None = None
    ctl_http_status: int | None = None
    ctl_http_body_length: int | None = None
    ctl_http_header_keys: frozenset[str] | None = None
    ctl_http_title: str | None = None


def _tag_depth(tags: Iterable[str] | None) -> int | None:
    result = None
    for tag in tags or ():
        if tag.startswith("depth="):
            try:
                result = int(tag[len("depth=") :])
            except ValueError:
                continue
    return result


def _tag_fetch_body(tags: Iterable[str] | None) -> bool | None:
    result = None
    for tag in tags or ():
        if tag.startswith("fetch_body="):
            result = tag[len("fetch_body=") :] == "true"
    return result


def _title(body: bytes) -> str:
    match = _TITLE_RE.search(body.decode("utf-8", "replace"))
    return match.group(1) if match else ""


def _is_getaddrinfo(engine: str | None) -> bool:
    return engine in ("getaddrinfo", "golang_net_resolver")


def _misconfigured_ipv6(obs: _Obs) -> bool:
    if obs.tcp_failure not in (Failure.NETWORK_UNREACHABLE, Failure.HOST_UNREACHABLE):
        return False
    ip = _parse_ip(obs.ip or "")
    return ip is not None and ip.version == 6


@dataclass(slots=True)
class _ControlExpectations:
    dns_addrs: frozenset[str]
    final_response_failure: str


@dataclass(slots=True)
class _Container:
    dns_failures: list[_Obs] = field(default_factory=list)
    dns_successes: list[_Obs] = field(default_factory=list)
    endpoints: dict[int, _Obs] = field(default_factory=dict)
    known_ips: dict[str, _Obs] = field(default_factory=dict)
    expectations: _ControlExpectations | None = None

    def all(self) -> list[_Obs]:
        return [*self.dns_failures, *self.dns_successes, *self.endpoints.values()]


def _ingest(tk: WebConnectivityTestKeys) -> _Container:
    """minipipeline observation.go: DNS, then TCP, TLS, HTTP, then the control."""
    c = _Container()
    for q in tk.queries or ():
        if q.failure is not None:
            c.dns_failures.append(
                _Obs(
                    _DNS,
                    q.failure,
                    q.transaction_id or 0,
                    tag_depth=_tag_depth(q.tags),
                    dns_transaction_id=q.transaction_id or 0,
                    dns_domain=q.hostname,
                    dns_failure=q.failure,
                    dns_query_type=q.query_type,
                    dns_engine=q.engine,
                )
            )
    for q in tk.queries or ():
        if q.failure is not None:
            continue
        addrs = frozenset(q.addresses)
        for address in sorted(addrs):
            obs = _Obs(
                _DNS,
                "",
                q.transaction_id or 0,
                tag_depth=_tag_depth(q.tags),
                dns_transaction_id=q.transaction_id or 0,
                dns_domain=q.hostname,
                dns_failure="",
                dns_query_type=q.query_type,
                dns_engine=q.engine,
                dns_addrs=addrs,
                ip=address,
                ip_bogon=is_bogon(address),
            )
            c.dns_successes.append(obs)
            c.known_ips.setdefault(address, obs)
    for t in tk.tcp_connect or ():
        base = c.known_ips.get(t.ip)
        txid = t.transaction_id or 0
        c.endpoints[txid] = _Obs(
            _TCP,
            t.failure or "",
            txid,
            tag_depth=_tag_depth(t.tags),
            tag_fetch_body=_tag_fetch_body(t.tags),
            dns_transaction_id=base.dns_transaction_id if base else None,
            dns_domain=base.dns_domain if base else None,
            dns_failure=base.dns_failure if base else None,
            dns_addrs=base.dns_addrs if base else None,
            ip=t.ip,
            ip_bogon=is_bogon(t.ip),
            endpoint_address=t.endpoint,
            tcp_failure=t.failure or "",
        )
    for h in tk.tls_handshakes or ():
        obs = c.endpoints.get(h.transaction_id or 0)
        if obs is None:
            continue
        obs.type, obs.failure = _TLS, h.failure or ""
        obs.tls_failure, obs.tls_server_name = h.failure or "", h.server_name
    for r in tk.requests or ():
        obs = c.endpoints.get(r.transaction_id or 0)
        if obs is None:
            continue
        obs.type, obs.failure = _HTTP, r.failure or ""
        obs.http_url, obs.http_failure = r.request.url, r.failure or ""
        if r.failure is not None:
            continue
        response = r.response or HTTPResponseRecord()
        body = response.body_bytes
        obs.http_status = response.code
        obs.http_body_length = len(body)
        # OONI reads the *request's* flag here (minipipeline observation.go); the response's is the one
        # that says whether the body we compare was cut short, so Chokepoint uses it.
        obs.http_body_truncated = response.body_is_truncated
        obs.http_header_keys = frozenset(response.headers)
        obs.http_title = _title(body)
        obs.http_is_final = response.code // 100 in (2, 4, 5)
    if tk.control_request is not None and tk.control is not None:
        _ingest_control(c, tk)
    return c


def _ingest_control(c: _Container, tk: WebConnectivityTestKeys) -> None:
    assert tk.control is not None and tk.control_request is not None
    control = tk.control
    domain = _url_hostname(tk.control_request.http_request)
    dns_failure = control.dns.failure or ""
    th_addrs = frozenset(control.dns.addrs)
    for obs in (*c.dns_failures, *c.dns_successes):
        if obs.dns_domain != domain:
            continue
        obs.ctl_dns_domain, obs.ctl_dns_failure = domain, dns_failure
        if control.dns.failure is None:
            obs.ctl_dns_addrs = th_addrs
    for obs in c.endpoints.values():
        if obs.dns_domain is None and obs.ip in th_addrs:
            obs.ctl_dns_domain, obs.ctl_dns_failure, obs.ctl_dns_addrs = domain, dns_failure, th_addrs
            continue
        if obs.dns_domain is None or obs.dns_domain != domain:
            continue
        obs.ctl_dns_domain, obs.ctl_dns_failure = domain, dns_failure
        if control.dns.failure is None:
            obs.ctl_dns_addrs = th_addrs
    for obs in c.endpoints.values():
        tcp = control.tcp_connect.get(obs.endpoint_address or "")
        if tcp is not None:
            obs.ctl_tcp_failure = tcp.failure or ""
        if obs.tls_server_name is None or control.tls_handshake is None:
            continue
        tls = control.tls_handshake.get(obs.endpoint_address or "")
        if tls is not None and tls.server_name == obs.tls_server_name:
            obs.ctl_tls_failure = tls.failure or ""
    http = control.http_request
    # The control's fetch is the expectation for every observation (a redirect's DNS lookup included).
    for obs in c.all():
        obs.ctl_http_failure = http.failure or ""
        if http.failure is None:
            obs.ctl_http_status, obs.ctl_http_body_length = http.status_code, http.body_length
            obs.ctl_http_header_keys, obs.ctl_http_title = frozenset(http.headers), http.title
    c.expectations = _ControlExpectations(th_addrs, http.failure or "")


def _classic_filter(c: _Container) -> _Container:
    """minipipeline classic.go: getaddrinfo lookups and the body-fetching endpoints using their addresses."""
    out = _Container(expectations=c.expectations)
    out.dns_failures = [o for o in c.dns_failures if _is_getaddrinfo(o.dns_engine)]
    for obs in c.dns_successes:
        if _is_getaddrinfo(obs.dns_engine):
            out.dns_successes.append(obs)
            out.known_ips[obs.ip or ""] = obs
    for txid, obs in c.endpoints.items():
        if (obs.ip or "") in out.known_ips and obs.tag_fetch_body:
            out.endpoints[txid] = obs
    return out


# --------------------------------------------------------------------------------------------------
# Analysis (minipipeline analysis.go)
# --------------------------------------------------------------------------------------------------

_COMMON_HEADERS = frozenset(
    {
        "date",
        "content-type",
        "server",
        "cache-control",
        "vary",
        "set-cookie",
        "location",
        "expires",
        "x-powered-by",
        "content-encoding",
        "last-modified",
        "accept-ranges",
        "pragma",
        "x-frame-options",
        "etag",
        "x-content-type-options",
        "age",
        "via",
        "p3p",
        "x-xss-protection",
        "content-language",
        "cf-ray",
        "strict-transport-security",
        "link",
        "x-varnish",
    }
)
BODY_PROPORTION_FACTOR = 0.7
_TITLE_MIN_WORD_BYTES = 5


def _uncommon_header_intersection(probe: Iterable[str], control: Iterable[str]) -> frozenset[str]:
    ours = {k.lower() for k in probe} - _COMMON_HEADERS
    theirs = {k.lower() for k in control} - _COMMON_HEADERS
    return frozenset(ours & theirs)


def _title_different_long_words(probe: str, control: str) -> frozenset[str]:
    def words(title: str) -> set[str]:
        return {w.lower() for w in title.split(" ") if len(w.encode("utf-8", "surrogatepass")) >= _TITLE_MIN_WORD_BYTES}

    return frozenset(words(probe) ^ words(control))


def _status_code_match(probe: int, control: int) -> bool | None:
    if probe != control and control // 100 != 2:
        return None
    return probe == control


@dataclass(slots=True)
class _Analysis:
    expectations: _ControlExpectations | None
    asn: Mapping[str, int]
    dns_success: set[int] = field(default_factory=set)
    dns_invalid: set[int] = field(default_factory=set)
    dns_valid: set[int] = field(default_factory=set)
    dns_bogon: set[int] = field(default_factory=set)
    dns_invalid_classic: set[int] = field(default_factory=set)
    dns_valid_classic: set[int] = field(default_factory=set)
    dns_unexpected_failure: set[int] = field(default_factory=set)
    dns_unexplained_failure: set[int] = field(default_factory=set)
    dns_expected_failure: set[int] = field(default_factory=set)
    dns_experiment_failure: str | None = None
    tcp_expected_failure: set[int] = field(default_factory=set)
    tcp_unexpected_failure: set[int] = field(default_factory=set)
    tcp_unexplained_failure: set[int] = field(default_factory=set)
    tls_expected_failure: set[int] = field(default_factory=set)
    tls_unexpected_failure: set[int] = field(default_factory=set)
    tls_unexplained_failure: set[int] = field(default_factory=set)
    http_unexpected_failure: set[int] = field(default_factory=set)
    http_unexplained_failure: set[int] = field(default_factory=set)
    final_tls_without_control: int | None = None
    final_tls_with_control: int | None = None
    final_tcp_without_control: int | None = None
    final_tcp_with_control: int | None = None
    body_proportion: float | None = None
    status_code_match: bool | None = None
    uncommon_headers: frozenset[str] | None = None
    title_different_words: frozenset[str] | None = None

    def _asn_overlap(self, probe: Iterable[str], control: Iterable[str]) -> bool:
        ours = {self.asn[a] for a in probe if self.asn.get(a, 0) > 0}
        return bool(ours & {self.asn[a] for a in control if self.asn.get(a, 0) > 0})

    def dns_success_metrics(self, c: _Container) -> None:
        seen: set[int] = set()
        for obs in c.dns_successes:
            txid = obs.dns_transaction_id or 0
            if txid in seen:
                continue
            seen.add(txid)
            if obs.tag_depth != 0:
                continue
            self.dns_success.add(txid)
            if obs.ip_bogon:
                self.dns_bogon.add(txid)
            if obs.ctl_dns_addrs is None:
                continue
            probe = obs.dns_addrs or frozenset()
            if probe & obs.ctl_dns_addrs or self._asn_overlap(probe, obs.ctl_dns_addrs):
                self.dns_valid.add(txid)
                self.dns_valid_classic.add(txid)
            else:
                self.dns_invalid.add(txid)
                self.dns_invalid_classic.add(txid)
        for obs in c.endpoints.values():  # a validated TLS handshake vouches for the lookup
            if obs.tls_failure == "" and (obs.dns_transaction_id or 0) > 0:
                self.dns_invalid.discard(obs.dns_transaction_id or 0)
                self.dns_valid.add(obs.dns_transaction_id or 0)

    def dns_failure_metrics(self, c: _Container) -> None:
        seen: set[int] = set()
        for obs in c.dns_failures:
            txid = obs.dns_transaction_id or 0
            if txid in seen:
                continue
            seen.add(txid)
            if obs.dns_engine == "doh":  # a DoH failure is about the DoH service (ooni/probe#2274)
                continue
            if obs.dns_query_type == "AAAA" and obs.dns_failure == Failure.DNS_NO_ANSWER:
                continue
            if obs.tag_depth != 0:
                if obs.dns_failure:
                    self.dns_unexplained_failure.add(txid)
                continue
            if obs.dns_failure and self.dns_experiment_failure is None:
                self.dns_experiment_failure = obs.dns_failure
            if obs.ctl_dns_failure is None:
                continue
            if obs.dns_failure and obs.ctl_dns_failure:
                self.dns_expected_failure.add(txid)
            elif obs.ctl_dns_failure:
                continue
            elif obs.dns_failure:
                if obs.dns_failure == Failure.DNS_NO_ANSWER and obs.ctl_dns_addrs is not None and not obs.ctl_dns_addrs:
                    self.dns_expected_failure.add(txid)
                else:
                    self.dns_unexpected_failure.add(txid)

    def endpoint_metrics(self, c: _Container) -> None:
        for obs in c.endpoints.values():
            txid = obs.transaction_id
            if obs.tcp_failure is not None:
                _classify_failure(
                    obs.tag_depth,
                    obs.tcp_failure,
                    obs.ctl_tcp_failure,
                    txid,
                    self.tcp_expected_failure,
                    self.tcp_unexpected_failure,
                    self.tcp_unexplained_failure,
                    ignore_unexpected=_misconfigured_ipv6(obs),
                )
            if obs.tls_failure is not None:
                _classify_failure(
                    obs.tag_depth,
                    obs.tls_failure,
                    obs.ctl_tls_failure,
                    txid,
                    self.tls_expected_failure,
                    self.tls_unexpected_failure,
                    self.tls_unexplained_failure,
                    ignore_unexpected=False,
                )
            if obs.http_failure is not None:
                if obs.ctl_http_failure is None:
                    if obs.http_failure:
                        self.http_unexplained_failure.add(txid)
                elif obs.http_failure and not obs.ctl_http_failure:
                    self.http_unexpected_failure.add(txid)

    def final_response_metrics(self, c: _Container) -> None:
        for txid in sorted(c.endpoints):
            obs = c.endpoints[txid]
            if not obs.http_is_final:
                continue
            if obs.ctl_http_failure is None:
                if obs.tls_failure == "":
                    self.final_tls_without_control = txid
                else:
                    self.final_tcp_without_control = txid
                return
            if obs.tls_failure is not None:
                self.final_tls_with_control = txid
            else:
                self.final_tcp_with_control = txid
            self._http_diff(obs)
            return

    def _http_diff(self, obs: _Obs) -> None:
        measured = obs.http_body_length or 0
        control_length = obs.ctl_http_body_length or 0
        truncated = True if obs.http_body_truncated is None else obs.http_body_truncated
        if measured > 0 and not truncated and control_length > 0:
            self.body_proportion = min(measured, control_length) / max(measured, control_length)
        status, control_status = obs.http_status or 0, obs.ctl_http_status or 0
        if status > 0 and control_status > 0:
            self.status_code_match = _status_code_match(status, control_status)
        if control_status > 0:
            self.uncommon_headers = _uncommon_header_intersection(
                obs.http_header_keys or (), obs.ctl_http_header_keys or ()
            )
            self.title_different_words = _title_different_long_words(obs.http_title or "", obs.ctl_http_title or "")

    # the ts-017 HTTP-diff values
    @property
    def body_length_match(self) -> bool | None:
        return None if self.body_proportion is None else self.body_proportion > BODY_PROPORTION_FACTOR

    @property
    def headers_match(self) -> bool | None:
        return None if self.uncommon_headers is None else len(self.uncommon_headers) > 0

    @property
    def title_match(self) -> bool | None:
        return None if self.title_different_words is None else not self.title_different_words

    def http_diff(self) -> bool:
        """analysisHTTPDiffAlgorithm: equal status and (similar body or shared header or same title)."""
        if self.status_code_match:
            return not (self.body_length_match or self.headers_match or self.title_match)
        return True


def _classify_failure(
    depth: int | None,
    failure: str,
    control: str | None,
    txid: int,
    expected: set[int],
    unexpected: set[int],
    unexplained: set[int],
    *,
    ignore_unexpected: bool,
) -> None:
    """Expected (probe and control failed), unexpected (only the probe), unexplained (no control).

    `ignore_unexpected` drops probe-only failures that a broken local IPv6 explains (ooni/probe#2284).
    """
    if depth != 0:  # no control beyond the first request
        if failure and not ignore_unexpected:
            unexplained.add(txid)
        return
    if control is None:
        return
    if failure and control:
        expected.add(txid)
    elif failure and not control and not ignore_unexpected:
        unexpected.add(txid)


def _asn_table(tk: WebConnectivityTestKeys) -> dict[str, int]:
    table: dict[str, int] = {}
    for q in tk.queries or ():
        for answer in q.answers or ():
            if answer.address and answer.asn and answer.asn > 0:
                table.setdefault(answer.address, answer.asn)
    if tk.control is not None:
        for address, info in (tk.control.ip_info or {}).items():
            if info.asn > 0:
                table.setdefault(address, info.asn)
    return table


def _analyze(c: _Container, asn: Mapping[str, int]) -> _Analysis:
    wa = _Analysis(c.expectations, asn)
    wa.dns_success_metrics(c)
    wa.dns_failure_metrics(c)
    wa.endpoint_metrics(c)
    wa.final_response_metrics(c)
    return wa


def _linear(c: _Container) -> list[_Obs]:
    """NewLinearWebAnalysis: latest redirect first; HTTP, TLS, TCP, DNS; successes before failures."""
    return sorted(
        c.all(),
        key=lambda o: (
            -(o.tag_depth if o.tag_depth is not None else -1),
            -o.type,
            o.failure if o.failure is not None else "unknown_failure",
            -o.transaction_id,
        ),
    )


# --------------------------------------------------------------------------------------------------
# Classic blocking / accessible (analysisclassic.go)
# --------------------------------------------------------------------------------------------------


def _dns_consistency(wa: _Analysis) -> str | None:
    if (
        not wa.dns_unexpected_failure
        and not wa.dns_invalid_classic
        and (wa.dns_valid_classic or wa.dns_expected_failure)
    ):
        return "consistent"
    if (
        wa.dns_invalid_classic
        or wa.dns_unexpected_failure
        or (wa.dns_success and wa.expectations is not None and not wa.expectations.dns_addrs)
    ):
        return "inconsistent"
    return None


@dataclass(slots=True)
class _Verdict:
    """blocking/accessible setters of analysisclassic.go; inconsistent DNS turns any failure into "dns"."""

    consistency: str | None
    blocking: str | bool | None = None
    accessible: bool | None = None
    http_experiment_failure: str | None = None

    def reachable(self) -> None:
        self.blocking, self.accessible = False, True

    def undecided(self) -> None:
        if self.consistency == "inconsistent":
            self.blocking, self.accessible = BLOCKING_DNS, False
        else:
            self.blocking, self.accessible = None, None

    def blocked(self, value: str) -> None:
        self.blocking = BLOCKING_DNS if self.consistency == "inconsistent" else value
        self.accessible = False

    def site_down(self) -> None:
        if self.consistency == "inconsistent":
            self.blocking, self.accessible = BLOCKING_DNS, False
        else:
            self.blocking, self.accessible = False, False


def _classic_verdict(wa: _Analysis, linear: list[_Obs], verdict: _Verdict) -> None:
    for e in linear:
        if e.http_is_final:
            if e.tls_failure == "":
                return verdict.reachable()
            if e.ctl_http_failure is None:
                return verdict.undecided()
            return verdict.blocked(BLOCKING_HTTP_DIFF) if wa.http_diff() else verdict.reachable()
        if not e.failure:
            if (
                e.type == _DNS
                and e.failure == ""
                and e.ctl_dns_failure == ""
                and e.dns_addrs is not None
                and e.ctl_dns_addrs is not None
                and _only_loopback(e.dns_addrs)
            ):
                # the classic probe does not connect to loopback; compare with what the control resolved
                if not _only_loopback(e.ctl_dns_addrs):
                    return verdict.blocked(BLOCKING_DNS)
                return verdict.site_down()
            continue
        if e.type == _HTTP:
            verdict.http_experiment_failure = e.failure
            if e.ctl_http_failure is None:
                return verdict.undecided()
            return verdict.site_down() if e.ctl_http_failure else verdict.blocked(BLOCKING_HTTP_FAILURE)
        if e.type in (_TLS, _TCP):
            verdict.http_experiment_failure = e.failure
            control = e.ctl_tls_failure if e.type == _TLS else e.ctl_tcp_failure
            if control is None:
                if e.ctl_http_failure is None:
                    return verdict.undecided()
                return verdict.blocked(BLOCKING_HTTP_FAILURE)
            if control:
                return verdict.site_down()
            return verdict.blocked(BLOCKING_HTTP_FAILURE if e.type == _TLS else BLOCKING_TCP_IP)
        if e.type == _DNS:
            if e.ctl_dns_failure is None:
                verdict.http_experiment_failure = e.failure
                if e.ctl_http_failure is None:
                    return verdict.reachable()
                return verdict.blocked(BLOCKING_DNS)
            if e.ctl_dns_failure:
                verdict.http_experiment_failure = e.failure
                return verdict.site_down()
            if e.ctl_dns_addrs is not None and not e.ctl_dns_addrs:
                return verdict.site_down()  # the control's way of saying dns_no_answer
            verdict.http_experiment_failure = e.failure
            return verdict.blocked(BLOCKING_DNS)
    return None


# --------------------------------------------------------------------------------------------------
# v0.5 flags (analysisext.go)
# --------------------------------------------------------------------------------------------------


def _flags(wa: _Analysis) -> tuple[int, int, int]:
    blocking = dns = null_null = 0
    if wa.dns_bogon:  # a bogon alone may be the site's own misconfiguration: flagged, not blocking
        dns |= DNSFlag.BOGON
    if wa.dns_unexpected_failure:
        blocking |= BlockingFlag.DNS
        dns |= DNSFlag.UNEXPECTED_FAILURE
    if wa.dns_invalid:
        blocking |= BlockingFlag.DNS
        dns |= DNSFlag.UNEXPECTED_ADDRS
    if wa.tcp_unexpected_failure:
        blocking |= BlockingFlag.TCP_IP
    if wa.tls_unexpected_failure:
        blocking |= BlockingFlag.TLS
    if wa.http_unexpected_failure:
        blocking |= BlockingFlag.HTTP
    has_final = any(
        v is not None
        for v in (
            wa.final_tcp_without_control,
            wa.final_tls_without_control,
            wa.final_tls_with_control,
            wa.final_tcp_with_control,
        )
    )
    if not has_final and wa.expectations is not None and wa.expectations.final_response_failure == "":
        if wa.dns_unexplained_failure:
            blocking |= BlockingFlag.DNS
        if wa.tcp_unexplained_failure:
            blocking |= BlockingFlag.TCP_IP
        if wa.tls_unexplained_failure:
            blocking |= BlockingFlag.TLS
        if wa.http_unexplained_failure:
            blocking |= BlockingFlag.HTTP
    if wa.final_tcp_without_control is not None:
        pass
    elif wa.final_tls_without_control is not None:
        null_null |= NullNullFlag.SUCCESSFUL_HTTPS
        blocking |= BlockingFlag.SUCCESS
    elif wa.final_tls_with_control is not None:
        blocking |= BlockingFlag.SUCCESS
    elif wa.final_tcp_with_control is not None:
        blocking |= BlockingFlag.HTTP_DIFF if wa.http_diff() else BlockingFlag.SUCCESS
    if wa.dns_expected_failure:
        null_null |= NullNullFlag.EXPECTED_DNS_FAILURE
    if wa.tcp_expected_failure:
        null_null |= NullNullFlag.EXPECTED_TCP_FAILURE
    if wa.tls_expected_failure:
        null_null |= NullNullFlag.EXPECTED_TLS_FAILURE
    if wa.expectations is not None and not wa.expectations.dns_addrs and wa.dns_success:
        null_null |= NullNullFlag.UNEXPECTED_DNS_SUCCESS
    return blocking, dns, null_null


# --------------------------------------------------------------------------------------------------
# Chokepoint techniques
# --------------------------------------------------------------------------------------------------

_TIMEOUTS = frozenset({Failure.GENERIC_TIMEOUT_ERROR.value, "timed_out"})
_CERTIFICATE_ERRORS = frozenset(
    {Failure.SSL_INVALID_HOSTNAME.value, Failure.SSL_UNKNOWN_AUTHORITY.value, Failure.SSL_INVALID_CERTIFICATE.value}
)
_TH_NXDOMAIN = frozenset({"dns_name_error", Failure.DNS_NXDOMAIN_ERROR.value})
_BLOCKPAGE_SCOPES = frozenset({"nat", "isp", "prod", "inst"})


def _failure_kind(layer: str, failure: str) -> TechniqueKind:
    if failure == Failure.CONNECTION_RESET:
        return {"tcp": TechniqueKind.TCP_RESET, "tls": TechniqueKind.TLS_RESET}.get(layer, TechniqueKind.HTTP_RESET)
    if failure in _TIMEOUTS:
        return {"tcp": TechniqueKind.TCP_DROPPED, "tls": TechniqueKind.TLS_DROPPED}.get(
            layer, TechniqueKind.HTTP_DROPPED
        )
    if layer == "tcp":
        if failure == Failure.CONNECTION_REFUSED:
            return TechniqueKind.TCP_REFUSED
        if failure in (Failure.HOST_UNREACHABLE, Failure.NETWORK_UNREACHABLE):
            return TechniqueKind.TCP_UNREACHABLE
        return TechniqueKind.TCP_FAILURE
    if failure == Failure.EOF_ERROR:
        return TechniqueKind.TLS_EOF if layer == "tls" else TechniqueKind.HTTP_EOF
    if layer == "tls":
        return TechniqueKind.TLS_MITM if failure in _CERTIFICATE_ERRORS else TechniqueKind.TLS_FAILURE
    return TechniqueKind.HTTP_FAILURE


class _Techniques:
    def __init__(self) -> None:
        self.items: dict[tuple[TechniqueKind, str], Technique] = {}

    def add(self, technique: Technique) -> None:
        self.items.setdefault((technique.kind, technique.target), technique)


def _more_specific_blockpage(
    fingerprints: FingerprintDB,
    body: bytes,
    headers: Iterable[tuple[str, str]] | Mapping[str, str],
    benign: FingerprintMatch,
) -> FingerprintMatch | None:
    """A blockpage signature matching the page too, with a longer pattern than the false-positive one that
    matched first: the more specific signature wins (ooni/blocking-fingerprints has bare-word fp patterns
    such as "redirect" that would otherwise excuse any page naming a redirect.html, e.g. ooni.pk_1)."""
    blockpages = FingerprintDB((), (f for f in fingerprints.http if not f.is_false_positive))
    match = blockpages.match_http(body, headers)
    if match is None:
        return None
    return match if len(match.fingerprint.pattern) > len(benign.fingerprint.pattern) else None


#: A download counts as throttled only if it took at least this much longer than the control's rate allows
#: for its size: 0.1 s is well above a busy host's scheduling noise and well below what a 130-150 kbit/s
#: throttle (Russia 2021, Xue et al., IMC 2021) adds even to a 16 kB download (about 0.9 s).
THROTTLE_MIN_EXTRA_S = 0.1


def _techniques(
    tk: WebConnectivityTestKeys,
    c: _Container,
    wa: _Analysis,
    asn: Mapping[str, int],
    fingerprints: FingerprintDB | None,
    throttle_ratio: float,
) -> tuple[tuple[Technique, ...], tuple[FingerprintMatch, ...]]:
    out = _Techniques()
    matches: list[FingerprintMatch] = []
    control = tk.control if tk.control_request is not None else None
    domain = _url_hostname(tk.control_request.http_request) if tk.control_request is not None else None
    control_page_ok = control is not None and control.http_request.failure is None
    validated = {o.ip for o in c.endpoints.values() if o.tls_failure == "" and o.ip}
    control_addrs = frozenset(control.dns.addrs) if control is not None and control.dns.failure is None else None
    legit = set(control_addrs or ()) | validated
    if control is not None:
        legit |= {ip for ip, info in (control.ip_info or {}).items() if info.flags & 8}
    asn_legit = {asn[a] for a in legit if asn.get(a, 0) > 0}
    suspect: set[str] = set()  # addresses a DNS technique explains

    for q in tk.queries or ():
        if q.engine == "doh":  # encrypted: an on-path censor cannot forge it
            continue
        depth = _tag_depth(q.tags)
        with_control = control is not None and q.hostname == domain and depth == 0
        target = f"{q.hostname} ({q.engine} {q.query_type})"
        if q.failure is not None:
            if q.query_type == "AAAA" and q.failure == Failure.DNS_NO_ANSWER:
                continue
            expected_ok = (
                (control is not None and control.dns.failure is None and bool(control.dns.addrs))
                if with_control
                else (depth not in (None, 0) and control_page_ok)
            )
            if expected_ok:
                kind = (
                    TechniqueKind.DNS_NXDOMAIN if q.failure == Failure.DNS_NXDOMAIN_ERROR else TechniqueKind.DNS_FAILURE
                )
                out.add(Technique(kind, target, "lookup failed where the control resolved the name", failure=q.failure))
            continue
        addresses = q.addresses
        known_answer: FingerprintMatch | None = None
        for address in addresses:
            match = fingerprints.match_dns(address) if fingerprints is not None else None
            if match is None:
                continue
            matches.append(match)
            if not match.is_false_positive and address not in (control_addrs or ()) and known_answer is None:
                known_answer = match
        bogons = [a for a in addresses if _telling_bogon(a, control_addrs or frozenset())]
        if bogons and (with_control or control_page_ok):
            suspect.update(bogons)
            out.add(
                Technique(
                    TechniqueKind.DNS_BOGON,
                    target,
                    f"bogon answer {', '.join(bogons)}",
                    fingerprint=known_answer if known_answer and known_answer.matched in bogons else None,
                )
            )
        public = [a for a in addresses if not is_bogon(a)]
        forged = None
        if known_answer is not None and known_answer.matched in public:
            forged = f"answer {known_answer.matched} is a known censor address"
        elif with_control and addresses and control is not None and control.dns.failure in _TH_NXDOMAIN:
            forged = f"answered {', '.join(addresses)} for a name the control finds nonexistent"
        elif (
            with_control
            and public
            and control_addrs is not None
            and not any(a in legit or asn.get(a, 0) in asn_legit for a in public)
        ):
            forged = f"answers {', '.join(public)} share no address or ASN with the control"
        if forged is not None:
            suspect.update(public)
            out.add(Technique(TechniqueKind.DNS_FORGED, target, forged, fingerprint=known_answer))

    def reachable(obs: _Obs) -> bool:
        """No per-endpoint control: trust an address the control vouches for, or (after a redirect,
        where the control only followed the chain) any address no DNS technique explains."""
        if not control_page_ok or obs.ip is None:
            return False
        return obs.ip in legit or (obs.tag_depth not in (None, 0) and obs.ip not in suspect)

    for obs in c.endpoints.values():
        address = obs.endpoint_address or ""
        if obs.tcp_failure and not _misconfigured_ipv6(obs):
            expected_ok = (obs.ctl_tcp_failure == "") if obs.ctl_tcp_failure is not None else reachable(obs)
            if expected_ok:
                out.add(
                    Technique(
                        _failure_kind("tcp", obs.tcp_failure),
                        address,
                        "connect failed where the control's succeeded",
                        failure=obs.tcp_failure,
                    )
                )
        if obs.tls_failure:
            expected_ok = (obs.ctl_tls_failure == "") if obs.ctl_tls_failure is not None else reachable(obs)
            if expected_ok:
                out.add(
                    Technique(
                        _failure_kind("tls", obs.tls_failure),
                        f"{address} sni={obs.tls_server_name}",
                        "TLS handshake failed where the control's succeeded",
                        failure=obs.tls_failure,
                    )
                )

    diff_on_final = wa.final_tcp_with_control is not None and wa.http_diff()
    final_txid = wa.final_tcp_with_control
    for r in tk.requests or ():
        if r.failure is not None:
            if control_page_ok:
                stalled = r.response is not None and r.response.code > 0
                evidence = "request failed where the control fetched the page"
                if stalled and r.failure in _TIMEOUTS:
                    evidence += f" (timed out after a {r.response.code} response began: throttling?)"
                out.add(Technique(_failure_kind("http", r.failure), r.request.url, evidence, failure=r.failure))
            continue
        response = r.response
        if response is None or fingerprints is None:
            continue
        headers = response.headers_list or tuple(response.headers.items())
        match = fingerprints.match_http(response.body_bytes, headers)
        if match is None:
            continue
        if match.is_false_positive:
            specific = _more_specific_blockpage(fingerprints, response.body_bytes, headers, match)
            if specific is not None:
                matches.append(match)
                match = specific
        matches.append(match)
        differs = (r.transaction_id == final_txid and diff_on_final) or not control_page_ok
        if not match.is_false_positive and (match.scope in _BLOCKPAGE_SCOPES or differs):
            out.add(
                Technique(
                    TechniqueKind.HTTP_BLOCKPAGE,
                    r.request.url,
                    f"response matches blocking fingerprint {match.name} ({match.scope})",
                    fingerprint=match,
                )
            )

    if diff_on_final and final_txid is not None:
        final = next((r for r in tk.requests or () if r.transaction_id == final_txid), None)
        url = final.request.url if final is not None else ""
        known = any(t.kind == TechniqueKind.HTTP_BLOCKPAGE and t.target == url for t in out.items.values())
        benign = any(m.is_false_positive for m in matches)
        if not known and not benign:
            out.add(Technique(TechniqueKind.HTTP_DIFF, url, "final response differs from the control's"))

    extras: ChokepointObservations | None = tk.x_chokepoint
    for obs_t in extras.throughput if extras is not None else ():
        rate, control_rate = obs_t.rate_bps, obs_t.control_rate_bps
        if rate is not None and control_rate:
            ratio = rate / control_rate
            # Both rates of a fast path come from sub-millisecond transfers, where scheduling noise alone can
            # make one several times the other: a throttled download must also have taken measurably longer.
            slower_by = obs_t.seconds - obs_t.control_seconds * obs_t.bytes / max(obs_t.control_bytes, 1)
            if ratio < throttle_ratio and slower_by >= THROTTLE_MIN_EXTRA_S:
                out.add(
                    Technique(
                        TechniqueKind.THROTTLED,
                        obs_t.target,
                        f"{rate / 1000:.1f} kbit/s vs {control_rate / 1000:.1f} kbit/s on the control path",
                        throughput_ratio=ratio,
                    )
                )
    for obs_r in extras.residual if extras is not None else ():
        if obs_r.duration_s > 0:
            out.add(
                Technique(
                    TechniqueKind.RESIDUAL,
                    obs_r.target,
                    f"blocked for {obs_r.duration_s:g} s after {obs_r.trigger}",
                    failure=obs_r.failure,
                    duration_s=obs_r.duration_s,
                )
            )
    return tuple(out.items.values()), tuple(matches)


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def classify(
    test_keys: WebConnectivityTestKeys, *, fingerprints: FingerprintDB | None = None, throttle_ratio: float = 0.3
) -> WebConnectivityResult:
    """Classify Web Connectivity observations; reads only raw observations and the control, never the
    classification keys already present in `test_keys`."""
    asn = _asn_table(test_keys)
    full = _ingest(test_keys)
    ext = _analyze(full, asn)
    classic = _classic_filter(full)
    wa = _analyze(classic, asn)
    verdict = _Verdict(_dns_consistency(wa))
    _classic_verdict(wa, _linear(classic), verdict)
    blocking_flags, dns_flags, null_null_flags = _flags(ext)
    techniques, matches = _techniques(test_keys, full, ext, asn, fingerprints, throttle_ratio)
    return WebConnectivityResult(
        blocking=verdict.blocking,
        accessible=verdict.accessible,
        dns_consistency=verdict.consistency,
        dns_experiment_failure=wa.dns_experiment_failure or None,
        http_experiment_failure=verdict.http_experiment_failure,
        body_proportion=wa.body_proportion or 0.0,
        body_length_match=wa.body_length_match,
        headers_match=wa.headers_match,
        status_code_match=wa.status_code_match,
        title_match=wa.title_match,
        x_blocking_flags=blocking_flags,
        x_dns_flags=dns_flags,
        x_null_null_flags=null_null_flags,
        techniques=techniques,
        fingerprint_matches=matches,
    )


def annotate(
    measurement: Measurement, *, fingerprints: FingerprintDB | None = None, throttle_ratio: float = 0.3
) -> Measurement:
    """The measurement with its classification keys (and `x_chokepoint.techniques`) filled in."""
    tk = measurement.web_connectivity
    result = classify(tk, fingerprints=fingerprints, throttle_ratio=throttle_ratio)
    extras = tk.x_chokepoint or ChokepointObservations()
    extras = replace(extras, techniques=tuple(t.to_json() for t in result.techniques))
    keys = replace(
        tk,
        blocking=result.blocking,
        accessible=result.accessible,
        dns_consistency=result.dns_consistency,
        dns_experiment_failure=result.dns_experiment_failure,
        http_experiment_failure=result.http_experiment_failure,
        body_proportion=result.body_proportion,
        body_length_match=result.body_length_match,
        headers_match=result.headers_match,
        status_code_match=result.status_code_match,
        title_match=result.title_match,
        x_blocking_flags=result.x_blocking_flags,
        x_dns_flags=result.x_dns_flags,
        x_null_null_flags=result.x_null_null_flags,
        x_chokepoint=extras,
    )
    return replace(measurement, test_keys=keys)
