"""In the lab, ``chokepoint trace`` finds the censor: gfw's HTTP Host rule, the censor at two hop positions, inline
and mirror. Ground truth from the topology: between routers the censor is a transparent box (lab/geometry.py),
first passed at TTL ``hops_client + 1``, the hop CenTrace names with the address of the router beyond it
(``far1``); mirror mode copies the request (on-path), inline mode's reset consumes it (in-path). ``trace
analyze`` on the captures the run recorded gives the same answer."""

from __future__ import annotations

import json

import pytest

from chokepoint import lab
from chokepoint.lab import system
from chokepoint.lab.instance import PREFIX
from chokepoint.validate.truth import trace_truth

from ._lab import CLI, lab_guard, tools_reason  # noqa: F401 (fixture)

SITE = "198.19.0.10"
BLOCKED = "www.google.com"  # on gfw's list (profiles/lists/gfw-domains.txt)


@pytest.mark.parametrize(
    "profile, mode, hops_client, domain, interference",
    [
        ("gfw", "mirror", 1, BLOCKED, "rst"),
        ("gfw", "mirror", 3, BLOCKED, "rst"),
        ("gfw", "inline", 1, BLOCKED, "rst"),  # gfw's reset lets the request on: on-path even inline
        ("iran", "inline", 3, "queerquotes.blogspot.com", "blockpage"),  # the request withheld: in-path
    ],
)
def test_trace_names_the_censor_hop_and_path(lab_guard, tmp_path, profile, mode, hops_client, domain, interference):
    reason = tools_reason(["tcpdump"], "the trace tests")
    if reason:
        pytest.skip(reason)
    state = lab.up(
        profile,
        mode,
        hops_client=hops_client,
        hops_server=2,
        delay_ms=10,
        params={"gfw-http-host-reset.probability": "1"} if profile == "gfw" else None,
    )
    beyond_ip = str(state.topology.host("far1").interface("rt0").addresses[0].ip)
    proc = system.run(
        [*CLI, "trace", SITE, "--domain", domain, "--format", "json", "--pcap", str(tmp_path)],
        netns=f"{PREFIX}client",
        check=False,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    live = json.loads(proc.stdout)
    print(json.dumps({k: live[k] for k in ("outcome", "censor", "path", "interference", "interference_ttl")}))
    # the path from what the censor did with the trigger (its event log), as validate's trace scenarios
    truth = trace_truth(mode, hops_client + 1, beyond_ip, state.path("events.jsonl").read_text().splitlines())
    assert truth["outcome"] == "censor-identified", truth
    assert live["outcome"] == "censor-identified", live
    assert live["censor"] == {"ttl": hops_client + 1, "ip": beyond_ip}, live
    assert (live["path"], live["interference"]) == (truth["path"], interference), (live, truth["basis"])
    test_pcap = tmp_path / f"{SITE}_{domain}_{domain}.pcap"
    control_pcap = tmp_path / f"{SITE}_{domain}_example.com.pcap"
    again = system.run([*CLI, "trace", "analyze", str(test_pcap), str(control_pcap), "--format", "json"])
    offline = json.loads(again.stdout)
    assert {k: offline[k] for k in ("outcome", "censor", "path")} == {k: live[k] for k in ("outcome", "censor", "path")}


def test_silent_routers_are_stars_and_the_censor_is_still_found(lab_guard) -> None:
    """near1 answers nothing (its time-exceeded messages dropped) and far2 likewise: `*` hops, not errors; the
    censor between near2 and far1 is still named (far1's address, at TTL 3)."""
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
    assert hops[4]["control"] == ["*"]  # far2 (the transparent censor is no hop)
    beyond_ip = str(state.topology.host("far1").interface("rt0").addresses[0].ip)
    assert (live["outcome"], live["censor"], live["path"]) == (
        "censor-identified",
        {"ttl": 3, "ip": beyond_ip},
        "on-path",  # gfw's reset lets the request on: it expires at far1 beside the injection
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
    beyond_ip = str(state.topology.host("far1").interface("rt0").addresses[0].ip)
    assert (live["outcome"], live["interference"], live["path"]) == ("censor-identified", "forged-dns", "on-path")
    assert live["censor"] == {"ttl": 3, "ip": beyond_ip}
    assert live["control_terminating_ttl"] == 4  # near1, near2, far1 (the censor is transparent), the resolver
