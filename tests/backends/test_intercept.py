"""The TLS-intercepting proxy (``chokepoint.backends.intercept``) on loopback, no root needed (except the two
kernel tests at the end, which use a throwaway ``cpk-t-icpt-*`` namespace and are skipped without root).

The origin is the lab's own HTTPS service (``chokepoint.lab.services``: HTTP/1.1 over TLS with a lab-CA leaf per
SNI), plus the lab's TCP echo and a server that speaks first. Clients are real: curl, ``openssl s_client`` and
Python's ssl. The proxy runs in a thread (``ProxyThread``); where the lab's kernel would give it the original
destination with SO_ORIGINAL_DST, the tests hand it the origin's address.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chokepoint.backends import intercept
from chokepoint.backends.censor import Censor
from chokepoint.backends.intercept import (
    CensorCA,
    EventLog,
    FlowDecider,
    InterceptProxy,
    ProxyThread,
    cert_names,
    hello_state,
    redirect_for,
)
from chokepoint.backends.kernel import KernelProgram, Redirect, redirect_rules
from chokepoint.enforce import DEFAULT, Stamper, plan
from chokepoint.lab.ca import LabCA
from chokepoint.lab.instance import PREFIX
from chokepoint.lab.services import echo, http1
from chokepoint.lab.services.app import MARKER
from chokepoint.lab.services.certs import TlsContexts
from chokepoint.packet.samples import tls_client_hello
from chokepoint.policy import load_profile, load_rules_text
from chokepoint.policy.verdict import Action

KZ = load_profile("kazakhstan-2019")
LISTED, UNLISTED = "www.facebook.com", "www.example.org"
BANNER = b"SSH-2.0-OpenSSH_9.2 chokepoint-test\r\n"

RULES = """
rules:
  - id: mitm
    action: tls-intercept
    when: {tls.sni: {exact: [intercept.test, long.test]}}
  - id: rst
    action: reset
    when: {tls.sni: {exact: reset.test}}
  - id: hold
    action: drop
    when: {tls.sni: {exact: drop.test}}
  - id: slow
    action: throttle
    params: {rate_kbps: 100}
    when: {tls.sni: {exact: slow.test}}
"""


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"`{tool}` is not installed")


# ------------------------------------------------------------------------------------------------ origin


class Origin:
    """The lab's HTTPS service, its TCP echo and a server-first service, on 127.0.0.1 in a loop thread."""

    def __init__(self, directory: Path) -> None:
        self.ca = LabCA.create()
        self.ca_file = directory / "lab-ca.pem"
        self.ca_file.write_bytes(self.ca.cert_pem)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.servers: list[asyncio.base_events.Server] = []

    def start(self) -> Origin:
        self.thread.start()
        contexts = TlsContexts(self.ca)

        async def https(reader, writer):
            await http1.handle_connection(reader, writer, scheme="https")

        async def banner(reader, writer):
            writer.write(BANNER)
            await echo.handle_echo_tcp(reader, writer)

        async def bind():
            https_server = await asyncio.start_server(https, "127.0.0.1", 0, ssl=contexts.listener_context("127.0.0.1"))
            echo_server = await asyncio.start_server(echo.handle_echo_tcp, "127.0.0.1", 0)
            banner_server = await asyncio.start_server(banner, "127.0.0.1", 0)
            self.servers = [https_server, echo_server, banner_server]
            return [s.sockets[0].getsockname()[:2] for s in self.servers]

        self.https, self.echo, self.banner = asyncio.run_coroutine_threadsafe(bind(), self.loop).result(10)
        self.closed = socket.socket()
        self.closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        self.refused = self.closed.getsockname()[:2]
        return self

    def stop(self) -> None:
        async def close():
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.closed.close()


