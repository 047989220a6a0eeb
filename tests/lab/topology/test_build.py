"""chokepoint.lab.topology.build, the real network in namespaces (root): pings through the censor, the control
link around it, the lab resolver and CA inside the namespaces, a topology file's host, TCP across the censor."""

from __future__ import annotations

import sys
import time

import pytest

from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from tests.lab._lab import clean, forwarded, lab_guard, leftovers, ping, reap  # noqa: F401 (fixture)

from ._example import EXAMPLE


def _counters_forwarded_by_censor_during(action) -> tuple[int, int]:
    v4_before, v6_before = forwarded(f"{PREFIX}censor")
    action()
    v4_after, v6_after = forwarded(f"{PREFIX}censor")
    return v4_after - v4_before, v6_after - v6_before


def test_client_reaches_the_server_only_through_the_censor(lab_guard):
    topo.create(topo.default_topology())
    results = {}

    def pings():
        results["v4"] = ping(f"{PREFIX}client", "198.19.0.2", count=3)
        results["v6"] = ping(f"{PREFIX}client", "2001:db8:0:2::2", count=3)

    v4, v6 = _counters_forwarded_by_censor_during(pings)
    assert results["v4"] == (True, [63, 63, 63])  # the server sends 64; the censor, one hop, decrements
    assert results["v6"] == (True, [63, 63, 63])  # the very first IPv6 packet already gets through
    assert v4 >= 6 and v6 >= 6  # 3 requests + 3 replies routed by the censor, per family
    routes = system.ip_json(["route", "get", "198.19.0.2"], f"{PREFIX}client")
    assert routes[0]["gateway"] == "198.18.0.1" and routes[0]["dev"] == "cl0"


def test_every_server_address_answers(lab_guard):
    topo.create(topo.default_topology())
    for address in (
        "198.19.0.10",
        "198.19.0.29",
        "198.19.0.53",
        "2001:db8:0:2::10",
        "2001:db8:0:2::29",
        "2001:db8:0:2::53",
    ):
        assert ping(f"{PREFIX}client", address) == (True, [63]), address
    assert ping(f"{PREFIX}server", "198.18.0.2") == (True, [63])


def test_the_control_link_bypasses_the_censor(lab_guard):
    topo.create(topo.default_topology())
    results = {}

    def pings():
        results["v4"] = ping(f"{PREFIX}client", "198.18.9.1", count=3)
        results["v6"] = ping(f"{PREFIX}client", "2001:db8:0:9::1", count=3)

    v4, v6 = _counters_forwarded_by_censor_during(pings)
    assert results["v4"] == (True, [64, 64, 64]) and results["v6"] == (True, [64, 64, 64])  # no hop between
    assert (v4, v6) == (0, 0)
    # The control host (the test helper) reaches the server side over its own link, around the censor: one
    # link, no hop (TTL 64), nothing forwarded by the censor. (It used to reach nothing behind the censor.)
    around = {}

    def control_pings():
        around["v4"] = ping(f"{PREFIX}control", "198.19.0.10", count=2)
        around["v6"] = ping(f"{PREFIX}control", "2001:db8:0:2::10", count=2)

    assert _counters_forwarded_by_censor_during(control_pings) == (0, 0)
    assert around["v4"] == (True, [64, 64]) and around["v6"] == (True, [64, 64])
    assert ping(f"{PREFIX}control", "198.18.0.1")[0] is False  # and no route to the censor's side at all


def test_namespace_files_give_the_client_the_lab_resolver(lab_guard):
    host_resolv = open("/etc/resolv.conf", "rb").read()
    topo.create(topo.default_topology())
    inside = system.run(["cat", "/etc/resolv.conf"], netns=f"{PREFIX}client").stdout
    assert inside == b"# chokepoint lab\nnameserver 198.19.0.53\n"
    assert system.run(["cat", "/etc/resolv.conf"], netns=f"{PREFIX}server").stdout == host_resolv
    assert open("/etc/resolv.conf", "rb").read() == host_resolv


