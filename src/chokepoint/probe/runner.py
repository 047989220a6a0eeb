"""Run the probes for one target and assemble ONE OONI Web Connectivity measurement (ts-017, v0.5 keys),
classified by `chokepoint.probe.webconnectivity.annotate`.

What "control" means here. OONI compares the probe's view with a test helper's view from an uncensored
network. In the lab (`probe --lab`, `lab_config`) that is what the control is: the lab's test helper
(`chokepoint.lab.testhelper`, http://198.18.9.1:8080/ in `<lab>-control`, which reaches the server around
the censor) gets OONI's control request (the URL, the probe's endpoints) after the probe's DNS lookup and
answers with its own DNS, TCP, TLS and HTTP view, recorded as `test_keys.control` as OONI records it; with the
`quic` test the request sets oohelperd's `x_quic_enabled`, and the helper's `quic_handshake` (its own QUIC
handshakes on port 443) is the QUIC test's control.

Without a test helper (`test_helper=None`: outside the lab, or `probe --lab --in-path-control`) the control
is the older in-path one, from the probe itself:

- DNS: the control resolver (the lab's 198.18.9.1:53, outside the censor's path; `control_resolver`);
- TCP: connects from the probe to the same endpoints (the control resolver's addresses and the probe's);
  a connect has no name in it, so this control goes through the censor too: IP/port blocking therefore
  looks like a site that is down (blocking false, accessible false), not like censorship;
- TLS: a handshake to each endpoint with a control SNI (`control_host`), like OONI's sni_blocking
  (ts-024); the certificate is verified (the lab server issues one for any name);
- HTTP: the same URL fetched with the control Host (and SNI) from the control resolver's addresses,
  following redirects, through the same path.

So the control isolates what the censor keys on: names (DNS answers, SNI, Host), not addresses. It is
meaningful when the server answers the control name like the real one, as the lab server does for every
name; on the open Internet a virtual host would answer a foreign Host differently. The control runs before
the probe's own TCP/TLS/HTTP, so a residual block the real request triggers cannot spoil it; later probes
(QUIC, FET, throughput, residual) do run after the trigger.

Layout of the measurement (as OONI's QA measurements): base keys (df-000); `test_keys.queries`,
`tcp_connect`, `tls_handshakes`, `requests` (newest first) with `t0`/`t`, `transaction_id`, `depth=N` and
`fetch_body=` tags; `x_control_request` and `control` (the control above, in the test helper's format);
`quic_handshakes`; `x_chokepoint` with `throughput`, `residual`, `techniques` and, in its extra keys, `fet`,
`quic` requests, the control's own DNS records and the control definition. Endpoint order per depth:
the system resolver's addresses (tagged `classic`), then at depth 0 the control resolver's other
addresses (OONI's extension E005); for an http:// URL with the tls test, TLS to port 443 with the real SNI
(E001, `fetch_body=false`). One body is fetched per depth, on the first endpoint that connects.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chokepoint.lab import instance
from chokepoint.probe.fingerprints import FingerprintDB
from chokepoint.probe.measurement import (
    ChokepointObservations,
    ControlDNS,
    ControlHTTPRequest,
    ControlIPInfo,
    ControlRequest,
    ControlResponse,
    ControlTCPConnect,
    ControlTLSHandshake,
    DNSQuery,
    Failure,
    HTTPTransaction,
    MalformedMeasurement,
    Measurement,
    ResidualObservation,
    TCPConnect,
    ThroughputObservation,
    TLSHandshake,
    WebConnectivityTestKeys,
    failure_from_exception,
    format_ooni_time,
)
from chokepoint.probe.probes import dns, fet, http, quic, residual, throughput
from chokepoint.probe.probes.common import (
    ProbeContext,
    ProbeError,
    Target,
    ascii_hostname,
    endpoint_tags,
    ip_literal,
    join_host_port,
    parse_target,
)
from chokepoint.probe.webconnectivity import annotate, is_bogon

__all__ = [
    "CONTROL_DEFINITION",
    "DEFAULT_TESTS",
    "LAB_CONTROL_RESOLVER",
    "LAB_TEST_HELPER",
    "LAB_RESOLVER",
    "TESTS",
    "ProbeConfig",
    "lab_config",
    "parse_tests",
    "run",
    "run_many",
]

TESTS = ("dns", "tcp", "tls", "http", "quic", "fet", "throughput", "residual")
DEFAULT_TESTS = frozenset(TESTS) - {"residual"}
LAB_RESOLVER = ("198.19.0.53", 53)
LAB_CONTROL_RESOLVER = ("198.18.9.1", 53)
LAB_CA_FILE = str(instance.STATE_DIR / "ca.pem")
DEFAULT_CONTROL_HOST = "control.chokepoint.test"
#: The lab's test helper (chokepoint.lab.testhelper, in the control namespace).
LAB_TEST_HELPER = "http://198.18.9.1:8080/"
TEST_HELPER_DEFINITION = (
    "OONI's Web Connectivity test helper in the lab's control namespace: its own DNS (the control resolver), "
    "TCP connects to the probe's and its own endpoints, TLS handshakes, QUIC handshakes on 443 (with the quic "
    "test) and the HTTP fetch of the same URL, over a path to the server that does not cross the censor."
)
DEFAULT_ECHO_PORT = 9000
TEST_VERSION = "0.5.0"
CONTROL_DEFINITION = (
    "DNS: the control resolver; TCP: the same endpoints through the same path; TLS: the same endpoints with "
    "the control SNI; HTTP: the same URL with the control Host/SNI through the same path, before the probe's "
    "own requests. Only name-keyed censorship (DNS, SNI, Host) differs from the control."
)
#: The control's page fetch when no tcp/tls/http test ran (OONI has no such case: its helper always fetches).
NOT_MEASURED = "unknown_failure: not measured (no tcp, tls or http test selected)"
_ENDPOINT_TESTS = frozenset({"tcp", "tls", "http", "quic", "fet", "throughput", "residual"})


def parse_tests(text: str | Iterable[str]) -> frozenset[str]:
    """ "all", "default" or a comma-separated subset of TESTS; raises ProbeError for unknown names."""
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text) if p.strip()]
    out: set[str] = set()
    for item in items:
        if item == "all":
            out |= set(TESTS)
        elif item == "default":
            out |= DEFAULT_TESTS
        elif item in TESTS:
            out.add(item)
        else:
            raise ProbeError(f"unknown test {item!r}; choose from {', '.join(TESTS)}, all, default")
    if not out:
        raise ProbeError("no test selected")
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class ProbeConfig:
    """What to run and against which resolvers. Addresses are (ip, port) pairs."""

    tests: frozenset[str] = DEFAULT_TESTS
    timeout: float = 10.0
    cafile: str | None = None
    system_resolver: tuple[str, int] | None = None  # None: getaddrinfo; else a stub to this server
    control_resolver: tuple[str, int] | None = LAB_CONTROL_RESOLVER
    udp_resolver: tuple[str, int] | None = None
    tcp_resolver: tuple[str, int] | None = None
    doh_url: str | None = None
    control_host: str = DEFAULT_CONTROL_HOST
    #: URL of an OONI Web Connectivity test helper for the control (None: the in-path control, see above)
    test_helper: str | None = None
    echo_port: int = DEFAULT_ECHO_PORT
    quic_port: int | None = None  # default: the URL's port for https, else 443
    throughput_bytes: int = throughput.DEFAULT_SIZE
    throughput_seconds: float = throughput.DEFAULT_MAX_SECONDS
    residual_interval: float = residual.DEFAULT_INTERVAL
    residual_seconds: float = residual.DEFAULT_MAX_SECONDS
    fet_attempts: int = fet.DEFAULT_ATTEMPTS
    fet_seed: int | None = None
    max_redirects: int = 10
    fingerprints: FingerprintDB | None = None
    lab: bool = False
    #: extra measurement annotations (``probe --lab`` adds the lab censor's profile and day)
    annotations: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        unknown = set(self.tests) - set(TESTS)
        if unknown or not self.tests:
            raise ProbeError(f"unknown or no tests: {sorted(unknown)}; choose from {', '.join(TESTS)}")
        if not self.timeout > 0:
            raise ProbeError("the timeout must be positive")
        if not 0 < self.echo_port < 65536 or (self.quic_port is not None and not 0 < self.quic_port < 65536):
            raise ProbeError("ports must be 1-65535")
        if ip_literal(self.control_host) is not None or ascii_hostname(self.control_host) != self.control_host:
            raise ProbeError(f"the control host must be a lowercase ASCII host name, not {self.control_host!r}")
        if self.max_redirects < 0:
            raise ProbeError("max_redirects cannot be negative")


def lab_config(**overrides: Any) -> ProbeConfig:
    """Defaults for a probe inside `cpk-client`: the lab resolver for the extra UDP/TCP lookups (the system
    resolver already is it, via /etc/netns/cpk-client/resolv.conf), the control resolver and the lab CA."""
    settings: dict[str, Any] = {
        "control_resolver": LAB_CONTROL_RESOLVER,
        "test_helper": LAB_TEST_HELPER,
        "udp_resolver": LAB_RESOLVER,
        "tcp_resolver": LAB_RESOLVER,
        "lab": True,
        "cafile": LAB_CA_FILE if Path(LAB_CA_FILE).is_file() else None,
    }
    settings.update(overrides)
    return ProbeConfig(**settings)


# --------------------------------------------------------------------------------------------------
# Collected observations
# --------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Observations:
    queries: list[DNSQuery] = field(default_factory=list)
    tcp_connect: list[TCPConnect] = field(default_factory=list)
    tls_handshakes: list[TLSHandshake] = field(default_factory=list)
    requests: list[HTTPTransaction] = field(default_factory=list)

    def add(self, result: http.FetchResult) -> None:
        self.tcp_connect.append(result.connect)
        if result.handshake is not None:
            self.tls_handshakes.append(result.handshake)
        if result.fetched is not None:
            self.requests.append(result.fetched.transaction)


@dataclass(slots=True)
class _Control:
    """The control's view, in the test helper's format, plus its raw records."""

    dns: ControlDNS | None = None
    failure: str | None = None
    addrs: tuple[str, ...] = ()
    queries: list[DNSQuery] = field(default_factory=list)
    tcp: dict[str, ControlTCPConnect] = field(default_factory=dict)
    tls: dict[str, ControlTLSHandshake] = field(default_factory=dict)
    http: ControlHTTPRequest = field(default_factory=ControlHTTPRequest)
    records: list[dict[str, Any]] = field(default_factory=list)


def _addresses(query: DNSQuery | Iterable[DNSQuery]) -> list[str]:
    out: list[str] = []
    for q in (query,) if isinstance(query, DNSQuery) else query:
        for address in q.addresses:
            if address not in out:
                out.append(address)
    return out


# --------------------------------------------------------------------------------------------------
# DNS
# --------------------------------------------------------------------------------------------------


def _control_dns(ctx: ProbeContext, host: str, config: ProbeConfig, control: _Control) -> None:
    """The control resolver's A and AAAA answers; no answer at all (timeout, refused) = no control."""
    literal = ip_literal(host)
    if literal is not None:
        control.dns, control.addrs = ControlDNS(None, (literal,)), (literal,)
        return
    if config.control_resolver is None:
        control.failure = "unknown_failure: no control resolver configured"
        return
    records = dns.lookup_udp(ctx, host, config.control_resolver, tags=("control", "depth=0"))
    control.queries.extend(records)
    addrs = _addresses(records)
    if addrs:
        control.dns, control.addrs = ControlDNS(None, tuple(addrs)), tuple(addrs)
        return
    failures = [r.failure for r in records if r.failure]
    answered = [r for r in records if r.rcode is not None]
    if not answered:  # the control resolver itself is unreachable: there is no control
        control.failure = failures[0] if failures else Failure.DNS_SERVER_MISBEHAVING.value
        return
    failure = next((f for f in failures if f != Failure.DNS_NO_ANSWER), None) or Failure.DNS_NO_ANSWER.value
    control.dns = ControlDNS(failure, ())


