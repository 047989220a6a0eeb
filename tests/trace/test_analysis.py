"""trace analyze on captures in CenTrace's layout: outcomes, the censor's hop and address, in-path vs on-path,
the kind of interference, TTL copying; silent hops and bad input are results or clear errors, never crashes."""

from __future__ import annotations

import pytest

from chokepoint.packet import build
from chokepoint.trace import TraceInputError, analyze_packets, read_capture
from chokepoint.trace.packets import ACK, RST, SYN, parse_ipv4

from ._paths import CLIENT, ROUTERS, SERVER, packets, path, write

TTLS = range(1, 12)


def report(test_path, control_path, *, ttls=TTLS, control_ttls=None, dns=False, tmp_path=None):
    """Write both traces as pcaps (Ethernet) and analyse what reads back."""
    test = packets(test_path, ttls, dns=dns)
    control = packets(control_path, control_ttls or ttls, dns=dns, first_port=50000)
    if tmp_path is None:
        return analyze_packets(
            [parse_ipv4(p, ts) for ts, p in test], [parse_ipv4(p, ts) for ts, p in control]
        ).to_dict()
    a = write(tmp_path / "203.0.113.10_blocked.example_blocked.example.pcap", test)
    b = write(tmp_path / "203.0.113.10_blocked.example_example.com.pcap", control)
    return analyze_packets(read_capture(a), read_capture(b)).to_dict()


def test_on_path_injector_is_named_by_the_icmp_of_the_same_probe(tmp_path) -> None:
    r = report(path(10, censor_hop=4, on_path=True), path(10), tmp_path=tmp_path)
    assert r["outcome"] == "censor-identified"
    assert r["censor"] == {"ttl": 4, "ip": ROUTERS[3]}
    assert (r["path"], r["interference"], r["interference_ttl"]) == ("on-path", "rst", 4)
    assert r["hops"][3]["test"][0].startswith("rst ttl=250 id=13330")


def test_in_path_device_is_named_by_the_controls_answer_at_its_ttl() -> None:
    """CenTrace's middlebox: the hop that answered the control at the test's terminating TTL, with the control's
    answers one TTL before and after as candidates."""
    r = report(path(10, censor_hop=6, on_path=False), path(10))
    assert (r["outcome"], r["path"], r["interference_ttl"]) == ("censor-identified", "in-path", 6)
    assert r["censor"] == {"ttl": 6, "ip": ROUTERS[5]}
    assert r["candidates"] == {"before": ROUTERS[4], "after": ROUTERS[6]}


def test_a_drop_is_located_where_the_test_stops_hearing_from_the_path() -> None:
    r = report(path(10, censor_hop=3, censor="drop"), path(10))
    assert (r["outcome"], r["interference"], r["path"]) == ("censor-identified", "drop", "in-path")
    assert r["censor"] == {"ttl": 3, "ip": ROUTERS[2]}  # one TTL past the test's last answer, as CenTrace
    assert r["test_terminating_ttl"] is None


def test_a_censor_that_answers_with_the_servers_address_is_an_endpoint_firewall(monkeypatch) -> None:
    """CenTrace's NAT_FIREWALL: the hop that answered the control at the test's terminating TTL has the
    server's own address (a NAT in front of it)."""
    from tests.trace import _paths

    monkeypatch.setattr(_paths, "ROUTERS", [*ROUTERS[:5], SERVER, *ROUTERS[6:]])  # hop 6: the server's address
    r = report(path(10, censor_hop=6, on_path=False), path(10))
    assert (r["outcome"], r["censor"], r["interference_ttl"]) == ("endpoint-firewall", None, 6)
    assert "the server itself" in r["detail"]


def test_blockpage_and_forged_dns_answers_are_named() -> None:
    page = report(path(10, censor_hop=5, censor="blockpage", on_path=False), path(10))
    assert (page["interference"], page["censor"]["ttl"]) == ("blockpage", 5)
    forged = report(
        path(8, censor_hop=3, censor="dns", real=("dns", "198.18.0.10")), path(8, real=("dns", "198.18.0.10")), dns=True
    )
    assert (forged["outcome"], forged["interference"], forged["path"]) == ("censor-identified", "forged-dns", "on-path")
    assert forged["censor"] == {"ttl": 3, "ip": ROUTERS[2]}


def test_same_answer_at_the_same_hop_is_no_censorship_and_a_different_one_an_endpoint_firewall() -> None:
    assert report(path(7), path(7))["outcome"] == "no-censorship"
    r = report(path(7, real=("http", "403 Forbidden")), path(7))
    assert (r["outcome"], r["censor"]) == ("endpoint-firewall", None)


def test_silent_hops_are_stars_not_errors() -> None:
    r = report(path(9, censor_hop=6, on_path=True, silent=frozenset({2, 3})), path(9, silent=frozenset({2, 3})))
    assert r["hops"][1]["test"] == ["*"] and r["hops"][2]["control"] == ["*"]
    assert r["censor"] == {"ttl": 6, "ip": ROUTERS[5]}
    # the hop at the censor silent for both: the interference is seen, its address is not (the hop after it
    # is a candidate)
    r = report(path(9, censor_hop=5, on_path=False, silent=frozenset({4, 5})), path(9, silent=frozenset({4, 5})))
    assert (r["outcome"], r["path"], r["censor"]) == ("cannot-identify", "unknown", None)
    assert r["candidates"] == {"before": None, "after": ROUTERS[5]}
    r = report(
        path(9, censor_hop=1, on_path=False, silent=frozenset(range(1, 9))), path(9, silent=frozenset(range(1, 9)))
    )
    assert (r["outcome"], r["censor"]) == ("cannot-identify", None)


