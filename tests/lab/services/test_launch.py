"""``launch(state)`` as ``lab up`` calls it: addresses from the topology, detached start via ``LabState``,
waiting for readiness. Run on loopback: the test state maps every host to the host namespace."""

from __future__ import annotations

from ipaddress import ip_interface

import dns.message
import dns.query
import dns.rdatatype
import pytest

from chokepoint.lab import ranges, services
from chokepoint.lab.services import app
from chokepoint.lab.state import LabState
from chokepoint.lab.topology import Host, Interface, Topology, default_topology
from tests.lab.services import _harness
from tests.lab.services._harness import CLIENT_TIMEOUT, run_client


class LoopbackState(LabState):
    """Every host runs in the current namespace (no root, no ``ip netns``)."""

    def namespace(self, host: str) -> None:  # type: ignore[override]
        return None


def _topology(server: str, control: str) -> Topology:
    return Topology(
        (
            Host("server", interfaces=(Interface("lo", (ip_interface(server),)),)),
            Host("control", interfaces=(Interface("lo", (ip_interface(control),)),)),
        ),
        (),
    )


def test_addresses_of_the_default_topology(tmp_path):
    state = LabState(topology=default_topology(), state_dir=tmp_path)
    addresses = services.lab_addresses(state)
    web, dns_addresses = addresses["server"]
    server_ips = {str(a.ip) for a in default_topology().host("server").addresses()}
    assert set(web) == server_ips - set(dns_addresses) and len(web) == len(set(web))
    assert set(services.SERVER_WEB_ADDRESSES) <= set(web)  # the site addresses, and the "elsewhere" range:
    assert {str(a) for a in ranges.SERVER_RANGES["elsewhere"].addresses()} <= set(web)
    assert dns_addresses == services.SERVER_DNS_ADDRESSES
    assert addresses["control"] == ((), ("198.18.9.1", "2001:db8:0:9::1"))
    argv = services.service_argv(state, "server", web=web, dns=dns_addresses)
    assert argv[1:3] == ["-m", "chokepoint.lab.services"]
    assert argv[argv.index("--state-dir") + 1] == str(tmp_path)
    assert argv[argv.index("--bind") + 1].split(",") == list(web)


def test_launch_starts_both_roles_and_waits_until_ready(tmp_path):
    ports = _harness.pick_ports(("127.0.0.1", "127.0.0.3"))
    state = LoopbackState(topology=_topology("127.0.0.1/8", "127.0.0.3/8"), state_dir=tmp_path)
    extra = [
        "--http-port",
        str(ports["http"]),
        "--https-port",
        str(ports["https"]),
        "--dns-port",
        str(ports["dns"]),
        "--echo-ports",
        ports["echo"],
    ]
    try:
        infos = services.launch(state, extra_args=extra)
        assert [info.name for info in infos] == [services.SERVER_PROCESS, services.CONTROL_PROCESS]
        assert all(info.alive() for info in infos)
        out = run_client(
            [
                "curl",
                "-sS",
                "--max-time",
                str(CLIENT_TIMEOUT),
                "-H",
                "Host: launched.example",
                f"http://127.0.0.1:{ports['http']}/",
            ]
        )
        assert out.stdout == app.page_body("launched.example", "/")
        response = dns.query.udp(
            dns.message.make_query("c.example", dns.rdatatype.A), "127.0.0.3", port=ports["dns"], timeout=CLIENT_TIMEOUT
        )
        assert [rd.address for rd in response.answer[0]] == ["198.19.0.10"]
        assert (tmp_path / "ca.pem").exists() and (tmp_path / "services.log").exists()
    finally:
        stopped = [state.stop(name) for name in list(state.processes)]
    assert stopped == [True, True]
    assert not services.ready_file_path(tmp_path, "server").exists()


def test_launch_reports_a_service_that_cannot_start(tmp_path):
    state = LoopbackState(topology=_topology("192.0.2.77/32", "127.0.0.3/8"), state_dir=tmp_path)
    try:
        with pytest.raises(services.ServicesLaunchError, match=r"(?s)services exited.*cannot bind tcp 192\.0\.2\.77"):
            services.launch(state, extra_args=["--dns-port", str(_harness.free_port("127.0.0.3"))])
    finally:
        for name in list(state.processes):
            state.stop(name)