def _system_lookup(ctx: ProbeContext, host: str, depth: int, config: ProbeConfig) -> DNSQuery:
    tags = ("classic", f"depth={depth}")
    if config.system_resolver is not None:
        return dns.lookup_stub(ctx, host, config.system_resolver, tags=tags)
    return dns.lookup_getaddrinfo(ctx, host, tags=tags)


def _probe_dns(ctx: ProbeContext, obs: _Observations, host: str, depth: int, config: ProbeConfig) -> list[str]:
    """The system resolver's addresses (the ones the probe connects to), plus the extra lookups."""
    literal = ip_literal(host)
    if literal is not None:  # libc answers a numeric host itself (no network), as the classic analysis needs
        system = dns.lookup_getaddrinfo(ctx, literal, tags=("classic", f"depth={depth}"))
        obs.queries.append(system)
        return _addresses(system) or [literal]
    system = _system_lookup(ctx, host, depth, config)
    obs.queries.append(system)
    if "dns" in config.tests:
        tags = (f"depth={depth}",)
        if config.udp_resolver is not None:
            obs.queries.extend(dns.lookup_udp(ctx, host, config.udp_resolver, tags=tags))
        if config.tcp_resolver is not None:
            obs.queries.extend(dns.lookup_tcp(ctx, host, config.tcp_resolver, tags=tags))
        if config.doh_url is not None:
            obs.queries.extend(dns.lookup_doh(ctx, host, config.doh_url, tags=tags))
    return _addresses(system)


