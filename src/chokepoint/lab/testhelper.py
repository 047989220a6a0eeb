"""An OONI Web Connectivity test helper (``oohelperd``) for the lab's control namespace.

``lab up`` runs ``python -m chokepoint.lab.testhelper`` in ``<lab>-control`` on 198.18.9.1:8080 (HTTP). The
control host reaches the server side over its own link (control cs0 ── svc0 server, docs/lab.md), never
through the censor, so the helper sees the lab as an uncensored network abroad would.

Same JSON as OONI's test helper (ooni/probe-cli ``internal/model/th.go``; spec ts-017's ``control``):

- request (POST ``/``): ``{"http_request": URL, "http_request_headers": {name: [values]},
  "tcp_connect": ["ip:port", ...]}``;
- response: ``dns`` ``{failure, addrs}`` (its own resolution, through the control resolver, i.e. the lab's
  uncensored DNS map), ``tcp_connect`` ``{"ip:port": {status, failure}}`` for the probe's endpoints and its
  own (the URL's port), ``tls_handshake`` ``{"ip:port": {server_name, status, failure}}`` for the endpoints
  on port 443 or of an https URL, ``http_request`` ``{body_length, failure, title, headers, status_code}``
  (the URL fetched from its own addresses, redirects followed) and ``ip_info`` ``{ip: {asn, flags}}``
  (flags: 1 resolved by the probe, 2 by the helper, 4 bogon, 8 TLS valid for the name; ``asn`` 0: the lab
  has no ASNs).

One extension: ``x_chokepoint_timeout`` (seconds) in the request caps the helper's per-operation timeout at
the probe's, so a server slower than the probe's timeout is not fetched by the control either.

QUIC, as oohelperd does it when the request sets ``x_quic_enabled`` (ooni/probe-cli ``model.THRequest``, a
feature flag of Web Connectivity v0.5): a QUIC handshake (HTTP/3 ALPN, SNI the URL's host) to every address,
the probe's and its own, on port 443, answered as ``quic_handshake`` ``{"ip:443": {server_name, status,
failure}}`` beside ``tls_handshake``. Without the flag there is no ``quic_handshake`` key, as in oohelperd.

A request that is not such a JSON object is answered 400 with a one-line reason; another method or path,
405 or 404.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from chokepoint.lab import instance
from chokepoint.probe.measurement import (
    ControlDNS,
    ControlHTTPRequest,
    ControlIPInfo,
    ControlRequest,
    ControlResponse,
    ControlTCPConnect,
    ControlTLSHandshake,
    Failure,
    MalformedMeasurement,
)
from chokepoint.probe.probes import dns, http, quic
from chokepoint.probe.probes.common import (
    ProbeContext,
    ProbeError,
    Target,
    ip_literal,
    join_host_port,
    parse_host_port,
    parse_target,
)
from chokepoint.probe.webconnectivity import is_bogon

log = logging.getLogger("chokepoint.testhelper")

#: Where ``lab up`` runs it: the control host's address on the client link, oohelperd's port.
LAB_ADDRESS = "198.18.9.1"
LAB_PORT = 8080
LAB_URL = f"http://{LAB_ADDRESS}:{LAB_PORT}/"
#: The control resolver it asks (same host): the lab's DNS map, outside the censor's path.
LAB_RESOLVER = ("198.18.9.1", 53)
#: Requests larger than this are refused (oohelperd caps its request body too).
MAX_REQUEST_BYTES = 1 << 20
PROCESS_NAME = "testhelper"
#: A Chokepoint extension of the request (OONI's has none): the probe's per-operation timeout, which the helper
#: uses when it is shorter than its own, so a server slower than the probe's timeout is slow for both views.
TIMEOUT_KEY = "x_chokepoint_timeout"
#: oohelperd's feature flag (``THRequest.XQUICEnabled``): also measure QUIC on port 443.
QUIC_KEY = "x_quic_enabled"
QUIC_PORT = 443


class BadRequest(ValueError):
    """A request the helper cannot measure; the message is the one-line reason sent with the 400."""


def parse_request(body: bytes) -> ControlRequest:
    """The request's JSON as a ``ControlRequest``; ``BadRequest`` for anything else."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the request is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadRequest("the request is not a JSON object")
    try:
        request = ControlRequest.from_json(obj, "request")
    except MalformedMeasurement as exc:
        raise BadRequest(str(exc)) from None
    try:
        parse_target(request.http_request)
    except ProbeError as exc:
        raise BadRequest(f"http_request: {exc}") from None
    if "://" not in request.http_request:
        raise BadRequest("http_request: expected an http:// or https:// URL")
    for endpoint in request.tcp_connect or ():
        try:
            ip, _ = parse_host_port(endpoint, 0)
        except ProbeError:
            ip = ""
        if ip_literal(ip) is None or not _has_port(endpoint):
            raise BadRequest(f"tcp_connect: {endpoint!r} is not an ip:port endpoint")
    return request


