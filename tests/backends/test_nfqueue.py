"""The inline censor end to end: ``python -m chokepoint.backends.censord --mode inline`` in the censor
namespace of a real client/censor/server path, real clients (curl, dig, Python sockets) and real servers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time

import pytest

from chokepoint.backends.censord import launch
from chokepoint.lab import system
from chokepoint.lab.state import LabState, ProcessInfo, StateError, proc_start_time
from chokepoint.policy import load_rules_text

from .conftest import CLIENT_IP, Censord, in_ns

RULES = """
rules:
  - id: reset-host
    action: reset
    reason: test
    when: {http.host: {exact: blocked.test}}
  - id: reset-residual
    action: reset
    params: {residual_s: 2, residual_scope: 3-tuple}
    when: {http.host: {exact: residual.test}}
  - id: page
    action: blockpage
    params: {status: 403, body: "chokepoint test block page"}
    when: {http.host: {exact: page.test}}
  - id: slow
    action: throttle
    params: {rate_kbps: 2000}
    when: {http.host: {exact: slow.test}}
  - id: late
    action: delay
    params: {delay_ms: 150}
    when: {http.host: {exact: delay.test}}
  - id: unreachable
    action: icmp-unreachable
    when: {all: [{transport: tcp}, {server_ip: {in: [198.19.0.13/32]}}]}
  - id: forge
    action: dns-forge
    params: {answers: [198.19.0.99, "2001:db8:0:2::99"]}
    when: {dns.qname: {exact: forged.test}}
  - id: udp-drop
    action: drop
    when: {all: [{transport: udp}, {server_port: 9999}]}
  - id: answers-drop
    action: drop
    params: {direction: s2c}
    when: {http.host: {exact: s2c.test}}
"""


UDP = """
import socket, sys
out = []
for port in (9999, 9000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.7)
    replies = 0
    for i in range(3):
        s.sendto(b"ping %d" % i, ("198.19.0.2", port))
        try:
            replies += s.recv(100) == b"ping %d" % i
        except socket.timeout:
            pass
    out.append(replies)
