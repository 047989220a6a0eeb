"""chokepoint.lab.system: argument lists only, typed failures, and real ip/nft/iptables/tc/sysctl inside a
throwaway namespace (root)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX
from chokepoint.lab.state import proc_start_time

from ._lab import reap, root_reason


def test_a_shell_string_or_an_empty_argv_is_refused():
    with pytest.raises(TypeError):
        system.run("echo hi; rm -rf /")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        system.run(["echo", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        system.run([])


def test_output_is_captured_and_a_failure_says_which_command_and_why():
    proc = system.run(["sh", "-c", "echo out; echo warn >&2"])
    assert proc.stdout == b"out\n" and proc.stderr == b"warn\n"
    with pytest.raises(system.CommandError) as info:
        system.run(["sh", "-c", "echo first >&2; echo the reason >&2; exit 3"])
    assert info.value.returncode == 3
    assert str(info.value) == "`sh -c echo first >&2; echo the reason >&2; exit 3` failed (exit 3): first; the reason"
    assert system.run(["sh", "-c", "exit 4"], check=False).returncode == 4


def test_input_is_fed_to_stdin():
    assert system.run(["cat"], input=b"\x00bytes\n").stdout == b"\x00bytes\n"


def test_a_missing_program_is_a_missing_tool_naming_its_package():
    with pytest.raises(system.MissingTool) as info:
        system.run(["chokepoint-no-such-tool-xyz"])
    assert "not found" in str(info.value)
    assert "Debian package nftables" in str(system.MissingTool(["/usr/sbin/nft"], 127, ""))


def test_a_hanging_command_is_killed_at_the_timeout():
    started = time.monotonic()
    with pytest.raises(system.CommandError) as info:
        system.run(["sleep", "30"], timeout=0.3)
    assert info.value.returncode is None and "timed out" in str(info.value)
    assert time.monotonic() - started < 10


def test_commands_in_a_namespace_go_through_ip_netns_exec():
    assert system.in_netns(["tc", "qdisc"], f"{PREFIX}censor") == [
        "ip",
        "netns",
        "exec",
        f"{PREFIX}censor",
        "tc",
        "qdisc",
    ]
    assert system.in_netns(["tc", "qdisc"], None) == ["tc", "qdisc"]


def test_ip_batch_refuses_tokens_that_would_need_quoting():
    for bad in ("two words", "", "x#comment", 'q"uote', "new\nline"):
        with pytest.raises(ValueError):
            system.ip_batch([["link", "set", bad, "up"]], f"{PREFIX}nowhere")


def test_foreground_status_passes_through_like_a_shell():
    assert system.run_foreground(["sh", "-c", "exit 7"]) == 7
    assert system.run_foreground(["true"]) == 0
    assert system.run_foreground(["sh", "-c", "kill -TERM $$"]) == 128 + signal.SIGTERM


def test_spawn_detaches_into_its_own_session_and_logs(tmp_path):
    log = tmp_path / "p.log"
    pid = system.spawn(["sh", "-c", "echo started; exec sleep 30"], netns=None, log_path=log)
    try:
        assert os.getsid(pid) == pid  # session leader: a terminal's ^C or hangup does not reach it
        deadline = time.monotonic() + 5
        while b"started" not in log.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert log.read_bytes() == b"started\n"
        assert proc_start_time(pid) is not None
    finally:
        reap(pid)
    assert proc_start_time(pid) is None


# ------------------------------------------------------------------------------------------- root only


@pytest.fixture
def netns():
    reason = root_reason()
    if reason:
        pytest.skip(reason)
    name = f"{PREFIX}zzsys-{os.getpid()}"
    system.ip(["netns", "add", name])
    try:
        yield name
    finally:
        for pid in system.netns_pids(name):
            os.kill(pid, signal.SIGKILL)
        system.run(["ip", "netns", "delete", name], check=False)
    assert name not in system.netns_list()


def test_ip_json_and_batch_build_links_inside_the_namespace_only(netns):
    system.ip_batch(
        [
            ["link", "add", "zz0", "type", "veth", "peer", "name", "zz1"],
            ["addr", "add", "198.18.200.1/24", "dev", "zz0"],
            ["link", "set", "zz0", "up"],
            ["link", "set", "zz1", "up"],
        ],
        netns,
    )
    links = {link["ifname"]: link for link in system.ip_json(["addr", "show"], netns)}
    assert {"lo", "zz0", "zz1"} <= set(links)
    assert [a["local"] for a in links["zz0"]["addr_info"] if a["family"] == "inet"] == ["198.18.200.1"]
    assert "zz0" not in {link["ifname"] for link in system.ip_json(["link", "show"])}  # not in the host
    with pytest.raises(system.CommandError) as info:
        system.ip_batch([["link", "add", "zz0", "type", "veth", "peer", "name", "zz2"]], netns)
    assert str(info.value) == (
        f"`ip -n {netns} link add zz0 type veth peer name zz2` failed (exit 1): RTNETLINK answers: File exists"
    )


def test_sysctl_is_per_namespace(netns):
    host_value = system.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout
    system.sysctl({"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1}, netns)
    assert system.run(["sysctl", "-n", "net.ipv4.ip_forward"], netns=netns).stdout == b"1\n"
    assert system.run(["sysctl", "-n", "net.ipv6.conf.all.forwarding"], netns=netns).stdout == b"1\n"
    assert system.run(["sysctl", "-n", "net.ipv4.ip_forward"]).stdout == host_value


def test_nft_iptables_and_tc_apply_inside_the_namespace(netns):
    system.ip_batch(
        [["link", "add", "zz0", "type", "veth", "peer", "name", "zz1"], ["link", "set", "zz0", "up"]], netns
    )
    system.nft(
        {
            "nftables": [
                {"add": {"table": {"family": "inet", "name": "zztest"}}},
                {
                    "add": {
                        "set": {
                            "family": "inet",
                            "table": "zztest",
                            "name": "s",
                            "type": "ipv4_addr",
                            "flags": ["timeout"],
                        }
                    }
                },
            ]
        },
        netns,
    )
    tables = json.loads(system.run(["nft", "-j", "list", "tables"], netns=netns).stdout)["nftables"]
    assert {"family": "inet", "name": "zztest"} in [
        {k: t["table"][k] for k in ("family", "name")} for t in tables if "table" in t
    ]
    host_tables = json.loads(system.run(["nft", "-j", "list", "tables"]).stdout)["nftables"]
    assert "zztest" not in [t["table"]["name"] for t in host_tables if "table" in t]
    with pytest.raises(system.CommandError):
        system.nft(
            {
                "nftables": [
                    {"add": {"set": {"family": "inet", "table": "no-such-table", "name": "s", "type": "ipv4_addr"}}}
                ]
            },
            netns,
        )
    system.iptables(["-t", "mangle", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", "3", "--queue-bypass"], netns)
    rules = system.iptables(["-t", "mangle", "-S", "FORWARD"], netns).stdout.decode()
    assert "-A FORWARD -j NFQUEUE --queue-num 3 --queue-bypass" in rules
    system.iptables(["-A", "FORWARD", "-j", "DROP"], netns, v6=True)
    assert "-A FORWARD -j DROP" in system.iptables(["-S", "FORWARD"], netns, v6=True).stdout.decode()
    system.tc(
        ["qdisc", "add", "dev", "zz0", "root", "tbf", "rate", "150kbit", "burst", "1600", "latency", "50ms"], netns
    )
    qdiscs = json.loads(system.tc(["-j", "qdisc", "show", "dev", "zz0"], netns).stdout)
    assert [q["kind"] for q in qdiscs] == ["tbf"]


def test_a_spawned_process_lives_in_the_namespace_and_is_listed_by_netns_pids(netns, tmp_path):
    pid = system.spawn(["sleep", "30"], netns=netns, log_path=tmp_path / "sleep.log")
    try:
        deadline = time.monotonic() + 5
        while pid not in system.netns_pids(netns) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert system.netns_pids(netns) == [pid]
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
        assert os.stat(f"/proc/{pid}/ns/net").st_ino != os.stat("/proc/self/ns/net").st_ino
    finally:
        reap(pid)
    assert system.netns_pids(f"{PREFIX}zz-no-such-namespace") == []
