"""Bundled profiles brought up as of a day, end to end through the real inline censor (root only): the dated
blocks on real clients and a real proxy program.

- a tunnel to a blocked name through a real proxy (Debian's v2ray as a SOCKS5 and HTTP proxy in the server
  namespace) is reset as the GFW resets the name itself, and the censor's event names the tunnelled SNI;
- the GFW's fully-encrypted block of 2021-2023 hits the lab's "vps" range and not "elsewhere";
- Turkmenistan's range block (to July 2024) drops the "vps" range, the same day later it does not;
- Russia's TSPU drops a DTLS datagram carrying Pion's 2021 ServerHello bytes from 2021-12-01, and passes the
  fixed one.
"""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from chokepoint import lab
from chokepoint.lab import system
from tests import _dtls
from tests.lab._e2e import CURL_OK, SERVER_NS, LabRun, all_left_behind, foreign, origin, session
from tests.lab._lab import run_cli

#: The proxy's address on the server (a lab site address no other check here uses).
PROXY = "198.19.0.20"
#: One UDP datagram to argv[1]:argv[2] (hex argv[3]); {"echoed": true} if the echo service sent it back in time.
UDP_ECHO = """
import json, socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(1.5)
payload = bytes.fromhex(sys.argv[3])
sock.sendto(payload, (sys.argv[1], int(sys.argv[2])))
try:
    got = sock.recv(65536)
except socket.timeout:
    got = b""
print(json.dumps({"echoed": got == payload}))
"""


def udp_echo(run: LabRun, address: str, port: int, payload: bytes) -> dict:
    return run.python(UDP_ECHO, address, str(port), payload.hex())


@contextmanager
def dated_lab(profile: str, as_of: str, **params: str) -> Iterator[LabRun]:
    """``lab up`` of a bundled profile as of ``as_of`` (``params``: rule-param overrides), down afterwards and
    checked clean, whatever happens."""
    with session():
        try:
            state = lab.up(profile, "inline", seed=1, as_of=as_of, params=params or None)
            assert state.as_of == as_of
            yield LabRun(state, Path(profile), "inline")
        finally:
            report = lab.down(keep=foreign())
            assert not report.errors, report.errors
            left = all_left_behind()
            assert not any(left.values()), left


