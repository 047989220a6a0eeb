"""OONI measurement model: exact JSON round trip on OONI's measurements, typed errors on bad input, and
`failure_from_exception` fed with exceptions raised by real sockets, TLS stacks and dnspython on loopback."""

from __future__ import annotations

import datetime as dt
import errno
import http.client
import json
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dns.exception
import dns.message
import dns.rcode
import dns.resolver
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.probe.measurement import (
    CLASSIFICATION_KEYS,
    ChokepointObservations,
    DNSAnswer,
    DNSQuery,
    Failure,
    HTTPRequestRecord,
    HTTPResponseRecord,
    HTTPTransaction,
    MalformedMeasurement,
    Measurement,
    ResidualObservation,
    TCPConnect,
    ThroughputObservation,
    WebConnectivityTestKeys,
    failure_from_exception,
    failure_from_rcode,
    format_ooni_time,
    parse_measurement,
)
from chokepoint.probe.webconnectivity import classify
from tests.probe._shared import QA_DIR, qa_bytes, qa_cases, qa_json, require

CASES = qa_cases()

# --------------------------------------------------------------------------------------------------
# JSON model
# --------------------------------------------------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.parametrize("case", CASES)
def test_round_trip_is_exact_on_oonis_measurements(case):
    raw = qa_bytes(case)
    measurement = parse_measurement(raw)
    assert measurement.to_json() == json.loads(raw)
    assert parse_measurement(measurement.dumps()) == measurement


@pytest.mark.shared_data
def test_typed_view_of_a_real_measurement():
    require(QA_DIR)
    tk = parse_measurement(qa_bytes(CASES[0])).web_connectivity
    for raw_query, query in zip(qa_json(CASES[0])["test_keys"]["queries"], tk.queries or ()):
        assert query.hostname == raw_query["hostname"] and query.failure == raw_query["failure"]
        assert list(query.addresses) == [
            a.get("ipv4") or a.get("ipv6") for a in raw_query["answers"] or () if a["answer_type"] in ("A", "AAAA")
        ]


def _built_measurement() -> Measurement:
    body = b"<html><title>Blocked \xff page</title></html>"  # not UTF-8: must survive as base64
    keys = WebConnectivityTestKeys(
        queries=(
            DNSQuery(
                "blocked.example",
                "ANY",
                answers=(DNSAnswer("A", ipv4="198.19.0.10"),),
                tags=("depth=0",),
                transaction_id=1,
            ),
        ),
        tcp_connect=(TCPConnect("198.19.0.10", 80, None, True, tags=("depth=0", "fetch_body=true"), transaction_id=2),),
        requests=(
            HTTPTransaction(
                HTTPRequestRecord("http://blocked.example/"),
                HTTPResponseRecord(200, (("Server", "x"),), {"Server": "x"}, body),
                transaction_id=2,
            ),
        ),
        x_chokepoint=ChokepointObservations(
            throughput=(ThroughputObservation("http://blocked.example/big", 150_000, 10.0, 1_000_000, 1.0),),
            residual=(ResidualObservation("198.19.0.10:443", "sni=blocked.example", 90.0, "connection_reset"),),
        ),
    )
    return Measurement(
        input="http://blocked.example/",
        test_keys=keys,
        probe_cc="IR",
        measurement_start_time=format_ooni_time(dt.datetime(2026, 11, 27, 9, 0, 1, tzinfo=dt.UTC)),
    )


def test_built_measurement_round_trips_with_binary_body():
    measurement = _built_measurement()
    doc = measurement.to_json()
    assert doc["software_name"] == "chokepoint" and doc["measurement_start_time"] == "2026-11-27 09:00:01"
    body = doc["test_keys"]["requests"][0]["response"]["body"]
    assert body["format"] == "base64"
    again = parse_measurement(json.dumps(doc))
    assert again.web_connectivity.requests[0].response.body_bytes == b"<html><title>Blocked \xff page</title></html>"
    assert again.to_json() == doc
    assert again.web_connectivity.x_chokepoint.throughput[0].rate_bps == 120_000.0


def test_other_tests_keep_their_keys_as_a_mapping():
    doc = {"test_name": "tlsmiddlebox", "input": None, "test_keys": {"iterative_trace": [1, 2]}}
    measurement = parse_measurement(doc)
    assert measurement.test_keys == {"iterative_trace": [1, 2]}
    with pytest.raises(MalformedMeasurement):
        measurement.web_connectivity  # noqa: B018