def _has_port(endpoint: str) -> bool:
    try:
        _, port = parse_host_port(endpoint, 0)
    except ProbeError:
        return False
    return 0 < port < 65536


@dataclass(frozen=True, slots=True)
class HelperConfig:
    resolver: tuple[str, int] = LAB_RESOLVER
    timeout: float = 10.0
    cafile: str | None = None
    max_redirects: int = 10


def _resolve(ctx: ProbeContext, host: str, config: HelperConfig) -> ControlDNS:
    literal = ip_literal(host)
    if literal is not None:
        return ControlDNS(None, (literal,))
    records = dns.lookup_udp(ctx, host, config.resolver, tags=("testhelper",))
    addrs: list[str] = []
    for record in records:
        for address in record.addresses:
            if address not in addrs:
                addrs.append(address)
    if addrs:
        return ControlDNS(None, tuple(addrs))
    failures = [r.failure for r in records if r.failure]
    failure = next((f for f in failures if f != Failure.DNS_NO_ANSWER), None) or Failure.DNS_NO_ANSWER.value
    return ControlDNS(failure, ())


def _endpoint_target(target: Target, port: int) -> Target:
    scheme = "https" if port == 443 or (target.scheme == "https" and port == target.port) else "http"
    return Target(target.url, scheme, target.host, port, target.path)


def _fetch_page(ctx: ProbeContext, target: Target, addrs: Sequence[str], config: HelperConfig) -> ControlHTTPRequest:
    """GET the URL from the first of ``addrs`` that answers, following redirects (each hop resolved anew)."""
    current, candidates = target, list(addrs)
    fetched: http.Fetched | None = None
    for _ in range(config.max_redirects + 1):
        failure: str | None = None
        fetched = None
        for ip in candidates:
            result = http.fetch(ctx, current, ip, tags=("testhelper",))
            if result.fetched is not None:
                fetched = result.fetched
                break
            failure = result.failure or failure
        if fetched is None:
            return ControlHTTPRequest(failure=failure or Failure.GENERIC_TIMEOUT_ERROR.value)
        if fetched.failure is not None:
            return ControlHTTPRequest(failure=fetched.failure)
        if fetched.location is None:
            break
        try:
            current = current.with_url(fetched.location)
        except ProbeError:
            break
        resolved = _resolve(ctx, current.host, config)
        if not resolved.addrs:
            return ControlHTTPRequest(failure=resolved.failure)
        candidates = list(resolved.addrs)
    assert fetched is not None
    return ControlHTTPRequest(fetched.status, len(fetched.body), fetched.title, fetched.headers, None)


def measure(request: ControlRequest, config: HelperConfig | None = None) -> ControlResponse:
    """The helper's own DNS, TCP, TLS and HTTP view of the request's URL."""
    config = config or HelperConfig()
    wanted = request.extra.get(TIMEOUT_KEY)
    if isinstance(wanted, (int, float)) and not isinstance(wanted, bool) and 0 < wanted < config.timeout:
        config = replace(config, timeout=float(wanted))
    target = parse_target(request.http_request)
    cafile = config.cafile if config.cafile and Path(config.cafile).is_file() else None  # the CA may come later
    ctx = ProbeContext(config.timeout, cafile)
    resolved = _resolve(ctx, target.host, config)
    probe_ips = []
    endpoints: list[tuple[str, int]] = []
    for endpoint in request.tcp_connect or ():
        ip, port = parse_host_port(endpoint, target.port)
        probe_ips.append(ip)
        endpoints.append((ip, port))
    endpoints += [(ip, target.port) for ip in resolved.addrs]
    tcp: dict[str, ControlTCPConnect] = {}
    tls: dict[str, ControlTLSHandshake] = {}
    tls_valid: set[str] = set()
    for ip, port in dict.fromkeys(endpoints):
        key = join_host_port(ip, port)
        et = _endpoint_target(target, port)
        result = http.fetch(ctx, et, ip, tags=("testhelper",), tls_handshake=et.scheme == "https", request=False)
        tcp[key] = ControlTCPConnect(result.connect.failure is None, result.connect.failure)
        if result.handshake is not None:
            ok = result.handshake.failure is None
            tls[key] = ControlTLSHandshake(target.host, ok, result.handshake.failure)
            if ok:
                tls_valid.add(ip)
    quic_handshakes = (
        _quic_handshakes(ctx, target, [*probe_ips, *resolved.addrs]) if request.extra.get(QUIC_KEY) is True else None
    )
    if resolved.addrs:
        page = _fetch_page(ctx, target, resolved.addrs, config)
    else:
        page = ControlHTTPRequest(failure=resolved.failure or Failure.DNS_NO_ANSWER.value)
    ip_info = {
        ip: ControlIPInfo(
            0,
            (1 if ip in probe_ips else 0)
            | (2 if ip in resolved.addrs else 0)
            | (4 if is_bogon(ip) else 0)
            | (8 if ip in tls_valid else 0),
        )
        for ip in dict.fromkeys([*probe_ips, *resolved.addrs])
    }
    extra = {} if quic_handshakes is None else {"quic_handshake": quic_handshakes}
    return ControlResponse(tcp, tls or None, page, resolved, ip_info, extra)


