"""Routers and distance in the real lab (lab/geometry.py, lab/delay.py): each router answers an expired packet
with an ICMP time-exceeded from its own address quoting the packet, rate-limited per destination; the server
sees the TTL decremented once per hop; the far side's delay holds on the wire; ``lab down`` removes it all."""

from __future__ import annotations

import struct
import time
from ipaddress import ip_address

import pytest

from chokepoint import lab
from chokepoint.lab import geometry as geo
from chokepoint.lab import system
from chokepoint.lab import topology as topo
from chokepoint.lab.instance import PREFIX
from chokepoint.packet.pcap import open_capture

from ._conformance import capture
from ._lab import lab_guard  # noqa: F401 (fixture)

SITE = "198.19.0.10"
CLIENT = f"{PREFIX}client"
#: hop k's address with 2 routers on each side: near1, near2, the censor, far1, far2 (docs/lab.md)
#: who answers TTL 1, 2, ... with 2 routers on each side: near1, near2, far1, far2 (the censor between near2 and
#: far1 is transparent: it never answers, lab/geometry.py)
HOPS_2_2 = ["198.18.0.1", "198.18.101.2", "198.19.201.2", "198.19.202.2"]


def test_default_topology_is_unchanged_without_hops() -> None:
    base = topo.default_topology()
    assert geo.topology(base, geo.Geometry()) is base


def test_routers_keep_every_existing_address() -> None:
    base = topo.default_topology()
    hopped = geo.topology(base, geo.Geometry(2, 3))
    for name in ("client", "server", "vps", "prober", "control"):
        assert hopped.host(name) == base.host(name), name
    assert hopped.host("near1").interface("rt0").addresses[0].ip == ip_address("198.18.0.1")
    assert hopped.host("far3").interface("rt1").addresses[0].ip == ip_address("198.19.0.1")
    assert [h for h in hopped.host_names() if h.startswith(("near", "far"))] == [
        "near1",
        "near2",
        "far1",
        "far2",
        "far3",
    ]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hops_client": -1}, "--hops-client -1"),
        ({"hops_server": 17}, "--hops-server 17"),
        ({"delay_ms": -5}, "--delay-ms -5"),
    ],
)
def test_bad_geometry_is_a_clear_error(kwargs, message) -> None:
    with pytest.raises(geo.GeometryError, match=message):
        geo.Geometry(**kwargs)


def test_profile_fills_in_position_and_distance() -> None:
    from chokepoint.policy import load_profile

    meta = load_profile("gfw").meta
    g = geo.from_profile(meta)
    assert (g.hops_client, g.hops_server, g.delay_ms) == (
        meta.position["hops_client"],
        meta.position["hops_server"],
        meta.distance["rtt_ms"] / 2,
    )
    assert geo.from_profile(load_profile("demo").meta).plain


def test_lab_up_defaults_to_the_profiles_far_side_delay() -> None:
    """``lab up``: the profile's distance by default (delay only), its position too with ``--distance``, nothing
    with ``--flat``; explicit options win; a fleet of nodes and a profile without a distance stay flat."""
    from chokepoint.lab import _geometry
    from chokepoint.policy import load_profile

    gfw = load_profile("gfw")
    half_rtt = gfw.meta.distance["rtt_ms"] / 2

    def geometry(distance, loaded=gfw, nodes=1, **given):
        opts = {"hops_client": None, "hops_server": None, "delay_ms": None, **given}
        return _geometry(
            loaded, distance, opts["hops_client"], opts["hops_server"], opts["delay_ms"], None, nodes, None
        )

    assert geometry(None) == geo.Geometry(0, 0, half_rtt)
    assert geometry(True) == geo.Geometry(3, 2, half_rtt) == geo.from_profile(gfw.meta)
    assert geometry(False).plain
    assert geometry(False, delay_ms=10) == geo.Geometry(0, 0, 10)
    assert geometry(None, delay_ms=0).plain
    assert geometry(None, nodes=2).plain
    assert geometry(None, loaded=load_profile("demo")).plain


def test_every_country_profile_has_a_sourced_distance() -> None:
    """Each bundled profile but the demo says how far its censor is from a server abroad, with a source or a
    note that the number is an estimate."""
    from chokepoint.policy import list_profiles, load_profile

    for name in list_profiles():
        meta = load_profile(name).meta
        if name == "demo":
            assert meta.distance is None
            continue
        assert meta.distance and meta.distance["rtt_ms"] > 0, name
        assert meta.distance.get("cite") or meta.distance.get("uncertain"), name
        assert meta.position and (meta.position.get("cite") or meta.position.get("uncertain")), name


def _time_exceeded(path_packets: list[tuple[float, bytes]]) -> list[dict]:
    """ICMP time-exceeded messages in IPv4 packets: source, and the quoted packet's header fields."""
    out = []
    for ts, ip in path_packets:
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 1:
            continue
        ihl = (ip[0] & 15) * 4
        if ip[ihl] != 11:
            continue
        inner = ip[ihl + 8 :]
        inner_ihl = (inner[0] & 15) * 4
        echo_id, echo_seq = struct.unpack("!HH", inner[inner_ihl + 4 : inner_ihl + 8])
        out.append(
            {
                "time": ts,
                "src": ip_address(ip[12:16]).compressed,
                "quoted_src": ip_address(inner[12:16]).compressed,
                "quoted_dst": ip_address(inner[16:20]).compressed,
                "quoted_ttl": inner[8],
                "quoted_proto": inner[9],
                "echo_id": echo_id,
                "echo_seq": echo_seq,
            }
        )
    return out