def _wait_port(netns: str, address: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close()"
    while system.run([sys.executable, "-c", probe, address, str(port)], netns=netns, check=False).returncode:
        if time.monotonic() > deadline:
            raise AssertionError(f"{address}:{port} did not open in {netns}")
        time.sleep(0.05)


def test_the_client_trusts_the_lab_ca_without_flags(lab_guard, tmp_path):
    ca_module = pytest.importorskip("chokepoint.lab.ca", reason="chokepoint.lab.ca (lab CA) not available")
    lab = topo.default_topology()
    topo.create(lab)
    ca = ca_module.LabCA.load_or_create(tmp_path / "ca")
    written = topo.install_ca(lab, ca.cert_pem)
    assert written == [topo.ETC_NETNS / f"{PREFIX}client" / "ssl"]
    cert, key = ca.issue("blocked.test")
    (tmp_path / "leaf.pem").write_bytes(cert)
    (tmp_path / "leaf.key").write_bytes(key)
    pid = system.spawn(
        [
            "openssl",
            "s_server",
            "-quiet",
            "-www",
            "-accept",
            "198.19.0.10:443",
            "-cert",
            str(tmp_path / "leaf.pem"),
            "-key",
            str(tmp_path / "leaf.key"),
        ],
        netns=f"{PREFIX}server",
        log_path=tmp_path / "s_server.log",
    )
    try:
        _wait_port(f"{PREFIX}client", "198.19.0.10", 443)
        curl = system.run(
            ["curl", "-sS", "--max-time", "5", "--resolve", "blocked.test:443:198.19.0.10", "https://blocked.test/"],
            netns=f"{PREFIX}client",
            check=False,
        )
        assert curl.returncode == 0, curl.stderr
        assert b"s_server" in curl.stdout
        verify = (
            "import socket, ssl; ctx = ssl.create_default_context(); "
            "s = ctx.wrap_socket(socket.create_connection(('198.19.0.10', 443), timeout=5), "
            "server_hostname='blocked.test'); print(s.version()); s.close()"
        )
        py = system.run([sys.executable, "-c", verify], netns=f"{PREFIX}client", check=False)
        assert py.returncode == 0, py.stderr
        assert py.stdout.strip().startswith(b"TLSv1")
        assert system.run(["openssl", "verify", str(tmp_path / "leaf.pem")], netns=f"{PREFIX}client").stdout.endswith(
            b": OK\n"
        )
        # Outside the namespace the lab CA is not trusted: the bind mount is per namespace.
        assert system.run(["openssl", "verify", str(tmp_path / "leaf.pem")], check=False).returncode != 0
        wrong_name = system.run(
            ["curl", "-sS", "--max-time", "5", "https://198.19.0.10/"], netns=f"{PREFIX}client", check=False
        )
        assert wrong_name.returncode == 60  # certificate for blocked.test, not for the IP: verification is real
    finally:
        reap(pid)


def test_a_topology_file_host_is_built_and_routed_through_the_censor(lab_guard, tmp_path):
    path = tmp_path / "extra.yaml"
    path.write_text(EXAMPLE)
    lab = topo.load_topology_file(path)
    topo.create(lab)
    assert ping(f"{PREFIX}extra", "198.19.0.2") == (True, [63])
    assert ping(f"{PREFIX}extra", "2001:db8:0:2::2") == (True, [63])
    assert ping(f"{PREFIX}client", "198.19.0.40") == (True, [63])
    assert ping(f"{PREFIX}extra", "198.18.0.2") == (True, [63])  # the two clients meet at the censor
    assert system.run(["cat", "/etc/resolv.conf"], netns=f"{PREFIX}extra").stdout.endswith(b"nameserver 198.19.0.53\n")
    report = topo.destroy(lab.namespaces())
    assert sorted(report.namespaces) == sorted(lab.namespaces())
    assert clean(), leftovers()


def test_a_started_lab_process_is_reachable_over_tcp(lab_guard, tmp_path):
    """A real TCP exchange across the censor: a listener in the server, a client socket in the client."""
    topo.create(topo.default_topology())
    server = (
        "import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        "s.bind(('198.19.0.20', 9000)); s.listen(); c, a = s.accept(); c.sendall(a[0].encode()); c.close()"
    )
    pid = system.spawn([sys.executable, "-c", server], netns=f"{PREFIX}server", log_path=tmp_path / "srv.log")
    try:
        client = (
            "import socket, time\nfor _ in range(200):\n    try:\n"
            "        c = socket.create_connection(('198.19.0.20', 9000), timeout=2); break\n"
            "    except OSError: time.sleep(0.02)\nprint(c.recv(100).decode())"
        )
        out = system.run([sys.executable, "-c", client], netns=f"{PREFIX}client").stdout
        assert out == b"198.18.0.2\n"  # the server saw the client's own address: routed, not NATed
    finally:
        reap(pid)