@contextmanager
def v2ray_proxy(tmp_path: Path) -> Iterator[None]:
    """Debian's v2ray in the server namespace: SOCKS5 on PROXY:1080, HTTP proxy on PROXY:3128, resolving through
    the lab resolver and connecting out directly (the ``freedom`` outbound)."""
    from tests._real_clients import require

    program = require("v2ray", "v2ray")
    config = {
        "dns": {"servers": ["198.19.0.53"]},
        "inbounds": [
            {"listen": PROXY, "port": 1080, "protocol": "socks", "settings": {"auth": "noauth"}},
            {"listen": PROXY, "port": 3128, "protocol": "http", "settings": {}},
        ],
        "outbounds": [{"protocol": "freedom", "settings": {"domainStrategy": "UseIP"}}],
    }
    path = tmp_path / "v2ray.json"
    path.write_text(json.dumps(config))
    proc = subprocess.Popen(
        system.in_netns([program, "-config", str(path)], SERVER_NS), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        while b"LISTEN" not in system.run(["ss", "-ltn", "sport = :3128"], netns=SERVER_NS, check=False).stdout:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "v2ray did not listen"
            time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_tunnel_to_a_blocked_name_is_reset_like_the_name_itself(tmp_path):
    """gfw as of 2025-06-01: curl through a real SOCKS5 proxy (asking for the address only) and a real HTTP
    CONNECT proxy: the tunnelled ClientHello for www.google.com gets the GFW's resets on the client-proxy flow,
    and the censor's event shows the inner name; www.example.org through the same proxies loads."""
    with dated_lab("gfw", "2025-06-01") as run, v2ray_proxy(tmp_path):
        socks = f"socks5://{PROXY}:1080"
        fine = run.curl("https://www.example.org/", "-x", socks, "--resolve", "www.example.org:443:198.19.0.10")
        assert fine.code == CURL_OK and origin(fine), fine
        blocked = run.curl("https://www.google.com/", "-x", socks, "--resolve", "www.google.com:443:198.19.0.10")
        assert blocked.code != CURL_OK, blocked
        (event, *_rest) = run.wait_actions("gfw-sni-reset")
        assert (event["dest_ip"], event["dest_port"], event["app_proto"]) == (PROXY, 1080, "socks")
        assert {"field": "tls.sni", "value": "www.google.com", "matched": "gfw_domains: google.com"} in event[
            "chokepoint"
        ]["evidence"]
        through = run.curl("https://www.example.org/", "-p", "-x", f"http://{PROXY}:3128")
        assert through.code == CURL_OK and origin(through), through
        connect = run.curl("https://www.google.com/", "-p", "-x", f"http://{PROXY}:3128")
        assert connect.code != CURL_OK, connect
        assert any(e["dest_port"] == 3128 for e in run.wait_actions("gfw-sni-reset", 2))
        # the residual block (180 s on client, proxy, port) now stops the harmless name too
        after = run.curl("https://www.example.org/", "-p", "-x", f"http://{PROXY}:3128")
        assert after.code != CURL_OK, after


def test_fully_encrypted_block_hits_the_vps_range_only_and_only_in_its_era():
    """gfw as of 2022-06-01 (named date gfw-2023), every draw firing: random bytes to the echo port of a "vps"
    address are dropped (no echo), to an "elsewhere" address echoed back."""
    noise = random.Random(3).randbytes(300)
    with dated_lab("gfw", "2022-06-01", **{"gfw-fet-drop.probability": "1"}) as run:
        vps = run.first_packet("198.19.64.100", 9000, noise)
        elsewhere = run.first_packet("198.19.128.10", 9000, noise)
        assert elsewhere["echoed"] == noise.hex() and vps["echoed"] == "", (vps, elsewhere)
        assert run.wait_actions("gfw-fet-drop"), [(e["chokepoint"]["rule"], e["dest_ip"]) for e in run.actions()]
        assert run.wait_actions("gfw-fet-drop")[0]["dest_ip"] == "198.19.64.100"


@pytest.mark.parametrize(("day", "blocked"), [("2023-06-01", True), ("2024-07-01", False)])
def test_turkmenistan_blocks_the_data_centre_range_until_july_2024(day, blocked, tmp_path):
    """Also ``probe --lab --as-of``: the measurement carries the lab censor's profile and day, and a probe that
    asks for another day than the lab's is refused before measuring."""
    with dated_lab("turkmenistan", day) as run:
        assert run.connects("198.19.128.12,443") == ["ok"]
        assert run.connects("198.19.64.102,443") == (["timeout"] if blocked else ["ok"])
        assert bool(run.actions("tm-ip-range-drop")) == blocked
        out = tmp_path / "m.json"
        probe = run_cli(
            "probe",
            "--lab",
            "--as-of",
            day,
            "--tests",
            "tcp",
            "--timeout",
            "2",
            "-o",
            str(out),
            "https://198.19.128.12/",
        )
        assert probe.returncode == 0, probe.stderr
        annotations = json.loads(out.read_text())["annotations"]
        assert (annotations["chokepoint_profile"], annotations["chokepoint_as_of"]) == ("turkmenistan", day)
        other = run_cli("probe", "--lab", "--as-of", "2022-01-01", "--tests", "tcp", "https://198.19.128.12/")
        assert other.returncode == 2 and f"turkmenistan as of {day}, not 2022-01-01" in other.stderr


def test_tspu_drops_pion_s_2021_dtls_server_hello_and_passes_the_fixed_one():
    """russia-tspu as of 2021-12-15: a UDP datagram carrying Pion v2.0.9's ServerHello layout (supported_groups,
    1d 00 17 00 18 at offset 0x5a) to the lab's UDP echo never comes back; the fixed layout is echoed."""
    with dated_lab("russia-tspu", "2021-12-15") as run:
        buggy = udp_echo(run, "198.19.0.11", 9000, _dtls.server_hello(pion_2021=True))
        fixed = udp_echo(run, "198.19.0.12", 9000, _dtls.server_hello(pion_2021=False))
        assert fixed["echoed"] and not buggy["echoed"], (buggy, fixed)
        (event,) = run.wait_actions("tspu-snowflake-dtls-serverhello")
        assert event["dest_ip"] == "198.19.0.11" and event["proto"] == "UDP"