@pytest.mark.parametrize(
    "doc, path",
    [
        (b"\xff\xfe", ""),
        (b'{"test_name": "web_connectivity", "test_keys": {', ""),
        ("[1, 2]", ""),
        ({"test_keys": {}}, "test_name"),
        ({"test_name": "web_connectivity", "test_keys": {"queries": {}}}, "test_keys.queries"),
        ({"test_name": "web_connectivity", "test_keys": {"queries": [{"hostname": "a"}]}}, "test_keys.queries[0]"),
        (
            {"test_name": "web_connectivity", "test_keys": {"tcp_connect": [{"ip": "1.1.1.1", "port": True}]}},
            "test_keys.tcp_connect[0].port",
        ),
        ({"test_name": "web_connectivity", "test_keys": {"blocking": 3}}, "test_keys.blocking"),
        (
            {
                "test_name": "web_connectivity",
                "test_keys": {
                    "requests": [
                        {"request": {"url": "http://a/"}, "response": {"body": {"format": "base64", "data": "!!"}}}
                    ]
                },
            },
            "test_keys.requests[0].response.body",
        ),
        (
            {
                "test_name": "web_connectivity",
                "test_keys": {"x_chokepoint": {"residual": [{"target": "a", "trigger": "b", "duration_s": -1}]}},
            },
            "test_keys.x_chokepoint.residual[0].duration_s",
        ),
    ],
)
def test_malformed_documents_name_the_offending_key(doc, path):
    with pytest.raises(MalformedMeasurement) as info:
        parse_measurement(doc if isinstance(doc, (bytes, str)) else json.dumps(doc))
    assert info.value.path == path


# --------------------------------------------------------------------------------------------------
# Property tests seeded from OONI's real measurements
# --------------------------------------------------------------------------------------------------

VALID_BLOCKING = {None, False, "dns", "tcp_ip", "http-failure", "http-diff"}


def _check_result(measurement: Measurement) -> None:
    if not isinstance(measurement.test_keys, WebConnectivityTestKeys):
        return
    result = classify(measurement.test_keys)
    assert result.blocking in VALID_BLOCKING and result.accessible in (None, True, False)
    if isinstance(result.blocking, str):
        assert result.accessible is False
    if result.blocking is None:
        assert result.accessible is None
    assert 0 <= result.x_blocking_flags < 64 and 0 <= result.x_dns_flags < 8 and 0 <= result.x_null_null_flags < 32
    assert 0.0 <= result.body_proportion <= 1.0


def _parse_or_malformed(data) -> None:
    try:
        measurement = parse_measurement(data)
    except MalformedMeasurement:
        return
    _check_result(measurement)


ALNUM = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


@pytest.mark.shared_data
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from(CASES),
    cut=st.none() | st.integers(min_value=0),
    edits=st.lists(st.tuples(st.integers(min_value=0), st.sampled_from(ALNUM)), max_size=6),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=1, max_value=255)), max_size=2),
    other=st.sampled_from(CASES),
    splice=st.booleans(),
)
def test_byte_mutations_raise_only_malformed(case, cut, edits, flips, other, splice):
    """Alphanumeric edits keep the JSON valid but change names, numbers, failures and addresses; flips,
    truncation and splicing break it."""
    require(QA_DIR)
    data = bytearray(qa_bytes(case))
    for position, char in edits:
        if chr(data[position % len(data)]).isalnum():
            data[position % len(data)] = char
    for position, mask in flips:
        data[position % len(data)] ^= mask
    if cut is not None:
        data = data[: cut % (len(data) + 1)]
    if splice:
        tail = qa_bytes(other)
        data += tail[len(tail) // 2 :]
    _parse_or_malformed(bytes(data))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
FAILURES = st.sampled_from([None, "", *[f.value for f in Failure], "unknown_failure: x", "dns_name_error"])


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


@pytest.mark.shared_data
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=st.sampled_from(CASES), data=st.data())
def test_structural_mutations_raise_only_malformed_and_classify_cleanly(case, data):
    """Replace observations with arbitrary JSON or other failure strings; drop list entries."""
    require(QA_DIR)
    doc = qa_json(case)
    doc["test_keys"] = {k: v for k, v in doc["test_keys"].items() if k not in CLASSIFICATION_KEYS}
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(doc) if len(p) >= 2]
        path = data.draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = data.draw(st.sampled_from(["value", "failure", "drop"]))
        if action == "drop" and isinstance(parent, list):
            parent.pop(path[-1])
        elif action == "failure":
            parent[path[-1]] = data.draw(FAILURES)
        else:
            parent[path[-1]] = data.draw(JSON_VALUES)
    _parse_or_malformed(doc)


