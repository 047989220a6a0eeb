"""End to end through ``chokepoint lab up --mode mirror``: the censor in ``cpk-censor`` sees a copy of the traffic
(AF_PACKET) and can only inject, racing the real server. Real clients in ``cpk-client`` against the real lab
services; root only, skipped with the reason otherwise.

What a client sees depends on who wins the race, so the checks are built on what is certain: where the server
is slower than the censor (the origin's ``/slow?delay=S``), the injected RST or block page wins; a client that
reads everything (dnspython on a UDP socket) receives the forged AND the real DNS answer, and dig takes
whichever tcpdump saw first; a client that ignores injected RSTs (an iptables rule in ``cpk-client``) gets the
real page; kernel-side actions (drop, throttle) are not enforced and are counted as unenforceable. The last test
checks that nothing of any lab is left behind.
"""

from __future__ import annotations

import re
import time

from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

from ._e2e import (
    BLOCKPAGE_BODY,
    CLIENT_IP,
    CONTROL_DNS,
    CURL_OK,
    CURL_RECV,
    DEFAULT_A,
    LAB_DNS,
    ORIGIN_MARKER,
    RESIDUAL_S,
    RST_FILTER,
    LabRun,
    all_left_behind,
    class_lab,
    origin,
    rules_yaml,
    session,
)
from ._lab import OURS

RULES = rules_yaml(
    "reset-host",
    "{id: reset-client-only, action: reset, params: {targets: client}, when: {http.host: {exact: ignored.test}}}",
    "reset-sni",
    "forge",
    "page",
    "residual",
    "{id: drop, action: drop, when: {http.host: {exact: dropped.test}}}",
    "{id: throttle, action: throttle, params: {rate_kbps: 1000}, when: {http.host: {exact: slow.test}}}",
    "unreachable",
)

PERSONALITY = """
reset: {count: 2, flags: RA, targets: both, ttl: 77, ip_id: 4242, df: false, window: 1234}
dns: {flags: 0x8180, answer_ttl: 321, ttl: 99, mode: race}
blockpage: {status: 451, body: "blocked by the e2e censor"}
"""
SEED = 11
#: The origin answers after this long: a server slower than the censor, so the injection wins the race.
SLOW = "/slow?delay=0.3"
#: curl's exit codes for a connection reset during/after the TLS handshake (35), before it could even read its
#: own address (55: getpeername ENOTCONN), or while receiving (56).
RESET_CODES = {35, 55, 56}
#: Throwaway namespaces other code creates for a moment without the session lock (root checks, kernel probe).
# Namespaces that are not the lab's: short-lived kernel-feature probes, and the backends suite's own test path
# (cpk-t-*), which its session fixture keeps for the whole worker and removes itself (tests/backends/conftest.py).
TRANSIENT_PROBES = (f"{PREFIX}zzcheck-", f"{PREFIX}t-", f"{PREFIX}probe-")


mirror_lab = class_lab("e2e-mirror", RULES, PERSONALITY, mode="mirror", seed=SEED)