@pytest.fixture(scope="module")
def origin(tmp_path_factory) -> Iterator[Origin]:
    server = Origin(tmp_path_factory.mktemp("origin")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def censor_ca(tmp_path_factory) -> tuple[CensorCA, Path]:
    directory = tmp_path_factory.mktemp("censor")
    return CensorCA.load_or_create(directory), directory / intercept.CA_CERT_FILE


@contextmanager
def running(profile, ca: CensorCA, target: tuple[str, int], **options) -> Iterator[tuple[int, list, InterceptProxy]]:
    """A proxy whose every connection 'was meant for' ``target``; yields (port, events, proxy)."""
    events: list[dict] = []
    proxy = InterceptProxy(profile, ca, emit=events.append, original_dst=lambda sock: target, seed=3, **options)
    with ProxyThread(proxy, [("127.0.0.1", 0)]) as bound:
        yield bound[0][1], events, proxy


def curl(port: int, name: str, cafile: Path, *opts: str) -> subprocess.CompletedProcess:
    need("curl")
    return subprocess.run(
        [
            "curl",
            "-sS",
            "-m",
            "10",
            "--cacert",
            str(cafile),
            "--resolve",
            f"{name}:{port}:127.0.0.1",
            *opts,
            f"https://{name}:{port}/hello",
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )


def s_client(port: int, name: str, cafile: Path) -> subprocess.CompletedProcess:
    need("openssl")
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-servername",
            name,
            "-showcerts",
            "-CAfile",
            str(cafile),
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )


def python_tls(port: int, name: str, cafile: Path | None) -> tuple[dict, bytes]:
    """Python's ssl client: (the verified peer certificate's fields, the response) - or raises."""
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=name) as conn:
            der = conn.getpeercert(binary_form=True)
            conn.sendall(f"GET /py HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode())
            body = b""
            while chunk := conn.recv(65536):
                body += chunk
    return cert_names(x509.load_der_x509_certificate(der)) | {"der": der}, body


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ------------------------------------------------------------------------------------------ the censor CA


def test_censor_ca_is_persisted_separate_from_the_lab_ca_and_reloaded(tmp_path):
    ca = CensorCA.load_or_create(tmp_path)
    subject = ca.certificate.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Qaznet Trust Network"
    assert ca.certificate.issuer == subject
    assert oct((tmp_path / intercept.CA_KEY_FILE).stat().st_mode & 0o777) == "0o600"
    assert not (tmp_path / "ca.pem").exists()  # the lab CA's file name is not touched
    again = CensorCA.load_or_create(tmp_path)
    assert again.cert_pem == ca.cert_pem
    (tmp_path / intercept.CA_KEY_FILE).write_bytes(CensorCA.create().key_pem)  # a key of another CA
    with pytest.raises(intercept.InterceptError, match="does not match"):
        CensorCA.load_or_create(tmp_path)


def test_forgery_copies_subject_and_san_of_the_real_certificate_not_the_sni(tmp_path, censor_ca):
    ca, ca_file = censor_ca
    lab = LabCA.create()
    long_name = "a" * 40 + "." + "b" * 40 + ".example"  # > 64 chars: empty subject, critical SAN
    for name in ("www.facebook.com", long_name, "192.0.2.7"):
        real = lab.leaf(name).certificate
        forged = ca.forge(real)
        cert = forged.certificate
        assert cert.subject == real.subject
        real_san = real.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert (san.value, san.critical) == (real_san.value, real_san.critical)
        assert cert.issuer == ca.certificate.subject and cert.public_key() != real.public_key()
        assert ca.forge(real) is forged  # cached per copied names
        # a real verifier: openssl accepts it with the censor root, not with the lab root
        need("openssl")
        leaf = tmp_path / "leaf.pem"
        leaf.write_bytes(forged.cert_pem)
        ok = subprocess.run(["openssl", "verify", "-CAfile", str(ca_file), str(leaf)], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        (tmp_path / "lab.pem").write_bytes(lab.cert_pem)
        bad = subprocess.run(
            ["openssl", "verify", "-CAfile", str(tmp_path / "lab.pem"), str(leaf)], capture_output=True, text=True
        )
        assert bad.returncode != 0


# ------------------------------------------------------------------------------------- what is redirected


def test_redirect_covers_the_ports_and_destinations_the_intercept_rules_can_match():
    assert redirect_for(KZ.policy) == Redirect(intercept.DEFAULT_PORT, ((443, 443),), ())
    assert (
        redirect_for(load_rules_text("rules:\n  - {id: r, action: reset, when: {tls.sni: {exact: a.b}}}\n").policy)
        is None
    )
    policy = load_rules_text("""
rules:
  - id: a
    action: tls-intercept
    when: {all: [{server_port: [8443, 9000-9010]}, {server_ip: [198.19.0.0/24, "2001:db8::/32"]}, {tls.sni: {exact: x.test}}]}
  - id: b
    action: tls-intercept
    when: {all: [{server_ip: 203.0.113.5}, {tls.sni: {exact: y.test}}]}
""").policy
    spec = redirect_for(policy, 15000)
    assert spec == Redirect(
        15000, ((443, 443), (8443, 8443), (9000, 9010)), ("198.19.0.0/24", "2001:db8::/32", "203.0.113.5/32")
    )
    v4 = redirect_rules(spec)
    assert ["-p", "tcp", "-d", "198.19.0.0/24", "--dport", "9000:9010", "-j", "REDIRECT", "--to-ports", "15000"] in v4
    assert len(v4) == 2 * 3 and all("2001:db8::/32" not in r for r in v4)
    assert redirect_rules(spec, v6=True) == [
        ["-p", "tcp", "-d", "2001:db8::/32", "--dport", d, "-j", "REDIRECT", "--to-ports", "15000"]
        for d in ("443", "8443", "9000:9010")
    ]
    # a rule whose trigger is not a top-level conjunction cannot narrow the redirect: port 443, any destination
    loose = load_rules_text(
        "rules:\n  - {id: c, action: tls-intercept, when: {any: [{server_port: 1}, {tls.sni: {exact: z.test}}]}}\n"
    ).policy
    assert redirect_for(loose, 1) == Redirect(1, ((443, 443),), ())


# --------------------------------------------------------------------------------------------- deciding


HELLO_LISTED = tls_client_hello(LISTED)
HELLO_UNLISTED = tls_client_hello(UNLISTED)


def decider(profile=KZ, header_len: int = 32) -> FlowDecider:
    return FlowDecider(
        profile,
        ("198.18.0.2", 40000),
        ("198.19.0.10", 443),
        rng=random.Random(1),
        clock=lambda: 1_700_000_000.0,
        header_len=header_len,
    )


def test_hello_state_follows_the_real_client_hello():
    assert hello_state(HELLO_LISTED) == "complete"
    assert all(hello_state(HELLO_LISTED[:n]) == "partial" for n in (1, 5, 6, 100, len(HELLO_LISTED) - 1))
    assert hello_state(b"GET / HTTP/1.1\r\n") == "other"


def test_decider_reaches_the_packet_paths_verdict():
    listed = decider()
    listed.client_data(HELLO_LISTED)
    assert listed.verdict is not None and listed.verdict.action is Action.TLS_INTERCEPT
    assert listed.verdict.rule_id == "kz-tls-intercept" and listed.hello.sni == LISTED
    # SYN, SYN+ACK, ACK, then the hello in one segment (it is smaller than an MSS), with the socket's header length
    assert listed.trigger.index == 4 and listed.trigger.tcp_header_len == 32
    assert len(HELLO_LISTED) < intercept.MSS
    # the engine's rules hold as on the packet path: 7-byte segments run past the 32-packet inspection budget
    tiny = decider()
    for start in range(0, len(HELLO_LISTED), 7):
        tiny.client_data(HELLO_LISTED[start : start + 7])
    assert tiny.verdict is None and tiny.flow.inspected_pkts[0] == KZ.engine.inspect_max_packets == 32
    big = decider()  # reassembly across MSS-sized segments: a hello padded past 2 MSS
    padded = tls_client_hello(LISTED, alpn=tuple(f"p{i:03d}-" + "x" * 200 for i in range(16)))
    assert len(padded) > 2 * intercept.MSS
    big.client_data(padded)
    assert big.verdict is not None and big.trigger.index == 3 + -(-len(padded) // intercept.MSS)
    unlisted = decider()
    unlisted.client_data(HELLO_UNLISTED)
    assert unlisted.verdict is None and unlisted.inspecting and unlisted.hello.sni == UNLISTED


def mutations(seed: bytes):
    """Truncations, byte flips and splices of a real message."""
    return st.one_of(
        st.integers(0, len(seed)).map(lambda n: seed[:n]),
        st.tuples(st.integers(0, len(seed) - 1), st.integers(1, 255)).map(
            lambda t: seed[: t[0]] + bytes([seed[t[0]] ^ t[1]]) + seed[t[0] + 1 :]
        ),
        st.tuples(st.integers(0, len(seed)), st.binary(max_size=64)).map(lambda t: seed[: t[0]] + t[1] + seed[t[0] :]),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(mutations(HELLO_LISTED), mutations(HELLO_UNLISTED)), cut=st.integers(1, 600))
def test_mutated_hellos_never_raise_in_the_peek(data, cut):
    assert hello_state(data) in ("complete", "partial", "other")
    d = decider()
    for start in range(0, len(data), cut):
        d.client_data(data[start : start + cut])
    assert d.verdict is None or d.verdict.action is Action.TLS_INTERCEPT


# ------------------------------------------------------------------------------------- the proxy, for real


def test_listed_sni_is_intercepted_with_the_censor_issuer_and_copied_subject(origin, censor_ca):
    ca, ca_file = censor_ca
    with running(KZ, ca, origin.https) as (port, events, proxy):
        untrusted = curl(port, LISTED, origin.ca_file)  # the client trusts the lab CA only
        assert untrusted.returncode == 60 and "SSL certificate problem" in untrusted.stderr, untrusted.stderr
        trusted = curl(port, LISTED, ca_file, "-v")
        assert trusted.returncode == 0, trusted.stderr
        assert MARKER in trusted.stdout and "/hello" in trusted.stdout  # the real origin answered, relayed
        assert re.search(
            r"issuer: C=KZ; O=Chokepoint lab censor CA \(imitation\); CN=Qaznet Trust Network", trusted.stderr
        ), trusted.stderr
        shown = s_client(port, LISTED, origin.ca_file)
        assert "i:C = KZ, O = Chokepoint lab censor CA (imitation), CN = Qaznet Trust Network" in shown.stdout
        assert (
            f"s:CN = {LISTED}" in shown.stdout
            and "verify error:num=20:unable to get local issuer" in shown.stderr
            and "Verify return code: 21" in shown.stdout
        ), shown.stdout + shown.stderr
        names, body = python_tls(port, LISTED, ca_file)
        assert names["subject"] == f"CN={LISTED}" and names["san"] == [LISTED] and MARKER.encode() in body
        assert names["issuer"] == "CN=Qaznet Trust Network,O=Chokepoint lab censor CA (imitation),C=KZ"
        with pytest.raises(ssl.SSLCertVerificationError):
            python_tls(port, LISTED, origin.ca_file)
        assert wait_for(lambda: proxy.counters["events"] >= 5)
    # curl without the root, curl with it, s_client (goes on after a verify error), Python with, Python without
    outcomes = [e["chokepoint"]["intercept"]["outcome"] for e in events]
    assert outcomes == ["client-rejected", "client-accepted", "client-accepted", "client-accepted", "client-rejected"]
    first = events[0]
    cp = first["chokepoint"]
    assert (cp["action"], cp["rule"], cp["flow_action"], cp["enforced_by"]) == (
        "tls-intercept",
        "kz-tls-intercept",
        "intercept",
        "intercept-proxy",
    )
    assert {"field": "tls.sni", "value": LISTED, "matched": f"kz_intercept: ={LISTED}"} in cp["evidence"]
    assert cp["intercept"]["upstream"]["subject"] == cp["intercept"]["forged"]["subject"] == f"CN={LISTED}"
    assert cp["intercept"]["upstream"]["issuer"] == "O=Chokepoint lab,CN=Chokepoint Lab CA"
    assert "unknown ca" in cp["intercept"]["error"].lower() or "UNKNOWN_CA" in cp["intercept"]["error"]
    assert (first["dest_ip"], first["dest_port"]) == origin.https
    assert proxy.counters["intercepted"] == 3 and proxy.counters["client_rejected"] == 2


def test_the_root_is_named_as_the_profile_asks_belarus_a1(origin, tmp_path):
    """belarus-2020-a1 (Qurium 2020): A1's proxy forged certificates under a root named after Atlant-Telecom;
    the proxy's CA takes the name and country from the profile's tls-intercept rule (and is recreated when a
    saved one is named otherwise), the subject still copied from the real certificate."""
    a1 = load_profile("belarus-2020-a1")
    assert CensorCA.names_for(a1.policy) == {"common_name": "Atlant-Telecom HTTPS Proxy", "country": "BY"}
    assert CensorCA.names_for(KZ.policy) == {}
    CensorCA.load_or_create(tmp_path)  # a Qaznet root left in the directory
    ca = CensorCA.load_or_create(tmp_path, **CensorCA.names_for(a1.policy))
    assert "CN=Atlant-Telecom HTTPS Proxy" in ca.certificate.subject.rfc4514_string()
    with running(a1, ca, origin.https) as (port, events, _proxy):
        names, body = python_tls(port, "intimby.net", tmp_path / intercept.CA_CERT_FILE)
    assert names["issuer"] == "CN=Atlant-Telecom HTTPS Proxy,O=Chokepoint lab censor CA (imitation),C=BY"
    assert MARKER.encode() in body
    assert events[0]["chokepoint"]["rule"] == "a1-https-intercept"


def test_unlisted_sni_is_spliced_byte_for_byte(origin, censor_ca):
    ca, _ = censor_ca
    with running(KZ, ca, origin.https) as (port, events, proxy):
        direct, direct_body = python_tls(origin.https[1], UNLISTED, origin.ca_file)
        via, body = python_tls(port, UNLISTED, origin.ca_file)  # verified against the lab CA
        assert via["der"] == direct["der"] and via["issuer"] == "O=Chokepoint lab,CN=Chokepoint Lab CA"
        assert MARKER.encode() in body
        plain = curl(port, UNLISTED, origin.ca_file)
        assert plain.returncode == 0 and MARKER in plain.stdout
        assert wait_for(lambda: proxy.counters["spliced"] == 2)
    assert events == [] and proxy.counters["verdict:allow"] == 2


def test_client_hello_trickled_byte_by_byte_is_reassembled_and_intercepted(origin, censor_ca):
    ca, ca_file = censor_ca
    context = ssl.create_default_context(cafile=str(ca_file))
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=LISTED)
    with running(KZ, ca, origin.https) as (port, events, proxy):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with pytest.raises(ssl.SSLWantReadError):
                tls.do_handshake()
            hello = outgoing.read()
            for i in range(0, len(hello), 50):  # 50-byte segments, each on its own
                sock.sendall(hello[i : i + 50])
                time.sleep(0.002)
            while True:  # finish the handshake over the socket
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    sock.sendall(outgoing.read())
                    incoming.write(sock.recv(65536))
            sock.sendall(outgoing.read())
            issuer = tls.getpeercert()["issuer"]
    assert ((("countryName", "KZ"),) in issuer) and ((("commonName", "Qaznet Trust Network"),) in issuer)
    assert wait_for(lambda: proxy.counters["intercepted"] == 1)


def test_other_protocols_are_spliced_untouched(origin, censor_ca):
    ca, _ = censor_ca
    with running(KZ, ca, origin.echo) as (port, events, proxy):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n")
            assert sock.recv(100) == b"GET / HTTP/1.1\r\nHost: www.facebook.com\r\n\r\n"
            sock.shutdown(socket.SHUT_WR)  # a half-close is passed on: the echo closes too
            assert sock.recv(100) == b""
    with running(KZ, ca, origin.banner) as (port, events, proxy):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # the server speaks first
            assert sock.recv(100) == BANNER
            sock.sendall(HELLO_LISTED)  # too late to intercept: the flow is already spliced
            echoed = b""
            while len(echoed) < len(HELLO_LISTED) and (chunk := sock.recv(65536)):
                echoed += chunk
            assert echoed == HELLO_LISTED
        assert wait_for(lambda: proxy.counters["spliced"] == 1)
        assert events == [] and proxy.counters["verdict:allow"] == 1


def test_reset_drop_and_unenforceable_verdicts_on_redirected_connections(origin, censor_ca):
    ca, _ = censor_ca
    profile = load_rules_text(RULES)
    with running(profile, ca, origin.https, hold_seconds=1.0) as (port, events, proxy):
        context = ssl.create_default_context(cafile=str(origin.ca_file))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with pytest.raises(ConnectionResetError):
                context.wrap_socket(raw, server_hostname="reset.test")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(tls_client_hello("drop.test"))
            raw.settimeout(0.3)
            with pytest.raises(socket.timeout):  # held: no answer at all ...
                raw.recv(100)
            raw.settimeout(5)
            assert raw.recv(100) == b""  # ... then closed (FIN) after the hold
        names, body = python_tls(port, "slow.test", origin.ca_file)  # throttle: not done here, spliced
        assert names["issuer"] == "O=Chokepoint lab,CN=Chokepoint Lab CA" and MARKER.encode() in body
        assert wait_for(lambda: len(events) == 3)
    by_rule = {e["chokepoint"]["rule"]: e["chokepoint"] for e in events}
    assert by_rule["rst"]["flow_action"] == "reset" and by_rule["hold"]["flow_action"] == "drop"
    assert by_rule["slow"]["flow_action"] == "allow"
    assert "throttle is not enforced by the intercept proxy" in by_rule["slow"]["notes"][0]


def test_intercept_of_an_unreachable_server_resets_the_client(origin, censor_ca):
    ca, _ = censor_ca
    with running(KZ, ca, origin.refused) as (port, events, proxy):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HELLO_LISTED)
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        assert proxy.counters["upstream_connect_errors"] == 1


def test_upstream_that_is_not_tls_fails_the_interception_with_an_event(origin, censor_ca):
    ca, _ = censor_ca
    with running(KZ, ca, origin.echo, handshake_timeout=2.0) as (port, events, proxy):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HELLO_LISTED)  # the echo returns the ClientHello to the proxy's TLS client
            with pytest.raises(ConnectionResetError):
                while sock.recv(100):
                    pass
        assert wait_for(lambda: len(events) == 1)
    assert events[0]["chokepoint"]["intercept"]["outcome"] == "upstream-failed"