# --------------------------------------------------------------------------------------------------
# failure_from_exception with real exceptions on loopback
# --------------------------------------------------------------------------------------------------


@contextmanager
def serve_once(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A loopback TCP server that runs `handler` on one accepted connection."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def run() -> None:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            try:
                handler(conn)
            except OSError:  # the client's failure is what the test looks at
                pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.close()
        thread.join(10)


def _caught(call: Callable[[], object]) -> BaseException:
    """The exception a real socket / TLS / HTTP / DNS operation raised."""
    try:
        call()
    except (OSError, http.client.HTTPException, dns.exception.DNSException) as exc:
        return exc
    raise AssertionError("expected the operation to fail")


def _reset(conn: socket.socket) -> None:
    conn.recv(65536)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close => RST


def _connect(port: int, timeout: float = 10.0) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout)


def test_refused_port():
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound, never listening: the kernel answers the SYN with a RST
    exc = _caught(lambda: _connect(port))
    assert isinstance(exc, ConnectionRefusedError)
    assert failure_from_exception(exc) == "connection_refused"


def test_reset_by_so_linger_zero_server():
    with serve_once(_reset) as port, _connect(port) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n")
        exc = _caught(lambda: client.recv(1024))
    assert isinstance(exc, ConnectionResetError)
    assert failure_from_exception(exc) == "connection_reset"


def test_read_timeout():
    gate = threading.Event()
    with serve_once(lambda conn: gate.wait(10)) as port, _connect(port, timeout=0.2) as client:
        exc = _caught(lambda: client.recv(1024))
        gate.set()
    assert isinstance(exc, TimeoutError)
    assert failure_from_exception(exc) == "generic_timeout_error"