class TestMirror:
    def test_allowed_targets_work(self, mirror_lab: LabRun):
        lab = mirror_lab
        assert origin(lab.curl("http://198.19.0.10/", "-H", "Host: allowed.test"))
        assert origin(lab.curl("https://allowed.test/"))
        assert origin(lab.curl("https://198.19.0.11/"))  # no SNI
        assert lab.h3_get("198.19.0.18", "allowed.test") == {"outcome": "ok", "status": 200, "origin": True}
        assert lab.actions() == []
        stats = lab.stats()
        assert stats["running"] and stats["mode"] == "mirror"
        assert stats["packets"]["captured"] > 0 and "queue_num" not in stats["backend"]

    def test_injected_resets_beat_a_slow_server(self, mirror_lab: LabRun):
        lab = mirror_lab
        with (
            lab.capture(f"{RST_FILTER} and host 198.19.0.12") as at_client,
            lab.capture(f"{RST_FILTER} and host 198.19.0.12", netns=f"{PREFIX}server", iface="sv0") as at_server,
        ):
            blocked = lab.curl(f"http://198.19.0.12{SLOW}", "-H", "Host: blocked.test")
        assert blocked.code == CURL_RECV and "Connection reset by peer" in blocked.stderr, blocked
        to_client = [p for p in at_client.packets if p.dst == CLIENT_IP]
        to_server = [p for p in at_server.packets if p.dst == "198.19.0.12"]
        assert len(to_client) == 2 and len(to_server) == 2, at_client.raw + at_server.raw
        for rst in to_client + to_server:
            assert (rst.tcp_flags, rst.ttl, rst.ip_id, rst.df, rst.window) == ("R.", 77, 4242, False, 1234), rst
        (event,) = lab.actions("reset-host")
        # on-path: the trigger was not (and cannot be) dropped; the request reached the server
        assert event["chokepoint"]["trigger"]["dropped"] is False and event["chokepoint"]["kernel"] == {"mirror": True}
        assert origin(lab.curl(f"http://198.19.0.12{SLOW}", "-H", "Host: allowed.test"))

    def test_tls_reset_races_the_server_handshake(self, mirror_lab: LabRun):
        """The server answers a ClientHello within a millisecond or two, as fast as the censor: whoever is first
        wins. Certain: the RSTs reach the client at the exact RCV.NXT of the trigger (the server's ISN + 1), and
        whenever one arrives before the server's first data the client is reset (curl, openssl alike)."""
        lab = mirror_lab
        clients = {
            "curl": lambda address: lab.curl("https://blocked.test/", "--resolve", f"blocked.test:443:{address}"),
            "openssl": lambda address: lab.openssl(address, "blocked.test"),
        }
        for index, (name, client) in enumerate(clients.items()):
            address = f"198.19.0.{25 + index}"
            with lab.capture(f"tcp port 443 and host {address}") as wire:
                outcome = client(address)
            from_server = [p for p in wire.packets if p.src == address]
            (syn_ack,) = [p for p in from_server if p.tcp_flags == "S."]
            injected = [p for p in from_server if p.is_rst and p.ttl == 77]
            assert len(injected) == 2, wire.raw
            assert all(p.seq == (syn_ack.seq + 1) % 2**32 and p.ip_id == 4242 for p in injected), wire.raw
            data = [p for p in from_server if p.payload_len and p.ttl == 63]
            if not data or injected[0].time < data[0].time:  # the censor won: the client is reset
                if name == "curl":
                    assert outcome.code in RESET_CODES and outcome.status == 0, outcome
                else:
                    code, out = outcome
                    assert code != 0 and "errno=104" in out and ORIGIN_MARKER not in out, out
        assert len(lab.wait_actions("reset-sni", 2)) == 2

    def test_forged_dns_answer_races_the_real_one(self, mirror_lab: LabRun):
        lab = mirror_lab
        forged_answer, real_answer = [[321, "198.19.0.99"]], [[60, DEFAULT_A]]
        both = lab.dns_all_answers(LAB_DNS, "forged.test", wait=1.0)
        # a client reading the socket gets both (same ID, same source), the forged one with the personality's flags
        assert sorted((a["flags"], a["answers"]) for a in both) == [(0x8180, forged_answer), (0x8580, real_answer)]
        assert all(a["id_matches"] and a["from"] == LAB_DNS for a in both), both
        with lab.capture("udp and src port 53 and src host 198.19.0.53") as wire:
            dig = lab.dig(LAB_DNS, "forged.test")
        first, second = wire.packets  # both reach the client; dig takes the first
        assert {first.ttl, second.ttl} == {99, 63}, wire.raw  # forged: IP TTL 99; real: 64 minus one hop
        expected = "198.19.0.99" if first.ttl == 99 else DEFAULT_A
        assert re.search(rf"^forged\.test\.\s+\d+\s+IN\s+A\s+{re.escape(expected)}$", dig, re.M), (dig, wire.raw)
        assert [a["answers"] for a in lab.dns_all_answers(CONTROL_DNS, "forged.test", wait=0.3)] == [real_answer]

    def test_blockpage_beats_a_slow_server_then_the_connection_is_closed(self, mirror_lab: LabRun):
        lab = mirror_lab
        page = lab.curl(f"http://198.19.0.16{SLOW}", "-H", "Host: page.test")
        assert (page.code, page.status, page.text) == (CURL_OK, 451, BLOCKPAGE_BODY), page
        raw = lab.http_until_close("198.19.0.16", "page.test", SLOW)
        assert raw["closed_by"] == "fin" and raw["data"].startswith("HTTP/1.1 451 "), raw
        assert raw["data"].endswith(BLOCKPAGE_BODY) and ORIGIN_MARKER not in raw["data"], raw
        assert origin(lab.curl(f"http://198.19.0.16{SLOW}", "-H", "Host: allowed.test"))

    def test_residual_block_then_expiry(self, mirror_lab: LabRun):
        lab = mirror_lab
        assert lab.curl(f"http://198.19.0.20{SLOW}", "-H", "Host: residual.test").code == CURL_RECV
        started = time.monotonic()
        # a clean request inside the window: the censor resets it (it cannot drop; its RSTs to the SYN, the
        # SYN+ACK and the first client segment carry the exact numbers)
        retry = lab.curl(f"http://198.19.0.20{SLOW}", "-H", "Host: allowed.test")
        assert retry.code != CURL_OK and ("reset" in retry.stderr or "connect" in retry.stderr), retry
        assert origin(lab.curl(f"http://198.19.0.21{SLOW}", "-H", "Host: allowed.test"))  # another server
        assert time.monotonic() - started < RESIDUAL_S, "the checks above must run inside the window"
        time.sleep(max(0.0, started + RESIDUAL_S + 0.5 - time.monotonic()))
        assert origin(lab.curl(f"http://198.19.0.20{SLOW}", "-H", "Host: allowed.test")), "the window is over"
        assert lab.stats()["backend"]["residual_hits"] >= 1

    def test_a_client_ignoring_injected_resets_gets_through(self, mirror_lab: LabRun):
        lab = mirror_lab
        # the rule resets only the client: without help the client is reset ...
        assert lab.curl(f"http://198.19.0.22{SLOW}", "-H", "Host: ignored.test").code == CURL_RECV
        # ... but a client whose firewall drops incoming RSTs from that server just waits for the real answer
        rule = ["INPUT", "-p", "tcp", "-s", "198.19.0.23", "--tcp-flags", "RST", "RST", "-j", "DROP"]
        assert lab.run(["iptables", "-w", "-I", *rule]).returncode == 0
        try:
            through = lab.curl(f"http://198.19.0.23{SLOW}", "-H", "Host: ignored.test")
        finally:
            lab.run(["iptables", "-w", "-D", *rule])
        assert origin(through), through
        assert len(lab.actions("reset-client-only")) == 2  # the censor did inject both times

    def test_drop_and_throttle_cannot_be_enforced_on_path(self, mirror_lab: LabRun):
        lab = mirror_lab
        assert origin(lab.curl("http://198.19.0.17/", "-H", "Host: dropped.test"))
        size = 1_000_000  # 8 s at the rule's 1000 kbit/s, if it were enforced
        fast = lab.curl(f"http://198.19.0.14/large?bytes={size}", "-H", "Host: slow.test", body=False)
        assert fast.code == CURL_OK and fast.info["size_download"] == size and fast.info["time_total"] < 2, fast
        assert lab.wait_actions("throttle") and lab.wait_actions("drop")
        unenforceable = lab.stats()["backend"]["unenforceable"]
        assert unenforceable.get("drop", 0) >= 1 and unenforceable.get("throttle", 0) >= 1, unenforceable

    def test_icmp_unreachable_races_the_servers_syn_ack(self, mirror_lab: LabRun):
        """The ICMP error answers the SYN; the server's kernel answers it too, with a SYN+ACK. Linux aborts a
        connection in SYN-SENT on this error (EHOSTUNREACH) but only notes it once established, so the outcome
        follows whichever arrived first."""
        lab = mirror_lab
        with lab.capture("icmp or (tcp and host 198.19.0.13)") as wire:
            (outcome,) = lab.connects("198.19.0.13,80")
        (icmp,) = [p for p in wire.packets if p.proto == "ICMP"]
        assert icmp.src == "198.19.0.13" and "unreachable - admin prohibited filter" in icmp.text, wire.raw
        syn_ack = [p for p in wire.packets if p.tcp_flags == "S."]
        censor_first = not syn_ack or icmp.time < syn_ack[0].time
        assert outcome == ("EHOSTUNREACH" if censor_first else "ok"), (outcome, wire.raw)
        assert lab.wait_actions("unreachable")[0]["chokepoint"]["injected"][0]["icmp_type"] == 3


def test_nothing_of_the_lab_is_left():
    """After every end-to-end test: no lab namespaces, no /etc/netns/cpk-* files, no lab veths, no lab processes,
    no state directory (checked under the session lock, so no other suite's lab is half-way up)."""
    with session():
        left = all_left_behind()
        assert not any(left.values()), left
        # other suites take the session lock too; only their short-lived unlocked probes may exist now
        strays = [ns for ns in topo.lab_namespaces() if ns in OURS or not ns.startswith(TRANSIENT_PROBES)]
        assert strays == [], strays
