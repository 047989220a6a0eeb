"""End to end through ``chokepoint lab up --mode inline``: real clients in ``cpk-client`` against the real lab
services, the censor daemon on NFQUEUE in ``cpk-censor``, and the symptom of every action as a client sees it
(and, for injected packets, as tcpdump sees them on the wire). Root only; skipped with the reason otherwise.

One lab serves the class (``inline_lab``: up once, ``lab down`` in a ``finally``); each check uses its own
site address (198.19.0.10-39) so residual blocks and kernel state never mix, and every check also shows an
allowed target working in the same lab.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time

from chokepoint.lab.instance import PREFIX
from chokepoint.lab.state import LabState

from ._e2e import (
    BLOCKPAGE_BODY,
    CLIENT_HELLO,
    CLIENT_IP,
    CONTROL_DNS,
    CURL_CONNECT,
    CURL_OK,
    CURL_RECV,
    CURL_TIMEOUT,
    CURL_TLS_CONNECT,
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
    running_lab,
    session,
)
from ._lab import foreign, run_cli

RULES = rules_yaml(
    "reset-host",
    "reset-sni",
    "{id: drop-sni, action: drop, when: {tls.sni: {exact: dropped.test}}}",
    "{id: drop-quic, action: drop, when: {quic.sni: {exact: blocked.test}}}",
    "forge",
    "page",
    "{id: throttle, action: throttle, params: {rate_kbps: 4000}, when: {http.host: {exact: slow.test}}}",
    "{id: delay, action: delay, params: {delay_ms: 300}, when: {http.host: {exact: delay.test}}}",
    "unreachable",
    "residual",
    "{id: fully-encrypted, action: drop, when: {all: [{transport: tcp}, {direction: c2s}, {fully_encrypted: true}]}}",
)

#: Distinctive values, so a packet on the wire can only have come from this personality.
PERSONALITY = """
reset: {count: 2, flags: R, targets: both, ttl: 77, ip_id: 4242, df: false, window: 1234}
dns: {flags: 0x8180, answer_ttl: 321, ttl: 99, mode: replace}
blockpage: {status: 451, body: "blocked by the e2e censor"}
icmp: {code: 13}
"""
SEED = 7
THROTTLE_KBPS = 4000
DELAY_MS = 300

inline_lab = class_lab("e2e-inline", RULES, PERSONALITY, seed=SEED)


class TestInline:
    def test_allowed_targets_work_with_every_client(self, inline_lab: LabRun):
        lab = inline_lab
        assert origin(lab.curl("http://198.19.0.10/", "-H", "Host: allowed.test")), "plain HTTP"
        by_name = lab.curl("https://allowed.test/")  # lab resolver -> 198.19.0.10, SNI allowed.test
        assert origin(by_name), by_name
        no_sni = lab.curl("https://198.19.0.11/")  # an IP URL: curl sends no SNI
        assert origin(no_sni), no_sni
        code, out = lab.openssl("198.19.0.11", "allowed.test")
        assert code == 0 and "Verification: OK" in out and "CN = allowed.test" in out and ORIGIN_MARKER in out, out
        assert "198.19.0.10" in lab.dig(LAB_DNS, "allowed.test").split()
        assert lab.h3_get("198.19.0.18", "allowed.test") == {"outcome": "ok", "status": 200, "origin": True}
        assert lab.actions() == [], "nothing allowed may be acted on"
        stats = lab.stats()
        assert stats["running"] and stats["mode"] == "inline" and stats["seed"] == SEED

    def test_reset_http_and_tls_with_the_personality_on_the_wire(self, inline_lab: LabRun):
        lab = inline_lab
        with (
            lab.capture(f"{RST_FILTER} and host 198.19.0.12") as at_client,
            lab.capture(f"{RST_FILTER} and host 198.19.0.12", netns=f"{PREFIX}server", iface="sv0") as at_server,
        ):
            blocked = lab.curl("http://198.19.0.12/", "-H", "Host: blocked.test")
        assert blocked.code == CURL_RECV and "Connection reset by peer" in blocked.stderr, blocked
        to_client = [p for p in at_client.packets if p.dst == CLIENT_IP]
        to_server = [p for p in at_server.packets if p.dst == "198.19.0.12"]
        assert len(to_client) == 2 and len(to_server) == 2, at_client.raw + at_server.raw  # count: 2
        for rst in to_client + to_server:
            assert (rst.tcp_flags, rst.ttl, rst.ip_id, rst.df, rst.window) == ("R", 77, 4242, False, 1234), rst
        (event,) = lab.actions("reset-host")
        assert event["chokepoint"]["trigger"]["dropped"] is True  # inline: the request never reached the server
        assert origin(lab.curl("http://198.19.0.12/", "-H", "Host: allowed.test"))

        assert lab.curl("http://[2001:db8:0:2::12]/", "-H", "Host: blocked.test").code == CURL_RECV  # IPv6 too
        tls = lab.curl("https://blocked.test/")  # SNI blocked.test
        assert tls.code == CURL_TLS_CONNECT and "reset" in tls.stderr, tls
        code, out = lab.openssl("198.19.0.19", "blocked.test")
        assert code != 0 and "errno=104" in out, out  # ECONNRESET during the handshake
        code, out = lab.openssl("198.19.0.19", "allowed.test")
        assert code == 0 and "Verification: OK" in out and ORIGIN_MARKER in out, out

    def test_dns_forge_replaces_the_answer(self, inline_lab: LabRun):
        lab = inline_lab
        with lab.capture("udp and src port 53") as wire:
            dig = lab.dig(LAB_DNS, "forged.test")
        assert "forged.test.\t\t321\tIN\tA\t198.19.0.99" in dig, dig
        assert ";; flags: qr rd ra;" in dig, dig  # 0x8180: no AA, unlike the lab resolver
        forged = [p for p in wire.packets if p.src == LAB_DNS]
        assert [p.ttl for p in forged] == [99], wire.raw  # the personality's IP TTL, one answer only
        answers = lab.dns_all_answers(LAB_DNS, "forged.test", wait=1.0)
        # replace mode: the query never reached the resolver, so no second (real) answer arrives
        assert [(a["flags"], a["answers"], a["id_matches"]) for a in answers] == [
            (0x8180, [[321, "198.19.0.99"]], True)
        ]
        real = lab.dns_all_answers(LAB_DNS, "allowed.test", wait=0.3)
        assert [(a["flags"], a["answers"]) for a in real] == [(0x8580, [[60, DEFAULT_A]])]
        control = lab.dns_all_answers(CONTROL_DNS, "forged.test", wait=0.3)  # outside the censor's path
        assert [a["answers"] for a in control] == [[[60, DEFAULT_A]]]
        assert len(lab.actions("forge")) == 2

    def test_blockpage_then_the_connection_is_closed(self, inline_lab: LabRun):
        lab = inline_lab
        page = lab.curl("http://198.19.0.16/x", "-H", "Host: page.test")
        assert (page.code, page.status, page.text) == (CURL_OK, 451, BLOCKPAGE_BODY), page
        raw = lab.http_until_close("198.19.0.16", "page.test")
        assert raw["closed_by"] == "fin", raw  # the censor closed it, nothing else follows
        assert raw["data"].startswith("HTTP/1.1 451 ") and raw["data"].endswith("\r\n\r\n" + BLOCKPAGE_BODY), raw
        assert f"Content-Length: {len(BLOCKPAGE_BODY)}\r\n" in raw["data"] and ORIGIN_MARKER not in raw["data"]
        assert origin(lab.curl("http://198.19.0.16/x", "-H", "Host: allowed.test"))

    def test_drop_times_out_for_tls_and_quic(self, inline_lab: LabRun):
        lab = inline_lab
        dropped = lab.curl("https://dropped.test/", timeout=2)
        assert dropped.code == CURL_TIMEOUT, dropped
        assert lab.h3_get("198.19.0.18", "blocked.test", timeout=2) == {"outcome": "timeout"}
        assert lab.h3_get("198.19.0.18", "allowed.test") == {"outcome": "ok", "status": 200, "origin": True}
        assert origin(lab.curl("https://allowed.test/"))
        assert {e["chokepoint"]["rule"] for e in lab.actions()} >= {"drop-sni", "drop-quic"}

    def test_icmp_unreachable(self, inline_lab: LabRun):
        lab = inline_lab
        with lab.capture("icmp") as wire:
            refused = lab.curl("http://198.19.0.13/", "-v", body=False)
        assert refused.code == CURL_CONNECT and "No route to host" in refused.stderr, refused
        (icmp,) = wire.packets
        assert (icmp.src, icmp.dst, icmp.df) == ("198.19.0.13", CLIENT_IP, False), wire.raw
        assert "unreachable - admin prohibited filter" in icmp.text, wire.raw  # type 3 code 13
        assert lab.connects("198.19.0.13,443") == ["EHOSTUNREACH"]
        assert origin(lab.curl("http://198.19.0.12/", "-H", "Host: allowed.test"))

    def test_throttle_rate_within_30_percent(self, inline_lab: LabRun):
        lab = inline_lab
        size = 1_000_000  # ~2 s at 4000 kbit/s
        slow = lab.curl(f"http://198.19.0.14/large?bytes={size}", "-H", "Host: slow.test", body=False, timeout=15)
        assert slow.code == CURL_OK and slow.info["size_download"] == size, slow
        kbps = slow.info["speed_download"] * 8 / 1000
        assert 0.7 * THROTTLE_KBPS <= kbps <= 1.3 * THROTTLE_KBPS, kbps
        fast = lab.curl(f"http://198.19.0.14/large?bytes={size}", "-H", "Host: allowed.test", body=False)
        assert fast.code == CURL_OK and fast.info["speed_download"] * 8 / 1000 > 5 * THROTTLE_KBPS, fast

    def test_delay_adds_latency(self, inline_lab: LabRun):
        lab = inline_lab
        delayed = lab.curl("http://198.19.0.15/", "-H", "Host: delay.test", body=False)
        plain = lab.curl("http://198.19.0.15/", "-H", "Host: allowed.test", body=False)
        assert delayed.code == CURL_OK and plain.code == CURL_OK
        # the request and the answer are each held DELAY_MS in user space (no netem on this kernel)
        added = delayed.info["time_starttransfer"] - plain.info["time_starttransfer"]
        assert DELAY_MS / 1000 <= added <= 4 * DELAY_MS / 1000, (delayed.info, plain.info)
        assert delayed.info["time_connect"] < DELAY_MS / 1000  # the handshake came before the verdict

    def test_residual_block_then_expiry(self, inline_lab: LabRun):
        lab = inline_lab
        assert lab.curl("http://198.19.0.20/", "-H", "Host: residual.test").code == CURL_RECV
        started = time.monotonic()
        clean_retry = lab.curl("http://198.19.0.20/", "-H", "Host: allowed.test")
        assert clean_retry.code == CURL_CONNECT, clean_retry  # the kernel answers the SYN with a RST
        # the 3-tuple (client, 198.19.0.20, port 80): other ports and servers are not affected
        assert lab.connects("198.19.0.20,80", "198.19.0.20,443", "198.19.0.21,80") == ["refused", "ok", "ok"]
        assert time.monotonic() - started < RESIDUAL_S, "the checks above must run inside the window"
        time.sleep(max(0.0, started + RESIDUAL_S + 0.5 - time.monotonic()))
        assert origin(lab.curl("http://198.19.0.20/", "-H", "Host: allowed.test")), "the window is over"
        (event,) = lab.actions("residual")
        assert event["chokepoint"]["residual"]["key"] == ["tcp", CLIENT_IP, "198.19.0.20", 80]

    def test_fully_encrypted_first_packet_dropped_tls_hello_passes(self, inline_lab: LabRun):
        lab = inline_lab
        noise = random.Random(SEED).randbytes(300)
        got = lab.first_packet("198.19.0.17", 7, noise, wait=1.5)
        assert got["connected"] and got["outcome"] == "timeout" and got["echoed"] == "", got
        hello = bytes.fromhex(
            subprocess.run(
                [sys.executable, "-c", CLIENT_HELLO, "allowed.test"], check=True, capture_output=True, text=True
            ).stdout
        )
        echoed = lab.first_packet("198.19.0.17", 7, hello)
        assert echoed["outcome"] == "ok" and bytes.fromhex(echoed["echoed"]) == hello, echoed
        (event,) = lab.actions("fully-encrypted")
        assert event["dest_port"] == 7 and event["chokepoint"]["trigger"]["dropped"] is True


PROBABILISTIC = """
- id: coin
  action: reset
  params: {probability: 0.5}
  when: {http.host: {exact: coin.test}}
