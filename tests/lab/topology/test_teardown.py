"""chokepoint.lab.topology.teardown: ``destroy()`` takes the kernel state with the namespaces, is idempotent,
spares the namespaces it is told to keep and removes stray lab veths (root)."""

from __future__ import annotations

import json
from pathlib import Path

from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from tests.lab._lab import clean, foreign, lab_guard, leftovers, reap  # noqa: F401 (fixture)


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