# --------------------------------------------------------------------------------------------------
# The control's TCP/TLS/HTTP and the probe's
# --------------------------------------------------------------------------------------------------


def _web_steps(config: ProbeConfig) -> tuple[bool, bool]:
    """(tls handshake, http request) for the endpoint pipeline."""
    return bool(config.tests & {"tls", "http"}), "http" in config.tests


def _control_web(
    ctx: ProbeContext, target: Target, probe_addrs: list[str], config: ProbeConfig, control: _Control
) -> None:
    """Connect (and handshake) to every endpoint with the control name; fetch the page from the control
    resolver's addresses. The fetch runs whatever tests were chosen: it is the classifier's expectation."""
    do_tls, _ = _web_steps(config)
    host = config.control_host
    endpoints = list(dict.fromkeys([*control.addrs, *probe_addrs]))
    fetched: http.Fetched | None = None
    failure: str | None = None
    for ip in endpoints:
        want_get = fetched is None and ip in control.addrs
        result = http.fetch(
            ctx, target, ip, host=host, tags=("control", "depth=0"), tls_handshake=do_tls or want_get, request=want_get
        )
        _control_record(control, result, host, target.port)
        if want_get:
            failure = result.failure
            if result.fetched is not None and result.fetched.failure is None:
                fetched = result.fetched
    if target.scheme == "http" and "tls" in config.tests:  # E001's counterpart: port 443, control SNI
        tls_target = Target(target.url, "https", target.host, 443, target.path)
        for ip in endpoints:
            result = http.fetch(ctx, tls_target, ip, host=host, tags=("control", "depth=0"), request=False)
            _control_record(control, result, host, 443)
    if fetched is None:
        control.http = ControlHTTPRequest(
            failure=failure or (control.dns.failure if control.dns else None) or Failure.DNS_NO_ANSWER.value
        )
        return
    fetched = _control_follow(ctx, target, fetched, config, control)
    if fetched.failure is not None:
        control.http = ControlHTTPRequest(failure=fetched.failure)
        return
    control.http = ControlHTTPRequest(fetched.status, len(fetched.body), fetched.title, fetched.headers, None)


