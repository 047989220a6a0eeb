"""chokepoint.lab.topology: the default lab as data, topology files with file:line:column errors, and the
real network built in namespaces (root): pings through the censor, the control link around it, teardown."""

from __future__ import annotations

import json
import os
import sys
import time
from ipaddress import ip_address, ip_interface
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat

from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

from ._lab import clean, foreign, forwarded, lab_guard, leftovers, ping, reap  # noqa: F401 (fixture)

#: Documented in docs/lab.md: a second client behind the censor, one more site address, routes.
EXAMPLE = """\
# a second client behind the censor, and one more site address on the server
hosts:
  extra:
    description: a second client
    nameserver: 198.19.0.53
    trust_lab_ca: true
links:
  - ends:
      - {host: censor, ifname: ce2, addresses: [198.18.5.1/24, "2001:db8:0:5::1/64"]}
      - {host: extra, ifname: ex0, addresses: [198.18.5.2/24, "2001:db8:0:5::2/64"]}
addresses:
  - {host: server, ifname: sv0, addresses: [198.19.0.40/32]}
routes:
  - {host: extra, to: default, via: 198.18.5.1}
  - {host: extra, to: default, via: "2001:db8:0:5::1"}
"""


# ------------------------------------------------------------------------------------------------ as data


def test_default_topology_has_the_documented_names_and_addresses():
    lab = topo.default_topology()
    assert lab.namespaces() == [f"{PREFIX}{h}" for h in ("client", "censor", "server", "control", "vps", "prober")]
    client, censor, server, control = (lab.host(n) for n in ("client", "censor", "server", "control"))
    assert client.interface("cl0").addresses == (ip_interface("198.18.0.2/24"), ip_interface("2001:db8:0:1::2/64"))
    assert ip_interface("198.18.9.2/24") in client.interface("ck0").addresses
    assert censor.interface("ce0").addresses == (ip_interface("198.18.0.1/24"), ip_interface("2001:db8:0:1::1/64"))
    assert censor.interface("ce1").addresses == (ip_interface("198.19.0.1/24"), ip_interface("2001:db8:0:2::1/64"))
    assert ip_interface("198.18.9.1/24") in control.interface("ck1").addresses
    server_ips = {a.ip for a in server.addresses()}
    assert {ip_address("198.19.0.2"), ip_address("2001:db8:0:2::2"), ip_address("198.19.0.53")} <= server_ips
    assert {ip_address(f"198.19.0.{n}") for n in range(10, 40)} <= server_ips
    assert {ip_address(f"2001:db8:0:2::{n}") for n in range(10, 40)} <= server_ips
    assert ip_address("198.19.0.40") not in server_ips and ip_address("198.19.0.9") not in server_ips
    assert [str(r) for r in client.routes] == ["default via 198.18.0.1", "default via 2001:db8:0:1::1"]
    assert [str(r) for r in server.routes] == [
        "default via 198.19.0.1",
        "default via 2001:db8:0:2::1",
        "198.19.64.0/24 via 198.19.63.2",  # the VPS (lab/circumvention.py)
        "198.19.65.0/24 via 198.19.63.2",
        "2001:db8:0:64::/64 via 2001:db8:0:63::2",
    ]
    # The test helper's own path to the server side (cs0 -- svc0), never a default route through the client or
    # the censor (this used to be `control.routes == ()`: the control host reached nothing behind the censor).
    assert {str(r.via) for r in control.routes} == {"198.19.62.1", "2001:db8:0:62::1"}
    assert {str(r.to) for r in control.routes} >= {"198.19.0.0/24", "2001:db8:0:2::/64", "198.19.64.0/24"}
    assert all(r.to.prefixlen > 0 for r in control.routes) and not control.forwarding
    assert censor.forwarding and not client.forwarding and server.forwarding  # the server routes for the VPS
    assert client.nameserver == ip_address("198.19.0.53") and client.trust_lab_ca
    assert {(link.a, link.b) for link in lab.links} == {
        (("client", "cl0"), ("censor", "ce0")),
        (("censor", "ce1"), ("server", "sv0")),
        (("client", "ck0"), ("control", "ck1")),
        (("server", "svp0"), ("vps", "vp0")),
        (("censor", "cepr0"), ("prober", "pr0")),
        (("server", "svc0"), ("control", "cs0")),
    }
    for host in lab.hosts:
        for addr in host.addresses():
            assert any(addr.ip in r for r in topo.LAB_RANGES), addr