print(out)
"""


def test_rules_load():
    rules = load_rules_text(RULES)
    assert [r.id for r in rules.policy.rules][:2] == ["reset-host", "reset-residual"]


@pytest.fixture(scope="class")
def inline(netpath, tmp_path_factory):
    daemon = Censord(netpath, tmp_path_factory.mktemp("inline"), RULES, "inline").start()
    try:
        yield daemon
    finally:
        daemon.close()


class TestOneDaemon:
    """Tests sharing one inline daemon (started once for the class)."""

    def test_allowed_request_gets_the_real_page(self, netpath, inline):
        code, body, err = netpath.curl("http://198.19.0.2/hello", "-H", "Host: allowed.test")
        assert code == 0, err
        assert body == "origin host=allowed.test path=/hello\n"

    def test_blocked_host_is_reset(self, netpath, inline):
        code, body, err = netpath.curl("http://198.19.0.2/", "-H", "Host: blocked.test")
        assert code == 56 and "Connection reset by peer" in err, (code, err)
        (event,) = inline.actions("reset-host")
        cp = event["chokepoint"]
        assert (event["src_ip"], event["dest_ip"], event["dest_port"]) == (CLIENT_IP, "198.19.0.2", 80)
        assert cp["trigger"]["dropped"] is True and cp["flow_action"] == "drop"
        to = {i["to"]: i for i in cp["injected"]}
        assert to["client"]["tcp_flags"] == "RA" and to["client"]["src_ip"] == "198.19.0.2"
        assert to["server"]["tcp_flags"] == "RA" and to["server"]["dest_port"] == 80
        assert to["client"]["ttl"] == 64 and to["client"]["df"] is True  # the default personality
        assert cp["evidence"] == [{"field": "http.host", "value": "blocked.test", "matched": "exact blocked.test"}]

    def test_blocked_host_over_ipv6_is_reset(self, netpath, inline):
        code, _, err = netpath.curl("http://[2001:db8:0:2::2]/", "-H", "Host: blocked.test")
        assert code == 56, err
        to_v6 = inline.wait_actions("reset-host", lambda found: any(e["dest_ip"] == "2001:db8:0:2::2" for e in found))
        assert any(e["dest_ip"] == "2001:db8:0:2::2" for e in to_v6), to_v6

    def test_the_reset_reaches_the_client_before_anything_from_the_server(self, netpath, inline):
        with netpath.capture(netpath.client, "cl0", 80) as seen:
            code, _, _ = netpath.curl("http://198.19.0.11/", "-H", "Host: blocked.test")
        assert code == 56
        incoming = [c.pkt for c in seen if not c.outgoing]
        assert incoming[0].tcp_flags & 0x12 == 0x12  # SYN+ACK from the real server
        assert incoming[-1].tcp_flags & 0x04  # then the forged RST ...
        assert not any(p.payload for p in incoming)  # ... and never the server's page

    def test_residual_block_then_expiry(self, netpath, inline):
        code, _, _ = netpath.curl("http://198.19.0.10/", "-H", "Host: residual.test")
        started = time.monotonic()
        assert code == 56
        # within the 2 s window every new connection to 198.19.0.10:80 is refused by the kernel (reject with
        # tcp reset), whatever it carries; other ports and servers are not affected
        assert netpath.connect("198.19.0.10,80", "198.19.0.10,8081", "198.19.0.11,80") == ["refused", "ok", "ok"]
        code, _, err = netpath.curl("http://198.19.0.10/", "-H", "Host: allowed.test")
        assert code == 7 and "Couldn't connect" in err
        stats = inline.fresh_stats()
        assert stats["residual"]["added"] >= 1
        time.sleep(max(0.0, started + 2.5 - time.monotonic()))
        code, body, err = netpath.curl("http://198.19.0.10/", "-H", "Host: allowed.test")
        assert code == 0 and "origin" in body, err
        (event,) = inline.actions("reset-residual")
        assert event["chokepoint"]["residual"] == {
            "scope": "3-tuple",
            "key": ["tcp", CLIENT_IP, "198.19.0.10", 80],
            "seconds": 2,
            "action": "reset",
            "rearm": False,
        }

    def test_blockpage_replaces_the_answer(self, netpath, inline):
        code, body, err = netpath.curl("http://198.19.0.2/x", "-H", "Host: page.test", "-w", "%{http_code}")
        assert code == 0, err
        assert body == "chokepoint test block page403"
        assert inline.actions("page")[0]["chokepoint"]["injected"][0]["what"] == "blockpage"

    def test_dns_forged_answer_and_real_answer(self, netpath, inline):
        if shutil.which("dig") is None:
            pytest.skip("dig (dnsutils) is not installed")
        dig = ["dig", "+short", "+time=2", "+tries=1", "@198.19.0.2"]
        assert netpath.client_run([*dig, "forged.test", "A"]).stdout.split() == ["198.19.0.99"]
        assert netpath.client_run([*dig, "forged.test", "AAAA"]).stdout.split() == ["2001:db8:0:2::99"]
        assert netpath.client_run([*dig, "fine.test", "A"]).stdout.split() == ["198.19.0.10"]
        events = inline.actions("forge")
        assert {e["chokepoint"]["injected"][0]["dns"]["answers"][0]["rdata"] for e in events} == {
            "198.19.0.99",
            "2001:db8:0:2::99",
        }

    def test_dnspython_gets_the_forged_answer(self, netpath, inline):
        code = """
    import dns.message, dns.query
    q = dns.message.make_query("forged.test", "A")
    r = dns.query.udp(q, "198.19.0.2", timeout=2)
    print(r.id == q.id, [rr.to_text() for rrset in r.answer for rr in rrset])
    """
        proc = netpath.client_python(code)
        assert proc.stdout.strip() == "True ['198.19.0.99']", proc.stderr

    def test_udp_drop(self, netpath, inline):
        assert netpath.client_python(UDP).stdout.strip() == "[0, 3]"

    def test_throttle_rate_is_within_30_percent(self, netpath, inline):
        measure = """
    import socket, time
    s = socket.create_connection(("198.19.0.2", 80), timeout=20)
    s.sendall(b"GET /large?bytes=600000 HTTP/1.1\\r\\nHost: slow.test\\r\\nConnection: close\\r\\n\\r\\n")
    got, marks = 0, []
    while chunk := s.recv(65536):
        got += len(chunk)
        marks.append((time.monotonic(), got))
    start = next(m for m in marks if m[1] >= 150000)    # after the token bucket's burst
    end = marks[-1]
    print(got, (end[1] - start[1]) * 8 / (end[0] - start[0]) / 1000)
    """
        proc = netpath.client_python(measure, timeout=40)
        got, kbps = proc.stdout.split()
        assert int(got) > 600000, proc.stderr
        assert 0.7 * 2000 <= float(kbps) <= 1.3 * 2000, kbps
        assert inline.actions("slow")[0]["chokepoint"]["kernel"]["mark"] & 0xFF03 == 0x103

    def test_delay_holds_every_packet(self, netpath, inline):
        timing = """
    import socket, sys, time
    out = []
    for host in ("allowed.test", "delay.test"):
        s = socket.create_connection(("198.19.0.2", 80), timeout=5)
        start = time.monotonic()
        s.sendall(b"GET / HTTP/1.1\\r\\nHost: " + host.encode() + b"\\r\\n\\r\\n")
        s.recv(1000)
        out.append(time.monotonic() - start)
    print(*out)
    """
        fast, slow = map(float, netpath.client_python(timing).stdout.split())
        # the request and the answer are each held 150 ms (no netem on this kernel: user space holds them)
        assert slow >= 0.3 > fast
        stats = inline.fresh_stats()
        assert stats["packets"]["held"] >= 2

    def test_drop_in_one_direction_only(self, netpath, inline):
        with netpath.capture(netpath.server, "sv0", 80) as seen:
            code, _, _ = netpath.curl("http://198.19.0.14/", "-H", "Host: s2c.test", timeout=2)
        assert code == 28  # no answer reaches the client ...
        assert any(not c.outgoing and c.pkt.payload.startswith(b"GET /") for c in seen)  # ... the request
        assert any(c.outgoing and c.pkt.payload.startswith(b"HTTP/1.1 200") for c in seen)  # did get one
        event = inline.actions("answers-drop")[0]["chokepoint"]
        assert event["drop_direction"] == "s2c" and event["trigger"]["dropped"] is False
        assert event["kernel"]["mark"] == 0x22  # blocked (2), REPLY direction only

    def test_icmp_unreachable(self, netpath, inline):
        assert netpath.connect("198.19.0.13,80") == ["EHOSTUNREACH"]  # ICMP 3/13: administratively filtered
        code, _, err = netpath.curl("http://198.19.0.13/")
        assert code == 7
        event = inline.actions("unreachable")[0]["chokepoint"]
        assert event["injected"][0]["icmp_type"] == 3 and event["injected"][0]["icmp_code"] == 13

    def test_fast_path_keeps_bulk_traffic_in_the_kernel(self, netpath, inline):
        before_stats = inline.fresh_stats()
        before = before_stats["packets"]
        code, _, err = netpath.curl(
            "http://198.19.0.2/large?bytes=20000000", "-o", "/dev/null", "-H", "Host: bulk.test"
        )
        assert code == 0, err
        after_stats = inline.fresh_stats()
        after = after_stats["packets"]
        queued = after["queued"] - before["queued"]
        # 20 MB is >13,000 full-size segments; only the engine's inspection budget (32 packets or 32 KiB each
        # way; the flow is offloaded when both directions spent it) reaches user space, then connmark 1
        assert queued <= 400, queued
        assert after_stats["backend"]["flows_offloaded"] - before_stats["backend"]["flows_offloaded"] == 1

    def test_counters_and_events(self, netpath, inline):
        stats = inline.fresh_stats()
        assert stats["running"] is True and stats["mode"] == "inline" and stats["errors"] == {}
        assert stats["verdicts"]["by_rule"]["reset-host"] >= 2
        assert stats["injections"]["injected_to_client"] >= 2
        assert set(stats) >= {"packets", "verdicts", "injections", "residual", "flows", "errors"}

    def test_queue_already_bound_is_refused(self, netpath, inline, tmp_path):
        with pytest.raises(RuntimeError) as info:
            Censord(netpath, tmp_path / "twice", RULES, "inline").start()
        assert "cannot start the inline backend" in str(info.value)
        assert netpath.curl("http://198.19.0.2/", "-H", "Host: blocked.test")[0] == 56  # the first still works


def test_clean_stop_writes_flows_and_removes_kernel_state(netpath, tmp_path):
    daemon = Censord(netpath, tmp_path / "stop", RULES, "inline").start()
    try:
        netpath.curl("http://198.19.0.2/", "-H", "Host: blocked.test")
        netpath.curl("http://198.19.0.2/", "-H", "Host: fine.test")
        assert daemon.stop() == 0
        flows = [e for e in daemon.events() if e["event_type"] == "flow"]
        verdicts = {e["chokepoint"]["verdict"] for e in flows if e.get("dest_port") == 80}
        assert verdicts == {"reset", "allow"}
        assert daemon.stats()["running"] is False
        assert "CHOKEPOINT" not in in_ns(netpath.censor, ["iptables", "-w", "-t", "mangle", "-S"]).stdout
        assert in_ns(netpath.censor, ["nft", "list", "table", "inet", "chokepoint"], check=False).returncode != 0
    finally:
        daemon.close()


@pytest.mark.parametrize("fail_closed", [False, True])
def test_kill_9_fails_open_or_closed(netpath, tmp_path, fail_closed):
    extra = ["--fail-closed"] if fail_closed else []
    daemon = Censord(netpath, tmp_path / "crash", RULES, "inline", extra).start()
    try:
        assert netpath.curl("http://198.19.0.2/", "-H", "Host: blocked.test")[0] == 56
        assert netpath.curl("http://198.19.0.2/", "-H", "Host: fine.test")[0] == 0
        daemon.kill9()
        code, body, _ = netpath.curl("http://198.19.0.2/", "-H", "Host: blocked.test", timeout=2)
        if fail_closed:
            assert code == 28  # timed out: nothing passes the dead censor
        else:
            assert code == 0 and body.startswith("origin")  # the kernel accepts: no censor, no block
    finally:
        daemon.close()


def test_bad_rules_fail_at_start_with_a_clear_message(netpath, tmp_path):
    bad = RULES.replace("params: {status: 403,", "params: {colour: red, status: 403,")
    with pytest.raises(RuntimeError) as info:
        Censord(netpath, tmp_path / "bad", bad, "inline").start()
    assert "profile rejected" in str(info.value) and "rules.yaml:13:14" in str(info.value)
    assert "colour" in str(info.value)
    assert "CHOKEPOINT" not in in_ns(netpath.censor, ["iptables", "-w", "-t", "mangle", "-S"]).stdout


class FakeLabState:
    """What ``censord.launch`` needs of ``chokepoint.lab.state.LabState``, starting into the test's censor
    namespace instead of the lab's ``cpk-censor``."""

    def __init__(self, netpath, state_dir) -> None:
        self.netpath = netpath
        self.state_dir = state_dir
        self.started = []

    python_argv = staticmethod(LabState.python_argv)

    def start(self, name, host, argv):
        log, pidfile = self.state_dir / f"{name}.log", self.state_dir / f"{name}.pid"
        pid = system.spawn(argv, netns=self.netpath.censor, log_path=log)
        info = ProcessInfo(
            name, host, self.netpath.censor, pid, proc_start_time(pid) or 0, list(argv), str(log), str(pidfile)
        )
        self.started.append(info)
        return info


