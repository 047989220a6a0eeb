"""The on-path (mirror) censor end to end: ``censord --mode mirror`` sees a copy of the traffic on the
censor's interfaces (AF_PACKET) and can only inject, racing the real server.

The lab's links are sub-millisecond, so the races use a slow server (``/slow?ms=N``) or a slow resolver
(names starting with ``slow``): the distance a real censor profits from.
"""

from __future__ import annotations

import time

import pytest

from .conftest import CLIENT_IP, Censord, in_ns

RULES = """
rules:
  - id: reset-host
    action: reset
    params: {targets: client}
    when: {http.host: {exact: blocked.test}}
  - id: reset-residual
    action: reset
    params: {targets: client, residual_s: 3}
    when: {http.host: {exact: residual.test}}
  - id: page
    action: blockpage
    params: {status: 403, body: "mirror block page"}
    when: {http.host: {exact: page.test}}
  - id: forge
    action: dns-forge
    params: {answers: [198.19.0.99]}
    when: {dns.qname: {exact: slow-forged.test}}
  - id: udp-drop
    action: drop
    when: {all: [{transport: udp}, {server_port: 9999}]}
"""

SLOW = "http://198.19.0.2/slow?ms=300"


@pytest.fixture(scope="class")
def mirror(netpath, tmp_path_factory):
    daemon = Censord(netpath, tmp_path_factory.mktemp("mirror"), RULES, "mirror").start()
    try:
        yield daemon
    finally:
        daemon.close()


class TestOneDaemon:
    """Tests sharing one mirror daemon."""

    def test_no_kernel_program_in_mirror_mode(self, netpath, mirror):
        assert "CHOKEPOINT" not in in_ns(netpath.censor, ["iptables", "-w", "-t", "mangle", "-S"]).stdout
        assert netpath.curl("http://198.19.0.2/", "-H", "Host: fine.test")[:2] == (0, "origin host=fine.test path=/\n")

    def test_injected_rst_wins_the_race_against_a_distant_server(self, netpath, mirror):
        with netpath.capture(netpath.client, "cl0", 80) as seen:
            code, _, err = netpath.curl(SLOW, "-H", "Host: blocked.test")
        assert code == 56 and "Connection reset by peer" in err, err
        incoming = [c.pkt for c in seen if not c.outgoing]
        first_rst = next(i for i, p in enumerate(incoming) if p.tcp_flags & 0x04)
        assert not any(p.payload for p in incoming[:first_rst])  # the RST came before the page
        event = mirror.actions("reset-host")[0]["chokepoint"]
        assert event["mode"] == "mirror" and event["trigger"]["dropped"] is False
        assert [i["to"] for i in event["injected"]] == ["client"]
        latency = mirror.fresh_stats()["backend"]["inject_latency_ms"]
        assert latency["samples"] >= 1 and latency["p50"] > 0

    def test_a_client_that_ignores_resets_still_gets_the_page(self, netpath, mirror):
        drop_rst = ["-p", "tcp", "--tcp-flags", "RST", "RST", "-s", "198.19.0.2", "-j", "DROP"]
        in_ns(netpath.client, ["iptables", "-w", "-I", "INPUT", *drop_rst])
        try:
            before = len(mirror.actions("reset-host"))
            code, body, err = netpath.curl(SLOW, "-H", "Host: blocked.test")
        finally:
            in_ns(netpath.client, ["iptables", "-w", "-D", "INPUT", *drop_rst])
        assert code == 0 and body == "origin host=blocked.test path=/slow\n", err
        assert len(mirror.actions("reset-host")) == before + 1  # the censor did act

    def test_injected_blockpage_wins_the_race(self, netpath, mirror):
        code, body, err = netpath.curl(SLOW, "-H", "Host: page.test", "-w", "%{http_code}")
        assert code == 0, err
        assert body == "mirror block page403"

    def test_forged_dns_answer_arrives_first_and_the_real_one_after(self, netpath, mirror):
        race = """
import dns.message, socket, time
query = dns.message.make_query("slow-forged.test", "A")
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.5)
sock.sendto(query.to_wire(), ("198.19.0.2", 53))
answers = []
try:
    while len(answers) < 2:
        reply = dns.message.from_wire(sock.recv(1500))
        answers.append([rr.to_text() for rrset in reply.answer for rr in rrset] + [reply.id == query.id])
except socket.timeout:
    pass
print(answers)
"""
        out = netpath.client_python(race).stdout.strip()
        assert out == "[['198.19.0.99', True], ['198.19.0.10', True]]"

    def test_drop_cannot_be_enforced_on_path(self, netpath, mirror):
        echo = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
n = 0
for i in range(3):
    s.sendto(b"x%d" % i, ("198.19.0.2", 9999))
    n += s.recv(10) == b"x%d" % i
print(n)
"""
        assert netpath.client_python(echo).stdout.strip() == "3"
        stats = mirror.fresh_stats()
        assert stats["backend"]["unenforceable"]["drop"] >= 1
        assert stats["verdicts"]["by_rule"]["udp-drop"] >= 1

    def test_residual_reset_in_user_space(self, netpath, mirror):
        code, _, _ = netpath.curl("http://198.19.0.10/slow?ms=300", "-H", "Host: residual.test")
        started = time.monotonic()
        assert code == 56
        # A new connection within 3 s: the censor answers the server's SYN+ACK with an RST at the client's
        # RCV.NXT (and the SYN with an RST+ACK), so the connection dies whatever it carries.
        code, _, err = netpath.curl("http://198.19.0.10/slow?ms=300", "-H", "Host: fine.test")
        assert code in (7, 56), err
        hits = [e for e in mirror.actions("reset-residual") if "residual_hit" in e["chokepoint"]["kernel"]]
        assert hits and hits[0]["chokepoint"]["kernel"]["residual_hit"] == ["tcp", CLIENT_IP, "198.19.0.10", 80]
        time.sleep(max(0.0, started + 3.3 - time.monotonic()))
        code, body, err = netpath.curl("http://198.19.0.10/", "-H", "Host: fine.test")
        assert code == 0 and body.startswith("origin"), err


def test_each_packet_is_counted_once(netpath, tmp_path):
    daemon = Censord(netpath, tmp_path / "count", RULES, "mirror").start()
    try:
        echo = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("", 45678))
s.settimeout(1)
n = 0
for i in range(5):
    s.sendto(b"count %d" % i, ("198.19.0.2", 9000))
    n += s.recv(100) == b"count %d" % i
print(n)
"""
        assert netpath.client_python(echo).stdout.strip() == "5"
        time.sleep(0.3)
        assert daemon.stop() == 0
        (flow,) = [e for e in daemon.events() if e["event_type"] == "flow" and e.get("src_port") == 45678]
        # each datagram crossed the censor once each way: seen on ce0 and ce1, counted once
        assert (flow["flow"]["pkts_toserver"], flow["flow"]["pkts_toclient"]) == (5, 5)
        stats = daemon.stats()
        assert stats["running"] is False and stats["backend"]["ignore_outgoing"] is True
    finally:
        daemon.close()