def test_topology_round_trips_through_state_json_data():
    for lab in (topo.default_topology(), topo.load_topology_text(EXAMPLE, "example.yaml")):
        data = json.loads(json.dumps(lab.to_dict()))
        assert topo.Topology.from_dict(data) == lab


def test_a_topology_file_extends_the_default():
    lab = topo.load_topology_text(EXAMPLE, "example.yaml")
    assert lab.source == "example.yaml"
    assert lab.namespaces() == [
        f"{PREFIX}client",
        f"{PREFIX}censor",
        f"{PREFIX}server",
        f"{PREFIX}control",
        f"{PREFIX}vps",
        f"{PREFIX}prober",
        f"{PREFIX}extra",
    ]
    extra = lab.host("extra")
    assert extra.interface("ex0").addresses == (ip_interface("198.18.5.2/24"), ip_interface("2001:db8:0:5::2/64"))
    assert [str(r) for r in extra.routes] == ["default via 198.18.5.1", "default via 2001:db8:0:5::1"]
    assert extra.nameserver == ip_address("198.19.0.53") and extra.trust_lab_ca and not extra.forwarding
    assert lab.host("censor").interface("ce2").addresses[0] == ip_interface("198.18.5.1/24")
    assert ip_interface("198.19.0.40/32") in lab.host("server").interface("sv0").addresses
    assert topo.Link(("censor", "ce2"), ("extra", "ex0")) in lab.links
    assert lab.host("client") == topo.default_topology().host("client")


