"""The private Tor network's plan and configuration (the network itself runs in the matrix lab tests)."""

from __future__ import annotations

from pathlib import Path

from chokepoint.lab import tornet
from chokepoint.policy import load_rules_text
from chokepoint.policy.profile import BUNDLED_DIR

LISTS = BUNDLED_DIR / "lists"


def test_three_authorities_two_relays_and_a_bridge_with_obfs4():
    nodes = tornet.plan()
    roles = [n.role for n in nodes]
    assert roles.count("authority") == 3 and "exit" in roles and "relay" in roles and roles.count("bridge") == 1
    bridge = nodes[-1]
    assert bridge.or_port == 443 and bridge.pt_port == 443 and bridge.pt_address != bridge.address
    assert len({n.address for n in nodes}) == len(nodes)


def test_torrc_of_each_role():
    nodes = tornet.plan()
    auth = tornet._torrc(nodes[0], Path("/d"), ("auth0 orport=9001 no-v2 v3ident=X 198.19.65.10:9030 F",))
    assert (
        "TestingTorNetwork 1" in auth and "V3AuthoritativeDirectory 1" in auth and "DirPort 198.19.65.10:9030" in auth
    )
    assert "DirAuthority auth0 orport=9001" in auth and "ExitPolicyRejectPrivate 0" in auth
    bridge = tornet._torrc(nodes[-1], Path("/d"), ())
    assert "BridgeRelay 1" in bridge and "PublishServerDescriptor 0" in bridge
    assert "ServerTransportPlugin obfs4 exec /usr/bin/obfs4proxy" in bridge
    assert f"ServerTransportListenAddr obfs4 {nodes[-1].pt_address}:443" in bridge
    assert "ExitPolicy reject *:*" in tornet._torrc(nodes[3], Path("/d"), ())


def test_the_bundled_lists_are_the_networks_addresses_and_load_as_cidr_lists():
    assert (LISTS / "lab-tor-relays.txt").read_text() == tornet.relay_list()
    assert (LISTS / "lab-tor-bridges.txt").read_text() == tornet.bridge_list()
    profile = load_rules_text(
        "lists:\n  relays: {kind: cidr, file: lists/lab-tor-relays.txt, cite: lab}\n"
        "rules:\n  - {id: tor-relays, action: drop, when: {server_ip: {in_list: relays}}}\n",
        "p.yaml",
        base_dir=BUNDLED_DIR,
    )
    entries = profile.policy.lists["relays"].entries
    assert len(entries) == 5 and entries[0].startswith("198.19.65.10")


def test_client_context_gives_the_authorities_and_both_bridge_lines():
    nodes = tornet.plan()
    net = tornet.TorNetwork(
        Path("/d"), nodes, ("a1", "a2", "a3"), {n.nickname: "F" * 40 for n in nodes}, "cert=xyz iat-mode=0"
    )
    ctx = net.client_context()
    assert ctx["tor_client_common"].count("DirAuthority ") == 3
    assert ctx["tor_bridge_vanilla"] == f"{nodes[-1].address}:443 {'F' * 40}"
    assert ctx["tor_bridge_obfs4"] == f"obfs4 {nodes[-1].pt_address}:443 {'F' * 40} cert=xyz iat-mode=0"