def test_ttl_copying_injector_is_recognised() -> None:
    copying = report(path(10, censor_hop=4, injected_ttl=lambda t: 64 + t), path(10))
    fixed = report(path(10, censor_hop=4), path(10))
    assert copying["copies_probe_ttl"] is True
    assert fixed["copies_probe_ttl"] is False
    assert [i["ttl"] for i in copying["injected"]] == [64 + t for t in range(4, 10)]


def test_a_trace_that_stops_early_or_a_dead_control_is_terminated_early() -> None:
    short = report(path(10, censor_hop=20, censor="drop"), path(10), ttls=range(1, 6))
    assert short["outcome"] == "terminated-early"
    dead = report(path(10), path(30), control_ttls=range(1, 12))
    assert dead["outcome"] == "terminated-early"


def test_a_drop_whose_residual_block_refuses_the_later_handshakes_is_still_located() -> None:
    """iran's SNI drop: the probe past the censor is dropped, then its residual block (60 s, the 3-tuple: every
    source port) refuses each later handshake, so no probe reaches the control's last TTL. The test went silent
    where the control's probe drew an ICMP, and its connections failed after: a drop, in-path, located."""
    test = packets(path(10, censor_hop=4, censor="drop"), range(1, 5))
    clock = test[-1][0]
    for i, port in enumerate(range(41000, 41006)):  # later handshakes: SYN (retransmitted), refused with a RST
        for k, packet in enumerate(
            (
                build.ipv4_tcp(CLIENT, SERVER, port, 80, 100, 0, SYN),
                build.ipv4_tcp(CLIENT, SERVER, port, 80, 100, 0, SYN),
                build.ipv4_tcp(SERVER, CLIENT, 80, port, 0, 101, RST | ACK),
            )
        ):
            test.append((clock + 0.01 * (3 * i + k + 1), packet))
    control = packets(path(10), TTLS, first_port=50000)
    r = analyze_packets([parse_ipv4(p, ts) for ts, p in test], [parse_ipv4(p, ts) for ts, p in control]).to_dict()
    assert (r["outcome"], r["interference"], r["path"]) == ("censor-identified", "drop", "in-path"), r["detail"]
    assert r["censor"] == {"ttl": 4, "ip": ROUTERS[3]}
    assert "6 connection(s) failed before a request could be sent" in r["detail"]
    # without the failed handshakes the same short trace stays terminated-early: nothing says it went on
    short = analyze_packets(
        [parse_ipv4(p, ts) for ts, p in packets(path(10, censor_hop=4, censor="drop"), range(1, 5))],
        [parse_ipv4(p, ts) for ts, p in control],
    ).to_dict()
    assert short["outcome"] == "terminated-early"


def test_bad_captures_are_clear_errors(tmp_path) -> None:
    missing = tmp_path / "nope.pcap"
    with pytest.raises(TraceInputError, match="no such file"):
        read_capture(missing)
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    with pytest.raises(TraceInputError, match="not a readable capture"):
        read_capture(junk)
    empty = write(tmp_path / "empty.pcap", [])
    with pytest.raises(TraceInputError, match="no TTL-limited probe"):
        analyze_packets(read_capture(empty), read_capture(empty))


def test_truncated_packets_do_not_crash() -> None:
    test = packets(path(10, censor_hop=4), TTLS)
    cut = [(ts, p[: max(1, len(p) // 3)]) for ts, p in test]
    parsed = [x for ts, p in cut if (x := parse_ipv4(p, ts)) is not None]
    with pytest.raises(TraceInputError):
        analyze_packets(parsed, parsed)


def test_late_packets_of_an_earlier_connection_on_the_same_port_are_not_answers() -> None:
    """A probe that reuses a port gets no credit for the previous connection's late ACK or a stale DNS answer."""
    from chokepoint.packet import build
    from chokepoint.trace.analysis import Side, probes_from_packets
    from chokepoint.trace.packets import ACK, PSH

    from ._paths import CLIENT, SERVER

    probe = build.ipv4_tcp(CLIENT, SERVER, 40000, 80, 7000, 1, PSH | ACK, b"GET / HTTP/1.1\r\n\r\n", ttl=1)
    stale = build.ipv4_tcp(SERVER, CLIENT, 80, 40000, 99, 123456, ACK)  # acknowledges another connection's bytes
    fresh = build.ipv4_tcp(SERVER, CLIENT, 80, 40000, 99, 7000 + 18, ACK)
    for extra, expected in ((stale, None), (fresh, 1)):
        probes, _, _ = probes_from_packets([parse_ipv4(probe, 1.0), parse_ipv4(extra, 1.1)])
        assert Side(probes).terminating_ttl() == expected
    query = build.ipv4_udp(CLIENT, SERVER, 40001, 53, b"\x00\x07" + b"\0" * 10, ttl=2)
    old_answer = build.ipv4_udp(SERVER, CLIENT, 53, 40001, b"\x00\x08" + b"\0" * 10)
    probes, _, _ = probes_from_packets([parse_ipv4(query, 1.0), parse_ipv4(old_answer, 1.1)])
    assert Side(probes).terminating_ttl() is None
