"""The censor's kernel program: iptables fast path, nft residual sets, tc throttling classes.

Unit tests check the rule text; the root tests install the program in the censor namespace of a real
client/censor/server path (no daemon) and drive real TCP connections through it.
"""

from __future__ import annotations

import re
import time

import pytest

from chokepoint.backends import kernel as k
from chokepoint.backends.kernel import KernelProgram, ResidualKey
from chokepoint.lab import system

from .conftest import CLIENT_IP, in_ns

CLIENT_IP6 = "2001:db8:0:1::2"
SERVER_IP6 = "2001:db8:0:2::2"


# -- rules as data (no root) ------------------------------------------------------------------------------
def test_fast_path_comes_first_and_queue_last():
    rules = k.iptables_rules(3)
    assert rules[0] == ["-m", "connmark", "--mark", "0x1/0x3", "-j", "ACCEPT"]
    assert rules[-1] == ["-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"]
    assert k.iptables_rules(3, fail_closed=True)[-1] == ["-j", "NFQUEUE", "--queue-num", "3"]
    assert not any("connbytes" in rule for rule in rules)  # no accounting on the fast path


def test_workers_of_a_node_share_one_queue_balance_rule_and_split_the_shaping_classes():
    rules = k.iptables_rules(queue_balance=(0, 2))
    assert rules[-1] == ["-j", "NFQUEUE", "--queue-balance", "0:2", "--queue-bypass"]
    second = KernelProgram("nowhere", queue_num=1, queue_balance=(0, 2), worker=(1, 3))
    second.install()  # worker 1 installs nothing (no command is run: the namespace does not exist)
    second.remove()
    assert all(c % 3 == 1 for c in second._shaping.free) and second._shaping.root_installed


def test_marks():
    assert k.mark(k.MARK_OFFLOAD) == 0x1
    assert k.mark(k.MARK_BLOCK) == 0x2
    assert k.mark(k.MARK_BLOCK, pass_once=True) == 0x6
    assert k.mark(k.MARK_BLOCK, direction="c2s") == 0x12
    assert k.mark(k.MARK_BLOCK, direction="s2c") == 0x22
    assert k.mark(k.MARK_SHAPED, 5) == 0x503
    for bad in ((k.MARK_SHAPED, 0), (k.MARK_OFFLOAD, 3), (7, 0), (k.MARK_SHAPED, 256)):
        with pytest.raises(ValueError):
            k.mark(*bad)
    with pytest.raises(ValueError):
        k.mark(k.MARK_OFFLOAD, direction="c2s")
    # every saved bit fits the mask the CONNMARK rules use, the pass-once bit does not
    assert k.mark(k.MARK_SHAPED, 255) & ~k.SAVED_MASK == 0
    assert k.PASS_ONCE & k.SAVED_MASK == 0