def test_plan_of_an_intercept_verdict_on_the_packet_path():
    """A flow the kernel did not redirect meets the verdict on the packet path: nothing injected or dropped."""
    from chokepoint.engine import Engine
    from chokepoint.packet import build
    from chokepoint.packet.decode import Decoder
    from chokepoint.packet.pcap import Frame

    engine = Engine(KZ)
    decision = None
    packets = build.tcp_conversation("198.18.0.2", "198.19.0.10", 40001, 8443, [HELLO_LISTED], [], 1.0)
    for index, (ts, raw) in enumerate(packets, 1):
        pkt = Decoder().decode(Frame(ts, 101, raw, len(raw), index))
        step = engine.step(pkt)
        if step.decided_now:
            decision = (step, pkt, raw)
            break
    assert decision is not None
    step, pkt, raw = decision
    assert step.flow.verdict.action is Action.TLS_INTERCEPT
    for mode, note in (("inline", "not redirected"), ("mirror", "mirror mode cannot intercept")):
        p = plan(
            step.flow.verdict, step.flow, pkt, raw, step.direction, DEFAULT, Stamper(random.Random(1)), 1.0, mode=mode
        )
        assert (p.flow_action, p.injections, p.drop_trigger, p.residual) == ("intercept", (), False, None)
        assert note in p.notes[0]


