"""In the lab, ``chokepoint trace`` finds the censor: gfw's HTTP Host rule, the censor at two hop positions, inline
and mirror. Ground truth from the topology: the censor is hop ``hops_client + 1`` with the address of its
client-side interface; mirror mode copies the request (on-path), inline mode's reset consumes it (in-path).
``trace analyze`` on the captures the run recorded gives the same answer."""

from __future__ import annotations

import json

import pytest

from chokepoint import lab
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX

from ._lab import CLI, lab_guard, tools_reason  # noqa: F401 (fixture)

SITE = "198.19.0.10"
BLOCKED = "www.google.com"  # on gfw's list (profiles/lists/gfw-domains.txt)


@pytest.mark.parametrize("mode, hops_client", [("mirror", 1), ("mirror", 3), ("inline", 1), ("inline", 3)])
def test_trace_names_the_censor_hop_and_path(lab_guard, tmp_path, mode, hops_client) -> None:
    reason = tools_reason(["tcpdump"], "the trace tests")
    if reason:
        pytest.skip(reason)
    state = lab.up(
        "gfw",
        mode,
        hops_client=hops_client,
        hops_server=2,
        delay_ms=10,
        params={"gfw-http-host-reset.probability": "1"},
    )
    censor_ip = str(state.topology.host("censor").interface("ce0").addresses[0].ip)
    proc = system.run(
        [*CLI, "trace", SITE, "--domain", BLOCKED, "--format", "json", "--pcap", str(tmp_path)],
        netns=f"{PREFIX}client",
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    live = json.loads(proc.stdout)
    print(json.dumps({k: live[k] for k in ("outcome", "censor", "path", "interference", "interference_ttl")}))
    expected_path = "on-path" if mode == "mirror" else "in-path"
    assert live["outcome"] == "censor-identified", live
    assert live["censor"] == {"ttl": hops_client + 1, "ip": censor_ip}, live
    assert (live["path"], live["interference"]) == (expected_path, "rst"), live
    test_pcap = tmp_path / f"{SITE}_{BLOCKED}_{BLOCKED}.pcap"
    control_pcap = tmp_path / f"{SITE}_{BLOCKED}_example.com.pcap"
    again = system.run([*CLI, "trace", "analyze", str(test_pcap), str(control_pcap), "--format", "json"])
    offline = json.loads(again.stdout)
    assert {k: offline[k] for k in ("outcome", "censor", "path")} == {k: live[k] for k in ("outcome", "censor", "path")}


def test_silent_routers_are_stars_and_the_censor_is_still_found(lab_guard) -> None:
    """near1 answers nothing (its time-exceeded messages dropped) and far1 likewise: `*` hops, not errors; the
    censor between them is still named, in-path."""
    state = lab.up("gfw", "inline", hops_client=2, hops_server=2, params={"gfw-http-host-reset.probability": "1"})
    for router in ("near1", "far2"):
        system.iptables(
            ["-A", "OUTPUT", "-p", "icmp", "--icmp-type", "time-exceeded", "-j", "DROP"], state.namespace(router)
        )
    proc = system.run(
        [*CLI, "trace", SITE, "--domain", BLOCKED, "--format", "json", "--timeout", "1"],
        netns=f"{PREFIX}client",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    live = json.loads(proc.stdout)
    hops = {h["ttl"]: h for h in live["hops"]}
    assert hops[1]["control"] == ["*"] and hops[1]["test"] == ["*"]
    assert hops[5]["control"] == ["*"]
    censor_ip = str(state.topology.host("censor").interface("ce0").addresses[0].ip)
    assert (live["outcome"], live["censor"], live["path"]) == (
        "censor-identified",
        {"ttl": 3, "ip": censor_ip},
        "in-path",
    )


def test_dns_trace_finds_the_forging_censor(lab_guard) -> None:
    """TTL-limited DNS queries to the lab resolver: gfw's forged answers start at the censor's hop, while the
    query goes on (on-path): the real answer only comes from the resolver's hop."""
    state = lab.up("gfw", "mirror", hops_client=2, hops_server=1, delay_ms=10)
    proc = system.run(
        [*CLI, "trace", "198.19.0.53", "--protocol", "dns", "--domain", BLOCKED, "--format", "json"],
        netns=f"{PREFIX}client",
        check=False,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    live = json.loads(proc.stdout)
    censor_ip = str(state.topology.host("censor").interface("ce0").addresses[0].ip)
    assert (live["outcome"], live["interference"], live["path"]) == ("censor-identified", "forged-dns", "on-path")
    assert live["censor"] == {"ttl": 3, "ip": censor_ip}
    assert live["control_terminating_ttl"] == 5  # near1, near2, censor, far1, then the resolver