def test_residual_keys_and_rules():
    key = ResidualKey("4-tuple", "198.18.0.2", "198.19.0.2", 443, 50000, proto=17)
    assert key.value() == ["udp", "198.18.0.2", 50000, "198.19.0.2", 443]
    assert ResidualKey("client-server", CLIENT_IP6, SERVER_IP6).version == 6
    assert ResidualKey("server", "", "198.19.0.2", 80).value() == ["tcp", "198.19.0.2", 80]
    reset = k.residual_rules("reset", "3-tuple", 4)
    assert len(reset) == 3  # reject (client TCP) + drop both directions
    assert reset[0][-1] == {"reject": {"type": "tcp reset"}}
    assert [r[-1] for r in k.residual_rules("drop", "server", 6)] == [{"drop": None}] * 2
    # every rule spares the trigger the censor forwards (pass-once bit): its block is added before its verdict
    spare = {"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, k.PASS_ONCE]}, "right": 0}}
    assert all(rule[-2] == spare for rule in reset + k.residual_rules("drop", "4-tuple", 6, rearm_seconds=30))
    rearm = k.residual_rules("drop", "3-tuple", 4, rearm_seconds=60)[0]
    assert {
        "set": {
            "op": "update",
            "set": "@drop_3t_v4_r60",
            "elem": {"elem": {"val": {"concat": rearm[1]["match"]["left"]["concat"]}, "timeout": 60}},
        }
    } in rearm
    with pytest.raises(ValueError):
        k.set_name("reject", "3-tuple", 4)
    with pytest.raises(ValueError):
        k.set_name("drop", "5-tuple", 4)


# -- in a namespace ---------------------------------------------------------------------------------------
@pytest.fixture
def program(netpath):
    prog = KernelProgram(netpath.censor)
    prog.remove()
    try:
        yield prog
    finally:
        prog.remove()


def chain(netpath, v6=False) -> list[str]:
    tool = "ip6tables" if v6 else "iptables"
    return in_ns(netpath.censor, [tool, "-w", "-t", "mangle", "-S"]).stdout.splitlines()


def test_install_and_remove_are_idempotent(netpath, program):
    program.install()
    program.install()
    for v6 in (False, True):
        lines = chain(netpath, v6)
        forward = [line for line in lines if line.startswith("-A FORWARD")]
        assert forward == ["-A FORWARD -m connmark --mark 0x1/0x3 -j ACCEPT", "-A FORWARD -j CHOKEPOINT"]
        ours = [line for line in lines if line.startswith("-A CHOKEPOINT")]
        assert len(ours) == len(k.iptables_rules()) - 1
        assert ours[-1] == "-A CHOKEPOINT -j NFQUEUE --queue-num 0 --queue-bypass"
    assert program.nft_table_exists()
    program.throttle(500)
    program.add_residual(ResidualKey("3-tuple", CLIENT_IP, "198.19.0.13", 80), 30, "drop")
    program.remove()
    program.remove()
    for v6 in (False, True):
        assert not [line for line in chain(netpath, v6) if "CHOKEPOINT" in line or "connmark" in line]
    assert not program.nft_table_exists()
    assert "htb" not in program.tc_listing() and "noqueue" in program.tc_listing()
    assert netpath.connect("198.19.0.13,80") == ["ok"]


def test_without_a_daemon_fail_open_passes_and_fail_closed_drops(netpath, program):
    program.install()
    assert netpath.connect("198.19.0.2,80") == ["ok"]  # --queue-bypass: nobody bound, accepted
    closed = KernelProgram(netpath.censor, fail_closed=True)
    closed.install()
    assert netpath.connect("198.19.0.2,80", "2001:db8:0:2::2,80") == ["timeout", "timeout"]
    closed.remove()
    assert netpath.connect("198.19.0.2,80") == ["ok"]


@pytest.mark.parametrize(
    "scope,key,blocked,open_",
    [
        (
            "3-tuple",
            dict(client_ip=CLIENT_IP, server_ip="198.19.0.10", server_port=80),
            ["198.19.0.10,80"],
            ["198.19.0.10,8081", "198.19.0.11,80"],
        ),
        (
            "4-tuple",
            dict(client_ip=CLIENT_IP, client_port=41234, server_ip="198.19.0.10", server_port=80),
            ["198.19.0.10,80,41234"],
            ["198.19.0.10,80,41235", "198.19.0.10,8081,41234"],
        ),
        (
            "server",
            dict(client_ip="", server_ip="198.19.0.10", server_port=8081),
            ["198.19.0.10,8081"],
            ["198.19.0.10,80", "198.19.0.11,8081"],
        ),
        (
            "client-server",
            dict(client_ip=CLIENT_IP, server_ip="198.19.0.11"),
            ["198.19.0.11,80", "198.19.0.11,8081"],
            ["198.19.0.10,80"],
        ),
        (
            "3-tuple",
            dict(client_ip=CLIENT_IP6, server_ip=SERVER_IP6, server_port=80),
            [f"{SERVER_IP6},80"],
            [f"{SERVER_IP6},8081", "198.19.0.2,80"],
        ),
    ],
)
def test_residual_reset_scopes(netpath, program, scope, key, blocked, open_):
    program.install(inline=False)
    name = program.add_residual(ResidualKey(scope, **key), 30, "reset")
    assert name.startswith(f"reset_{k.SCOPES[scope]}_v")
    assert netpath.connect(*blocked, *open_) == ["refused"] * len(blocked) + ["ok"] * len(open_)


def test_residual_drop_expires(netpath, program):
    program.install(inline=False)
    program.add_residual(ResidualKey("3-tuple", CLIENT_IP, "198.19.0.12", 80), 2, "drop")
    added = time.monotonic()
    assert netpath.connect("198.19.0.12,80", "198.19.0.12,8081") == ["timeout", "ok"]
    time.sleep(max(0.0, added + 2.3 - time.monotonic()))
    assert program.residual_entries() == []
    assert netpath.connect("198.19.0.12,80") == ["ok"]


def test_residual_drop_catches_the_server_side_of_a_live_flow_too(netpath, program):
    program.install(inline=False)
    code = """
import socket, sys, time
s = socket.create_connection(("198.19.0.12", 80), timeout=2)
print("connected", flush=True)
sys.stdin.readline()
s.sendall(b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
s.settimeout(1.5)
try:
    print("answer" if s.recv(100) else "closed")
except socket.timeout:
    print("timeout")
"""
    import subprocess
    import sys

    proc = subprocess.Popen(
        ["ip", "netns", "exec", netpath.client, sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "connected"
    program.add_residual(ResidualKey("client-server", CLIENT_IP, "198.19.0.12"), 10, "drop")
    out, _ = proc.communicate("go\n", timeout=10)
    assert out.strip() == "timeout"  # the established connection is cut, not just new ones


def _expires(program, set_prefix: str) -> float:
    (entry,) = [e for e in program.residual_entries() if e["set"].startswith(set_prefix)]
    return entry["expires"]


def test_re_adding_re_arms_the_timeout(netpath, program):
    program.install(inline=False)
    key = ResidualKey("3-tuple", CLIENT_IP, "198.19.0.13", 80)
    program.add_residual(key, 4, "drop")
    time.sleep(1.5)
    assert _expires(program, "drop_3t_v4") <= 2  # nft's JSON shows whole seconds, rounded down
    program.add_residual(key, 4, "drop")
    assert _expires(program, "drop_3t_v4") >= 3


def test_rearming_residual_restarts_on_every_blocked_packet(netpath, program):
    program.install(inline=False)
    program.add_residual(ResidualKey("3-tuple", CLIENT_IP, "198.19.0.13", 8081), 4, "drop", rearm=True)
    time.sleep(1.5)
    assert _expires(program, "drop_3t_v4_r4") <= 2
    assert netpath.connect("198.19.0.13,8081", timeout=0.3) == ["timeout"]
    assert _expires(program, "drop_3t_v4_r4") >= 3


def test_throttle_classifies_only_marked_packets(netpath, program):
    program.install(inline=False)
    first = program.throttle(2000, 20000)
    second = program.throttle(3000)
    assert (first, second) == (k.mark(k.MARK_SHAPED, 1), k.mark(k.MARK_SHAPED, 2))
    for iface in ("ce0", "ce1"):
        classes = system.tc(["class", "show", "dev", iface], netpath.censor).stdout.decode()
        found = re.findall(r"class htb (\S+) root prio 0 rate (\S+) ceil (\S+) burst (\S+)", classes)
        assert found[0] == ("1:1", "2Mbit", "2Mbit", "20000b")
        assert found[1][:3] == ("1:2", "3Mbit", "3Mbit")  # burst: tc's default for the rate
    # Unmarked traffic bypasses the classes (the lab kernel has no u32 mark key: a u32 filter would
    # have caught everything), marked traffic lands in its class.
    netpath.curl("http://198.19.0.10/large?bytes=300000", "-o", "/dev/null")
    assert _class_bytes(netpath) == {"1:1": 0, "1:2": 0}
    rule = ["-t", "mangle", "-I", "FORWARD", "-s", "198.19.0.11", "-j", "MARK", "--set-mark", hex(second)]
    system.iptables(rule, netpath.censor)
    try:
        code, _, err = netpath.curl("http://198.19.0.11/large?bytes=200000", "-o", "/dev/null")
        assert code == 0, err
    finally:
        system.iptables(["-t", "mangle", "-D", *rule[3:]], netpath.censor)
    counted = _class_bytes(netpath)
    assert counted["1:1"] == 0 and counted["1:2"] > 200000


def _class_bytes(netpath) -> dict[str, int]:
    out = system.tc(["-s", "class", "show", "dev", "ce0"], netpath.censor).stdout.decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"class htb (\S+) .*?\n Sent (\d+) bytes", out)}


def test_throttle_classes_run_out_cleanly(netpath, program):
    program.install(inline=False)
    program._shaping.free = [1]
    first = program.throttle(100)
    with pytest.raises(RuntimeError):
        program.throttle(100)
    program.release(first)
    assert program.throttle(200) == first