def _control_record(control: _Control, result: http.FetchResult, host: str, port: int) -> None:
    endpoint = join_host_port(result.connect.ip, port)
    control.tcp[endpoint] = ControlTCPConnect(result.connect.failure is None, result.connect.failure)
    if result.handshake is not None:
        control.tls[endpoint] = ControlTLSHandshake(host, result.handshake.failure is None, result.handshake.failure)
    control.records.append(
        {
            "tcp_connect": result.connect.to_json(),
            "tls_handshake": None if result.handshake is None else result.handshake.to_json(),
            "request": None if result.fetched is None else result.fetched.transaction.to_json(),
        }
    )


def _control_follow(
    ctx: ProbeContext, target: Target, fetched: http.Fetched, config: ProbeConfig, control: _Control
) -> http.Fetched:
    """Follow redirects like the test helper: each hop resolved by the control resolver, fetched with the
    control Host."""
    current = target
    for _ in range(config.max_redirects):
        if fetched.location is None:
            break
        try:
            current = current.with_url(fetched.location)
        except ProbeError:
            break
        hop = _Control()
        _control_dns(ctx, current.host, config, hop)
        control.queries.extend(hop.queries)
        if not hop.addrs:
            break
        result = http.fetch(ctx, current, hop.addrs[0], host=config.control_host, tags=("control", "redirect"))
        control.records.append(
            {
                "tcp_connect": result.connect.to_json(),
                "request": None if result.fetched is None else result.fetched.transaction.to_json(),
            }
        )
        if result.fetched is None:
            return fetched if result.failure is None else _with_failure(fetched, result.failure)
        fetched = result.fetched
    return fetched


