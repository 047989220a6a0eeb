"""Chokepoint's per-layer technique list, with the control as the expectation."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urljoin

from chokepoint.probe.fingerprints import FingerprintDB, FingerprintMatch
from chokepoint.probe.measurement import ChokepointObservations, Failure, WebConnectivityTestKeys
from chokepoint.probe.webconnectivity.addresses import _parse_ip, _telling_bogon, _url_hostname, is_bogon
from chokepoint.probe.webconnectivity.analysis import _Analysis
from chokepoint.probe.webconnectivity.observations import _Container, _misconfigured_ipv6, _Obs, _tag_depth
from chokepoint.probe.webconnectivity.results import Technique, TechniqueKind

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


def _blockpage_redirect_targets(
    tk: WebConnectivityTestKeys, fingerprints: FingerprintDB | None
) -> tuple[frozenset[str], frozenset[str]]:
    """(hosts, addresses) the probe was redirected to by a response that matches a blockpage fingerprint (e.g.
    ooni.by_1, ``Location: http://82.209.230.23``): the censor's blockpage host. The control's chain never goes
    there (OONI's test helper measures only the first hop's endpoints), so a failure to reach it is not a second
    technique: a blockpage server the probe cannot reach still makes the answer a blockpage."""
    if fingerprints is None:
        return frozenset(), frozenset()
    hosts: set[str] = set()
    for r in tk.requests or ():
        response = r.response
        if response is None:
            continue
        headers = response.headers_list or tuple(response.headers.items())
        location = next(
            (v.decode("latin-1") if isinstance(v, bytes) else str(v) for k, v in headers if k.lower() == "location"),
            None,
        )
        if not location:
            continue
        match = fingerprints.match_http(response.body_bytes, headers)
        if match is None or match.is_false_positive:
            continue
        try:
            host = _url_hostname(urljoin(r.request.url, location))
        except ValueError:
            continue
        if host:
            hosts.add(host)
    addrs = {h for h in hosts if _parse_ip(h) is not None}
    for q in tk.queries or ():
        if q.hostname in hosts:
            addrs.update(q.addresses)
    return frozenset(hosts), frozenset(addrs)


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

    blockpage_hosts, blockpage_addrs = _blockpage_redirect_targets(tk, fingerprints)

    def reachable(obs: _Obs) -> bool:
        """No per-endpoint control: trust an address the control vouches for, or (after a redirect,
        where the control only followed the chain) any address no DNS technique explains, except the host
        a blockpage redirect sent the probe to (the control's chain never went there)."""
        if not control_page_ok or obs.ip is None:
            return False
        if obs.tag_depth not in (None, 0) and obs.ip in blockpage_addrs:
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
            if control_page_ok and _url_hostname(r.request.url) not in blockpage_hosts:
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