def test_launch_for_lab_up(netpath, tmp_path):
    state = FakeLabState(netpath, tmp_path)
    try:
        info = launch(state, "inline", "demo", False, 5)
        assert info.alive()
        assert info.argv[info.argv.index("--profile") + 1] == "demo" and info.argv[-2:] == ["--seed", "5"]
        stats = json.loads((tmp_path / "censor-stats.json").read_text())
        assert stats["running"] and stats["profile"] == "demo" and stats["pid"] == info.pid
        code, body, err = netpath.curl("http://198.19.0.2/", "-H", "Host: example-blocked.test", "-w", "%{http_code}")
        assert code == 0 and body == "Blocked by the demo censor.403", (body, err)
    finally:
        for process in state.started:
            if process.alive():
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(p.alive() for p in state.started) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not info.alive()
    assert "CHOKEPOINT" not in in_ns(netpath.censor, ["iptables", "-w", "-t", "mangle", "-S"]).stdout


def test_launch_reports_a_daemon_that_does_not_come_up(netpath, tmp_path):
    state = FakeLabState(netpath, tmp_path)
    with pytest.raises(StateError, match="profile rejected"):
        launch(state, "inline", "no-such-profile", False, None)
    assert not any(p.alive() for p in state.started)


HOLD = """
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(4):
    s.sendto(b"held %d" % i, ("198.19.0.2", 9999))    # each held 3 s in user space: the queue (2) is full
time.sleep(0.3)
"""


@pytest.mark.parametrize("fail_closed", [False, True])
def test_overload_fails_open_or_closed(netpath, tmp_path, fail_closed):
    rules = (
        "rules:\n  - id: hold\n    action: delay\n    params: {delay_ms: 3000}\n"
        "    when: {all: [{transport: udp}, {server_port: 9999}]}\n"
    )
    extra = ["--queue-maxlen", "2"] + (["--fail-closed"] if fail_closed else [])
    daemon = Censord(netpath, tmp_path / "full", rules, "inline", extra).start()
    try:
        assert netpath.client_python(HOLD).returncode == 0
        outcome = netpath.connect("198.19.0.2,80", timeout=1)
        queue = daemon.fresh_stats()["backend"]["kernel_queue"]
        assert queue["waiting"] == 2
        if fail_closed:
            assert outcome == ["timeout"] and queue["queue_dropped"] >= 1
        else:
            assert outcome == ["ok"] and queue["queue_dropped"] == 0  # accepted uninspected: fail-open
    finally:
        daemon.close()