def _ip_packets(netns: str, iface: str, bpf: str, run) -> list[tuple[float, bytes]]:
    """Raw IP packets captured on ``iface`` while ``run()`` runs."""
    import os
    import signal
    import subprocess
    import tempfile

    fd, path = tempfile.mkstemp(prefix=f"{PREFIX}geo-", suffix=".pcap")
    os.close(fd)
    argv = system.in_netns(
        ["tcpdump", "-i", iface, "-nn", "-U", "--immediate-mode", "-s", "0", "-w", path, *bpf.split()], netns
    )
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert "listening on" in proc.stderr.readline().decode()
        run()
        time.sleep(0.3)  # the last answers reach the capture
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=5)
    try:
        with open_capture(path) as reader:
            return [(f.ts, f.data[14:]) for f in reader]
    finally:
        os.unlink(path)


def _ping(ttl: int, count: int = 1, interval: str = "0.2", address: str = SITE) -> None:
    system.run(
        ["ping", "-n", "-c", str(count), "-i", interval, "-t", str(ttl), "-W", "1", address],
        netns=CLIENT,
        check=False,
        timeout=20,
    )


def test_each_router_answers_its_ttl_and_the_server_sees_the_hop_count(lab_guard) -> None:
    state = lab.up("demo", hops_client=2, hops_server=2, services=False)
    assert {f"{PREFIX}{h}" for h in ("near1", "near2", "far1", "far2")} <= set(topo.lab_namespaces())

    def probes() -> None:
        for ttl in range(1, len(HOPS_2_2) + 1):
            _ping(ttl)

    packets = _ip_packets(CLIENT, "cl0", "icmp", probes)
    answers = _time_exceeded(packets)
    assert [a["src"] for a in answers] == HOPS_2_2, answers
    for a in answers:  # the quote is the client's own echo request, as it arrived with TTL 1
        assert (a["quoted_src"], a["quoted_dst"], a["quoted_proto"], a["quoted_ttl"]) == ("198.18.0.2", SITE, 1, 1)
    # the server sees the TTL decremented once per router (4; the transparent censor takes none)
    seen = _ip_packets(state.namespace("server"), "sv0", "icmp[icmptype] == icmp-echo", lambda: _ping(64, address=SITE))
    assert [ip[8] for _, ip in seen] == [64 - 4]
    lab.down()
    assert not [ns for ns in topo.lab_namespaces() if ns.startswith((f"{PREFIX}near", f"{PREFIX}far"))]


def test_routers_rate_limit_time_exceeded_like_linux(lab_guard) -> None:
    """20 expired packets in ~0.2 s: a burst of 6 answers (Linux's token bucket), all 20 with the limit off."""
    state = lab.up("demo", hops_client=1, services=False)
    limited = _time_exceeded(_ip_packets(CLIENT, "cl0", "icmp", lambda: _ping(1, 20, "0.01")))
    system.sysctl({"net.ipv4.icmp_ratelimit": 0}, state.namespace("near1"))
    unlimited = _time_exceeded(_ip_packets(CLIENT, "cl0", "icmp", lambda: _ping(1, 20, "0.01")))
    print(f"time-exceeded answers to 20 expired packets: {len(limited)} limited, {len(unlimited)} unlimited")
    assert 5 <= len(limited) <= 8
    assert len(unlimited) == 20


def test_far_side_delay_holds_on_the_wire(lab_guard) -> None:
    """SYN -> SYN/ACK at the client is 2 x the far side's delay within 10%, on captured timestamps."""
    delay_ms = 40.0
    lab.up("demo", hops_server=1, delay_ms=delay_ms, censor=False)
    with capture(f"host {SITE} and tcp port 80") as wire:
        for _ in range(5):
            system.run(["curl", "-s", "-o", "/dev/null", f"http://{SITE}/"], netns=CLIENT, check=False, timeout=10)
    syn = {p["src_port"]: p["time"] for p in wire.packets if p.get("tcp_flags") == "S"}
    synack = {p["dest_port"]: p["time"] for p in wire.packets if p.get("tcp_flags") == "SA"}
    rtts = [(synack[port] - syn[port]) * 1000 for port in syn if port in synack]
    print(f"SYN->SYN/ACK at the client: {', '.join(f'{r:.1f}' for r in rtts)} ms (setting {2 * delay_ms:g})")
    assert len(rtts) == 5, wire.packets[:6]
    assert all(abs(r - 2 * delay_ms) <= 0.1 * 2 * delay_ms for r in rtts)


def test_hops_refuse_a_fleet_or_a_wrap_before_anything_exists() -> None:
    with pytest.raises(lab.LabError, match="single censor node"):
        lab.up("demo", hops_client=1, nodes=2)
    with pytest.raises(lab.LabError, match="--hops-server 99"):
        lab.up("demo", hops_server=99)


def test_ipv6_crosses_the_routers(lab_guard) -> None:
    lab.up("demo", hops_client=2, hops_server=1, services=False)
    proc = system.run(["ping", "-6", "-n", "-c", "2", "-i", "0.2", "2001:db8:0:2::10"], netns=CLIENT, check=False)
    assert proc.returncode == 0, proc.stdout
    # the reply's hop limit: 64 less the 2 + 1 routers (the censor between them is transparent)
    assert proc.stdout.count(b"ttl=61") == 2, proc.stdout
