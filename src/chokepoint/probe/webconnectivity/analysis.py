"""Analysis of the flat observations (minipipeline analysis.go), including the HTTP diff (analysishttpdiff.go)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from chokepoint.probe.measurement import Failure, WebConnectivityTestKeys
from chokepoint.probe.webconnectivity.observations import _Container, _ControlExpectations, _misconfigured_ipv6, _Obs

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