def _helper_request(target: Target, classic: list[str], config: ProbeConfig) -> ControlRequest:
    """OONI's control request: the URL, the probe's headers and the endpoints it is about to connect to
    (its system resolver's addresses on the URL's port, and on 443 for an http:// URL with the tls test)."""
    endpoints = [join_host_port(ip, target.port) for ip in classic]
    if target.scheme == "http" and "tls" in config.tests:
        endpoints += [join_host_port(ip, 443) for ip in classic]
    headers = {name: (value,) for name, value in http.REQUEST_HEADERS}
    # the helper's timeouts are the probe's (chokepoint.lab.testhelper.TIMEOUT_KEY; not in OONI's request)
    extra: dict[str, Any] = {"x_chokepoint_timeout": config.timeout}
    if "quic" in config.tests:  # oohelperd's feature flag: its own QUIC handshakes on port 443
        extra["x_quic_enabled"] = True
    return ControlRequest(target.url, tuple(dict.fromkeys(endpoints)), headers, extra)


def _ask_test_helper(url: str, request: ControlRequest, timeout: float) -> tuple[ControlResponse | None, str | None]:
    """POST the control request to the test helper: (its response, None), or (None, the control failure)."""
    data = json.dumps(request.to_json()).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    # the helper performs DNS, every connect/handshake and the fetch, each bounded by its own timeout
    budget = timeout * (4 + (4 if request.extra.get("x_quic_enabled") else 2) * len(request.tcp_connect or ()))
    try:
        with urllib.request.urlopen(req, timeout=budget) as reply:  # noqa: S310 - an http(s) URL from the config
            body = reply.read()
    except urllib.error.HTTPError as exc:
        return None, f"unknown_failure: test helper answered {exc.code}"
    except (OSError, ValueError) as exc:
        cause = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, OSError) else exc
        return None, failure_from_exception(cause) if isinstance(cause, OSError) else f"unknown_failure: {exc}"
    try:
        return ControlResponse.from_json(json.loads(body), "control"), None
    except (ValueError, MalformedMeasurement) as exc:
        return None, f"unknown_failure: bad test helper response: {exc}"


def _with_failure(fetched: http.Fetched, failure: str) -> http.Fetched:
    """The same exchange marked as failed (a later redirect hop failed)."""
    return http.Fetched(replace(fetched.transaction, failure=failure), fetched.body, fetched.title, None)


