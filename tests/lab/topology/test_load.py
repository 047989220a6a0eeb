"""chokepoint.lab.topology.load: topology files extend the default; anything wrong is an error at
file:line:column."""

from __future__ import annotations

from ipaddress import ip_address, ip_interface

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as strat

from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX

from ._example import EXAMPLE


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