def test_http_client_sees_eof():
    def close_after_request(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.shutdown(socket.SHUT_RDWR)

    with serve_once(close_after_request) as port:
        client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        client.request("GET", "/", headers={"Host": "blocked.example"})
        exc = _caught(client.getresponse)
        client.close()
    assert isinstance(exc, http.client.RemoteDisconnected)
    assert failure_from_exception(exc) == "eof_error"


def _certificate(name: str, *, expired: bool = False) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _tls_server(tmp_path, cert_pem: bytes, key_pem: bytes, *, minimum=None) -> Callable[[socket.socket], None]:
    (tmp_path / "cert.pem").write_bytes(cert_pem)
    (tmp_path / "key.pem").write_bytes(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    if minimum is not None:
        context.minimum_version = minimum

    def handshake(conn: socket.socket) -> None:
        with context.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)

    return handshake


def _tls_client_error(port: int, server_name: str, trusted_pem: bytes | None, maximum=None) -> BaseException:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if trusted_pem is not None:
        context.load_verify_locations(cadata=trusted_pem.decode())
    if maximum is not None:
        context.maximum_version = maximum

    def handshake() -> None:
        with _connect(port) as raw, context.wrap_socket(raw, server_hostname=server_name):
            pass

    return _caught(handshake)


def test_tls_self_signed_is_unknown_authority(tmp_path):
    cert, key = _certificate("blocked.example")
    unrelated, _ = _certificate("unrelated.example")
    with serve_once(_tls_server(tmp_path, cert, key)) as port:
        exc = _tls_client_error(port, "blocked.example", unrelated)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert failure_from_exception(exc) == "ssl_unknown_authority"


def test_tls_wrong_name_is_invalid_hostname(tmp_path):
    cert, key = _certificate("blockpage.example")
    with serve_once(_tls_server(tmp_path, cert, key)) as port:
        exc = _tls_client_error(port, "blocked.example", cert)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert failure_from_exception(exc) == "ssl_invalid_hostname"


def test_tls_expired_is_invalid_certificate(tmp_path):
    cert, key = _certificate("blocked.example", expired=True)
    with serve_once(_tls_server(tmp_path, cert, key)) as port:
        exc = _tls_client_error(port, "blocked.example", cert)
    assert isinstance(exc, ssl.SSLCertVerificationError)
    assert failure_from_exception(exc) == "ssl_invalid_certificate"


def test_tls_version_alert_is_failed_handshake(tmp_path):
    cert, key = _certificate("blocked.example")
    with serve_once(_tls_server(tmp_path, cert, key, minimum=ssl.TLSVersion.TLSv1_3)) as port:
        exc = _tls_client_error(port, "blocked.example", cert, maximum=ssl.TLSVersion.TLSv1_2)
    assert isinstance(exc, ssl.SSLError) and not isinstance(exc, ssl.SSLCertVerificationError)
    assert failure_from_exception(exc) == "ssl_failed_handshake"


def test_tls_reset_after_client_hello():
    with serve_once(_reset) as port:
        exc = _tls_client_error(port, "blocked.example", None)
    assert isinstance(exc, ConnectionResetError)
    assert failure_from_exception(exc) == "connection_reset"


def test_tls_eof_after_client_hello():
    def close_after_hello(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.shutdown(socket.SHUT_RDWR)

    with serve_once(close_after_hello) as port:
        exc = _tls_client_error(port, "blocked.example", None)
    assert isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
    assert failure_from_exception(exc) == "eof_error"


def test_getaddrinfo_no_such_name():
    exc = _caught(lambda: socket.getaddrinfo("blocked.example", 80, flags=socket.AI_NUMERICHOST))
    assert isinstance(exc, socket.gaierror) and exc.errno == socket.EAI_NONAME
    assert failure_from_exception(exc) == "dns_nxdomain_error"


@contextmanager
def dns_server(rcode: int | None) -> Iterator[int]:
    """A loopback UDP DNS server answering every query with `rcode` and no records (None: never answers)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                wire, peer = server.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(wire)
            if rcode is None:
                continue
            response = dns.message.make_response(query)
            response.set_rcode(rcode)
            server.sendto(response.to_wire(), peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(10)
        server.close()


def _resolve_error(port: int, lifetime: float = 5.0) -> BaseException:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = lifetime
    resolver.timeout = lifetime
    return _caught(lambda: resolver.resolve("blocked.example.", "A"))


@pytest.mark.parametrize(
    "rcode, exception, failure",
    [
        (dns.rcode.NXDOMAIN, dns.resolver.NXDOMAIN, "dns_nxdomain_error"),
        (dns.rcode.NOERROR, dns.resolver.NoAnswer, "dns_no_answer"),
        (dns.rcode.SERVFAIL, dns.resolver.NoNameservers, "dns_servfail_error"),
        (dns.rcode.REFUSED, dns.resolver.NoNameservers, "dns_refused_error"),
    ],
)
def test_dnspython_errors_from_a_local_server(rcode, exception, failure):
    with dns_server(rcode) as port:
        exc = _resolve_error(port)
    assert isinstance(exc, exception)
    assert failure_from_exception(exc) == failure


def test_dnspython_timeout_from_a_silent_server():
    with dns_server(None) as port:
        exc = _resolve_error(port, lifetime=0.3)
    assert isinstance(exc, dns.resolver.LifetimeTimeout)
    assert failure_from_exception(exc) == "generic_timeout_error"


def test_unmapped_errors_are_unknown_failures():
    with socket.socket() as sock:  # binding to an address this host does not own sends nothing
        exc = _caught(lambda: sock.bind(("192.0.2.1", 0)))
    assert isinstance(exc, OSError) and exc.errno == errno.EADDRNOTAVAIL
    assert failure_from_exception(exc).startswith("unknown_failure: ")
    assert failure_from_exception(ValueError("boom")) == "unknown_failure: boom"


def test_failure_from_rcode():
    assert failure_from_rcode(dns.rcode.NOERROR) is None
    assert failure_from_rcode(dns.rcode.NXDOMAIN) == "dns_nxdomain_error"
    assert failure_from_rcode(dns.rcode.SERVFAIL) == "dns_servfail_error"
    assert failure_from_rcode(dns.rcode.REFUSED) == "dns_refused_error"
    assert failure_from_rcode(dns.rcode.FORMERR) == "dns_server_misbehaving"