def _quic_handshakes(ctx: ProbeContext, target: Target, ips: Sequence[str]) -> dict[str, dict[str, Any]]:
    """oohelperd's ``quic_handshake``: a QUIC handshake (HTTP/3 ALPN, the URL's host as SNI) to each address on
    port 443, over the control's own path."""
    out: dict[str, dict[str, Any]] = {}
    for ip in dict.fromkeys(ips):
        endpoint = join_host_port(ip, QUIC_PORT)
        result = quic.get_h3(ctx, ip, QUIC_PORT, target.host, tags=("testhelper",), fetch=False)
        failure = result.handshake.failure
        out[endpoint] = {"server_name": target.host, "status": failure is None, "failure": failure}
    return out


def handle(method: str, path: str, body: bytes, config: HelperConfig) -> tuple[int, dict[str, Any]]:
    """(status, JSON body) for one HTTP request (the server's logic, without sockets)."""
    if path.split("?", 1)[0] != "/":
        return 404, {"error": f"no such path {path!r}: POST / only"}
    if method != "POST":
        return 405, {"error": "POST a Web Connectivity control request to /"}
    try:
        request = parse_request(body)
    except BadRequest as exc:
        return 400, {"error": str(exc)}
    return 200, measure(request, config).to_json()


def _handler(config: HelperConfig) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "chokepoint-testhelper"

        def _serve(self, method: str) -> None:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_REQUEST_BYTES:
                status, reply = 400, {"error": f"bad or too large Content-Length (at most {MAX_REQUEST_BYTES})"}
            else:
                body = self.rfile.read(length) if length else b""
                try:
                    status, reply = handle(method, self.path, body, config)
                except Exception as exc:  # noqa: BLE001 - one broken measurement must not stop the helper
                    log.exception("measuring %r failed", body[:200])
                    status, reply = 500, {"error": f"{type(exc).__name__}: {exc}"}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self._serve("POST")

        def do_GET(self) -> None:  # noqa: N802
            self._serve("GET")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.info("%s %s", self.address_string(), format % args)

    return Handler


def serve(address: str, port: int, config: HelperConfig, ready_file: Path | None = None) -> None:
    server = ThreadingHTTPServer((address, port), _handler(config))
    server.daemon_threads = True
    if ready_file is not None:
        tmp = ready_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"role": "testhelper", "pid": os.getpid(), "url": f"http://{address}:{port}/"}))
        tmp.replace(ready_file)
    log.info("test helper ready on http://%s:%d/", address, port)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chokepoint.lab.testhelper", description=__doc__.split("\n")[0])
    parser.add_argument("--bind", default=LAB_ADDRESS)
    parser.add_argument("--port", type=int, default=LAB_PORT)
    parser.add_argument("--resolver", default=f"{LAB_RESOLVER[0]}:{LAB_RESOLVER[1]}", help="DNS server IP[:PORT]")
    parser.add_argument("--timeout", type=float, default=10.0)
    parser.add_argument("--cafile", default=str(instance.STATE_DIR / "ca.pem"))
    parser.add_argument("--ready-file", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    try:
        resolver = parse_host_port(args.resolver, 53)
    except ProbeError as exc:
        parser.error(str(exc))
    serve(args.bind, args.port, HelperConfig(resolver, args.timeout, args.cafile or None), args.ready_file)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