def _probe_web(
    ctx: ProbeContext, obs: _Observations, target: Target, classic: list[str], control: _Control, config: ProbeConfig
) -> None:
    """Endpoints per depth, following redirects (one body per depth, on the first endpoint that connects)."""
    do_tls, do_http = _web_steps(config)
    current, depth = target, 0
    while True:
        extra = [a for a in control.addrs if a not in classic] if depth == 0 else []
        fetched: http.Fetched | None = None
        for ip in [*classic, *extra]:
            want_get = do_http and fetched is None
            result = http.fetch(
                ctx,
                current,
                ip,
                tags=endpoint_tags(depth, classic=ip in classic, fetch_body=True),
                tls_handshake=do_tls,
                request=want_get,
            )
            obs.add(result)
            if want_get and result.fetched is not None:
                fetched = result.fetched
        if depth == 0 and current.scheme == "http" and "tls" in config.tests:  # E001
            tls_target = Target(current.url, "https", current.host, 443, current.path)
            for ip in classic:
                obs.add(
                    http.fetch(
                        ctx, tls_target, ip, tags=endpoint_tags(0, classic=True, fetch_body=False), request=False
                    )
                )
        if fetched is None or fetched.location is None or depth >= config.max_redirects:
            return
        try:
            current = current.with_url(fetched.location)
        except ProbeError:
            obs.requests[-1] = replace(obs.requests[-1], failure=Failure.HTTP_INVALID_REDIRECT_LOCATION_HOST.value)
            return
        depth += 1
        classic = _probe_dns(ctx, obs, current.host, depth, config)


# --------------------------------------------------------------------------------------------------
# The other probes
# --------------------------------------------------------------------------------------------------


def _technique(kind: str, layer: str, target: str, evidence: str, failure: str | None) -> dict[str, Any]:
    out = {"technique": kind, "layer": layer, "target": target, "evidence": evidence}
    if failure is not None:
        out["failure"] = failure
    return out


def _run_quic(
    ctx: ProbeContext,
    target: Target,
    ip: str,
    config: ProbeConfig,
    extras: dict[str, Any],
    techniques: list[dict[str, Any]],
    helper: ControlResponse | None = None,
) -> tuple[list[dict], dict[str, Any]]:
    """The probe's QUIC handshake and HTTP/3 GET, against a control: the test helper's own QUIC handshake to the
    same endpoint when it measured one (``quic_handshake``, asked with ``x_quic_enabled`` as OONI does: the
    control's path does not cross the censor, so a censor that drops every QUIC Initial is told from a server
    without HTTP/3), else the same GET with the control SNI through the same path."""
    port = config.quic_port or (target.port if target.scheme == "https" else 443)
    endpoint = join_host_port(ip, port)

    def authority(name: str) -> str:
        return name if port == 443 else f"{name}:{port}"

    helper_map = helper.extra.get("quic_handshake") if helper is not None else None
    helper_entry = helper_map.get(endpoint) if isinstance(helper_map, dict) else None
    control = None
    if not isinstance(helper_entry, dict):
        control = quic.get_h3(
            ctx,
            ip,
            port,
            config.control_host,
            authority=authority(config.control_host),
            path=target.path,
            tags=("control", "depth=0"),
        )
    real = quic.get_h3(
        ctx, ip, port, target.host, authority=authority(target.host), path=target.path, tags=("depth=0",)
    )
    extras["quic"] = {
        "requests": [real.request.to_json()] if real.request else [],
        "control_requests": [control.request.to_json()] if control is not None and control.request else [],
    }
    if isinstance(helper_entry, dict):  # found in the helper's quic_handshake map
        control_ok, control_map = helper_entry.get("status") is True, dict(helper_map)
        evidence = "QUIC/HTTP3 failed where the test helper's QUIC handshake succeeded"
    else:
        assert control is not None
        control_ok = control.failure is None
        evidence = "QUIC/HTTP3 failed where the control SNI succeeded"
        control_map = {
            endpoint: {
                "server_name": config.control_host,
                "status": control.handshake.failure is None,
                "failure": control.handshake.failure,
            }
        }
    if control_ok and real.failure is not None:
        kind = "quic-dropped" if real.failure == Failure.GENERIC_TIMEOUT_ERROR else "quic-failure"
        techniques.append(_technique(kind, "quic", f"{endpoint} sni={target.host}", evidence, real.failure))
    return [real.handshake.to_json()], control_map