# Each case: file text, expected "line:column", a fragment of the message.
BROKEN = {
    "yaml syntax": ("hosts:\n  extra: [\n", "3:1", "YAML syntax error"),
    "empty file": ("", "1:1", "empty document"),
    "unknown top-level key": ("hosts: {}\nrouts: []\n", "2:1", "unknown top-level key 'routs'; did you mean 'routes'?"),
    "bad host name": ("hosts:\n  Extra: {}\n", "2:3", "bad host name 'Extra'"),
    "unknown host key": ("hosts:\n  extra:\n    forwardin: true\n", "3:5", "did you mean 'forwarding'?"),
    "host exists": ("hosts:\n  server: {}\n", "2:3", "host 'server' already exists"),
    "address outside the lab": (
        "addresses:\n  - {host: server, ifname: sv0, addresses: [10.0.0.1/32]}\n",
        "2:45",
        "outside the lab ranges",
    ),
    "address without prefix": (
        "addresses:\n  - {host: server, ifname: sv0, addresses: [198.19.0.41]}\n",
        "2:45",
        "needs a prefix length",
    ),
    "not an address": (
        "addresses:\n  - host: server\n    ifname: sv0\n    addresses:\n      - 198.19.0.400/32\n",
        "5:9",
        "bad interface '198.19.0.400/32'",
    ),
    "address taken": (
        "addresses:\n  - {host: server, ifname: sv0, addresses: [198.19.0.41/32, 198.18.0.2/32]}\n",
        "2:61",
        "198.18.0.2 is already used by host 'client'",
    ),
    "address taken, by an earlier host": (
        "addresses:\n  - {host: client, ifname: cl0, addresses: [198.19.0.10/24]}\n",
        "2:45",
        "198.19.0.10 is already used by host 'server'",
    ),
    "network address": (
        "addresses:\n  - {host: server, ifname: sv0, addresses: [198.19.0.0/24]}\n",
        "2:45",
        "network or broadcast",
    ),
    "unknown interface": (
        "addresses:\n  - {host: server, ifname: sv9, addresses: [198.19.0.41/32]}\n",
        "2:28",
        "host 'server' has no interface 'sv9' (has: sv0, svp0, svc0)",
    ),
    "unknown host in address": (
        "addresses:\n  - {host: nobody, ifname: sv0, addresses: [198.19.0.41/32]}\n",
        "2:12",
        "unknown host 'nobody'",
    ),
    "unknown host in link": (
        "links:\n  - ends:\n      - {host: censor, ifname: ce2}\n      - {host: nobody, ifname: nb0}\n",
        "4:16",
        "unknown host 'nobody'",
    ),
    "one-ended link": ("links:\n  - ends:\n      - {host: censor, ifname: ce2}\n", "3:7", "is too short"),
    "link to itself": (
        "links:\n  - ends:\n      - {host: censor, ifname: ce2}\n      - {host: censor, ifname: ce3}\n",
        "2:5",
        "two different hosts",
    ),
    "interface name too long": (
        "links:\n  - ends:\n      - {host: censor, ifname: averyveryverylongname}\n"
        "      - {host: server, ifname: sv1}\n",
        "3:32",
        "does not match",
    ),
    "interface name taken": (
        "links:\n  - ends:\n      - {host: censor, ifname: ce1}\n      - {host: server, ifname: sv1}\n",
        "3:32",
        "host 'censor' already has an interface 'ce1'",
    ),
    "gateway off-subnet": (
        "routes:\n  - {host: server, to: 198.18.7.0/24, via: 198.18.0.1}\n",
        "2:5",
        "gateway 198.18.0.1 is not on a subnet of 'server'",
    ),
    "route family mismatch": (
        'routes:\n  - {host: client, to: 198.19.1.0/24, via: "2001:db8:0:1::1"}\n',
        "2:5",
        "different IP versions",
    ),
    "route host bits": (
        "routes:\n  - {host: client, to: 198.19.1.1/24, via: 198.18.0.1}\n",
        "2:24",
        "has host bits set",
    ),
    "route outside the lab": (
        "routes:\n  - {host: client, to: 10.0.0.0/8, via: 198.18.0.1}\n",
        "2:5",
        "destination is outside the lab ranges",
    ),
    "wrong type": ("routes: {host: client}\n", "1:9", "expected array, got object"),
    "missing key": ("routes:\n  - {host: client, to: default}\n", "2:5", "missing required key 'via'"),
    "nameserver outside": ("hosts:\n  extra:\n    nameserver: 8.8.8.8\n", "2:3", "nameserver 8.8.8.8 is outside"),
    "unlinked interface": (
        "links: []\naddresses:\n  - {host: server, ifname: sv0, addresses: [198.19.0.41/32]}\nhosts:\n  lone: {}\n",
        None,
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_topology_file_is_rejected_at_file_line_column(name):
    text, where, fragment = BROKEN[name]
    if where is None:  # a host with no links is valid (it is just isolated)
        assert topo.load_topology_text(text, "bad.yaml").host("lone").interfaces == ()
        return
    with pytest.raises(topo.TopologyError) as info:
        topo.load_topology_text(text, "bad.yaml")
    message = str(info.value)
    assert message.startswith(f"bad.yaml:{where}: "), message
    assert fragment in message, message


def test_an_unreadable_topology_file_is_rejected_at_line_one(tmp_path):
    with pytest.raises(topo.TopologyError) as info:
        topo.load_topology_file(tmp_path / "missing.yaml")
    assert str(info.value).startswith(f"{tmp_path / 'missing.yaml'}:1:1: cannot read")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"hosts:\n  caf\xe9: {}\n")
    with pytest.raises(topo.TopologyError, match=r"latin\.yaml:1:1: not UTF-8"):
        topo.load_topology_file(latin)


def test_a_topology_error_is_a_policy_error_so_the_cli_reports_both_alike():
    from chokepoint.policy import PolicyError

    assert issubclass(topo.TopologyError, PolicyError)


def test_check_rejects_inconsistent_topologies_built_in_code():
    base = topo.default_topology()
    with pytest.raises(topo.TopologyError, match="link to unknown host 'ghost'"):
        topo.check(topo.Topology(base.hosts, (*base.links, topo.Link(("ghost", "g0"), ("censor", "ce0")))))
    with pytest.raises(topo.TopologyError, match="interface 'sv0' of 'server' is already linked"):
        topo.check(topo.Topology(base.hosts, (*base.links, topo.Link(("server", "sv0"), ("censor", "ce0")))))
    with pytest.raises(topo.TopologyError, match="interface 'cl0' of 'client' is not on any link"):
        topo.check(topo.Topology(base.hosts, base.links[1:]))
    with pytest.raises(topo.TopologyError, match="duplicate host 'client'"):
        topo.check(topo.Topology((*base.hosts, base.host("client")), base.links))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cut=strat.integers(0, len(EXAMPLE)),
    length=strat.integers(0, 12),
    insert=strat.text(alphabet="abcdefxyz0123456789.:/-[]{},# \n\"'", max_size=8),
)
def test_a_mangled_topology_file_gives_a_topology_or_a_topology_error(cut, length, insert):
    text = EXAMPLE[:cut] + insert + EXAMPLE[cut + length :]
    try:
        lab = topo.load_topology_text(text, "fuzz.yaml")
    except topo.TopologyError as exc:
        assert exc.file == "fuzz.yaml" and 1 <= exc.line <= text.count("\n") + 2 and exc.column >= 1
    else:
        assert topo.check(lab) is lab