# --------------------------------------------------------------------------- the proxy process and events


def test_event_log_appends_whole_lines_beside_the_daemons(tmp_path):
    profile = load_rules_text("rules:\n  - {id: r, action: reset, when: {http.host: {exact: x.test}}}\n")
    censor = Censor(profile, mode="inline", state_dir=tmp_path)
    log = EventLog(tmp_path / "events.jsonl")
    for i in range(50):
        log({"event_type": "chokepoint", "i": i, "pad": "x" * 5000})
        censor._write_event({"event_type": "flow", "i": i})
    log.close()
    censor.close()
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert len(lines) == 100 and all(json.loads(line) for line in lines)


def test_proxy_process_starts_listens_and_stops_cleanly(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = intercept.InterceptProcess.start(tmp_path, rules=str(rules), port=port, seed=1)
    try:
        stats = process.stats()
        assert stats["running"] and stats["pid"] == process.proc.pid
        assert [tuple(a) for a in stats["listening"]] == [("0.0.0.0", port), ("::", port)]
        assert (tmp_path / intercept.CA_CERT_FILE).exists() and "Qaznet" in stats["ca"]["subject"]
        # a connection that was not redirected (no NAT on loopback) has no other destination: refused with RST
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(HELLO_LISTED)
            with pytest.raises(ConnectionResetError):
                sock.recv(100)
        assert wait_for(lambda: process.stats().get("counters", {}).get("connections") == 1, 4)
    finally:
        code = process.stop()
    assert code == 0 and process.stats()["running"] is False
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - {id: r, action: tls-intercept, params: {count: 2}, when: {transport: tcp}}\n")
    with pytest.raises(intercept.InterceptError, match="exited at start"):
        intercept.InterceptProcess.start(tmp_path, rules=str(bad), port=port)


# ------------------------------------------------------------------------- kernel (root, own namespace)


@pytest.fixture
def namespace() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables") is None:
        pytest.skip("needs root, ip and iptables (a throwaway network namespace)")
    name = f"{PREFIX}t-icpt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


#: Run inside the namespace: connect through a nat OUTPUT REDIRECT and report SO_ORIGINAL_DST of both families.
ORIGINAL_DST = """
import json, socket, sys
from chokepoint.backends.intercept import so_original_dst
out = []
for family, listen, target in ((socket.AF_INET, "127.0.0.1", "127.0.0.2"), (socket.AF_INET6, "::1", "::1")):
    server = socket.socket(family)
    server.bind((listen, 15999))
    server.listen()
    client = socket.create_connection((target, 9443), timeout=5)
    conn, _ = server.accept()
    out.append(list(so_original_dst(conn)))
    for s in (client, conn, server):
        s.close()
print(json.dumps(out))
"""


def test_so_original_dst_reads_the_redirected_destination(namespace):
    for tool in ("iptables", "ip6tables"):
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                namespace,
                tool,
                "-w",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "--dport",
                "9443",
                "-j",
                "REDIRECT",
                "--to-ports",
                "15999",
            ],
            check=True,
            capture_output=True,
        )
    proc = subprocess.run(
        ["ip", "netns", "exec", namespace, sys.executable, "-c", textwrap.dedent(ORIGINAL_DST)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [["127.0.0.2", 9443], ["::1", 9443]]


def test_kernel_program_installs_and_removes_the_redirect(namespace):
    program = KernelProgram(namespace, redirect=Redirect(14443, ((443, 443), (8000, 8010)), ("198.19.0.0/24",)))
    program.install()
    program.install()  # idempotent
    v4 = program.nat_listing()
    assert "-A PREROUTING -i ce0 -j CHOKEPOINT_TLS" in v4
    assert "-A CHOKEPOINT_TLS -d 198.19.0.0/24 -p tcp -m tcp --dport 443 -j REDIRECT --to-ports 14443" in v4
    assert "-A CHOKEPOINT_TLS -d 198.19.0.0/24 -p tcp -m tcp --dport 8000:8010 -j REDIRECT --to-ports 14443" in v4
    v6 = program.nat_listing(v6=True)
    assert "-A PREROUTING -i ce0 -j CHOKEPOINT_TLS" in v6 and "REDIRECT" not in v6  # no IPv6 destination given
    program.remove()
    program.remove()
    assert "CHOKEPOINT_TLS" not in program.nat_listing() + program.nat_listing(v6=True)
    plain = KernelProgram(namespace)  # no intercept rules: nothing in nat
    plain.install()
    assert "CHOKEPOINT_TLS" not in plain.nat_listing()
    plain.remove()


def test_proxy_process_takes_the_daemon_s_clock_offset_and_param_overrides(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    day = 86400.0
    process = intercept.InterceptProcess.start(
        tmp_path, rules=str(rules), port=port, seed=1, clock_offset_s=-day, params={"rst.count": "3"}
    )
    try:
        stats = process.stats()
        assert stats["running"] and abs(stats["updated"] - (time.time() - day)) < 60  # its clock is a day behind
    finally:
        assert process.stop() == 0
    with pytest.raises(intercept.InterceptError, match="exited at start"):  # a bad override stops it at start
        intercept.InterceptProcess.start(tmp_path, rules=str(rules), port=port, params={"nope.count": "3"})
