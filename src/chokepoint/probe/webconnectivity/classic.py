"""Classic `blocking` / `accessible` (analysisclassic.go)."""

from __future__ import annotations

from dataclasses import dataclass

from chokepoint.probe.webconnectivity.addresses import _only_loopback
from chokepoint.probe.webconnectivity.analysis import _Analysis
from chokepoint.probe.webconnectivity.observations import _DNS, _HTTP, _TCP, _TLS, _Obs
from chokepoint.probe.webconnectivity.results import (
    BLOCKING_DNS,
    BLOCKING_HTTP_DIFF,
    BLOCKING_HTTP_FAILURE,
    BLOCKING_TCP_IP,
)


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