# -------------------------------------------------------------------------------------- real (root only)


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


def test_kernel_check_passes_here_and_leaves_no_probe_namespace(lab_guard):
    result = topo.check_kernel()
    assert result.missing == ()
    assert f"{PREFIX}probe-{os.getpid()}" not in topo.lab_namespaces()


def test_destroy_takes_nftables_iptables_and_tc_state_with_the_namespace(lab_guard):
    lab = topo.default_topology()
    topo.create(lab)
    system.nft({"nftables": [{"add": {"table": {"family": "inet", "name": "chokepoint"}}}]}, f"{PREFIX}censor")
    system.iptables(
        ["-t", "mangle", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"], f"{PREFIX}censor"
    )
    system.tc(
        ["qdisc", "add", "dev", "ce0", "root", "tbf", "rate", "150kbit", "burst", "1600", "latency", "50ms"],
        f"{PREFIX}censor",
    )
    report = topo.destroy(lab.namespaces())
    assert not report.errors and sorted(report.namespaces) == sorted(lab.namespaces())
    assert clean(), leftovers()
    topo.create(lab)  # same names again: nothing of the old kernel state survived
    ruleset = json.loads(system.run(["nft", "-j", "list", "ruleset"], netns=f"{PREFIX}censor").stdout)["nftables"]
    assert [entry for entry in ruleset if "metainfo" not in entry] == []
    qdiscs = json.loads(system.tc(["-j", "qdisc", "show", "dev", "ce0"], f"{PREFIX}censor").stdout)
    assert "tbf" not in [q["kind"] for q in qdiscs]
    host = json.loads(system.run(["nft", "-j", "list", "tables"]).stdout)["nftables"]
    assert "chokepoint" not in [t["table"]["name"] for t in host if "table" in t]


def test_destroy_removes_every_cpk_namespace_is_idempotent_and_spares_kept_ones(lab_guard):
    topo.create(topo.default_topology())
    system.ip(["netns", "add", f"{PREFIX}zzstray"])
    pid = system.spawn(["sleep", "60"], netns=f"{PREFIX}zzstray", log_path=Path("/dev/null"))
    report = topo.destroy(keep=[*foreign(), f"{PREFIX}zzstray"])
    assert f"{PREFIX}zzstray" in topo.lab_namespaces() and f"{PREFIX}zzstray" not in report.namespaces
    assert not any(ns in topo.lab_namespaces() for ns in topo.default_topology().namespaces())
    report = topo.destroy(keep=foreign())
    assert report.namespaces == [f"{PREFIX}zzstray"] and report.killed == [pid]
    reap(pid)
    assert clean(), leftovers()
    again = topo.destroy(keep=foreign())
    assert again.nothing_to_do, again


def test_destroy_removes_a_stray_lab_veth_in_the_host_namespace(lab_guard):
    system.ip_batch(
        [
            ["link", "add", "zzlab0", "type", "veth", "peer", "name", "zzlab1"],
            ["link", "set", "zzlab0", "alias", topo.LINK_ALIAS],
        ]
    )
    try:
        report = topo.destroy(keep=foreign())
        assert report.links == ["zzlab0"]
        assert {"zzlab0", "zzlab1"}.isdisjoint(link["ifname"] for link in system.ip_json(["link", "show"]))
    finally:
        system.ip(["link", "delete", "zzlab0"], check=False)


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