"""


def coin_outcomes(lab: LabRun, tries: int = 12) -> list[str]:
    out = []
    for _ in range(tries):
        result = lab.curl("http://198.19.0.24/", "-H", "Host: coin.test")
        out.append("reset" if result.code == CURL_RECV else "ok" if origin(result) else str(result))
    return out


def test_probabilistic_rule_is_deterministic_for_a_seed(tmp_path):
    """Two labs with the same ``--seed`` reset exactly the same connections of a probability-0.5 rule; the second
    one is started with the real CLI (``chokepoint lab up --seed``)."""
    with session():
        with running_lab(tmp_path, "e2e-coin", PROBABILISTIC, seed=SEED, locked=True) as lab:
            first = coin_outcomes(lab)
            spared = lab.stats()["engine"].get("verdicts_spared_by_probability", 0)
        try:
            up = run_cli("lab", "up", "--profile", str(tmp_path / "e2e-coin.yaml"), "--seed", str(SEED))
            assert up.returncode == 0, up.stderr
            again = coin_outcomes(LabRun(LabState.load(), tmp_path / "e2e-coin.yaml", "inline"))
        finally:
            down = run_cli("lab", "down", *[arg for ns in foreign() for arg in ("--keep", ns)])
            assert down.returncode == 0, down.stderr
        left = all_left_behind()
        assert not any(left.values()), left
    assert set(first) == {"reset", "ok"}, first  # a real coin, not always one side
    assert spared == first.count("ok")
    assert again == first