def _run_fet(
    ctx: ProbeContext, ip: str, config: ProbeConfig, extras: dict[str, Any], techniques: list[dict[str, Any]]
) -> None:
    result = fet.probe_fet(ctx, ip, config.echo_port, attempts=config.fet_attempts, seed=config.fet_seed)
    extras["fet"] = result.to_json()
    if result.blocked:
        techniques.append(
            _technique(
                "fet-blocked",
                "transport",
                result.target,
                "a fully-encrypted first packet got no echo where an exempt one did (Wu et al., USENIX Security 2023)",
                result.failure,
            )
        )


def _system_nameserver() -> str:
    """The first nameserver of /etc/resolv.conf (inside `ip netns exec`, the namespace's own)."""
    try:
        for line in Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        return ""
    return ""


# --------------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------------


def run(target_text: str, config: ProbeConfig | None = None) -> Measurement:
    """Measure one target (URL or bare host) and return the classified measurement.

    Raises ProbeError only when the target or the configuration is unusable; every network outcome,
    including an unreachable target, is in the measurement."""
    config = config or ProbeConfig()
    target = parse_target(target_text)
    started_wall = datetime.now(UTC)
    started = time.monotonic()
    ctx = ProbeContext(config.timeout, config.cafile)
    obs = _Observations()
    control = _Control()
    extras: dict[str, Any] = {
        "control_definition": CONTROL_DEFINITION,
        "control_host": config.control_host,
        "control_resolver": None if config.control_resolver is None else join_host_port(*config.control_resolver),
        "lab": config.lab,
        "tests": sorted(config.tests),
    }
    techniques: list[dict[str, Any]] = []
    test_keys_extra: dict[str, Any] = {"agent": "redirect", "retries": None, "socksproxy": None}

    endpoints = config.tests & _ENDPOINT_TESTS
    helper: ControlResponse | None = None
    helper_request: ControlRequest | None = None
    if config.test_helper is not None:
        extras["control_definition"] = TEST_HELPER_DEFINITION
        extras["test_helper"] = config.test_helper
        classic = _probe_dns(ctx, obs, target.host, 0, config)
        helper_request = _helper_request(target, classic, config)
        helper, control.failure = _ask_test_helper(config.test_helper, helper_request, config.timeout)
        if helper is not None:
            control.dns, control.addrs = helper.dns, helper.dns.addrs
        if endpoints & {"tcp", "tls", "http"}:
            _probe_web(ctx, obs, target, classic, control, config)
    else:
        _control_dns(ctx, target.host, config, control)
        classic = _probe_dns(ctx, obs, target.host, 0, config)
        if endpoints & {"tcp", "tls", "http"}:
            if control.failure is None:
                _control_web(ctx, target, classic, config, control)
            _probe_web(ctx, obs, target, classic, control, config)
        else:
            control.http = ControlHTTPRequest(failure=NOT_MEASURED)
    primary = control.addrs[0] if control.addrs else (classic[0] if classic else None)
    throughput_obs: list[ThroughputObservation] = []
    residual_obs: list[ResidualObservation] = []
    quic_control: dict[str, Any] = {}
    if primary is None and endpoints - {"tcp", "tls", "http"}:
        extras["skipped"] = {
            "tests": sorted(endpoints - {"tcp", "tls", "http"}),
            "reason": "no address: neither the system nor the control resolver gave one",
        }
    elif primary is not None:
        extras["address"] = primary
        if "quic" in config.tests:
            test_keys_extra["quic_handshakes"], quic_control = _run_quic(
                ctx, target, primary, config, extras, techniques, helper
            )
        if "fet" in config.tests:
            _run_fet(ctx, primary, config, extras, techniques)
        if "throughput" in config.tests:
            result = throughput.measure(
                ctx,
                target,
                primary,
                config.control_host,
                size=config.throughput_bytes,
                max_seconds=config.throughput_seconds,
            )
            if result.observation is not None:
                throughput_obs.append(result.observation)
            else:
                extras["throughput_failed"] = result.to_json()
        if "residual" in config.tests:
            outcome = residual.measure(
                ctx,
                target,
                primary,
                config.control_host,
                interval=config.residual_interval,
                max_seconds=config.residual_seconds,
            )
            if outcome.observation is not None:
                residual_obs.append(outcome.observation)
            else:
                extras["residual_unmeasured"] = outcome.to_json()
    extras["control_queries"] = [q.to_json() for q in control.queries]
    extras["control_records"] = control.records

    probe_endpoints = [join_host_port(t.ip, t.port) for t in obs.tcp_connect]
    control_request = ControlRequest(
        target.url, tuple(dict.fromkeys(probe_endpoints)), {name: (value,) for name, value in http.REQUEST_HEADERS}
    )
    response = None
    if helper is not None and helper_request is not None:
        control_request = helper_request
        response = replace(helper, extra={**helper.extra, "quic_handshake": quic_control})
    elif control.failure is None:
        probe_addrs = {a for q in obs.queries for a in q.addresses}
        ip_info = {}
        for address in dict.fromkeys([*probe_addrs, *control.addrs]):
            flags = (
                (1 if address in probe_addrs else 0)
                | (2 if address in control.addrs else 0)
                | (4 if is_bogon(address) else 0)
            )
            ip_info[address] = ControlIPInfo(0, flags)
        response = ControlResponse(
            dict(control.tcp),
            dict(control.tls),
            control.http,
            control.dns or ControlDNS(None, ()),
            ip_info,
            {"quic_handshake": quic_control},
        )
    test_keys_extra["client_resolver"] = config.system_resolver[0] if config.system_resolver else _system_nameserver()
    keys = WebConnectivityTestKeys(
        queries=tuple(obs.queries),
        tcp_connect=tuple(obs.tcp_connect),
        tls_handshakes=tuple(obs.tls_handshakes),
        requests=tuple(reversed(obs.requests)),
        control=response,
        control_request=control_request,
        control_failure=control.failure,
        x_chokepoint=ChokepointObservations(tuple(throughput_obs), tuple(residual_obs), None, extras),
        extra=test_keys_extra,
    )
    start_text = format_ooni_time(started_wall)
    measurement = Measurement(
        input=target_text.strip() if "://" in target_text else target.url,
        test_keys=keys,
        measurement_start_time=start_text,
        test_start_time=start_text,
        test_version=TEST_VERSION,
        test_runtime=round(time.monotonic() - started, 6),
        resolver_ip=test_keys_extra["client_resolver"],
        annotations={
            "platform": "linux",
            "chokepoint_lab": "true" if config.lab else "false",
            **dict(config.annotations),
        },
        extensions={"dnst": 0, "httpt": 0, "netevents": 0, "tcpconnect": 0, "tlshandshake": 0, "tunnel": 0},
        test_helpers={
            "backend": {"address": config.test_helper, "type": "http"}
            if config.test_helper is not None
            else {"address": extras["control_resolver"] or "", "type": "chokepoint-control"}
        },
    )
    annotated = annotate(measurement, fingerprints=config.fingerprints)
    if techniques:
        tk = annotated.web_connectivity
        x = tk.x_chokepoint or ChokepointObservations()
        x = replace(x, techniques=(*(x.techniques or ()), *techniques))
        annotated = replace(annotated, test_keys=replace(tk, x_chokepoint=x))
    return annotated


def run_many(targets: Iterable[str], config: ProbeConfig | None = None) -> Iterator[Measurement]:
    """`run` for each target in turn (a bad target raises ProbeError when its turn comes)."""
    for target in targets:
        yield run(target, config)
