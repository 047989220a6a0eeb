"""Flat observations (minipipeline WebObservation): one record per DNS answer / endpoint, cross-referenced with
the control, in a container; the "classic" filter.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from chokepoint.probe.measurement import Failure, HTTPResponseRecord, WebConnectivityTestKeys
from chokepoint.probe.webconnectivity.addresses import _parse_ip, _url_hostname, is_bogon

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
